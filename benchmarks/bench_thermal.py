"""Thermal ROM benchmark: online speed-up per trajectory and held-out error at 50,000 dofs or
more, from the thermal case itself.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_thermal.py [--size 84]

writes ``benchmarks/results/thermal.json``. ``cases/thermal.py`` times, for each held-out
parameter, the full-order trajectory and then the reduced one (the mean of 20 solves): each
held-out parameter is one round of ``benchmarks/protocol.py``, and the speed-up figure is the
median over rounds of ``t_fom / t_rom``. ``--quick``: a coarse mesh and 3 held-out parameters
(smoke test).

Target: the online ROM at least 100x faster per trajectory than the full-order model, with
held-out relative space-time error at most 1e-3.
"""

from __future__ import annotations

import argparse

import protocol
from mpi4py import MPI

import rom

#: case arguments: full size, --quick
SIZES = {
    False: {"size": 84, "n_train": 10, "n_test": 10, "n_steps": None, "tol": 1e-3},
    True: {"size": 6, "n_train": 6, "n_test": 3, "n_steps": 10, "tol": 1e-2},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="default 84 (--quick 6)")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-test", type=int, default=None, help="held-out parameters = rounds")
    p.add_argument("--out", default="run/bench_thermal", help="the case's output folder")
    protocol.add_common_arguments(p, rounds=None)
    a = p.parse_args(argv)
    rom.limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, its share of the cores
    cfg = dict(SIZES[a.quick])
    cfg.update({k: v for k in ("size", "n_train", "n_test") if (v := getattr(a, k)) is not None})
    case_args = ["--size", str(cfg["size"]), "--n-train", str(cfg["n_train"])]
    case_args += ["--n-test", str(cfg["n_test"]), "--tol", str(cfg["tol"])]
    if cfg["n_steps"] is not None:
        case_args += ["--n-steps", str(cfg["n_steps"])]
    case_args += ["--out", a.out, "--no-plots", "--log-level", "WARNING"]
    res = protocol.run_case("thermal", case_args)["results"]
    comm = MPI.COMM_WORLD
    if comm.rank != 0:
        return
    h = res["held_out"]
    log = [
        {"order": ["fom", "rom"], "times_s": {"fom": f, "rom": r}}
        for f, r in zip(h["fom_time_s"], h["rom_time_s"])
    ]
    timing = protocol.summarize(log, reference="rom")
    timing["protocol"] = {
        "rounds": len(log),
        "order": "per held-out parameter: full-order trajectory, then the reduced one",
        "warmup": False,
        "number": {"fom": 1, "rom": 20},
        "reference": "rom",
        "figure": "median over rounds of t_fom / t_rom (the speed-up)",
        "ranks": comm.size,
        "measured_by": "cases/thermal.py",
    }
    speedup = timing["median_ratio"]["fom"]
    out = {
        "benchmark": "thermal",
        "size": cfg["size"],
        "n_dofs": res["n_dofs"],
        "ranks": comm.size,
        "n_modes": res["n_modes"],
        "max_relative_error": h["max_relative_error"],
        "timing": timing,
        "speedup_median": speedup,
        "speedup_min": h["speedup_min"],
        "targets": {
            "n_dofs >= 50000": res["n_dofs"] >= 50000,
            "speedup (median of rounds) >= 100": speedup >= 100,
            "max_relative_error <= 1e-3": h["max_relative_error"] <= 1e-3,
        },
    }
    print(f"speed-up (median of {len(log)} rounds): {speedup:.0f}x")
    protocol.finish(a, out, "thermal.json")


if __name__ == "__main__":
    main()
