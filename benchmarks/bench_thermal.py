"""Thermal ROM benchmark (issue 2): online speed-up per trajectory and held-out error at
50,000 dofs or more, from the thermal case itself.

    .venv/bin/mpirun -n 2 .venv/bin/python -m mpi4py benchmarks/bench_thermal.py [--size 84]

Target: the online ROM at least 100x faster per trajectory than the full-order model, with
held-out relative space-time error at most 1e-3. Writes ``benchmarks/results/thermal.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from mpi4py import MPI

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cases"))

import thermal  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=84)
    p.add_argument("--n-train", type=int, default=10)
    p.add_argument("--n-test", type=int, default=10)
    p.add_argument("--out", default="run/bench_thermal")
    a = p.parse_args()
    res = thermal.main(
        [
            "--size",
            str(a.size),
            "--n-train",
            str(a.n_train),
            "--n-test",
            str(a.n_test),
            "--tol",
            "1e-3",
            "--out",
            a.out,
            "--no-plots",
        ]
    )
    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        h = res["held_out"]
        out = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "size": a.size,
            "n_dofs": res["n_dofs"],
            "ranks": comm.size,
            "n_modes": res["n_modes"],
            "max_relative_error": h["max_relative_error"],
            "speedup_min": h["speedup_min"],
            "speedup_mean": h["speedup_mean"],
            "fom_time_s_mean": sum(h["fom_time_s"]) / len(h["fom_time_s"]),
            "rom_time_s_mean": sum(h["rom_time_s"]) / len(h["rom_time_s"]),
            "targets": {
                "n_dofs >= 50000": res["n_dofs"] >= 50000,
                "speedup_min >= 100": h["speedup_min"] >= 100,
                "max_relative_error <= 1e-3": h["max_relative_error"] <= 1e-3,
            },
        }
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "thermal.json").write_text(json.dumps(out, indent=2))
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
