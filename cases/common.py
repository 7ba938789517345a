"""What every case shares: the argument convention, logging, figures and the JSON summary.

Every case in ``cases/`` is one jupytext (percent format) file: an ``mpirun``-able script, the
executed documentation page of the study, and a regression test. It accepts ``--out``,
``--size``, ``--seed``, ``--n-train``, ``--tol``, ``--log-level``, ``--no-plots`` and writes
``<out>/summary.json`` with the keys ``case``, ``version``, ``created``, ``ranks``, ``args``,
``results``, ``timings_s`` and ``files``.

In a notebook kernel (the documentation build) the command line is not read: the defaults
apply, the smaller ones when ``ROM_DOCS_SMALL=1``, and the output goes to a temporary
directory that :func:`finish` removes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

import rom
from rom.summary import jsonable

rom.limit_blas_per_rank()  # under mpirun: each rank's BLAS pool gets its share of the cores


def in_notebook() -> bool:
    """True in a Jupyter kernel (the documentation build executes the cases there)."""
    return "ipykernel" in sys.modules


def docs_small() -> bool:
    """True when ``ROM_DOCS_SMALL=1``: the documentation's smaller default sizes."""
    return os.environ.get("ROM_DOCS_SMALL") == "1"


def parser(
    description: str,
    *,
    size: int,
    n_train: int,
    tol: float,
    out: str,
    n_steps: int,
    n_test: int | None = None,
) -> argparse.ArgumentParser:
    """The shared argument parser with per-case defaults (``--n-test`` when ``n_test`` is
    given).

    ``--out`` defaults to ``out`` in a script, and to a temporary directory (removed by
    :func:`finish`) in a notebook kernel or when ``ROM_DOCS_SMALL=1``.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default {out})")
    p.set_defaults(default_out=out)
    p.add_argument("--size", type=int, default=size, help="mesh size parameter (cells across)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--n-train", type=int, default=n_train, help="number of training parameters")
    p.add_argument("--tol", type=float, default=tol, help="target relative error of the ROM")
    p.add_argument("--n-steps", type=int, default=n_steps, help="time steps per trajectory")
    if n_test is not None:
        p.add_argument("--n-test", type=int, default=n_test, help="number of held-out parameters")
    p.add_argument("--log-level", default="INFO", help="logging level (rank 0 only)")
    return p


def start(
    p: argparse.ArgumentParser,
    argv=None,
    comm: MPI.Comm | None = None,
    *,
    small: dict[str, Any] | None = None,
):
    """Parse the arguments, set up rank-0 logging and create ``--out`` (collective).

    Also adds the shared ``--no-plots`` flag. ``small`` holds the defaults of the
    documentation build (``ROM_DOCS_SMALL=1``). ``argv=None`` reads the command line, except
    in a notebook kernel. Returns ``(args, comm, log, out)``.
    """
    p.add_argument("--no-plots", action="store_true", help="write no PNG figures")
    if small and docs_small():
        p.set_defaults(**small)
    if argv is None and in_notebook():
        argv = []
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD if comm is None else comm
    log = setup_logging(args.log_level, comm)
    args.temporary = args.out is None and (in_notebook() or docs_small())
    if args.temporary:
        tmp = tempfile.mkdtemp(prefix=f"rom-{Path(args.default_out).name}-")
        args.out = Path(comm.bcast(tmp if comm.rank == 0 else None))
    elif args.out is None:
        args.out = Path(args.default_out)
    out = Path(args.out)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    shown = {k: v for k, v in vars(args).items() if k not in ("default_out", "temporary", "out")}
    say(
        comm,
        f"{comm.size} rank(s), output in {out}; " + ", ".join(f"{k} {v}" for k, v in shown.items()),
    )
    return args, comm, log, out


def write_trajectories(path: Path, model, field: str, mus, comm: MPI.Comm, **attrs) -> float:
    """Full-order trajectories of ``model`` for every parameter in ``mus`` into a new
    snapshot store at ``path``, with the plotting mesh (collective). Column ``j`` of trajectory
    ``i`` gets sample id ``i`` and time ``model.times[j]``. Returns the seconds spent."""
    from rom.io import SnapshotStore

    with SnapshotStore.create(
        path,
        {field: model.keys},
        parameter_names=model.parameter_names,
        comm=comm,
        overwrite=True,
        attrs=attrs,
    ) as store:
        store.write_mesh(*(model.mesh_for_plot() or (None, None)))
        t0 = time.perf_counter()
        for i, mu in enumerate(mus):
            store.append(
                {field: model.solve(mu)},
                parameters=mu,
                time=model.times,
                sample=np.full(model.n_steps, i),
            )
        return time.perf_counter() - t0


def say(comm: MPI.Comm, *args) -> None:
    """Print on rank 0 only."""
    if comm.rank == 0:
        print(*args, flush=True)


def save_figure(fig, out: Path, name: str, files: list[str], args) -> None:
    """Write ``fig`` to ``<out>/<name>`` and list it in ``files`` (rank 0, unless
    ``--no-plots``). In a notebook kernel the figure stays open, so the page shows it."""
    if fig is None or args.no_plots:
        return
    fig.savefig(Path(out) / name, dpi=120)
    files.append(name)
    if not in_notebook():
        import matplotlib.pyplot as plt

        plt.close(fig)


def finish(out: Path, args, comm: MPI.Comm) -> None:
    """Remove the temporary output directory of a documentation run (collective)."""
    comm.Barrier()
    if args.temporary and comm.rank == 0:
        shutil.rmtree(out, ignore_errors=True)
    comm.Barrier()


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
            "args": {k: v for k, v in vars(args).items() if k not in ("default_out", "temporary")},
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
