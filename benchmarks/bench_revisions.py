"""The same POD and streaming workloads timed on two revisions of the library, interleaved.

A refactor must not cost speed: this script times batch POD (method of snapshots and the
accurate Cholesky-QR method) and the incremental SVD on one seeded snapshot matrix, with the
source tree of a base revision (``git archive``) and of the working tree, in the same run.

Protocol (``docs/performance.md``): ``--rounds`` interleaved rounds; each round launches one
``mpirun -n NP`` worker per revision, the order rotating every round; a worker makes an
untimed call of each workload right before its timed call (the "repeat" protocol), every
timed call starts after a barrier and its time is the largest over the ranks. The figure per
workload is the median over rounds of ``t_head / t_base``. Every round is stored.

Configurations: ``--np 2`` (the production configuration: one BLAS thread per rank, set by
``rom.limit_blas_per_rank``) and ``--np 1`` (one process, threaded BLAS).

Usage::

    python benchmarks/bench_revisions.py --base 032747a --np 2 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

WORKER = r"""
import inspect, json, os, sys, time
sys.path.insert(0, os.environ["ROM_SRC"])
import numpy as np
from mpi4py import MPI
import rom
if hasattr(rom, "limit_blas_per_rank"):
    rom.limit_blas_per_rank()  # the base revision did this on import
comm = MPI.COMM_WORLD
n, m, r = (int(v) for v in os.environ["ROM_SHAPE"].split(","))
lo = comm.rank * n // comm.size
hi = (comm.rank + 1) * n // comm.size
rng = np.random.default_rng(12345)
B = rng.standard_normal((m, m)) * (0.9 ** np.arange(m))
X = np.empty((hi - lo, m))
for s in range(0, n, 20000):  # the same global matrix at any rank count
    g = np.random.default_rng([7, s]).standard_normal((min(20000, n - s), m)) @ B
    a, b = max(lo, s), min(hi, s + g.shape[0])
    if a < b:
        X[a - lo:b - lo] = g[a - s:b - s]
new = "pod_method" in inspect.signature(rom.pod).parameters
kw = (lambda k: {"pod_method": k}) if new else (lambda k: {"method": k})
chunk = {"chunk": 64} if new else {"block_size": 64}
tasks = {
    "pod_snapshots": lambda: rom.pod(X, comm=comm, rank=r, **kw("snapshots")),
    "pod_qr": lambda: rom.pod(X, comm=comm, rank=r, **kw("qr")),
    "incremental_svd": lambda: rom.IncrementalSVD(rank=r, comm=comm).fit(X, **chunk),
}
out = {}
for name, fn in tasks.items():
    fn()
    comm.Barrier()
    t0 = time.perf_counter()
    fn()
    out[name] = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
if comm.rank == 0:
    print("RESULT " + json.dumps(out), flush=True)
"""


def export_tree(rev: str, dest: Path) -> Path:
    """The ``rom`` package of revision ``rev`` under ``dest`` (no git worktree left behind)."""
    tar = dest / "src.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "archive", rev, "rom"], cwd=ROOT, stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    return dest


def run_worker(src: Path, np_: int, shape: str, mpirun: str) -> dict[str, float]:
    env = dict(os.environ, ROM_SRC=str(src), ROM_SHAPE=shape, PYTHONPATH=str(src))
    cmd = [mpirun, "-n", str(np_), sys.executable, "-c", WORKER]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed ({src}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")


def main() -> None:
    from protocol import RESULTS
    from protocol import machine
    from protocol import write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="032747a", help="base revision (git)")
    ap.add_argument("--np", type=int, default=2, help="MPI ranks of every worker")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=400)
    ap.add_argument("--rank", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    mpirun = str(Path(sys.executable).with_name("mpirun"))
    shape = f"{a.rows},{a.cols},{a.rank}"
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": export_tree(a.base, Path(tmp)), "head": ROOT}
        rounds = []
        for k in range(a.rounds):
            order = ["base", "head"] if k % 2 == 0 else ["head", "base"]
            times = {rev: run_worker(trees[rev], a.np, shape, mpirun) for rev in order}
            rounds.append({"order": order, "times_s": times})
            print(f"round {k + 1}: {json.dumps(times)}", flush=True)
    tasks = list(rounds[0]["times_s"]["base"])
    ratios = {t: [r["times_s"]["head"][t] / r["times_s"]["base"][t] for r in rounds] for t in tasks}
    record = {
        "benchmark": "revisions",
        "base": a.base,
        "head": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        + (" + working tree changes" if _dirty() else ""),
        "shape": {"rows": a.rows, "cols": a.cols, "rank": a.rank},
        "ranks": a.np,
        "protocol": {
            "rounds": a.rounds,
            "order": "base/head alternating first",
            "warmup": "untimed call right before each timed call",
            "figure": "median over rounds of t_head / t_base",
        },
        "rounds": rounds,
        "ratio_head_over_base": {t: statistics.median(v) for t, v in ratios.items()},
        "ratios_per_round": ratios,
        "machine": machine(),
    }
    out = a.json or RESULTS / f"revisions_np{a.np}.json"
    write_json(out, record)
    print(json.dumps(record["ratio_head_over_base"], indent=1))


def _dirty() -> bool:
    res = subprocess.run(["git", "status", "--porcelain", "rom"], cwd=ROOT, capture_output=True)
    return bool(res.stdout.strip())


if __name__ == "__main__":
    main()
