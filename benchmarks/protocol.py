"""The benchmarks' timing protocol, machine record and JSON output (one implementation).

The protocol is fixed before measuring (``docs/performance.md``, section "Protocol"):

1. **Interleaved rounds.** Every round times every contender once. The order rotates by one
   contender per round (round ``k`` starts with contender ``k mod C``), so no contender
   always runs first, or always right after the same neighbour.
2. **Warm-up** (optional, ``warmup=True``): each timed call follows an untimed call of the
   same contender right away, as ``timeit`` repeats do; the timed call then finds the
   memory its predecessor freed, not pages the operating system has to fault in again.
   **Freed memory kept** (optional, :func:`keep_freed_memory`, before the first round): the
   process keeps what it frees, so that arrays of snapshot size are not faulted in anew on
   every call, at a cost that depends on the host. With it, a **warm-up round**
   (``warmup_round=True``: every contender called once, untimed, before the first round)
   lets the heap grow to the run's peak before anything is timed.
3. **Every round is stored**: the JSON holds each round's order and times.
4. **The figure is the median of per-round ratios** ``t_contender / t_reference`` against a
   reference named before measuring (the best configuration of the alternative: for an MPI
   speed-up, the serial run with threaded BLAS). Contenders of one round ran seconds apart,
   in the same state of the machine; the median discards the odd disturbed round.
5. **The JSON is written only by the scripts**, atomically (a temporary file renamed over
   the target), with the machine record of :func:`machine`.

Under ``mpirun`` (``comm`` given) every timed call starts after a barrier and its time is the
largest over the ranks.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import platform
import runpy
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from rom.parallel import usable_cores
from rom.summary import jsonable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CASES = ROOT / "cases"
#: Where ``--quick`` runs write unless told otherwise (git-ignored), so that a smoke run
#: never replaces a recorded result.
QUICK_RESULTS = ROOT / "run" / "bench_quick"


def run_case(name: str, argv: list[str]) -> dict[str, Any]:
    """Run ``cases/<name>.py`` as a script with the arguments ``argv``, in this process (so
    that a benchmark can reuse what the case built); the case's module namespace."""
    path = CASES / f"{name}.py"
    if str(CASES) not in sys.path:
        sys.path.insert(0, str(CASES))  # cases/common.py
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        return runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved


