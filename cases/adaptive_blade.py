"""Adaptive nonlinear ROM: an elasto-viscoplastic block under thermal loads near creep.

After Casenave & Akkari, MCA 24(2):41, 2019 (arXiv:1904.09123); ``METHODS.md`` section 5.
The structure (``solvers.mechanics``, 2-D plane strain by default, ``--dim 3`` for hexahedra) is
loaded by a prescribed temperature family

    T(x, t) = 20 + theta(t) [A (1 + g (x - 1/2)) + S1 exp(-|x - a|^2 / 0.04)
                              + S2 exp(-|x - b|^2 / 0.03)],   theta(t) = min(t / hold, 1),

a heated block with a gradient, a hot spot at a = (0.7, 0.5) and a second one at
b = (0.25, 0.75). Training loads are ramps (hold = 1) with a weak second spot; the new load
heats the second spot strongly and holds the temperature from t = hold on, so that plastic flow
and creep appear where the training never had them.

Offline: full-order training trajectories, the adaptive ROM (incremental-SVD bases, empirical
cubature, Gappy-POD indicator), and the calibration of tol_E on held-out loads from a wider
envelope (stronger second spot, holds; unless ``--tol-E`` is given). Online on the new load:
(1) the unenriched ROM's error, (2) the indicator history against the true error, (3) the
enriched ROM's error and the full-order steps it used, (4) wall times of the full-order model
and of the adaptive ROM.

Run (2 ranks)::

    mpirun -n 2 .venv/bin/python -m mpi4py cases/adaptive_blade.py --out run/adaptive

Writes ``summary.json`` and PNG figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from rom.adaptive.enrichment import AdaptiveROM
from rom.adaptive.indicator import calibrate
from rom.parallel import allreduce_sum, blas_threads

SPOT_A, SPOT_B = (0.7, 0.5), (0.25, 0.75)
TEST_LOAD = (330.0, 0.4, 80.0, 250.0, 0.5)  # A, g, S1, S2, hold


def blade_temperature(A: float, g: float, S1: float, S2: float, hold: float = 1.0):
    """The temperature family of the module docstring, as a callable ``T(x (3, m), t)``."""

    def T(x: np.ndarray, t: float) -> np.ndarray:
        th = min(float(t) / hold, 1.0)
        r1 = (x[0] - SPOT_A[0]) ** 2 + (x[1] - SPOT_A[1]) ** 2
        r2 = (x[0] - SPOT_B[0]) ** 2 + (x[1] - SPOT_B[1]) ** 2
        return 20.0 + th * (
            A * (1 + g * (x[0] - 0.5)) + S1 * np.exp(-r1 / 0.04) + S2 * np.exp(-r2 / 0.03)
        )

    return T


def sample_loads(
    n: int, rng: np.random.Generator, *, s2_max: float, hold_min: float = 1.0
) -> list[tuple]:
    """A in [200, 350], g in [0, 0.6], S1 in [50, 200], S2 in [0, s2_max], hold in
    [hold_min, 1] (uniform, seeded)."""
    lo = np.array([200.0, 0.0, 50.0, 0.0, hold_min])
    hi = np.array([350.0, 0.6, 200.0, s2_max, 1.0])
    return [tuple(float(v) for v in lo + (hi - lo) * rng.random(5)) for _ in range(n)]


def step_errors(fom, U: np.ndarray, P: np.ndarray, ref) -> tuple[np.ndarray, np.ndarray]:
    """Per-step errors relative to the trajectory's largest norm (collective):
    :math:`\\|u_k - u_k^h\\|_M / \\max_j \\|u_j^h\\|_M` and the same for :math:`p` in
    :math:`L^2(\\Omega)` (quadrature weights)."""
    comm = fom.comm

    def mnorm(X):
        return np.sqrt(np.maximum(allreduce_sum(np.einsum("ij,ij->j", X, fom.mass(X)), comm), 0))

    def wnorm(X):
        return np.sqrt(np.maximum(allreduce_sum((X**2).T @ fom.qp_weights, comm), 0))

    return (
        mnorm(U - ref.u) / max(mnorm(ref.u).max(), 1e-300),
        wnorm(P - ref.p) / max(wnorm(ref.p).max(), 1e-300),
    )


def timed_solve(fom, load: tuple, times: np.ndarray):
    """One full-order trajectory for a load tuple and its wall time (slowest rank)."""
    comm = fom.comm
    fom.set_temperature(blade_temperature(*load))
    comm.Barrier()
    tic = time.perf_counter()
    trajectory = fom.solve(times=times)
    return trajectory, comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)


def calibration_pairs(rom, fom, loads, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indicator, true error) of every step of the unenriched ROM on held-out loads, the
    input of :func:`rom.adaptive.indicator.calibrate`; the error of a step is the larger of the u and
    p errors of :func:`step_errors` (collective)."""
    E, e = [], []
    for load in loads:
        ref, _ = timed_solve(fom, load, times)
        run = rom.run(blade_temperature(*load), times, enrich=False)
        eu, ep = step_errors(fom, run.displacement(), run.plastic_strain(), ref)
        E.append(run.indicator)
        e.append(np.maximum(eu, ep))
    return np.concatenate(E), np.concatenate(e)


