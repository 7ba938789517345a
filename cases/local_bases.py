"""Local reduced bases on a transported pulse: clusterings compared at K = 1, 2, 4, 8.

Offline: seeded Latin-hypercube training parameters (angle, speed) of
:class:`solvers.advection.AdvectionModel`, full-order trajectories into an HDF5 snapshot store,
read back by owned rows; for each clustering (parameter k-means, Euclidean k-means, sine
k-medoids, sine k-center, bound-driven merging) and each K, one L2-POD basis per cluster of
whole trajectories (:class:`rom.local.bases.LocalBases`). Online: held-out parameters, cluster chosen
by the nearest training parameter, Galerkin ROM (:class:`rom.models.galerkin.LinearAffineROM`, the
model is exactly affine) started from the projected initial pulse.

Reported per configuration: mean and 90th percentile relative projection error at a fixed
basis size (training trajectories on their own cluster, held-out ones on the selected cluster),
basis sizes for the tolerance, held-out ROM error at those sizes and against basis size, the
modes each local ROM needs to reach the held-out error of one global basis, and the a priori
efficiency estimate against the measured online cost ratio.

Run (2 ranks)::

    mpirun -n 2 .venv/bin/python -m mpi4py cases/local_bases.py --out run/local_bases

Writes ``advection.h5`` (snapshots), ``summary.json``, ``clusters.png`` (clusters in parameter
space) and ``error_vs_basis_size.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from rom.compression._pod import pod
from rom.io import SnapshotStore
from rom.local.bases import LocalBases
from rom.local.cost_model import fit_online_cost
from rom.models.galerkin import LinearAffineROM
from rom.parallel import allreduce_sum, blas_threads
from rom.sampling import latin_hypercube

CLUSTERINGS = ["kmeans-parameters", "kmeans-snapshots", "sine-kmedoids", "sine-kcenter", "merge"]


def main(argv=None) -> dict:
    p = common.parser(__doc__.splitlines()[0], size=32, n_train=32, tol=1e-2, out="run/local_bases")
    p.add_argument("--n-test", type=int, default=8, help="number of held-out parameters")
    p.add_argument("--n-steps", type=int, default=40, help="implicit Euler steps")
    p.add_argument("--final-time", type=float, default=0.5)
    p.add_argument("--clusters", default="1,2,4,8", help="comma-separated K values")
    p.add_argument("--clusterings", default=",".join(CLUSTERINGS))
    p.add_argument(
        "--basis-size",
        type=int,
        default=10,
        help="fixed basis size of the projection-error comparison (and merge rank)",
    )
    args, comm, log, out = common.start(p, argv)
    clusterings = [c for c in args.clusterings.split(",") if c]
    Ks = [int(k) for k in args.clusters.split(",") if k]

    import dolfinx_solver  # noqa: F401  (before dolfinx)

    from solvers.advection import AdvectionModel

    timings: dict[str, float] = {}
    with blas_threads(comm):
        t0 = time.perf_counter()
        model = AdvectionModel(
            comm, size=args.size, n_steps=args.n_steps, final_time=args.final_time
        )
        timings["setup"] = time.perf_counter() - t0
        log.info(
            "advection model: %d dofs on %d rank(s), %d steps",
            model.n_dofs,
            comm.size,
            model.n_steps,
        )
        mus_train = latin_hypercube(model.parameter_ranges, args.n_train, seed=args.seed)
        mus_test = latin_hypercube(model.parameter_ranges, args.n_test, seed=args.seed + 1)
        nt = model.n_steps

        # Offline 1: full-order trajectories into the store, read back by owned rows
        path = out / "advection.h5"
        store = SnapshotStore.create(
            path,
            {"u": model.keys},
            parameter_names=model.parameter_names,
            comm=comm,
            overwrite=True,
            attrs={"case": "local_bases"},
        )
        store.write_mesh(*(model.mesh_for_plot() or (None, None)))
        t0 = time.perf_counter()
        for i, mu in enumerate(mus_train):
            store.append(
                {"u": model.solve(mu)}, parameters=mu, time=model.times, sample=np.full(nt, i)
            )
        timings["offline_fom"] = time.perf_counter() - t0
        store.close()
        store = SnapshotStore.open(path, "r", comm=comm, keys={"u": model.keys})
        X, params, groups = store.read("u"), store.parameters, store.sample
        store.close()
        test = [model.solve(mu) for mu in mus_test]
        u0 = model.initial_condition()
        M = model.mass
        test_energy = [float(allreduce_sum(np.sum(U * M(U)), comm)) for U in test]

        def fit(clustering: str, K: int, **kw) -> LocalBases:
            return LocalBases(
                clustering=clustering,
                n_clusters=K,
                rel_l2_err=args.tol,
                product=M,
                comm=comm,
                seed=args.seed,
                **kw,
            ).fit(X, params=params, groups=groups)

        # Online cost model c(N) of the efficiency estimate, from timed solves of one global
        # ROM truncated to several sizes (the maximum over ranks, so all ranks agree)
        Vg = pod(X, product=M, comm=comm, rank=min(64, X.shape[1])).modes
        rom_g = LinearAffineROM.from_full(
            Vg,
            mass=M,
            stiffness=model.stiffness_terms,
            rhs=model.rhs_terms,
            comm=comm,
            theta_a=model.theta_a,
            theta_f=model.theta_f,
        )
        c0_g = allreduce_sum(Vg.T @ M(u0), comm)
        cost_sizes = sorted({n for n in (1, 2, 4, 8, 16, 24, 32, 48, 64) if n <= Vg.shape[1]})
        cost_times = []
        for n in cost_sizes:
            r = rom_g.truncated(n)
            t = _best_time(
                lambda r=r, n=n: r.solve(mus_test[0], dt=model.dt, n_steps=nt, c0=c0_g[:n])
            )
            cost_times.append(comm.allreduce(t, op=MPI.MAX))
        cost = fit_online_cost(cost_sizes, cost_times)
        log.info(
            "online cost c(N) = %s s (N^0..N^3)", np.array2string(cost.coefficients, precision=3)
        )

        # Online evaluation of one dictionary of local bases
        def evaluate(lb: LocalBases) -> dict:
            K = lb.n_clusters_
            roms, MU0, MUt = [], [], []
            for k in range(K):
                V = lb.modes_[k]
                roms.append(
                    LinearAffineROM.from_full(
                        V,
                        mass=M,
                        stiffness=model.stiffness_terms,
                        rhs=model.rhs_terms,
                        comm=comm,
                        theta_a=model.theta_a,
                        theta_f=model.theta_f,
                    )
                )
                MU0.append(allreduce_sum(V.T @ M(u0), comm))
            sel = [lb.select(mu=mu) for mu in mus_test]
            # ||U - V C||_M^2 = ||U||^2 - 2 <C, V^T M U> + ||C||^2 (V M-orthonormal): errors for
            # every basis size from one projection V^T M U of each held-out trajectory
            for U, k in zip(test, sel, strict=True):
                MUt.append(allreduce_sum(lb.modes_[k].T @ M(U), comm))
            n_max = max(V.shape[1] for V in lb.modes_)
            grid = np.unique(
                np.concatenate(
                    [
                        np.arange(1, min(n_max, 40) + 1),
                        np.rint(np.geomspace(40, max(n_max, 40), 25)).astype(int),
                    ]
                )
            )
            grid = grid[grid <= n_max]

            def rom_error(i: int, k: int, n: int) -> float:
                n = min(n, roms[k].n_modes)
                C = roms[k].truncated(n).solve(mus_test[i], dt=model.dt, n_steps=nt, c0=MU0[k][:n])
                G, E = MUt[i], test_energy[i]
                return float(np.sqrt(max(E - 2.0 * np.sum(C * G[:n]) + np.sum(C * C), 0.0) / E))

            rom_err = np.array([[rom_error(i, k, n) for n in grid] for i, k in enumerate(sel)])
            proj_err = np.zeros(len(test))
            for i, k in enumerate(sel):
                G, E = MUt[i], test_energy[i]
                n = min(args.basis_size, G.shape[0])
                proj_err[i] = np.sqrt(max(E - np.sum(G[:n] ** 2), 0.0) / E)
            train_err = []
            E_tr = lb.projection_errors(X, n=args.basis_size)[
                lb.column_labels_, np.arange(X.shape[1])
            ]
            xn2 = allreduce_sum(np.einsum("ij,ij->j", X, M(X)), comm)
            for g in np.unique(groups):
                c = groups == g
                train_err.append(float(np.sqrt(np.sum(E_tr[c] ** 2 * xn2[c]) / np.sum(xn2[c]))))
            # held-out ROM at the tolerance sizes, with timings (assemble, factor, step)
            err_tol, t_rom = [], []
            for i, (mu, k) in enumerate(zip(mus_test, sel, strict=True)):
                n = int(lb.basis_sizes_[k])
                err_tol.append(rom_error(i, k, n))
                r = roms[k].truncated(n)
                t_rom.append(
                    _best_time(lambda: r.solve(mu, dt=model.dt, n_steps=nt, c0=MU0[k][:n]))
                )
            return {
                "n_clusters": K,
                "cluster_sizes": lb.cluster_sizes_,
                "labels": lb.labels_,
                "basis_sizes": lb.basis_sizes_,
                "global_basis_size": lb.global_basis_size_,
                "mean_basis_size": float(np.average(lb.basis_sizes_, weights=lb.cluster_sizes_)),
                "max_basis_size": int(lb.basis_sizes_.max()),
                "train_projection_error_mean": float(np.mean(train_err)),
                "train_projection_error_p90": float(np.percentile(train_err, 90)),
                "test_projection_error_mean": float(np.mean(proj_err)),
                "test_projection_error_p90": float(np.percentile(proj_err, 90)),
                "test_rom_error_mean": float(np.mean(err_tol)),
                "test_rom_error_max": float(np.max(err_tol)),
                "rom_error_vs_n": {
                    "n": grid,
                    "mean": rom_err.mean(axis=0),
                    "max": rom_err.max(axis=0),
                },
                "eta_estimated": lb.efficiency_estimate(cost=cost),
                "eta_estimated_n3": lb.efficiency_estimate(),
                "rom_time_s_mean": float(np.mean(t_rom)),
                "selected_clusters": sel,
            }

        t0 = time.perf_counter()
        results_cfg: dict[str, dict] = {}
        for clustering in clusterings:
            for K in [0] if clustering == "merge" else Ks:
                if K > args.n_train:
                    continue
                tf = time.perf_counter()
                # merge: target rank r = basis_size, eps = tol; K follows from them
                lb = (
                    fit("merge", 1, rank=args.basis_size)
                    if clustering == "merge"
                    else fit(clustering, K)
                )
                fit_time = time.perf_counter() - tf
                res = evaluate(lb)
                res["fit_time_s"] = fit_time
                results_cfg[f"{clustering}/K={res['n_clusters'] if K == 0 else K}"] = res
        timings["local_bases"] = time.perf_counter() - t0

    # reference: one global basis (K = 1)
    glob = next((r for name, r in results_cfg.items() if r["n_clusters"] == 1), None)
    if glob is not None:
        target = glob["test_rom_error_mean"]
        for r in results_cfg.values():
            ok = np.flatnonzero(np.asarray(r["rom_error_vs_n"]["mean"]) <= target)
            n_grid = np.asarray(r["rom_error_vs_n"]["n"])
            r["modes_to_match_global"] = int(n_grid[ok[0]]) if ok.size else None
            r["cost_ratio_measured"] = r["rom_time_s_mean"] / glob["rom_time_s_mean"]
    results = {
        "n_dofs": model.n_dofs,
        "n_steps": model.n_steps,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "n_snapshots": int(X.shape[1]),
        "tol": args.tol,
        "basis_size": args.basis_size,
        "online_cost": {
            "sizes": cost_sizes,
            "seconds": cost_times,
            "coefficients": cost.coefficients,
        },
        "parameters_train": mus_train,
        "parameters_test": mus_test,
        "global": None
        if glob is None
        else {
            "basis_size": glob["global_basis_size"],
            "test_rom_error_mean": glob["test_rom_error_mean"],
        },
        "configurations": results_cfg,
    }
    files = ["advection.h5", "summary.json"]
    if comm.rank == 0:
        header = [
            "config",
            "K",
            "N_k max",
            "N_k mean",
            "N_1",
            "proj mean",
            "proj p90",
            "ROM err",
            "modes=glob",
            "eta est",
            "cost meas",
        ]
        rows = [
            [
                name,
                r["n_clusters"],
                r["max_basis_size"],
                r["mean_basis_size"],
                r["global_basis_size"],
                r["test_projection_error_mean"],
                r["test_projection_error_p90"],
                r["test_rom_error_mean"],
                str(r.get("modes_to_match_global")),
                r["eta_estimated"],
                r.get("cost_ratio_measured", float("nan")),
            ]
            for name, r in results_cfg.items()
        ]
        print(
            f"\nLocal bases: {model.n_dofs} dofs, {comm.size} rank(s), {args.n_train} training "
            f"trajectories x {nt} steps, tol {args.tol:g}, fixed size {args.basis_size}"
        )
        print(common.table(rows, header))
        if not args.no_plots:
            files += _plots(out, results_cfg, mus_train, model.parameter_names, glob)
    common.write_summary(out, "local_bases", args, results, timings, files, comm)
    return results


def _best_time(f, *, repeat: int = 5, number: int = 10) -> float:
    """Seconds per call of ``f``: the best of ``repeat`` means over ``number`` calls (online
    solves take microseconds to milliseconds, so the minimum filters out scheduler noise)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return float(best)


