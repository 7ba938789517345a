"""Local-bases benchmark: modes per local ROM and online time against one global basis, judged
on the worst held-out error, on the advection case itself.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_local_bases.py [--size 100]

Configurations: k-means on the parameters, Euclidean k-means on the snapshots, sine
k-medoids, sine k-center (K = 2, 4, 8), the error-constrained merge clustering (its own K)
and time-local bases (K windows, ``rom.local.time_windows``), against one global POD basis
sized for ``--tol`` (N_1 modes). The local ROMs select their basis by the checked selection
``LocalBases.route`` on the first full-order step (nearest medoids scored by projection
error, fall-back to the global basis; docs/theory.md §3.5); time-local bases by time.

The error of a configuration is its **worst** held-out error: the largest over the held-out
parameters of the largest relative error over the time steps; the mean space-time error is
reported next to it. ``modes_to_match_global_worst`` is the smallest number of modes per ROM
(every ROM of the dictionary truncated to it) whose worst held-out error is at most the
global ROM's at N_1.

Online time per held-out trajectory, selection included (one full-order step and ``route``
for the clusterings; nothing for time windows), of every configuration at its matched size
against the global ROM at N_1, timed in interleaved rounds (``benchmarks/protocol.py``: every
round stored, median of per-round ratios, reference ``global``).

Targets (of the configuration with the fewest modes, ties broken by the lower worst error):
N_1 / modes >= 2; online time ratio global / local >= 1.5; no held-out parameter with a
larger error than the global ROM at the same total number of modes (K times the modes per
ROM). Also reported: whether sine k-medoids or k-center needs fewer modes than Euclidean
k-means at each K. K, the tolerance, the windows (equal lengths) and the selection's options
(``n_candidates=3``, ``trust_factor=1``) are fixed before measuring; the held-out parameters
choose nothing.

Writes ``benchmarks/results/local_bases.json``. ``--quick``: a coarse mesh, K = 1, 2.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import protocol
from mpi4py import MPI

import rom

SINE = ("sine-kmedoids", "sine-kcenter")
EUCLID = "kmeans-snapshots"
WINDOWS = "time-windows"
ALL = ("kmeans-parameters", EUCLID, *SINE, "merge", WINDOWS)

#: case arguments: full size, --quick
SIZES = {
    False: {"size": 100, "n_train": 40, "n_test": 10, "n_steps": 40, "clusters": "1,2,4,8"},
    True: {"size": 10, "n_train": 6, "n_test": 2, "n_steps": 6, "clusters": "1,2"},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="default 100 (--quick 10)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--n-steps", type=int, default=None)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--clusters", default=None, help="default 1,2,4,8 (--quick 1,2)")
    p.add_argument("--out", default="run/bench_local_bases", help="the case's output folder")
    protocol.add_common_arguments(p, rounds=10)
    a = p.parse_args(argv)
    rom.limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, its share of the cores
    cfg = dict(SIZES[a.quick])
    cfg.update({k: v for k in cfg if (v := getattr(a, k)) is not None})
    case_args = []
    for k, v in cfg.items():
        case_args += ["--" + k.replace("_", "-"), str(v)]
    case_args += ["--tol", str(a.tol), "--clusterings", ",".join(ALL), "--out", a.out]
    case_args += ["--no-plots", "--log-level", "WARNING"]
    ns = protocol.run_case("local_bases", case_args)
    comm = MPI.COMM_WORLD
    res = ns["results"]
    confs = res["configurations"]
    glob = next(r for r in confs.values() if r["n_clusters"] == 1)
    n1 = int(min(ns["n1_tol"], ns["Vg"].shape[1]))
    matched = {
        name: r["modes_to_match_global_worst"]
        for name, r in confs.items()
        if r["n_clusters"] > 1 and r["modes_to_match_global_worst"] is not None
    }
    timing = _time_online(ns, matched, n1, protocol.rounds_of(a, 10), comm)
    g = ns["global_rom"]  # collective: the global ROM's error at N_1 per held-out parameter
    glob_per = [float(g.errors(i, 0, n1)[1].max()) for i in range(len(ns["test"]))]
    if comm.rank != 0:
        return
    out = _summarize(res, confs, glob, n1, matched, timing)
    out["global_per_parameter_worst"] = glob_per
    out["timing"] = timing
    _report(out)
    protocol.finish(a, out, "local_bases.json")


def _online(ns, name: str, n: int, model1, by_parameter: bool = False):
    """``run()`` of every held-out trajectory of configuration ``name`` at ``n`` modes per
    ROM, selection included (``route`` on the first full-order step, or with
    ``by_parameter`` the cluster of the nearest training parameter); returns the selected
    bases (collective)."""
    lb, mus, dt, nt = ns["fitted"][name], ns["mus_test"], ns["model"].dt, ns["model"].n_steps
    galerkin, M, u0, comm = ns["galerkin"], ns["M"], ns["u0"], ns["comm"]
    allreduce_sum = rom.parallel.allreduce_sum
    if name.startswith(WINDOWS):
        sizes = [min(n, m.shape[1]) for m in lb.modes_]
        roms = [galerkin(m[:, :s]) for m, s in zip(lb.modes_, sizes, strict=True)]
        T = lb.transfer(sizes)
        c0 = allreduce_sum(lb.modes_[0][:, : sizes[0]].T @ M(u0), comm)

        def run_windows():
            for mu in mus:
                lb.solve(roms, mu, dt=dt, c0=c0, transfers=T)
            return ["time"] * len(mus)

        return run_windows
    bases = [m[:, : min(n, m.shape[1])] for m in lb.modes_]
    bases.append(ns["Vg"][:, : min(n, ns["Vg"].shape[1])])  # index -1: the fall-back
    roms = [galerkin(V) for V in bases]
    c0 = [allreduce_sum(V.T @ M(u0), comm) for V in bases]

    def run():
        chosen = []
        for mu in mus:
            if by_parameter:
                k = lb.select(mu=mu)
            else:
                k = lb.route(model1.solve(mu)).cluster  # the first full-order step
            roms[k].solve(mu, dt=dt, n_steps=nt, c0=c0[k])
            chosen.append(k)
        return chosen

    return run


def _time_online(ns, matched: dict, n1: int, rounds: int, comm) -> dict:
    """Interleaved rounds of the online time of every matched configuration and the global
    ROM at N_1 (per call: every held-out trajectory; divided by their number)."""
    model = ns["model"]
    model1 = type(model)(
        comm, size=model.size, n_steps=1, final_time=model.dt
    )  # one implicit step of the same dt: the field route() selects from
    if not np.array_equal(model1.keys, model.keys):
        raise RuntimeError("the one-step model distributes the dofs differently")
    rom_g = ns["rom_g"].truncated(n1)
    c0_g = ns["c0_g"][:n1]
    mus, dt, nt = ns["mus_test"], model.dt, model.n_steps
    contenders = {"global": lambda: [rom_g.solve(mu, dt=dt, n_steps=nt, c0=c0_g) for mu in mus]}
    for name, n in matched.items():
        contenders[name] = _online(ns, name, n, model1)
    # the clusterings with the nearest-parameter selection (free, but unchecked), at the
    # size where their worst case matches the global one under that selection
    for name, r in ns["configurations"].items():
        n = r["modes_to_match_global_worst_parameter_selection"]
        if r["n_clusters"] > 1 and n is not None and not name.startswith(WINDOWS):
            contenders[name + " [parameter]"] = _online(ns, name, n, model1, by_parameter=True)
    # a call of the ROMs alone takes milliseconds: 20 calls per sample, so that one
    # preemption of a shared core does not decide a round; route() calls take seconds
    number = {k: 1 if k in matched and not k.startswith(WINDOWS) else 20 for k in contenders}
    record, outputs = protocol.run_rounds(
        contenders, rounds=rounds, reference="global", warmup=True, number=number, comm=comm
    )
    routed = {
        name: ns["configurations"][name]["routed"]["clusters"]
        for name in matched
        if not name.startswith(WINDOWS)
    }
    record["per_trajectory_median_s"] = {k: v / len(mus) for k, v in record["median_s"].items()}
    # the selection timed (one-step model) against the one evaluated (first step of the
    # stored trajectory): the same bases unless MUMPS round-off breaks a near tie
    record["same_selection_as_evaluated"] = {
        name: [int(c) for c in outputs[name]] == [int(c) for c in routed[name]] for name in routed
    }
    return record


def _summarize(res, confs, glob, n1, matched, timing) -> dict:
    """The table by K and method, the best configuration and the targets."""
    level = glob["routed"]["test_rom_error_worst_time_max"]

    def modes(name):
        m = confs[name]["modes_to_match_global_worst"]
        return math.inf if m is None else m

    rows = {}
    for name, r in confs.items():
        if r["n_clusters"] == 1:
            continue
        n = r["modes_to_match_global_worst"]
        row = {
            "method": name.split("/")[0],
            "K": r["n_clusters"],
            "modes_to_match_global_worst": n,
            "mode_ratio": n1 / modes(name),
            "modes_to_match_global_worst_parameter_selection": r[
                "modes_to_match_global_worst_parameter_selection"
            ],
            "modes_to_match_global_mean": r["modes_to_match_global"],
            "basis_sizes_at_tol": r["basis_sizes"],
            "worst_at_tol": r["routed"]["test_rom_error_worst_time_max"],
            "mean_at_tol": r["routed"]["test_rom_error_mean"],
            "worst_at_tol_parameter_selection": r["test_rom_error_worst_time_max"],
            "rules": r["routed"]["rules"],
        }
        if n is not None:
            c = r["routed"]["error_vs_n"]
            j = list(c["n"]).index(n)
            m = r["at_match_worst"]
            row |= {
                "worst_at_match": c["worst"][j],
                "mean_at_match": c["mean"][j],
                "at_match": m,
                "no_parameter_worse_than_global_same_total": bool(
                    np.all(np.asarray(m["local"]) <= np.asarray(m["global_same_total"]))
                ),
                "no_parameter_worse_than_global_at_N1": bool(
                    np.all(np.asarray(m["local"]) <= np.asarray(m["global_at_tol_size"]))
                ),
                "online_time_ratio_global_over_local": 1.0 / timing["median_ratio"][name],
            }
        if name + " [parameter]" in timing["median_ratio"]:
            row["online_time_ratio_global_over_local_parameter_selection"] = (
                1.0 / timing["median_ratio"][name + " [parameter]"]
            )
        rows[name] = row
    best = min(matched, key=lambda k: (matched[k], rows[k]["worst_at_match"]), default=None)
    sine_vs_euclid = {}
    for K in sorted({r["K"] for r in rows.values()}):
        s = [modes(f"{c}/K={K}") for c in SINE if f"{c}/K={K}" in confs]
        e = modes(f"{EUCLID}/K={K}") if f"{EUCLID}/K={K}" in confs else None
        if s and e is not None:
            sine_vs_euclid[str(K)] = {
                "sine_modes": None if math.isinf(min(s)) else min(s),
                "euclid_modes": None if math.isinf(e) else e,
                "sine_fewer": None if math.isinf(min(s)) and math.isinf(e) else min(s) < e,
                "sine_not_more": None if math.isinf(min(s)) and math.isinf(e) else min(s) <= e,
            }
    b = rows.get(best, {})
    targets = {
        "best local: N_1 / modes per local ROM >= 2 at equal worst held-out error": bool(
            best is not None and b["mode_ratio"] >= 2.0
        ),
        "best local: online time (selection included) >= 1.5x lower than global": bool(
            best is not None and b["online_time_ratio_global_over_local"] >= 1.5
        ),
        "best local: no held-out parameter worse than global at the same total modes": bool(
            best is not None and b["no_parameter_worse_than_global_same_total"]
        ),
        "sine needs fewer modes than Euclidean k-means at every K where either matches": bool(
            any(v["sine_fewer"] is not None for v in sine_vs_euclid.values())
            and all(v["sine_fewer"] for v in sine_vs_euclid.values() if v["sine_fewer"] is not None)
        ),
    }
    return {
        "benchmark": "local_bases",
        "n_dofs": res["n_dofs"],
        "ranks": MPI.COMM_WORLD.size,
        "n_train": res["n_train"],
        "n_test": res["n_test"],
        "n_steps": res["n_steps"],
        "tol": res["tol"],
        "global_basis_size": n1,
        "global_worst": level,
        "global_mean": glob["routed"]["test_rom_error_mean"],
        "online_cost": res["online_cost"],
        "by_K": [
            {"K": K} | {r["method"]: r for r in rows.values() if r["K"] == K}
            for K in sorted({r["K"] for r in rows.values()})
        ],
        "best": best,
        "sine_vs_euclid_by_K": sine_vs_euclid,
        "targets": targets,
    }


def _report(out: dict) -> None:
    """Print the table and the targets."""
    print(
        f"\nglobal basis: N_1 = {out['global_basis_size']} modes, held-out worst "
        f"{out['global_worst']:.3e}, mean {out['global_mean']:.3e} ({out['n_dofs']} dofs)"
    )
    print("config: modes to match the global worst (ratio); worst / mean there; time ratio")
    rows = {f"{m}/K={row['K']}": r for row in out["by_K"] for m, r in row.items() if m != "K"}
    for name, r in rows.items():
        n = r["modes_to_match_global_worst"]
        if n is None:
            print(f"  {name}: never (worst at tol {r['worst_at_tol']:.3e}, rules {r['rules']})")
            continue
        print(
            f"  {name}: {n} (x{r['mode_ratio']:.2f}); worst {r['worst_at_match']:.3e} mean "
            f"{r['mean_at_match']:.3e}; global/local time "
            f"{r['online_time_ratio_global_over_local']:.2f}; no parameter worse at the same "
            f"total: {r['no_parameter_worse_than_global_same_total']}"
        )
    print(f"best: {out['best']}; sine vs Euclid: {out['sine_vs_euclid_by_K']}")
    for t, ok in out["targets"].items():
        print(f"target {t}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
