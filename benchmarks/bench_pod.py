"""Batch POD benchmark (issue 2): our fast and accurate methods against the bare limit,
pyMOR's method of snapshots and LAPACK, in one run.

Serial (all timings in one process, in ``--repeat`` interleaved rounds, default 7)::

    .venv/bin/python benchmarks/bench_pod.py [--rows 200000 --cols 400 --rank 40]

MPI scaling (2 ranks, one BLAS thread each, against 1 rank with one thread, same run)::

    .venv/bin/mpirun -n 2 .venv/bin/python benchmarks/bench_pod.py --mpi

Memory protocols. This VM reports memory its kernel has had free for about 2 s to the
host (free page reporting), and touching such memory again costs up to about 2.4 s per GB
(measured: refilling a freed 640 MB array right away 0.07 s, after 2 s idle 0.49 s, after
5 s 0.90 s, the first fill in a fresh process 1.54 s). A method that allocates a tall array per call (the accurate method's ``Q``) then
pays a host fault that depends on what ran seconds before it, not on the method. So every
round times each method twice:

``cold``
    as it comes (after the other methods of the round, and a ``gc.collect()``);
``warm``
    right after touching and freeing ``--warm-gb`` (default 1.6) GB, so the method's
    allocations should find memory the guest kernel still holds. They often do not: the
    kernel reports freed memory in batches, on a timer started by earlier frees, so a batch
    can take the touched memory within the fraction of a second before the call (measured:
    the accurate method's first touch of its 640 MB ``Q`` took 0.05 s in some warm rounds and
    0.3-0.9 s in others of the same run);
``repeat``
    right after an untimed call of the same method (as ``timeit`` repeats): the timed call's
    allocations take the pages the previous call freed milliseconds before, which the kernel
    has not yet reported. Every page is still freshly mapped and zeroed, as on a bare-metal
    node; only the host's fault on top is gone.

The targets are judged on ``repeat``; ``cold`` and ``warm`` are reported next to it. Settings that keep
freed memory inside the process (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``) are
recorded in ``machine.malloc_env`` when set, but slowed numpy's threaded ``syrk`` here.

Targets: fast method within 1.15x of the bare limit (one Gram product, ``eigh``, one basis
product) and at least 1.5x faster than pyMOR at equal orthonormality (1e-12); accurate method
within 3x of the bare limit; 2 ranks at least 1.7x faster than 1 rank.
Results go to ``benchmarks/results/pod.json`` (serial) and ``pod_mpi.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from mpi4py import MPI
from threadpoolctl import threadpool_info, threadpool_limits

import rom
from rom.parallel import row_range

RESULTS = Path(__file__).parent / "results"


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


def best_of(fn, repeat, *, record=None, name=None):
    """Best time of ``repeat`` calls; all times go to ``record[name]`` when given."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    if record is not None:
        record[name] = times
    return min(times), out


def bare_limit(X, r):
    """The floor: one Gram product, one symmetric eigensolve, one basis product."""
    G = X.T @ X
    lam, V = np.linalg.eigh(G)
    Vr = V[:, ::-1][:, :r] / np.sqrt(lam[::-1][:r])
    return X @ Vr


def machine():
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": [
            (i.get("internal_api"), i.get("version"), i.get("num_threads"))
            for i in threadpool_info()
        ],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # glibc settings that keep freed memory mapped (see the module docstring)
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


