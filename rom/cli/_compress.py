"""``rom compress``: compress a field of a store into modes, written as a store of modes."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression import METHODS
from rom.compression import ToleranceWarning
from rom.compression import compress
from rom.io import SnapshotStore
from rom.parallel import row_range
from rom.summary import jsonable

from ._common import CLIError
from ._common import add_output_arguments
from ._common import atomic_output
from ._common import check_output
from ._common import echo
from ._common import nonneg_float
from ._common import open_field
from ._common import positive_int
from ._common import store_parser

__all__ = ["add_command"]

_TRUNCATION = ("rank", "rtol", "l2_err", "rel_l2_err", "eps")


def _write_modes(
    path: Path,
    args: argparse.Namespace,
    comm: MPI.Comm,
    field: str,
    keys: np.ndarray,
    mesh: Any,
    res: Any,
) -> None:
    """The modes as a store at ``path``: one column per mode, its singular value as the
    parameter."""
    N = len(res.singular_values)
    modes = SnapshotStore.create(
        path,
        {field: keys},
        parameter_names=("singular_value",),
        comm=comm,
        attrs={
            "content": "modes",
            "source": str(args.store),
            "field": field,
            "method": args.method,
            "n_snapshots": int(res.n_snapshots),
            "error_bound": float("nan") if res.error_bound is None else res.error_bound,
        },
    )
    with modes:
        modes.append(
            {field: res.modes},
            parameters=res.singular_values[:, None],
            time=np.zeros(N),
            sample=np.arange(N),
        )
        if mesh is not None:
            modes.write_mesh(*mesh)


def _report(args: argparse.Namespace, comm: MPI.Comm, summary: dict[str, Any]) -> None:
    if args.json:
        echo(comm, json.dumps(jsonable(summary), indent=2))
        return
    sv, eb, rel = (
        summary["singular_values"],
        summary["error_bound"],
        summary["relative_error_bound"],
    )
    bound = "-" if eb is None else f"{eb:.3e}"
    if rel is not None:
        bound += f" (relative {rel:.3e})"
    lines = [
        f"compressed {summary['n_snapshots']} snapshots of {summary['field']!r} "
        f"({summary['n_dofs']} rows) with method {args.method!r} on {comm.size} rank(s) in "
        f"{summary['time_s']:.3g} s",
        f"modes kept      {summary['n_modes']}",
        f"singular values {sv[0]:.6e} ... {sv[-1]:.6e}",
        f"error bound     ||S - U U^T S||_F <= {bound}",
        f"wrote           {summary['out']}",
    ]
    echo(comm, "\n".join(lines))


def _run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    out = Path(args.out)
    check_output(out, args.overwrite, store=True, inputs=[Path(args.store)])
    opts = {k: getattr(args, k) for k in _TRUNCATION if getattr(args, k) is not None}
    with open_field(args.store, args.field, comm) as (st, field):
        n_dofs = st.n_dofs(field)
        start, stop = row_range(n_dofs, comm)
        keys = st.keys(field)[start:stop]  # the rows compress() reads ("owned" = this block)
        mesh = st.read_mesh()
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ToleranceWarning)
            res = compress(
                st,
                method=args.method,
                field=field,
                chunk=args.chunk,
                comm=comm,
                progress=not args.no_progress,
                **opts,
            )
        elapsed = time.perf_counter() - t0
    # a tolerance below the method's floor: one line on rank 0 (the same on every rank)
    notes = [str(w.message) for w in caught if issubclass(w.category, ToleranceWarning)]
    if comm.rank == 0:
        for note in notes:
            print(f"rom: warning: {note}", file=sys.stderr, flush=True)
    for w in caught:  # any other warning goes on as usual
        if not issubclass(w.category, ToleranceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if len(res.singular_values) == 0:
        raise CLIError("no mode kept (the snapshots are zero, or the truncation keeps none)")
    with atomic_output(out, comm, kind="store") as tmp:  # no half store if interrupted
        _write_modes(tmp, args, comm, field, keys, mesh, res)
    total = res.total_energy
    rel = res.error_bound / math.sqrt(total) if res.error_bound is not None and total else None
    summary = {
        "store": str(args.store),
        "field": field,
        "method": args.method,
        "n_dofs": n_dofs,
        "n_snapshots": res.n_snapshots,
        "n_modes": len(res.singular_values),
        "truncation": opts,
        "singular_values": res.singular_values,
        "error_bound": res.error_bound,
        "relative_error_bound": rel,
        "tolerance_met": not notes,
        "time_s": elapsed,
        "ranks": comm.size,
        "out": str(out),
    }
    _report(args, comm, summary)
    return 0


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom compress`` to the sub-command parsers ``sub``."""
    s = store_parser(sub, "compress", parents, "compress a field into modes (written as a store)")
    s.add_argument("--method", choices=METHODS, default="batch")
    s.add_argument(
        "--rel-l2-err",
        type=nonneg_float,
        dest="rel_l2_err",
        help="relative tail: sum_{n>N} s_n^2 <= E^2 ||S||_F^2",
    )
    s.add_argument(
        "--l2-err", type=nonneg_float, dest="l2_err", help="absolute tail: sum_{n>N} s_n^2 <= E^2"
    )
    s.add_argument("--rtol", type=nonneg_float, help="keep s_n >= R s_1")
    s.add_argument(
        "--rank",
        type=positive_int,
        help="at most N modes (randomized without a tolerance: exactly)",
    )
    s.add_argument(
        "--eps",
        type=nonneg_float,
        help="hapod: mean-square target (1/m) ||S - U U^T S||_F^2 <= E^2",
    )
    s.add_argument("--chunk", type=positive_int, default=64, help="columns per block")
    add_output_arguments(s, "modes store to write")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_run)
