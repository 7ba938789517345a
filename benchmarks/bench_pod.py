"""Batch POD benchmark: our fast and accurate methods against the bare limit, pyMOR's method
of snapshots and LAPACK, in one run; and the MPI speed-up against the best serial run.

Serial (interleaved rounds with warm-up, ``benchmarks/protocol.py``)::

    .venv/bin/python benchmarks/bench_pod.py [--rows 200000 --cols 400 --rank 40 --rounds 7]

writes ``benchmarks/results/pod.json``. MPI speed-up::

    .venv/bin/mpirun -n 2 .venv/bin/python benchmarks/bench_pod.py --mpi

writes ``benchmarks/results/pod_mpi.json``: in every round the serial POD of the whole
matrix on rank 0 with threaded BLAS (all the cores; the other ranks wait without spinning),
the reference, and the POD on all ranks with one BLAS pool per rank
(:func:`rom.limit_blas_per_rank`). ``--quick``: a small matrix and 3 rounds (smoke test).

Targets (medians of per-round ratios): fast method within 1.15x of the bare limit (one Gram
product, ``eigh``, one basis product); pyMOR at least 1.5x slower than the fast method at
equal orthonormality (1e-12); accurate method within 3x of the bare limit; 2 ranks at least
1.7x faster than the serial run with threaded BLAS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import protocol
from mpi4py import MPI
from threadpoolctl import threadpool_info
from threadpoolctl import threadpool_limits

import rom
from rom.parallel import row_range
from rom.parallel import usable_cores


def synthetic(n, m, r, *, seed=0, lo=0, hi=None):
    """Rows [lo, hi) of U diag(s) V^T: rank r, s = logspace(0, -6, r), plus 1e-10 noise.

    Row blocks are generated from per-row-block seeds so any rank count sees the same matrix.
    """
    hi = n if hi is None else hi
    rng = np.random.default_rng(seed)
    s = np.logspace(0, -6, r)
    V = np.linalg.qr(rng.standard_normal((m, r)))[0]
    block = 10000
    out = np.empty((hi - lo, m))
    for b0 in range(lo - lo % block, hi, block):
        g = np.random.default_rng([seed, b0 // block])
        Ub = g.standard_normal((block, r)) / np.sqrt(n)
        Nb = g.standard_normal((block, m)) * (1e-10 / np.sqrt(n * m))
        rows = slice(max(lo, b0), min(hi, b0 + block))
        out[rows.start - lo : rows.stop - lo] = ((Ub * s) @ V.T + Nb)[
            rows.start - b0 : rows.stop - b0
        ]
    return out


def bare_limit(X, r):
    """The floor: one Gram product, one symmetric eigensolve, one basis product."""
    G = X.T @ X
    lam, V = np.linalg.eigh(G)
    Vr = V[:, ::-1][:, :r] / np.sqrt(lam[::-1][:r])
    return X @ Vr


def _orth_err(U):
    return float(np.abs(U.T @ U - np.eye(U.shape[1])).max())


def _pymor_contender(X, r):
    """pyMOR's method of snapshots on ``X``, or ``None`` when pyMOR is not installed."""
    if protocol.pymor_version() == "not installed":
        return None
    from pymor.algorithms.pod import pod as pymor_pod
    from pymor.core.logger import set_log_levels
    from pymor.vectorarrays.numpy import NumpyVectorSpace

    set_log_levels({"pymor": "WARNING"})
    A = NumpyVectorSpace(X.shape[0]).from_numpy(X)  # pyMOR >= 2024.1: vectors are columns
    return lambda: pymor_pod(A, modes=r, method="method_of_snapshots", orth_tol=1e-12, rtol=0)