def main(argv=None) -> dict:
    p = common.parser(__doc__.splitlines()[0], size=8, n_train=4, tol=5e-3, out="run/adaptive")
    p.add_argument("--dim", type=int, default=2, choices=[2, 3])
    p.add_argument("--n-steps", type=int, default=20, help="time steps on [0, 1]")
    p.add_argument("--n-cal", type=int, default=3, help="held-out loads for the calibration")
    p.add_argument(
        "--tol-E", type=float, default=None, help="indicator threshold (skips the calibration)"
    )
    p.add_argument("--max-enrichments", type=int, default=5)
    p.add_argument("--cubature-tol", type=float, default=1e-5)
    p.add_argument(
        "--svd-rtol",
        type=float,
        default=1e-6,
        help="relative singular-value truncation of the bases",
    )
    p.add_argument("--reconstruction", default="gappy", choices=["gappy", "replay"])
    p.add_argument("--hold", type=float, default=TEST_LOAD[4], help="hold time of the new load")
    args, comm, log, out = common.start(p, argv)

    import dolfinx_solver  # noqa: F401  (before dolfinx)

    from solvers.mechanics import Load, ViscoplasticModel

    rng = np.random.default_rng(args.seed)
    train = sample_loads(args.n_train, rng, s2_max=60.0)
    cal = sample_loads(args.n_cal, rng, s2_max=250.0, hold_min=0.4)
    test = TEST_LOAD[:4] + (args.hold,)
    times = np.linspace(0.0, 1.0, args.n_steps + 1)[1:]
    timings: dict[str, float] = {}

    def timed(load):
        return timed_solve(fom, load, times)

    with blas_threads(comm):
        tic = time.perf_counter()
        fom = ViscoplasticModel(comm, dim=args.dim, size=args.size, load=Load(), times=times)
        timings["setup"] = time.perf_counter() - tic
        log.info(
            "FOM: %d dofs, %d-D, %d steps, %d rank(s)", fom.n_dofs, args.dim, len(times), comm.size
        )
        tic = time.perf_counter()
        trajs = [timed(load)[0] for load in train]
        timings["offline_fom"] = time.perf_counter() - tic

        tic = time.perf_counter()
        rom = AdaptiveROM(
            svd_rtol=args.svd_rtol,
            cubature_tol=args.cubature_tol,
            tol_E=np.inf if args.tol_E is None else args.tol_E,
            max_enrichments=args.max_enrichments,
            reconstruction=args.reconstruction,
            seed=args.seed,
        ).fit(fom, trajs)
        timings["offline_rom"] = time.perf_counter() - tic

        calibration = None
        if args.tol_E is None:
            tic = time.perf_counter()
            E_cal, e_cal = calibration_pairs(rom, fom, cal, times)
            res = calibrate(E_cal, e_cal, target=args.tol)
            # the held-out loads may all lie under the target: keep a threshold above them
            rom.tol_E = res.tol_E
            calibration = {
                "tol_E": res.tol_E,
                "spearman": res.spearman,
                "miss_rate": res.miss_rate,
                "E": E_cal,
                "e": e_cal,
            }
            timings["calibration"] = time.perf_counter() - tic
            log.info("calibrated tol_E = %.3e (Spearman %.2f)", res.tol_E, res.spearman)

        # online: the new load
        T_new = blade_temperature(*test)
        ref, t_fom = timed(test)
        comm.Barrier()
        tic = time.perf_counter()
        plain = rom.run(T_new, times, enrich=False)
        t_plain = comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)
        eu0, ep0 = step_errors(fom, plain.displacement(), plain.plastic_strain(), ref)
        comm.Barrier()
        tic = time.perf_counter()
        adaptive = rom.run(T_new, times, enrich=True)
        t_adapt = comm.allreduce(time.perf_counter() - tic, op=MPI.MAX)
        eu1, ep1 = step_errors(fom, adaptive.displacement(), adaptive.plastic_strain(), ref)

    timings.update(fom_new_load=t_fom, rom_unenriched=t_plain, rom_adaptive=t_adapt)
    results = {
        "n_dofs": fom.n_dofs,
        "n_qp": int(comm.allreduce(fom.n_qp_local)),
        "dim": args.dim,
        "n_steps": len(times),
        "train_loads": train,
        "calibration_loads": cal if args.tol_E is None else [],
        "test_load": test,
        "tol_E": rom.tol_E,
        "calibration": calibration,
        "target": args.tol,
        "unenriched": {
            "indicator": plain.indicator,
            "error_u": eu0,
            "error_p": ep0,
            "max_error_u": float(eu0.max()),
            "max_error_p": float(ep0.max()),
            "n_modes": int(plain.n_modes[0]),
            "n_points": int(plain.n_points[0]),
        },
        "adaptive": {
            "indicator": adaptive.indicator,
            "enriched_steps": np.flatnonzero(adaptive.enriched),
            "error_u": eu1,
            "error_p": ep1,
            "max_error_u": float(eu1.max()),
            "max_error_p": float(ep1.max()),
            "fom_steps": adaptive.fom_steps,
            "n_modes": adaptive.n_modes,
            "n_points": adaptive.n_points,
            "wall_time": adaptive.wall_time,
        },
        "speedup_adaptive": t_fom / t_adapt,
        "speedup_unenriched": t_fom / t_plain,
        "target_met_unenriched": bool(max(eu0.max(), ep0.max()) <= args.tol),
        "target_met_adaptive": bool(max(eu1.max(), ep1.max()) <= args.tol),
    }
    files = ["summary.json"]
    if comm.rank == 0:
        rows = [
            [
                k,
                float(times[k]),
                float(plain.indicator[k]),
                float(eu0[k]),
                float(ep0[k]),
                float(adaptive.indicator[k]),
                "FOM" if adaptive.enriched[k] else "",
                float(eu1[k]),
                float(ep1[k]),
            ]
            for k in range(len(times))
        ]
        print(
            f"\nAdaptive ROM: {fom.n_dofs} dofs ({args.dim}-D), {comm.size} rank(s), "
            f"{len(train)} training loads, tol_E = {rom.tol_E:.3e}, target {args.tol:g}"
        )
        print(
            common.table(
                rows,
                [
                    "k",
                    "t",
                    "E (plain)",
                    "e_u (plain)",
                    "e_p (plain)",
                    "E (adapt.)",
                    "step",
                    "e_u (adapt.)",
                    "e_p (adapt.)",
                ],
            )
        )
        print(
            f"full-order steps used: {adaptive.fom_steps}; wall time FOM {t_fom:.3f} s, "
            f"unenriched ROM {t_plain:.3f} s, adaptive ROM {t_adapt:.3f} s "
            f"(speed-up {t_fom / t_adapt:.1f}x)"
        )
        if not args.no_plots:
            files += _plots(
                out,
                times,
                plain,
                adaptive,
                eu0,
                ep0,
                eu1,
                ep1,
                rom.tol_E,
                args.tol,
                calibration,
                {"FOM": t_fom, "ROM": t_plain, "adaptive ROM": t_adapt},
            )
    common.write_summary(out, "adaptive_blade", args, results, timings, files, comm)
    return results


