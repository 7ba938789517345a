"""Local-bases benchmark: modes per local ROM against one global basis, sine metric against
Euclidean k-means, on the advection case itself.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_local_bases.py [--size 48]

For every K > 1 and clustering, ``modes_to_match_global`` is the smallest number of modes per
local ROM whose mean held-out ROM error reaches that of one global basis sized for ``--tol``
(N_1 modes). Targets: with the sine metric (k-medoids or k-center), N_1 / modes >= 2 at some K;
and at equal K the sine clustering needs no more modes than Euclidean k-means on the snapshots
(a configuration that never reaches the global error counts as infinitely many; a K where
neither does is not compared). Peers are
measured in the same run. Writes ``benchmarks/results/local_bases.json`` (with the machine
record of ``benchmarks/protocol.py``). The figures are mode counts, not timings: there are no
timed rounds; the online cost ratios (``cost_ratio_measured``) are measured by
``cases/local_bases.py``. ``--quick``: a coarse mesh, K = 1, 2 (smoke test).

Next to the mean, every configuration reports the worst held-out error (largest over the
held-out parameters of the largest relative error over the time steps) at its tolerance
sizes, with the parameter selection of the case and with the checked selection
``LocalBases.route`` (first full-order step; fall-back to the global basis), and the rules
the latter used.
"""

from __future__ import annotations

import argparse
import math

import protocol
from mpi4py import MPI

import rom

SINE = ("sine-kmedoids", "sine-kcenter")
EUCLID = "kmeans-snapshots"
ALL = ("kmeans-parameters", EUCLID, *SINE, "merge")


#: case arguments: full size, --quick
SIZES = {
    False: {"size": 48, "n_train": 40, "n_test": 10, "n_steps": 40, "clusters": "1,2,4,8"},
    True: {"size": 10, "n_train": 6, "n_test": 2, "n_steps": 6, "clusters": "1,2"},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="default 48 (--quick 10)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None)
    p.add_argument("--n-steps", type=int, default=None)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--clusters", default=None, help="default 1,2,4,8 (--quick 1,2)")
    p.add_argument("--out", default="run/bench_local_bases", help="the case's output folder")
    protocol.add_common_arguments(p, rounds=None)
    a = p.parse_args(argv)
    rom.limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, its share of the cores
    cfg = dict(SIZES[a.quick])
    cfg.update({k: v for k in cfg if (v := getattr(a, k)) is not None})
    case_args = []
    for k, v in cfg.items():
        case_args += ["--" + k.replace("_", "-"), str(v)]
    clusterings = ",".join(ALL)
    case_args += ["--tol", str(a.tol), "--clusterings", clusterings, "--out", a.out]
    case_args += ["--no-plots", "--log-level", "WARNING"]
    res = protocol.run_case("local_bases", case_args)["results"]
    comm = MPI.COMM_WORLD
    if comm.rank != 0:
        return
    cfg = res["configurations"]
    n1 = res["global"]["basis_size"]
    glob_cfg = next(r for r in cfg.values() if r["n_clusters"] == 1)

    def modes(name):
        m = cfg[name]["modes_to_match_global"]
        return math.inf if m is None else m

    Ks = sorted({int(k.split("=")[1]) for k in cfg} - {1})
    table, ratio_best, beats = [], 0.0, {}
    for K in Ks:
        row = {"K": K}
        for c in ALL:
            name = f"{c}/K={K}"
            if name in cfg:
                row[c] = {
                    "modes_to_match_global": cfg[name]["modes_to_match_global"],
                    "mode_ratio": n1 / modes(name),
                    "max_basis_size_at_tol": cfg[name]["max_basis_size"],
                    "test_rom_error_mean_at_tol": cfg[name]["test_rom_error_mean"],
                    "test_rom_error_worst_at_tol": cfg[name]["test_rom_error_worst_time_max"],
                    "routed": cfg[name]["routed"],
                    "test_projection_error_mean": cfg[name]["test_projection_error_mean"],
                    "eta_estimated": cfg[name]["eta_estimated"],
                    "eta_estimated_n3": cfg[name]["eta_estimated_n3"],
                    "cost_ratio_measured": cfg[name]["cost_ratio_measured"],
                }
        for s in SINE:
            if s in row:
                ratio_best = max(ratio_best, row[s]["mode_ratio"])
        if not any(f"{s}/K={K}" in cfg for s in SINE) or f"{EUCLID}/K={K}" not in cfg:
            table.append(row)  # e.g. the merge clustering's own K: no sine/Euclid comparison
            continue
        best_sine = min(modes(f"{s}/K={K}") for s in SINE if f"{s}/K={K}" in cfg)
        euclid = modes(f"{EUCLID}/K={K}")
        # None: neither reaches the global error at this K (no comparison)
        beats[K] = (
            None if math.isinf(best_sine) and math.isinf(euclid) else bool(best_sine <= euclid)
        )
        table.append(row)
    out = {
        "benchmark": "local_bases",
        "n_dofs": res["n_dofs"],
        "ranks": comm.size,
        "n_train": res["n_train"],
        "n_test": res["n_test"],
        "n_steps": res["n_steps"],
        "tol": res["tol"],
        "global_basis_size": n1,
        "global_test_rom_error_mean": res["global"]["test_rom_error_mean"],
        "global_test_rom_error_worst": glob_cfg["test_rom_error_worst_time_max"],
        "online_cost": res["online_cost"],
        "by_K": table,
        "best_sine_mode_ratio": ratio_best,
        "sine_not_worse_than_kmeans_by_K": {str(k): v for k, v in beats.items()},
        "targets": {
            "sine: N_1 / modes_per_local_ROM >= 2 at some K": ratio_best >= 2.0,
            "sine needs <= modes than Euclidean k-means at every K where either reaches "
            "the global error": any(v is not None for v in beats.values())
            and all(v for v in beats.values() if v is not None),
        },
    }
    _report(out)
    protocol.finish(a, out, "local_bases.json")


def _report(out: dict) -> None:
    """Print the mode counts, worst held-out errors and targets."""
    print(
        f"\nglobal basis: N_1 = {out['global_basis_size']} modes, held-out ROM error "
        f"{out['global_test_rom_error_mean']:.3e}"
    )
    for row in out["by_K"]:
        parts = [f"K={row['K']}:"]
        for c in ALL:
            if c in row:
                m = row[c]["modes_to_match_global"]
                parts.append(f"{c} {m if m is not None else '-'} (x{row[c]['mode_ratio']:.2f})")
        print("  ".join(parts))
    print(f"worst held-out error at tol: global {out['global_test_rom_error_worst']:.3e}")
    for row in out["by_K"]:
        for c in ALL:
            if c in row:
                r = row[c]
                print(
                    f"  {c}/K={row['K']}: mean {r['test_rom_error_mean_at_tol']:.3e}, worst "
                    f"{r['test_rom_error_worst_at_tol']:.3e}; routed mean "
                    f"{r['routed']['test_rom_error_mean']:.3e}, worst "
                    f"{r['routed']['test_rom_error_worst_time_max']:.3e} "
                    f"(rules {sorted(set(r['routed']['rules']))})"
                )
    for t, ok in out["targets"].items():
        print(f"target {t}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