def touch(gb):
    """Fill and free ``gb`` GB, so that the next allocations find guest-held memory."""
    if gb > 0:
        a = np.empty(int(gb * 1e9) // 8)
        a.fill(0.0)
        del a


def interleaved(fns, repeat, *, warm_gb=0.0):
    """Time every function once per round, for ``repeat`` rounds (A B C A B C ...).

    This machine (a 2-vCPU VM) has slow and fast phases lasting tens of seconds (the same
    call measured 0.85 s and 1.3 s minutes apart): timing each method in its own block of
    repeats would compare phases, not methods. Each call is timed per round cold, after
    :func:`touch` (``warm_gb`` > 0) and right after an untimed call of itself (``repeat``;
    module docstring). Returns ``{protocol: {name: [times]}}`` and the last outputs.
    """
    protocols = ["cold"] + (["warm"] if warm_gb > 0 else []) + ["repeat"]
    times = {p: {name: [] for name in fns} for p in protocols}
    outs = {}
    for _ in range(repeat):
        for p in protocols:
            for name, fn in fns.items():
                gc.collect()
                if p == "warm":
                    touch(warm_gb)
                elif p == "repeat":
                    outs[name] = None
                    fn()
                t0 = time.perf_counter()
                outs[name] = fn()
                times[p][name].append(time.perf_counter() - t0)
    return times, outs


def ratios(rec):
    """Best-time, median and per-round-median ratios of one protocol's timings."""
    T = {k: min(v) for k, v in rec.items()}
    med = {k: float(np.median(v)) for k, v in rec.items()}

    def per_round(a, b):
        return float(np.median(np.asarray(rec[a]) / np.asarray(rec[b])))

    pairs = {
        "fast_over_bare": ("rom_snapshots", "bare_limit"),
        "accurate_over_bare": ("rom_qr", "bare_limit"),
    }
    if "pymor_method_of_snapshots" in rec:
        pairs["pymor_over_fast"] = ("pymor_method_of_snapshots", "rom_snapshots")
    return {
        "best_s": T,
        "median_s": med,
        "ratios": {k: T[a] / T[b] for k, (a, b) in pairs.items()},
        "median_ratios": {k: med[a] / med[b] for k, (a, b) in pairs.items()},
        "round_ratio_medians": {k: per_round(a, b) for k, (a, b) in pairs.items()},
        # the method's median against the reference's fastest call: no luck of phase helps
        "median_over_best": {k: med[a] / T[b] for k, (a, b) in pairs.items()},
    }


def serial(args):
    X = synthetic(args.rows, args.cols, args.rank)
    r = args.rank
    res = {
        "shape": list(X.shape),
        "rank": r,
        "machine": machine(),
        "timings_s": {},
        "orth_err": {},
        "all_times_s": {},
        "timing": f"interleaved rounds, best and median of {args.repeat}",
    }
    t, sv_np = best_of(lambda: np.linalg.svd(X, full_matrices=False, compute_uv=True), 1)
    res["timings_s"]["numpy_svd"] = t
    sref = sv_np[1]
    del sv_np  # the 1.3 GB of unused factors would stay resident through every round
    fns = {
        "bare_limit": lambda: bare_limit(X, r),
        "rom_snapshots": lambda: rom.pod(X, method="snapshots", rank=r),
        "rom_qr": lambda: rom.pod(X, method="qr", rank=r),
    }
    try:
        import pymor
        from pymor.algorithms.pod import pod as pymor_pod
        from pymor.core.logger import set_log_levels
        from pymor.vectorarrays.numpy import NumpyVectorSpace

        set_log_levels({"pymor": "WARNING"})
        space = NumpyVectorSpace(args.rows)
        # pyMOR >= 2024.1 stores vectors as columns: from_numpy takes (dim, len).
        A = space.from_numpy(X)
        fns["pymor_method_of_snapshots"] = lambda: pymor_pod(
            A, modes=r, method="method_of_snapshots", orth_tol=1e-12, rtol=0
        )
        res["pymor_version"] = pymor.__version__
    except ImportError as e:  # the bench extra is not installed
        res["pymor_error"] = str(e)
    rec, outs = interleaved(fns, args.repeat, warm_gb=args.warm_gb)
    res["all_times_s"] = rec
    res["timing"] = (
        f"interleaved rounds, {args.repeat} of them; every method timed cold, "
        f"after touching {args.warm_gb} GB (warm) and right after an untimed "
        f"call of itself (repeat) in each round"
    )
    for method in ("snapshots", "qr"):
        U, s = outs[f"rom_{method}"]
        res["orth_err"][f"rom_{method}"] = float(np.abs(U.T @ U - np.eye(U.shape[1])).max())
        res[f"sv_rel_err_{method}"] = float(np.max(np.abs(s - sref[: len(s)]) / sref[: len(s)]))
    if "pymor_method_of_snapshots" in outs:
        Upn = outs["pymor_method_of_snapshots"][0].to_numpy()
        res["orth_err"]["pymor_method_of_snapshots"] = float(
            np.abs(Upn.T @ Upn - np.eye(Upn.shape[1])).max()
        )
    res["protocols"] = {p: ratios(r) for p, r in rec.items()}
    judged = res["protocols"]["repeat"]
    res["judged_protocol"] = "repeat"
    res["timings_s"].update(judged["best_s"])
    # per-round ratio medians decide: the methods of one round ran within seconds of each
    # other, in the same machine phase
    rr = judged["round_ratio_medians"]
    res["targets"] = {
        "fast_over_bare <= 1.15": rr["fast_over_bare"] <= 1.15,
        "accurate_over_bare <= 3": rr["accurate_over_bare"] <= 3.0,
        "pymor_over_fast >= 1.5": rr.get("pymor_over_fast", 0.0) >= 1.5,
    }
    return res


def mpi_scaling(args):
    comm = MPI.COMM_WORLD
    lo, hi = row_range(args.rows, comm)
    Xl = synthetic(args.rows, args.cols, args.rank, lo=lo, hi=hi)
    res = {"ranks": comm.size, "shape": [args.rows, args.cols], "machine": machine()}
    # 1 rank, 1 BLAS thread, on rank 0 with the whole matrix (others wait)
    if comm.rank == 0:
        X = synthetic(args.rows, args.cols, args.rank)
        with threadpool_limits(limits=1):
            t1, (U1, s1) = best_of(lambda: rom.pod(X, rank=args.rank), args.repeat)
        del X
    comm.Barrier()

    def run():
        comm.Barrier()
        return rom.pod(Xl, rank=args.rank, comm=comm)

    tp, (Up, sp) = best_of(run, args.repeat)
    tp = comm.allreduce(tp, op=MPI.MAX)
    if comm.rank == 0:
        res.update(
            t_1rank_1thread=t1,
            t_nranks=tp,
            speedup_vs_1rank_1thread=t1 / tp,
            note="1 rank with all cores is timed by the serial run (pod.json): here the other "
            "ranks would spin in MPI while rank 0 ran, and take a core from it",
            sv_max_rel_diff=float(np.max(np.abs(sp - s1) / s1)),
        )
        res["targets"] = {"speedup >= 1.7": res["speedup_vs_1rank_1thread"] >= 1.7}
    return res if comm.rank == 0 else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cols", type=int, default=400)
    p.add_argument("--rank", type=int, default=40)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument(
        "--warm-gb",
        type=float,
        default=1.6,
        help="GB touched before each warm call (0: cold protocol only)",
    )
    p.add_argument("--mpi", action="store_true")
    args = p.parse_args()
    res = mpi_scaling(args) if args.mpi else serial(args)
    if res is not None:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / ("pod_mpi.json" if args.mpi else "pod.json")
        out.write_text(json.dumps(res, indent=2))
        print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