def _plots(out: Path, cfg: dict, mus: np.ndarray, names, glob) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    clusterings = sorted({k.split("/")[0] for k in cfg}, key=CLUSTERINGS.index)
    Ks = sorted({int(k.split("=")[1]) for k in cfg if not k.startswith("merge")})
    ncol = max(len(Ks), 1)
    fig, axes = plt.subplots(
        len(clusterings), ncol, figsize=(2.6 * ncol, 2.4 * len(clusterings)), squeeze=False
    )
    for i, c in enumerate(clusterings):
        keys = [k for k in cfg if k.startswith(c + "/")]
        for j in range(ncol):
            ax = axes[i, j]
            if j >= len(keys):
                ax.axis("off")
                continue
            lab = np.asarray(cfg[keys[j]]["labels"])
            ax.scatter(mus[:, 0], mus[:, 1], c=lab, cmap="tab10", s=18, vmin=0, vmax=9)
            ax.set_title(keys[j], fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(clusterings) - 1:
                ax.set_xlabel(names[0], fontsize=8)
            if j == 0:
                ax.set_ylabel(names[1], fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "clusters.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, r in cfg.items():
        if r["n_clusters"] == 1 or name.endswith("K=4") or name.startswith("merge"):
            e = r["rom_error_vs_n"]
            ax.semilogy(
                e["n"],
                e["mean"],
                "-" if r["n_clusters"] > 1 else "k-",
                lw=1.2,
                label=name if r["n_clusters"] > 1 else "global (K=1)",
            )
    if glob is not None:
        ax.axhline(glob["test_rom_error_mean"], color="k", ls=":", lw=0.8)
    # plain "1e-02" tick labels: mathtext costs seconds to initialize in every process
    ax.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter())
    ax.set_xlabel("modes per (local) ROM")
    ax.set_ylabel("held-out ROM error (mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "error_vs_basis_size.png", dpi=120)
    plt.close(fig)
    return ["clusters.png", "error_vs_basis_size.png"]


if __name__ == "__main__":
    main()