def _plots(out, times, plain, adaptive, eu0, ep0, eu1, ep1, tol_E, target, calibration, walls):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-16
    files = []
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(times, np.maximum(eu0, floor), "o-", ms=3, label="u, unenriched")
    ax.semilogy(times, np.maximum(ep0, floor), "s-", ms=3, label="p, unenriched")
    ax.axhline(target, color="k", ls=":", label="target")
    ax.set_xlabel("t")
    ax.set_ylabel("relative error")
    ax.set_title("(1) unenriched ROM on the new load")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "error_unenriched.png", dpi=120)
    plt.close(fig)
    files.append("error_unenriched.png")

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].semilogy(times, np.maximum(plain.indicator, floor), "o-", ms=3, label="indicator E_k")
    ax[0].semilogy(
        times,
        np.maximum(np.maximum(eu0, ep0), floor),
        "s--",
        ms=3,
        label="true error max(e_u, e_p)",
    )
    ax[0].axhline(tol_E, color="r", ls=":", label="tol_E")
    ax[0].set_xlabel("t")
    ax[0].legend(fontsize=8)
    ax[0].set_title("(2) indicator vs true error")
    if calibration is not None:
        ax[1].loglog(
            np.maximum(calibration["E"], floor),
            np.maximum(calibration["e"], floor),
            "o",
            ms=3,
            label="calibration loads",
        )
    ax[1].loglog(
        np.maximum(plain.indicator, floor),
        np.maximum(np.maximum(eu0, ep0), floor),
        "s",
        ms=3,
        label="new load",
    )
    ax[1].axvline(tol_E, color="r", ls=":")
    ax[1].axhline(target, color="k", ls=":")
    ax[1].set_xlabel("E_k")
    ax[1].set_ylabel("true error")
    ax[1].legend(fontsize=8)
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "indicator.png", dpi=120)
    plt.close(fig)
    files.append("indicator.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(times, np.maximum(eu1, floor), "o-", ms=3, label="u, adaptive")
    ax.semilogy(times, np.maximum(ep1, floor), "s-", ms=3, label="p, adaptive")
    for k in np.flatnonzero(adaptive.enriched):
        ax.axvline(times[k], color="g", alpha=0.4)
    ax.axhline(target, color="k", ls=":", label="target")
    ax.set_xlabel("t (green: full-order steps)")
    ax.set_ylabel("relative error")
    ax.set_title(f"(3) adaptive ROM: {adaptive.fom_steps} full-order steps")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "error_adaptive.png", dpi=120)
    plt.close(fig)
    files.append("error_adaptive.png")

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.bar(list(walls), list(walls.values()), color=["tab:gray", "tab:blue", "tab:green"])
    ax.set_ylabel("wall time [s]")
    ax.set_title("(4) whole trajectory")
    fig.tight_layout()
    fig.savefig(out / "wall_time.png", dpi=120)
    plt.close(fig)
    files.append("wall_time.png")
    return files


if __name__ == "__main__":
    main()