def machine() -> dict[str, Any]:
    """Cores, BLAS libraries and their thread counts, library versions and the date."""
    import scipy
    from threadpoolctl import threadpool_info

    ncpu = usable_cores()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": ncpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "blas": [
            {
                "library": i.get("internal_api"),
                "version": i.get("version"),
                "num_threads": i.get("num_threads"),
                "user_api": i.get("user_api"),
            }
            for i in threadpool_info()
        ],
        "thread_env": {
            k: v
            for k, v in os.environ.items()
            if k.endswith("_NUM_THREADS") or k == "MALLOC_ARENA_MAX"
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


#: ``mallopt`` parameters of glibc's ``malloc.h``.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> dict[str, Any]:
    """Let this process keep the memory it frees (glibc), for every contender alike.

    By default glibc serves an allocation above a threshold (at most 32 MiB) by ``mmap`` and
    hands it back to the kernel when it is freed: every array of snapshot size is faulted in
    anew, at a cost that the host sets. On a virtual machine that reports freed pages to its
    host, identical calls then spend from 0.2 to 2.3 s in the kernel for the same number of
    faults (``docs/performance.md``, machine notes). With both the mmap and the trim
    threshold at :math:`2^{31}-1` bytes, large arrays come from the heap and freed memory
    stays there for the next call. Called once, before the first round; returns the record
    for the JSON (``applied`` is false where glibc is not the allocator).
    """
    import ctypes

    limit = 2**31 - 1
    record: dict[str, Any] = {"mmap_threshold": limit, "trim_threshold": limit}
    try:
        libc = ctypes.CDLL("libc.so.6")
        record["applied"] = bool(
            libc.mallopt(_M_MMAP_THRESHOLD, limit) and libc.mallopt(_M_TRIM_THRESHOLD, limit)
        )
    except (OSError, AttributeError):
        record["applied"] = False
    return record


def pymor_version() -> str:
    """pyMOR's version, or ``"not installed"`` (the ``bench`` extra adds it).

    Only a missing package counts as not installed: an installed pyMOR that fails to import
    raises, so that its contenders are never dropped silently.
    """
    if importlib.util.find_spec("pymor") is None:
        return "not installed"
    import pymor

    return pymor.__version__


def _timed(fn: Callable[[], Any], number: int, comm) -> tuple[float, Any]:
    """Seconds per call of ``number`` consecutive calls (max over ranks) and the last output."""
    if comm is not None:
        comm.Barrier()
    out = None
    t0 = time.perf_counter()
    for _ in range(number):
        out = fn()
    t = (time.perf_counter() - t0) / number
    if comm is not None:
        from mpi4py import MPI

        t = comm.allreduce(t, op=MPI.MAX)
    return t, out


def run_rounds(
    contenders: Mapping[str, Callable[[], Any]],
    *,
    rounds: int,
    reference: str,
    warmup: bool = False,
    warmup_round: bool = False,
    number: int | Mapping[str, int] = 1,
    pairs: Mapping[str, tuple[str, str]] | None = None,
    prepare: Mapping[str, Callable[[], Any]] | None = None,
    comm=None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time ``contenders`` in ``rounds`` interleaved rounds (module docstring).

    Parameters
    ----------
    contenders : mapping name -> callable
        Each is called with no argument; under ``mpirun`` by every rank (collective).
    rounds : int
        Number of rounds; every one is stored.
    reference : str
        The contender every per-round ratio divides by.
    warmup : bool
        Precede each timed call by an untimed call of the same contender.
    warmup_round : bool
        Call every contender once, untimed, before the first round.
    number : int or mapping name -> int
        Consecutive calls per timed sample (their mean is the sample), for calls too short
        for one clock reading.
    pairs : mapping label -> (numerator, denominator), optional
        Further per-round ratios (e.g. the alternative over our method).
    prepare : mapping name -> callable, optional
        Untimed set-up run right before each warm-up or timed call of that contender (e.g.
        a fresh copy of a model that the call changes in place).
    comm : mpi4py communicator, optional
        Barrier before each timed call; the time is the largest over the ranks.

    Returns
    -------
    record : dict
        The protocol settings, every round (order and times), the per-round ratios and their
        medians (:func:`summarize`).
    outputs : dict
        The last output of each contender.
    """
    names = list(contenders)
    if reference not in contenders:
        raise ValueError(f"reference {reference!r} is not a contender ({names})")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    per = {n: number if isinstance(number, int) else int(number.get(n, 1)) for n in names}
    log, outputs = [], {}
    for name in names if warmup_round else ():
        if (prepare or {}).get(name) is not None:
            prepare[name]()
        contenders[name]()
        if comm is not None:
            comm.Barrier()
    for k in range(rounds):
        order = names[k % len(names) :] + names[: k % len(names)]
        times = {}
        for name in order:
            fn = contenders[name]
            outputs[name] = None  # let the previous output be freed before the call
            gc.collect()
            setup = (prepare or {}).get(name)
            if warmup:
                if setup is not None:
                    setup()
                fn()
            if setup is not None:
                setup()
            times[name], outputs[name] = _timed(fn, per[name], comm)
        log.append({"order": order, "times_s": times})
    record = summarize(log, reference=reference, pairs=pairs)
    record["protocol"] = {
        "rounds": rounds,
        "order": "rotated by one contender per round",
        "warmup": warmup,
        "warmup_round": warmup_round,
        "number": per,
        "reference": reference,
        "figure": "median over rounds of t / t_reference within the round",
        "ranks": 1 if comm is None else comm.size,
    }
    return record, outputs


def summarize(
    log: list[dict[str, Any]],
    *,
    reference: str,
    pairs: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Per-round ratios against ``reference`` (and ``pairs``) and their medians.

    ``log`` is one entry per round, ``{"times_s": {name: seconds}, ...}``; rounds measured
    elsewhere (e.g. by a case script) are summarized the same way.
    """
    names = list(log[0]["times_s"])
    times = {n: [r["times_s"][n] for r in log] for n in names}
    ref = np.asarray(times[reference])
    per_round = {n: (np.asarray(times[n]) / ref).tolist() for n in names if n != reference}
    out: dict[str, Any] = {
        "rounds": log,
        "times_s": times,
        "median_s": {n: float(np.median(t)) for n, t in times.items()},
        "per_round_ratio": per_round,
        "median_ratio": {n: float(np.median(r)) for n, r in per_round.items()},
    }
    if pairs:
        out["pairs"] = {}
        for label, (a, b) in pairs.items():
            r = (np.asarray(times[a]) / np.asarray(times[b])).tolist()
            out["pairs"][label] = {
                "numerator": a,
                "denominator": b,
                "per_round": r,
                "median": float(np.median(r)),
            }
    return out


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one.

    Numpy values become JSON types and non-finite floats ``null`` (:func:`rom.summary.jsonable`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(dict(data)), indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def output_path(args, name: str) -> Path:
    """``--json`` if given, else ``results/<name>`` (``run/bench_quick/<name>`` with ``--quick``)."""
    if getattr(args, "json", None):
        return Path(args.json)
    return (QUICK_RESULTS if getattr(args, "quick", False) else RESULTS) / name


def add_common_arguments(p, *, rounds: int) -> None:
    """``--rounds``, ``--quick`` and ``--json``, the same in every benchmark script."""
    p.add_argument(
        "--rounds", type=int, default=None, help=f"interleaved rounds (default {rounds})"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few rounds, for a smoke test (seconds); the figures mean nothing",
    )
    p.add_argument(
        "--json",
        default=None,
        help="output file (default benchmarks/results/<name>.json; run/bench_quick/ with --quick)",
    )


def rounds_of(args, full: int, quick: int = 3) -> int:
    """``--rounds`` if given, else ``quick`` rounds with ``--quick`` and ``full`` without."""
    return args.rounds or (quick if args.quick else full)


def finish(args, result: dict[str, Any], name: str) -> Path:
    """Add the arguments and the machine record to ``result``, write it (:func:`output_path`)
    and print its median ratios and targets."""
    result["command_args"] = vars(args)
    result["machine"] = machine()
    path = write_json(output_path(args, name), result)
    if "timing" in result:
        print(f"median ratios: {result['timing']['median_ratio']}")
    print(f"targets: {result.get('targets')}")
    print(f"written: {path}")
    return path