def serial(args, rounds):
    X = synthetic(args.rows, args.cols, args.rank)
    r = args.rank
    t0 = time.perf_counter()
    sref = np.linalg.svd(X, compute_uv=False)
    t_svd = time.perf_counter() - t0
    contenders = {
        "bare_limit": lambda: bare_limit(X, r),
        "rom_snapshots": lambda: rom.pod(X, pod_method="snapshots", rank=r),
        "rom_qr": lambda: rom.pod(X, pod_method="qr", rank=r),
    }
    pairs = {}
    pymor_fn = _pymor_contender(X, r)
    if pymor_fn is not None:
        contenders["pymor_method_of_snapshots"] = pymor_fn
        pairs["pymor_over_fast"] = ("pymor_method_of_snapshots", "rom_snapshots")
    record, outs = protocol.run_rounds(
        contenders, rounds=rounds, reference="bare_limit", warmup=True, pairs=pairs
    )
    accuracy = {}
    for name in ("rom_snapshots", "rom_qr"):
        U, s = outs[name].modes, outs[name].singular_values
        accuracy[name] = {
            "orth_err": _orth_err(U),
            "sv_max_rel_err": float(np.max(np.abs(s - sref[: len(s)]) / sref[: len(s)])),
        }
    if pymor_fn is not None:
        accuracy["pymor_method_of_snapshots"] = {
            "orth_err": _orth_err(outs["pymor_method_of_snapshots"][0].to_numpy())
        }
    med = record["median_ratio"]
    targets = {
        "fast_over_bare <= 1.15": med["rom_snapshots"] <= 1.15,
        "accurate_over_bare <= 3": med["rom_qr"] <= 3.0,
    }
    if pymor_fn is not None:
        targets["pymor_over_fast >= 1.5"] = record["pairs"]["pymor_over_fast"]["median"] >= 1.5
    return {
        "benchmark": "pod",
        "shape": list(X.shape),
        "rank": r,
        "pymor": protocol.pymor_version(),
        "numpy_svd_values_once_s": t_svd,
        "timing": record,
        "accuracy": accuracy,
        "targets": targets,
    }


def _idle_barrier(comm):
    """A barrier that sleeps while it waits, so that waiting ranks leave the cores free."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(1e-3)


def mpi_scaling(args, rounds):
    comm = MPI.COMM_WORLD
    lo, hi = row_range(args.rows, comm)
    Xl = synthetic(args.rows, args.cols, args.rank, lo=lo, hi=hi)
    X = synthetic(args.rows, args.cols, args.rank) if comm.rank == 0 else None
    ncpu = usable_cores()
    serial_threads = []

    def serial_threaded():
        out = None
        if comm.rank == 0:
            with threadpool_limits(limits=ncpu):
                serial_threads.append(max(i["num_threads"] for i in threadpool_info()))
                out = rom.pod(X, rank=args.rank)
        _idle_barrier(comm)
        return out

    mpi_name = f"mpi_{comm.size}_ranks"
    contenders = {
        "serial_threaded_blas": serial_threaded,
        mpi_name: lambda: rom.pod(Xl, rank=args.rank, comm=comm),
    }
    record, outs = protocol.run_rounds(
        contenders,
        rounds=rounds,
        reference="serial_threaded_blas",
        warmup=True,
        pairs={"speedup": ("serial_threaded_blas", mpi_name)},
        comm=comm,
    )
    if comm.rank != 0:
        return None
    s1, sp = outs["serial_threaded_blas"].singular_values, outs[mpi_name].singular_values
    speedup = record["pairs"]["speedup"]["median"]
    return {
        "benchmark": "pod_mpi",
        "ranks": comm.size,
        "shape": [args.rows, args.cols],
        "rank": args.rank,
        "reference": "rom.pod of the whole matrix on one rank, BLAS threads = all cores",
        "serial_blas_threads": max(serial_threads),
        "timing": record,
        "speedup_vs_best_serial": speedup,
        "sv_max_rel_diff": float(np.max(np.abs(sp - s1) / s1)),
        "targets": {"speedup >= 1.7": speedup >= 1.7},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="default 200000 (--quick 20000)")
    p.add_argument("--cols", type=int, default=None, help="default 400 (--quick 100)")
    p.add_argument("--rank", type=int, default=None, help="default 40 (--quick 10)")
    p.add_argument("--mpi", action="store_true", help="speed-up of the ranks of this run")
    protocol.add_common_arguments(p, rounds=7)
    args = p.parse_args(argv)
    rom.limit_blas_per_rank()  # under mpirun: one BLAS pool per rank, its share of the cores
    args.rows = args.rows or (20_000 if args.quick else 200_000)
    args.cols = args.cols or (100 if args.quick else 400)
    args.rank = args.rank or (10 if args.quick else 40)
    rounds = protocol.rounds_of(args, 7)
    res = mpi_scaling(args, rounds) if args.mpi else serial(args, rounds)
    if res is not None:
        protocol.finish(args, res, "pod_mpi.json" if args.mpi else "pod.json")


if __name__ == "__main__":
    main()
