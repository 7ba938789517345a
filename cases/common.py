"""What every case script shares: the argument convention, logging and the JSON summary.

Every script in ``cases/`` accepts ``--out``, ``--size``, ``--seed``, ``--n-train``, ``--tol``,
``--log-level`` and writes ``<out>/summary.json`` with the keys ``case``, ``version``,
``created``, ``ranks``, ``args``, ``results``, ``timings_s`` and ``files``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mpi4py import MPI

import rom
from rom.summary import jsonable

rom.limit_blas_per_rank()  # under mpirun: each rank's BLAS pool gets its share of the cores


def parser(
    description: str, *, size: int, n_train: int, tol: float, out: str
) -> argparse.ArgumentParser:
    """The shared argument parser with per-case defaults."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=Path(out), help="output directory")
    p.add_argument("--size", type=int, default=size, help="mesh size parameter (cells across)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--n-train", type=int, default=n_train, help="number of training parameters")
    p.add_argument("--tol", type=float, default=tol, help="target relative error of the ROM")
    p.add_argument("--log-level", default="INFO", help="logging level (rank 0 only)")
    return p


def start(p: argparse.ArgumentParser, argv=None, comm: MPI.Comm | None = None):
    """Parse the arguments, set up rank-0 logging and create ``--out`` (collective).

    Also adds the shared ``--no-plots`` flag. Returns ``(args, comm, log, out)``.
    """
    p.add_argument("--no-plots", action="store_true", help="write no PNG figures")
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD if comm is None else comm
    log = setup_logging(args.log_level, comm)
    out = Path(args.out)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    return args, comm, log, out


def setup_logging(level: str, comm: MPI.Comm) -> logging.Logger:
    """Log to stderr on rank 0 only; other ranks log warnings and errors."""
    logging.basicConfig(
        level=getattr(logging, level.upper()) if comm.rank == 0 else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    return logging.getLogger("cases")


def write_summary(
    out: Path,
    case: str,
    args: argparse.Namespace,
    results: dict,
    timings: dict,
    files: list,
    comm: MPI.Comm,
) -> Path:
    """Write ``<out>/summary.json`` on rank 0 (collective call; returns the path)."""
    path = Path(out) / "summary.json"
    if comm.rank == 0:
        summary = {
            "case": case,
            "version": rom.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "ranks": comm.size,
            "python": platform.python_version(),
            "args": vars(args),
            "results": results,
            "timings_s": timings,
            "files": files,
        }
        path.write_text(json.dumps(jsonable(summary), indent=2))
    comm.Barrier()
    return path


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain-text table for the console."""
    cells = [[f"{c:.3e}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    sep = "-" * len(line)
    body = "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)
    return f"{line}\n{sep}\n{body}"
