"""Thermal case: transient heat conduction in a cooled blade section, POD-Galerkin ROM.

Offline: seeded Latin-hypercube training parameters (k_sub, k_coat, h_cool, q_flux), full-order
trajectories (dolfinx, any number of ranks) appended to an HDF5 snapshot store, POD in the L2
(mass-matrix) inner product streamed from the store, Galerkin projection of the affine terms.
Online: held-out parameters, reduced solves, relative space-time L2 error against the full-order
model, speed-up per trajectory, basis size against tolerance.

Run (2 ranks)::

    mpirun -n 2 .venv/bin/python -m mpi4py cases/thermal.py --out run/thermal

Writes ``thermal.h5`` (snapshots), ``modes.h5`` (POD basis), ``summary.json`` and PNG figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

import rom
from rom.compression._compress import compress
from rom.io import SnapshotStore
from rom.models.galerkin import LinearAffineROM, space_time_error
from rom.parallel import blas_threads
from rom.sampling import latin_hypercube

TOLERANCES = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]


def main(argv=None) -> dict:
    p = common.parser(__doc__.splitlines()[0], size=12, n_train=16, tol=1e-3, out="run/thermal")
    p.add_argument("--n-test", type=int, default=10, help="number of held-out parameters")
    p.add_argument("--n-steps", type=int, default=30, help="implicit Euler steps per trajectory")
    p.add_argument(
        "--compressor", default="batch", choices=["batch", "incremental", "hapod", "randomized"]
    )
    p.add_argument(
        "--safety",
        type=float,
        default=0.01,
        help="basis size from the POD tolerance safety*tol (held-out error > POD tail)",
    )
    args, comm, log, out = common.start(p, argv)

    import dolfinx_solver  # noqa: F401  (before dolfinx)

    from solvers.heat import HeatModel

    timings: dict[str, float] = {}
    with blas_threads(comm):
        t0 = time.perf_counter()
        model = HeatModel(comm, size=args.size, n_steps=args.n_steps)
        timings["setup"] = time.perf_counter() - t0
        log.info(
            "heat model: %d dofs on %d rank(s), %d steps", model.n_dofs, comm.size, model.n_steps
        )

        # conductivities and the heat-transfer coefficient span decades: sample them in log
        log_scale = [name != "q_flux" for name in model.parameter_names]
        mus_train = latin_hypercube(
            model.parameter_ranges, args.n_train, seed=args.seed, log_scale=log_scale
        )
        mus_test = latin_hypercube(
            model.parameter_ranges, args.n_test, seed=args.seed + 1, log_scale=log_scale
        )

        # Offline 1: full-order trajectories into the snapshot store
        path = out / "thermal.h5"
        store = SnapshotStore.create(
            path,
            {"temperature": model.keys},
            parameter_names=model.parameter_names,
            comm=comm,
            overwrite=True,
            attrs={"case": "thermal", "dt": model.dt},
        )
        store.write_mesh(*(model.mesh_for_plot() or (None, None)))
        t0 = time.perf_counter()
        for i, mu in enumerate(mus_train):
            U = model.solve(mu)
            store.append(
                {"temperature": U},
                parameters=mu,
                time=model.times,
                sample=np.full(model.n_steps, i),
            )
        timings["offline_fom"] = time.perf_counter() - t0
        store.close()

        # Offline 2: compression streamed from the store (each rank reads its owned rows)
        t0 = time.perf_counter()
        store = SnapshotStore.open(path, "r", comm=comm, keys={"temperature": model.keys})
        result = compress(
            store,
            method=args.compressor,
            field="temperature",
            product=model.mass,
            comm=comm,
            rel_l2_err=min(TOLERANCES) / 10,
        )
        store.close()
        modes, sv = result.modes, result.singular_values
        timings["offline_compression"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        full_rom = LinearAffineROM.from_full(
            modes,
            mass=model.mass,
            stiffness=model.stiffness_terms,
            rhs=model.rhs_terms,
            comm=comm,
            theta_a=model.theta_a,
            theta_f=model.theta_f,
        )
        timings["offline_projection"] = time.perf_counter() - t0
        total = float(np.sum(sv**2)) + (result.error_bound or 0.0) ** 2
        tails = rom.compression.truncation.tail_energies(sv)
        sizes = {
            tol: int(rom.truncation_rank(sv, rel_l2_err=tol, total_energy=total))
            for tol in TOLERANCES
        }
        n_target = max(
            1, int(rom.truncation_rank(sv, rel_l2_err=args.safety * args.tol, total_energy=total))
        )
        log.info("POD: %d modes kept, N=%d for tol=%.1e", len(sv), n_target, args.tol)

        # Online: held-out parameters
        size_grid = sorted({max(1, n) for n in list(sizes.values()) + [1, 2, 4, len(sv)]})
        errors = np.zeros((len(mus_test), len(size_grid)))
        t_fom, t_rom, err_target = [], [], []
        for i, mu in enumerate(mus_test):
            comm.Barrier()
            t0 = time.perf_counter()
            U = model.solve(mu)
            t_fom.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
            for j, n in enumerate(size_grid):
                sub = full_rom.truncated(n)
                C = sub.solve(mu, dt=model.dt, n_steps=model.n_steps)
                errors[i, j] = space_time_error(U, modes[:, :n] @ C, product=model.mass, comm=comm)
            target_rom = full_rom.truncated(n_target)
            reps = 20
            t0 = time.perf_counter()
            for _ in range(reps):  # online cost: assemble, factor, step (no full-order work)
                C = target_rom.solve(mu, dt=model.dt, n_steps=model.n_steps)
            t_rom.append((time.perf_counter() - t0) / reps)
            err_target.append(
                space_time_error(U, modes[:, :n_target] @ C, product=model.mass, comm=comm)
            )

    speedups = np.array(t_fom) / np.array(t_rom)
    rows = [
        [i, *np.round(mu, 3).tolist(), t_fom[i], t_rom[i], float(speedups[i]), err_target[i]]
        for i, mu in enumerate(mus_test)
    ]
    header = ["test", *model.parameter_names, "FOM s", "ROM s", "speed-up", "rel. error"]
    results = {
        "n_dofs": model.n_dofs,
        "n_steps": model.n_steps,
        "n_snapshots": int(args.n_train * model.n_steps),
        "compressor": args.compressor,
        "singular_values": sv,
        "basis_size_for_tol": {f"{t:g}": n for t, n in sizes.items()},
        "n_modes": n_target,
        "held_out": {
            "parameters": mus_test,
            "relative_error": err_target,
            "max_relative_error": float(np.max(err_target)),
            "mean_relative_error": float(np.mean(err_target)),
            "fom_time_s": t_fom,
            "rom_time_s": t_rom,
            "speedup_mean": float(np.mean(speedups)),
            "speedup_min": float(np.min(speedups)),
        },
        "error_vs_basis_size": {
            "n": size_grid,
            "max": errors.max(axis=0),
            "mean": errors.mean(axis=0),
        },
        "projection_tail_rel": [float(np.sqrt(tails[n] / total)) for n in size_grid],
        "tol_met": bool(np.max(err_target) <= args.tol),
    }
    files = ["thermal.h5", "summary.json"]
    if comm.rank == 0:
        print(
            f"\nThermal ROM: {model.n_dofs} dofs, {comm.size} rank(s), {len(mus_train)} training "
            f"trajectories x {model.n_steps} steps, N = {n_target} modes (tol {args.tol:g})"
        )
        print(common.table(rows, header))
        print(
            f"max held-out error {np.max(err_target):.3e}  (target {args.tol:g}: "
            f"{'met' if results['tol_met'] else 'NOT met'}),  mean speed-up {np.mean(speedups):.0f}x"
        )
        print("basis size for tolerance: " + ", ".join(f"{t:g}->{n}" for t, n in sizes.items()))
        if not args.no_plots:
            files += _plots(out, sv, size_grid, errors, results, model, store_path=path, modes=None)
    _write_modes(out / "modes.h5", modes, sv, model, comm)
    files.append("modes.h5")
    common.write_summary(out, "thermal", args, results, timings, files, comm)
    return results


def _write_modes(path: Path, modes, sv, model, comm) -> None:
    """POD modes as a snapshot store (one column per mode), readable by any rank count."""
    st = SnapshotStore.create(
        path,
        {"temperature": model.keys},
        parameter_names=("singular_value",),
        comm=comm,
        overwrite=True,
        attrs={"content": "POD modes (L2)"},
    )
    st.append(
        {"temperature": modes},
        parameters=sv[:, None],
        time=np.zeros(len(sv)),
        sample=np.arange(len(sv)),
    )
    st.close()


def _plots(out: Path, sv, size_grid, errors, results, model, *, store_path, modes) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(np.arange(1, len(sv) + 1), sv / sv[0], "o-", ms=3)
    ax.set_xlabel("index n")
    ax.set_ylabel(r"$\sigma_n / \sigma_1$")
    ax.set_title("POD singular values (L2 product)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "singular_values.png", dpi=120)
    files.append("singular_values.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(size_grid, errors.max(axis=0), "o-", label="held-out ROM error (max)")
    ax.semilogy(size_grid, errors.mean(axis=0), "s--", label="held-out ROM error (mean)")
    ax.semilogy(size_grid, results["projection_tail_rel"], "k:", label="training POD tail")
    ax.set_xlabel("basis size N")
    ax.set_ylabel("relative space-time L2 error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "error_vs_basis_size.png", dpi=120)
    files.append("error_vs_basis_size.png")
    plt.close(fig)

    st = SnapshotStore.open(store_path, "r", comm=MPI.COMM_SELF)
    mesh = st.read_mesh()
    if mesh is not None:
        pts, cells = mesh
        keys = st.keys("temperature")
        last = st.read("temperature", rows="all", columns=[st.n_snapshots - 1])[:, 0]
        vals = np.full(len(pts), np.nan)
        vals[keys] = last
        fig, ax = plt.subplots(figsize=(6, 3.5))
        tpc = ax.tripcolor(pts[:, 0], pts[:, 1], cells, vals, shading="gouraud", cmap="inferno")
        fig.colorbar(tpc, ax=ax, label="temperature")
        ax.set_aspect("equal")
        ax.set_title("last training snapshot (final time)")
        fig.tight_layout()
        fig.savefig(out / "temperature.png", dpi=120)
        files.append("temperature.png")
        plt.close(fig)
    st.close()
    return files


if __name__ == "__main__":
    main()
