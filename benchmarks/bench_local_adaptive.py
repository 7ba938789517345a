"""A dictionary of local adaptive ROMs against one global adaptive ROM on the held-out loads:
full-order steps, re-selections, accuracy and silent misses per test load.

    .venv/bin/python benchmarks/bench_local_adaptive.py [--size 10]

writes ``benchmarks/results/local_adaptive.json``. The protocol, fixed before measuring:

1. The load sets of ``benchmarks/bench_adaptive.py``: ``--n-train`` training loads (seed 0),
   ``--n-cal`` calibration loads (seed 1), the six test loads (``TEST_LOADS``), used for
   nothing but the measurement. Both contenders get the same training and calibration
   trajectories and the same target and safety factor.
2. Global: one ``AdaptiveROM`` (composite indicator) fitted on every training trajectory and
   calibrated on the calibration loads (``bench_adaptive.calibrated``).
3. Dictionary (``rom.adaptive.LocalAdaptiveROMs``), every choice on training and calibration
   data only: for each ``K`` in ``--ks`` the training trajectories are clustered and every
   local ROM is calibrated on every calibration load. On each calibration load, the *best*
   local ROM is the one whose unenriched run has the smallest maximum error; the assignment
   rule (``projection`` or ``medoid``) is the one that picks it on more calibration loads
   (ties: ``projection``). ``K`` is the one whose assigned ROMs flag the fewest calibration
   steps (:math:`\\eta > 1`: the steps that would ask for a full-order step or a
   re-selection; ties: the smaller ``K``). With ``--report-all`` the other candidates are run
   on the test loads too, after the choice, for the record.
4. Each test load, from fresh copies of the calibrated models: the unenriched run (global ROM;
   the dictionary's assigned ROM alone), giving silent misses, false alarms and Spearman, and
   the adaptive run: max error in u and p, full-order steps, re-selections, steps accepted
   above the target, budget. Wall times are measured once per run (not in rounds): the
   global ROM's reduced and enrichment time, the dictionary's whole run (assignment included).

Errors as in ``bench_adaptive.py`` (relative to the trajectory's largest norm). ``--quick``:
a coarse mesh and few steps (smoke test).

Target: the dictionary needs fewer full-order steps in total over the test loads than the
global adaptive ROM, each model meeting the accuracy target on every load.
"""

from __future__ import annotations

import argparse
import time

import bench_adaptive
import numpy as np
import protocol
import scipy.stats
from mpi4py import MPI

import rom as rom_lib
from rom.adaptive import LocalAdaptiveROMs
from solvers.blade_loads import TEST_LOADS
from solvers.blade_loads import relative_errors
from solvers.blade_loads import sample_loads
from solvers.mechanics import Load
from solvers.mechanics import ViscoplasticModel

RULES = ("projection", "medoid")


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="cells per side (default 10, quick 6)")
    p.add_argument("--n-steps", type=int, default=None, help="default 30 (quick 12)")
    p.add_argument("--n-train", type=int, default=None, help="default 8 (quick 4)")
    p.add_argument("--n-cal", type=int, default=6)
    p.add_argument("--ks", type=int, nargs="+", default=None, help="default 2 3 4 (quick 2)")
    bench_adaptive.add_target_arguments(p)
    p.add_argument(
        "--report-all",
        action="store_true",
        help="also run the candidates not chosen on the test loads (recorded, not used for the "
        "choice)",
    )
    protocol.add_common_arguments(p, rounds=1)
    args = p.parse_args(argv)
    args.dim = 2
    args.size = args.size or (6 if args.quick else 10)
    args.n_steps = args.n_steps or (12 if args.quick else 30)
    args.n_train = args.n_train or (4 if args.quick else 8)
    args.ks = args.ks or ([2] if args.quick else [2, 3, 4])
    return args


def _error(fom, run, ref):
    return np.maximum(*relative_errors(fom, run.displacement(), run.plastic_strain(), ref))


