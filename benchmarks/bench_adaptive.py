"""Adaptive nonlinear ROM on held-out loads: accuracy, silent misses, full-order steps and
speed-up per test load, for the composite indicator and the Gappy residual alone.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_adaptive.py [--size 10]

writes ``benchmarks/results/adaptive.json``. The protocol, fixed before measuring:

1. Three disjoint load sets from ``solvers.blade_loads``: ``--n-train`` training loads (seed
   0), ``--n-cal`` calibration loads (seed 1), and the six named test loads
   (``TEST_LOADS``: thermal cycling, a hot spot elsewhere, a travelling hot spot, a fast ramp
   then cool-down, a higher amplitude, a long hold). Test loads are used for nothing but the
   measurement.
2. For each indicator (``composite``, ``gappy``): the adaptive ROM is fitted on the training
   trajectories and calibrated (``rom.adaptive.calibrate``: no calibration step above the
   target accepted, then the safety factor ``--safety``) on unenriched runs of the
   calibration loads. Nothing else is tuned.
3. For each test load, from a fresh copy of the calibrated model: the unenriched run (every
   step's indicator against its true error: silent misses, false alarms, Spearman) and the
   adaptive run (max error in u and p over the trajectory, full-order steps, steps accepted
   above the target, budget). No budget unless ``--max-enrichments`` is given; a reached
   budget is reported.
4. Wall time of the full-order trajectory against the adaptive run (enrichments included),
   ``--rounds`` interleaved rounds per load (``benchmarks/protocol.py``), composite
   indicator, median of per-round ratios; the adaptive ROM starts each round from the
   calibrated copy (untimed).

Errors are relative to the trajectory's largest norm: :math:`\\|u_k - u^h_k\\|_M / \\max_j
\\|u^h_j\\|_M` and the same for :math:`p` in :math:`L^2`. ``--quick``: a coarse mesh and few
steps (smoke test).

Targets (on every test load): max error <= 1 % in u and p, no silent miss, full-order steps
<= 1/3 of the steps; Spearman(indicator, error) >= 0.9 over all steps of all test loads;
median speed-up >= 10x at >= 1e5 dofs.
"""

from __future__ import annotations

import argparse
import copy
import time

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
import protocol
import scipy.stats
from mpi4py import MPI

import rom as rom_lib
from rom.adaptive import AdaptiveROM
from rom.adaptive import calibrate
from solvers.blade_loads import TEST_LOADS
from solvers.blade_loads import relative_errors
from solvers.blade_loads import sample_loads
from solvers.mechanics import Load
from solvers.mechanics import ViscoplasticModel

INDICATORS = ("composite", "gappy")


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """The accuracy target, calibration safety factor, enrichment budget and test loads."""
    p.add_argument("--target", type=float, default=1e-2)
    p.add_argument("--safety", type=float, default=2.0)
    p.add_argument("--max-enrichments", type=int, default=None, help="budget (default none)")
    p.add_argument("--loads", nargs="*", default=list(TEST_LOADS), choices=list(TEST_LOADS))


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=2, choices=[2, 3])
    p.add_argument("--size", type=int, default=None, help="cells per side (default 10, quick 6)")
    p.add_argument("--n-steps", type=int, default=None, help="default 30 (quick 12)")
    p.add_argument("--n-train", type=int, default=4)
    p.add_argument("--n-cal", type=int, default=6)
    add_target_arguments(p)
    p.add_argument(
        "--cost-sizes",
        type=int,
        nargs=2,
        default=None,
        help="also time the whole indicator per step on two meshes (coarse fine), e.g. 40 113",
    )
    protocol.add_common_arguments(p, rounds=1)
    args = p.parse_args(argv)
    args.size = args.size or (6 if args.quick else 10)
    args.n_steps = args.n_steps or (12 if args.quick else 30)
    return args


def header(name: str, comm, fom, times, args) -> dict:
    """The run description every adaptive benchmark's JSON starts with."""
    return {
        "benchmark": name,
        "ranks": comm.size,
        "dim": args.dim,
        "n_dofs": fom.n_dofs,
        "n_qp": int(comm.allreduce(fom.n_qp_local)),
        "n_steps": int(times.size),
        "target": args.target,
        "safety": args.safety,
    }


def solve(fom, load, times):
    fom.set_temperature(load.temperature)
    return fom.solve(times=times)


def fresh(arom):
    """A copy of a fitted model that shares its full-order model and communicator."""
    fom = arom.fom_
    return copy.deepcopy(arom, {id(fom): fom, id(fom.comm): fom.comm, id(fom.mass): fom.mass})


