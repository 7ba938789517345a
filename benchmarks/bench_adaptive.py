"""Adaptive nonlinear ROM benchmark: speed-up over the full-order model on a whole trajectory
(enrichment steps included), accuracy, and the indicator's cost against mesh size.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_adaptive.py [--size 224]

writes ``benchmarks/results/adaptive.json``. ``cases/adaptive_blade.py`` runs first, with
these settings (2-D plane strain by default, ``--dim 3``; ``--n-train`` ramp loads; ``--tol-E``
given, so no calibration; its output in ``--out``); the benchmark reuses its full-order model,
training trajectories and adaptive ROM, on the case's new load (strong second hot spot,
hold). Measured in interleaved rounds
(``benchmarks/protocol.py``, ``--rounds``, default 3): the full-order trajectory against the
adaptive ROM on the same times (reduced steps, indicator, enrichments; the ROM is fitted
afresh, untimed, before each run, since a run enriches it); and, in rounds of their own, the
per-call cost of the reduced step and of the indicator alone on this mesh and on one with 8x
fewer dofs (``size / 2**1.5`` in 2-D, ``size / 2`` in 3-D). ``--quick``: a coarse mesh, 10
steps, 2 rounds (smoke test).

Targets: n_dofs >= 100,000; adaptive ROM >= 10x faster than the FOM over the whole trajectory
(median of per-round ratios); relative error <= 1 % on u and p (max over steps, relative to
the largest norm); indicator cost flat within 20 % over the 8x finer mesh.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import protocol
from mpi4py import MPI

import rom as rom_lib
from rom.adaptive.enrichment import AdaptiveROM


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


def build_coarse(comm, ns, args, size):
    """The full-order model on a coarser mesh and an adaptive ROM fitted on the case's
    training loads (``ns``: the case's namespace)."""
    from solvers.mechanics import Load
    from solvers.mechanics import ViscoplasticModel

    times = ns["times"]
    fom = ViscoplasticModel(comm, dim=args.dim, size=size, load=Load(), times=times)
    trajs = []
    for load in ns["train"]:
        fom.set_temperature(ns["blade_temperature"](*load))
        trajs.append(fom.solve(times=times))
    arom = AdaptiveROM(
        svd_rtol=args.svd_rtol,
        cubature_tol=args.cubature_tol,
        tol_E=args.tol_E,
        max_enrichments=args.max_enrichments,
    ).fit(fom, trajs)
    return fom, arom


def online_contenders(rom, T, times, tag):
    """The reduced step and the indicator on the current reduced model, as contenders."""
    rom.model_.temperature = T
    state = rom.model_.initial_state(0.0)
    for t in times[: len(times) // 2]:  # a plastic state
        state, _ = rom.model_.step(state, t)
    t_next = times[len(times) // 2]
    p_hat = rom.model_.step(state, t_next)[0].p
    sizes = {
        "n_modes": int(rom.model_.n_modes),
        "n_points": int(rom.model_.n_points),
        "n_p": int(rom.indicator_.n_modes_),
    }
    fns = {
        f"reduced_step_{tag}": lambda: rom.model_.step(state, t_next),
        f"indicator_{tag}": lambda: rom.indicator_.evaluate(p_hat),
    }
    return fns, sizes


def online_costs(comm, fine, coarse, T_new, times, rounds):
    """Per-call costs of the reduced step and the indicator on both meshes, in rounds."""
    fns, sizes = online_contenders(fine[1], T_new, times, "fine")
    res = {"fine": {"n_dofs": fine[0].n_dofs, **sizes}}
    if coarse is not None:
        more, sizes_c = online_contenders(coarse[1], T_new, times, "coarse")
        fns.update(more)
        res["coarse"] = {"n_dofs": coarse[0].n_dofs, **sizes_c}
    # rank-local calls: each rank counts its own, rank 0's count is used by all
    number = comm.bcast({k: _calls_per_sample(f) for k, f in fns.items()}, root=0)
    pairs = {"reduced_step_fine_over_fine_indicator": ("reduced_step_fine", "indicator_fine")}
    if coarse is not None:
        pairs = {
            "indicator_fine_over_coarse": ("indicator_fine", "indicator_coarse"),
            "reduced_step_fine_over_coarse": ("reduced_step_fine", "reduced_step_coarse"),
        }
    record, _ = protocol.run_rounds(
        fns,
        rounds=rounds,
        reference="indicator_fine",
        number=number,
        pairs=pairs,
        comm=comm,
    )
    res["timing"] = record
    return res


def trajectory_rounds(comm, fom, rom, trajs, T_new, times, rounds):
    """Full-order trajectory against the adaptive ROM (enrichments included), in rounds.

    The ROM's run enriches it in place, so it is fitted afresh (untimed) before each run.
    """

    def fom_run():
        fom.set_temperature(T_new)
        return fom.solve(times=times)

    def rom_run():
        return rom.run(T_new, times)

    record, outs = protocol.run_rounds(
        {"fom": fom_run, "adaptive_rom": rom_run},
        rounds=rounds,
        reference="adaptive_rom",
        prepare={"adaptive_rom": lambda: rom.fit(fom, trajs)},
        comm=comm,
    )
    return record, outs["fom"], outs["adaptive_rom"]


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=2, choices=[2, 3])
    p.add_argument("--size", type=int, default=None, help="default 224 (--quick 8)")
    p.add_argument("--n-steps", type=int, default=None, help="default 20 (--quick 10)")
    p.add_argument("--n-train", type=int, default=3)
    p.add_argument("--tol-E", type=float, default=2e-3)
    p.add_argument("--max-enrichments", type=int, default=3)
    p.add_argument("--cubature-tol", type=float, default=1e-4)
    p.add_argument("--svd-rtol", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-coarse", action="store_true", help="no indicator scaling study")
    p.add_argument("--out", default="run/bench_adaptive", help="the case's output folder")
    protocol.add_common_arguments(p, rounds=3)
    args = p.parse_args(argv)
    args.size = args.size or (8 if args.quick else 224)
    args.n_steps = args.n_steps or (10 if args.quick else 20)
    return args


def run_case(args) -> dict:
    """``cases/adaptive_blade.py`` with the benchmark's settings; its namespace."""
    opts = ("dim", "size", "n_steps", "n_train", "tol_E", "max_enrichments", "cubature_tol")
    argv = []
    for k in (*opts, "svd_rtol", "seed"):
        argv += ["--" + k.replace("_", "-"), str(getattr(args, k))]
    argv += ["--out", args.out, "--no-plots", "--log-level", "WARNING"]
    return protocol.run_case("adaptive_blade", argv)


def main(argv=None):
    args = _arguments(argv)
    rom_lib.limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, its share of the cores
    rounds = protocol.rounds_of(args, 3, quick=2)
    comm = MPI.COMM_WORLD
    ns = run_case(args)  # trains the ROM (and runs the case's own study once)
    fom, arom, trajs = ns["fom"], ns["arom"], ns["trajectories"]
    T_new, times = ns["T_new"], ns["times"]
    res: dict = {"benchmark": "adaptive", "ranks": comm.size, "dim": args.dim}
    res["case_speedup_one_run"] = ns["results"]["speedup_adaptive"]
    arom.fit(fom, trajs)  # the case's run enriched it: back to the trained model
    coarse = None
    if not args.skip_coarse:
        size_c = max(2, round(args.size / (2**1.5 if args.dim == 2 else 2.0)))
        coarse = build_coarse(comm, ns, args, size_c)
    # per-call costs on the fitted, not yet enriched models
    res["online"] = online_costs(comm, (fom, arom), coarse, T_new, times, rounds)
    record, ref, run = trajectory_rounds(comm, fom, arom, trajs, T_new, times, rounds)
    eu, ep = ns["step_errors"](fom, run.displacement(), run.plastic_strain(), ref)
    res.update(
        n_dofs=fom.n_dofs,
        n_qp=int(comm.allreduce(fom.n_qp_local)),
        timing=record,
        speedup=record["median_ratio"]["fom"],
        fom_steps=run.fom_steps,
        enriched_steps=np.flatnonzero(run.enriched).tolist(),
        rom_wall_split_s=run.wall_time,
        max_error_u=float(eu.max()),
        max_error_p=float(ep.max()),
        indicator_max=float(run.indicator.max()),
    )
    targets = {
        "n_dofs >= 100000": res["n_dofs"] >= 100_000,
        "speedup (median of rounds) >= 10": res["speedup"] >= 10,
        "max relative error u, p <= 1e-2": max(res["max_error_u"], res["max_error_p"]) <= 1e-2,
    }
    if coarse is not None:
        r = res["online"]["timing"]["pairs"]["indicator_fine_over_coarse"]["median"]
        res["indicator_cost_ratio_fine_over_coarse"] = r
        res["dofs_ratio"] = fom.n_dofs / coarse[0].n_dofs
        targets["indicator cost flat within 20 % (8x dofs)"] = bool(0.8 <= r <= 1.2)
    res["targets"] = targets
    if comm.rank == 0:
        protocol.finish(args, res, "adaptive.json")


if __name__ == "__main__":
    main()