def _candidate(K, fom, train, trajs, cal, times, args) -> tuple[LocalAdaptiveROMs, dict]:
    """Fit and calibrate a dictionary of K local ROMs; choose its assignment rule on the
    calibration loads (step 3)."""
    d = LocalAdaptiveROMs(K, max_enrichments=args.max_enrichments).fit(
        fom, trajs, temperatures=[ld.temperature for ld in train]
    )
    runs = d.calibrate(
        [ld.temperature for ld, _ in cal],
        times,
        lambda run, i: _error(fom, run, cal[i][1]),
        target=args.target,
        safety=args.safety,
    )
    n_roms, n_cal = len(d.roms_), len(cal)
    max_err = np.array(
        [
            [_error(fom, runs[c * n_cal + i], cal[i][1]).max() for c in range(n_roms)]
            for i in range(n_cal)
        ]
    )
    best = np.argmin(max_err, axis=1)
    rules = {}
    for rule in RULES:
        d.assign = rule
        picked = [d.assign_rom(ld.temperature, times) for ld, _ in cal]
        # the runs were made before calibration: eta from the calibrated box, per step
        flagged = sum(
            int(np.sum(d.roms_[c].calibration.evaluate(runs[c * n_cal + i].signals) > 1.0))
            for i, c in enumerate(picked)
        )
        rules[rule] = {
            "picked": picked,
            "agrees_with_best": int(np.sum(np.asarray(picked) == best)),
            "flagged_steps": flagged,
        }
    d.assign = max(RULES, key=lambda r: (rules[r]["agrees_with_best"], r == "projection"))
    summary = {
        "n_roms": n_roms,
        "labels": d.labels_.tolist(),
        "medoids": d.medoid_indices_.tolist(),
        "n_modes": [int(r.svd_u_.n_components_) for r in d.roms_],
        "n_mask_points": [int(r.indicator_.mask_.size) for r in d.roms_],
        "calibration_max_error": max_err.tolist(),
        "best_rom": best.tolist(),
        "rules": rules,
        "rule": d.assign,
        "flagged_steps": rules[d.assign]["flagged_steps"],
        "calibration": [
            {
                "thresholds": dict(zip(r.calibration.names, r.calibration.thresholds.tolist())),
                "spearman": r.calibration.spearman,
                "n_above_target": r.calibration.n_above_target,
                "n_accepted": r.calibration.n_accepted,
            }
            for r in d.roms_
        ],
    }
    return d, summary


def _dictionary_held_out(d, fom, load, ref, times, target) -> dict:
    """Step 4 for the dictionary on one test load."""
    plain = bench_adaptive.fresh(d).run(load.temperature, times, enrich=False)
    e0 = _error(fom, plain, ref)
    flagged = plain.indicator > 1.0
    tic = time.perf_counter()
    run = bench_adaptive.fresh(d).run(load.temperature, times)
    wall = time.perf_counter() - tic
    eu, ep = relative_errors(fom, run.displacement(), run.plastic_strain(), ref)
    e1 = np.maximum(eu, ep)
    false_alarms = 0
    for k, (u, p) in run.predictions.items():
        err = relative_errors(fom, u[:, None], p[:, None], ref, columns=[k])
        false_alarms += int(max(err[0][0], err[1][0]) <= target)
    return {
        "assigned": int(run.assigned),
        "scores": run.scores.tolist(),
        "unenriched": {
            "max_error": float(e0.max()),
            "silent_misses": int(np.sum((e0 > target) & ~flagged)),
            "false_alarms": int(np.sum(~(e0 > target) & flagged)),
            "spearman": float(scipy.stats.spearmanr(plain.indicator, e0).statistic),
        },
        "adaptive": {
            "max_error_u": float(eu.max()),
            "max_error_p": float(ep.max()),
            "fom_steps": int(run.fom_steps),
            "fom_fraction": run.fom_steps / times.size,
            "reselections": run.n_reselections,
            "reselected_steps": np.flatnonzero(run.reselected).tolist(),
            "enriched_steps": np.flatnonzero(run.enriched).tolist(),
            "enriched_rom": {int(k): int(v) for k, v in run.enriched_rom.items()},
            "rom_index": run.rom_index.tolist(),
            "accepted_above_target": int(np.sum((e1 > target) & ~run.enriched)),
            "false_alarms": false_alarms,
            "budget_reached": bool(run.budget_reached),
            "untrusted_steps": int(run.untrusted.sum()),
            "wall_s": wall,
        },
    }


def _global_held_out(arom, fom, load, ref, times, target) -> dict:
    rec = bench_adaptive.held_out(arom, fom, load, ref, times, target)
    for key in ("indicator", "error"):
        rec["unenriched"].pop(key)
    rec["adaptive"]["wall_s"] = float(sum(rec["adaptive"]["wall_split_s"].values()))
    return rec