def calibrated(kind, fom, train, trajs, cal, times, args):
    """Fit on the training trajectories, calibrate on the calibration loads (step 2)."""
    arom = AdaptiveROM(indicator=kind, max_enrichments=args.max_enrichments).fit(
        fom, trajs, temperatures=[ld.temperature for ld in train]
    )
    S, e = [], []
    for load, ref in cal:
        run = arom.run(load.temperature, times, enrich=False)
        S.append(run.signals)
        e.append(np.maximum(*relative_errors(fom, run.displacement(), run.plastic_strain(), ref)))
    c = calibrate(
        np.vstack(S),
        np.concatenate(e),
        target=args.target,
        safety=args.safety,
        names=arom.signal_names_,
    )
    arom.calibration = c
    summary = {
        "thresholds": dict(zip(c.names, c.thresholds.tolist())),
        "spearman": c.spearman,
        "spearman_signals": c.spearman_signals,
        "n_steps": c.n_steps,
        "n_above_target": c.n_above_target,
        "n_accepted": c.n_accepted,
        "confirmed": c.confirmed,
        "n_modes": int(arom.svd_u_.n_components_),
        "n_mask_points": int(arom.indicator_.mask_.size),
    }
    return arom, summary


def held_out(arom, fom, load, ref, times, target) -> dict:
    """Step 3 for one test load."""
    plain = fresh(arom).run(load.temperature, times, enrich=False)
    e0 = np.maximum(*relative_errors(fom, plain.displacement(), plain.plastic_strain(), ref))
    flagged = plain.indicator > plain.threshold
    run = fresh(arom).run(load.temperature, times)
    eu, ep = relative_errors(fom, run.displacement(), run.plastic_strain(), ref)
    e1 = np.maximum(eu, ep)
    false_alarms = 0  # enriched steps whose reduced prediction was within the target
    for k, (u, p) in run.predictions.items():
        err = relative_errors(fom, u[:, None], p[:, None], ref, columns=[k])
        false_alarms += int(max(err[0][0], err[1][0]) <= target)
    return {
        "unenriched": {
            "max_error": float(e0.max()),
            "silent_misses": int(np.sum((e0 > target) & ~flagged)),
            "false_alarms": int(np.sum(~(e0 > target) & flagged)),
            "spearman": float(scipy.stats.spearmanr(plain.indicator, e0).statistic),
            "indicator": plain.indicator.tolist(),
            "error": e0.tolist(),
        },
        "adaptive": {
            "max_error_u": float(eu.max()),
            "max_error_p": float(ep.max()),
            "fom_steps": int(run.fom_steps),
            "fom_fraction": run.fom_steps / times.size,
            "enriched_steps": np.flatnonzero(run.enriched).tolist(),
            "accepted_above_target": int(np.sum((e1 > target) & ~run.enriched)),
            "false_alarms": false_alarms,
            "budget_reached": bool(run.budget_reached),
            "untrusted_steps": int(run.untrusted.sum()),
            "n_modes_end": int(run.n_modes[-1]),
            "wall_split_s": run.wall_time,
        },
    }


def timed(arom, fom, load, times, rounds, comm) -> dict:
    """Step 4: full-order trajectory against the adaptive run, interleaved rounds."""
    box = {}
    contenders = {
        "fom": lambda: solve(fom, load, times),
        "adaptive_rom": lambda: box["rom"].run(load.temperature, times),
    }
    record, _ = protocol.run_rounds(
        contenders,
        rounds=rounds,
        reference="adaptive_rom",
        prepare={"adaptive_rom": lambda: box.update(rom=fresh(arom))},
        comm=comm,
    )
    return record


def _calls_per_sample(fn, *, min_time: float = 0.04) -> int:
    """Consecutive calls that take about ``min_time`` seconds (one timed sample)."""
    fn()
    n, t = 1, 0.0
    while t < min_time:
        n *= 2
        tic = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - tic
    return n


def indicator_cost(comm, args, times, rounds) -> dict:
    """Per-step cost of the whole indicator (all signals) and of the reduced step on two
    meshes, in interleaved rounds; the composite model fitted on the training loads, stopped
    half-way through the "spot-elsewhere" load."""
    fns, res = {}, {}
    load = TEST_LOADS["spot-elsewhere"]
    for tag, size in zip(("coarse", "fine"), args.cost_sizes, strict=True):
        fom = ViscoplasticModel(comm, dim=args.dim, size=size, load=Load(), times=times)
        train = sample_loads(args.n_train, "training", seed=0)
        arom = AdaptiveROM().fit(
            fom,
            [solve(fom, ld, times) for ld in train],
            temperatures=[ld.temperature for ld in train],
        )
        arom.model_.temperature = load.temperature
        state = arom.model_.initial_state(0.0)
        for t in times[: times.size // 2]:
            state, _ = arom.model_.step(state, t)
        new, _ = arom.model_.step(state, times[times.size // 2])
        fns[f"indicator_{tag}"] = lambda a=arom, s0=state, s1=new: a.signals(s0, s1, 0.0)
        fns[f"reduced_step_{tag}"] = lambda a=arom, s0=state, t=new.t: a.model_.step(s0, t)
        res[tag] = {
            "size": size,
            "n_dofs": fom.n_dofs,
            "n_modes": int(arom.model_.n_modes),
            "n_mask_points": int(arom.indicator_.mask_.size),
            "n_sample_dofs": int(arom.residual_.dofs_.size),
        }
    number = comm.bcast({k: _calls_per_sample(f) for k, f in fns.items()}, root=0)
    record, _ = protocol.run_rounds(
        fns,
        rounds=rounds,
        reference="indicator_coarse",
        number=number,
        pairs={
            "indicator_fine_over_coarse": ("indicator_fine", "indicator_coarse"),
            "reduced_step_fine_over_coarse": ("reduced_step_fine", "reduced_step_coarse"),
        },
        comm=comm,
    )
    res["timing"] = record
    res["dofs_ratio"] = res["fine"]["n_dofs"] / res["coarse"]["n_dofs"]
    return res


def main(argv=None):
    args = _arguments(argv)
    rom_lib.limit_blas_per_rank()
    comm = MPI.COMM_WORLD
    rounds = protocol.rounds_of(args, 1, quick=1)
    times = np.linspace(0.0, 1.0, args.n_steps + 1)[1:]
    fom = ViscoplasticModel(comm, dim=args.dim, size=args.size, load=Load(), times=times)
    train = sample_loads(args.n_train, "training", seed=0)
    tic = time.perf_counter()
    trajs = [solve(fom, ld, times) for ld in train]
    cal = [(ld, solve(fom, ld, times)) for ld in sample_loads(args.n_cal, "calibration", seed=1)]
    res = header("adaptive", comm, fom, times, args)
    res.update({"offline_fom_s": time.perf_counter() - tic, "indicators": {}})
    refs = {name: solve(fom, TEST_LOADS[name], times) for name in args.loads}
    for kind in INDICATORS:
        tic = time.perf_counter()
        arom, summary = calibrated(kind, fom, train, trajs, cal, times, args)
        summary["offline_rom_s"] = time.perf_counter() - tic
        loads = {}
        for name in args.loads:
            loads[name] = held_out(arom, fom, TEST_LOADS[name], refs[name], times, args.target)
            a = loads[name]["adaptive"]
            if comm.rank == 0:
                print(
                    f"{kind:9s} {name:16s} max e_u {a['max_error_u']:.2e} e_p "
                    f"{a['max_error_p']:.2e}, {a['fom_steps']}/{times.size} full-order steps, "
                    f"{a['accepted_above_target']} accepted above target, unenriched silent "
                    f"misses {loads[name]['unenriched']['silent_misses']}",
                    flush=True,
                )
            if kind == "composite":
                loads[name]["timing"] = timed(arom, fom, TEST_LOADS[name], times, rounds, comm)
                loads[name]["speedup"] = loads[name]["timing"]["median_ratio"]["fom"]
        E = np.concatenate([v["unenriched"]["indicator"] for v in loads.values()])
        e = np.concatenate([v["unenriched"]["error"] for v in loads.values()])
        summary["spearman_test_loads"] = float(scipy.stats.spearmanr(E, e).statistic)
        res["indicators"][kind] = {"calibration": summary, "loads": loads}
    comp = res["indicators"]["composite"]["loads"]
    speedups = [v["speedup"] for v in comp.values()]
    res["median_speedup"] = float(np.median(speedups))
    res["worst_speedup"] = float(np.min(speedups))
    worst = max(
        max(v["adaptive"]["max_error_u"], v["adaptive"]["max_error_p"]) for v in comp.values()
    )
    res["targets"] = {
        "max error <= target on every test load": bool(worst <= args.target),
        "no silent miss (unenriched runs)": all(
            v["unenriched"]["silent_misses"] == 0 for v in comp.values()
        ),
        "no step accepted above target (adaptive runs)": all(
            v["adaptive"]["accepted_above_target"] == 0 for v in comp.values()
        ),
        "full-order steps <= 1/3 on every load": all(
            v["adaptive"]["fom_fraction"] <= 1 / 3 for v in comp.values()
        ),
        "Spearman over the test loads >= 0.9": bool(
            res["indicators"]["composite"]["calibration"]["spearman_test_loads"] >= 0.9
        ),
        "n_dofs >= 100000": res["n_dofs"] >= 100_000,
        "median speed-up >= 10": res["median_speedup"] >= 10,
    }
    if args.cost_sizes:
        res["indicator_cost"] = cost = indicator_cost(comm, args, times, max(rounds, 5))
        r = cost["timing"]["pairs"]["indicator_fine_over_coarse"]["median"]
        res["targets"][f"indicator cost flat within 20 % ({cost['dofs_ratio']:.1f}x dofs)"] = bool(
            0.8 <= r <= 1.2
        )
    if comm.rank == 0:
        protocol.finish(args, res, "adaptive.json")


if __name__ == "__main__":
    main()