def _totals(loads: dict) -> dict:
    a = [v["adaptive"] for v in loads.values()]
    return {
        "fom_steps": int(sum(x["fom_steps"] for x in a)),
        "worst_error": float(max(max(x["max_error_u"], x["max_error_p"]) for x in a)),
        "mean_error": float(np.mean([max(x["max_error_u"], x["max_error_p"]) for x in a])),
        "accepted_above_target": int(sum(x["accepted_above_target"] for x in a)),
        "silent_misses_unenriched": int(
            sum(v["unenriched"]["silent_misses"] for v in loads.values())
        ),
        "reselections": int(sum(x.get("reselections", 0) for x in a)),
        "wall_s": float(sum(x["wall_s"] for x in a)),
    }


def _others(candidates: dict, chosen: int, fom, refs: dict, times, args) -> dict:
    """The candidates not chosen, on the test loads (``--report-all``; after the choice,
    distinct dictionaries only)."""
    out, seen = {}, {tuple(candidates[chosen][1]["labels"])}
    for K, (d, s) in candidates.items():
        if tuple(s["labels"]) in seen:
            continue
        seen.add(tuple(s["labels"]))
        loads = {
            name: _dictionary_held_out(d, fom, TEST_LOADS[name], ref, times, args.target)
            for name, ref in refs.items()
        }
        out[str(K)] = {"loads": loads, "totals": _totals(loads)}
    return out


def main(argv=None):
    args = _arguments(argv)
    rom_lib.limit_blas_per_rank()
    comm = MPI.COMM_WORLD
    times = np.linspace(0.0, 1.0, args.n_steps + 1)[1:]
    fom = ViscoplasticModel(comm, dim=args.dim, size=args.size, load=Load(), times=times)
    train = sample_loads(args.n_train, "training", seed=0)
    trajs = [bench_adaptive.solve(fom, ld, times) for ld in train]
    cal = [
        (ld, bench_adaptive.solve(fom, ld, times))
        for ld in sample_loads(args.n_cal, "calibration", seed=1)
    ]
    refs = {name: bench_adaptive.solve(fom, TEST_LOADS[name], times) for name in args.loads}
    res = bench_adaptive.header("local_adaptive", comm, fom, times, args)
    arom, summary = bench_adaptive.calibrated("composite", fom, train, trajs, cal, times, args)
    candidates = {}
    for K in args.ks:
        if K <= args.n_train // 2:
            candidates[K] = _candidate(K, fom, train, trajs, cal, times, args)
    K = min(candidates, key=lambda k: (candidates[k][1]["flagged_steps"], k))
    d = candidates[K][0]
    res["selection"] = {str(k): s for k, (_, s) in candidates.items()}
    res["chosen"] = {"K": K, "n_roms": len(d.roms_), "rule": d.assign}
    g_flag = sum(
        int(np.sum(arom.run(ld.temperature, times, enrich=False).indicator > 1.0)) for ld, _ in cal
    )
    res["global"] = {"calibration": summary, "flagged_steps": g_flag, "loads": {}}
    res["dictionary"] = {"loads": {}}
    for name in args.loads:
        load, ref = TEST_LOADS[name], refs[name]
        g = _global_held_out(arom, fom, load, ref, times, args.target)
        x = _dictionary_held_out(d, fom, load, ref, times, args.target)
        res["global"]["loads"][name], res["dictionary"]["loads"][name] = g, x
        if comm.rank == 0:
            ga, xa = g["adaptive"], x["adaptive"]
            print(
                f"{name:16s} global: {ga['fom_steps']:2d} full-order steps, max e "
                f"{max(ga['max_error_u'], ga['max_error_p']):.2e} | dictionary (ROM "
                f"{x['assigned']}): {xa['fom_steps']:2d} full-order steps, "
                f"{xa['reselections']} re-selections, max e "
                f"{max(xa['max_error_u'], xa['max_error_p']):.2e}",
                flush=True,
            )
    if args.report_all:
        res["other_candidates"] = _others(candidates, K, fom, refs, times, args)
    tg = res["global"]["totals"] = _totals(res["global"]["loads"])
    td = res["dictionary"]["totals"] = _totals(res["dictionary"]["loads"])
    res["targets"] = {
        "dictionary: fewer full-order steps in total than the global ROM": bool(
            td["fom_steps"] < tg["fom_steps"]
        ),
        "dictionary: max error <= target on every test load": bool(
            td["worst_error"] <= args.target
        ),
        "global: max error <= target on every test load": bool(tg["worst_error"] <= args.target),
        "dictionary: no step accepted above target": td["accepted_above_target"] == 0,
    }
    if comm.rank == 0:
        protocol.finish(args, res, "local_adaptive.json")


if __name__ == "__main__":
    main()
