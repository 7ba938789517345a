"""``rom merge`` (several stores as one) and ``rom unlock`` (break a stale writer lock)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mpi4py import MPI

from rom.io import SnapshotStore
from rom.io import merge_stores

from ._common import add_output_arguments
from ._common import atomic_output
from ._common import check_output
from ._common import echo
from ._common import on_rank0
from ._common import store_parser

__all__ = ["add_command"]


def _run_merge(args: argparse.Namespace, comm: MPI.Comm) -> int:
    out = Path(args.out)
    check_output(out, args.overwrite, store=True, inputs=list(args.stores))
    with atomic_output(out, comm, kind="store") as tmp:
        merge_stores(args.stores, tmp, comm=comm)
    with SnapshotStore.open(out, comm=comm) as st:
        m, fields = st.n_snapshots, st.fields
    echo(
        comm,
        f"merged {len(args.stores)} stores into {out}: {m} snapshots of fields {list(fields)}",
    )
    return 0


def _run_unlock(args: argparse.Namespace, comm: MPI.Comm) -> int:
    text = on_rank0(comm, lambda: SnapshotStore.break_lock(args.store, force=args.force))
    echo(comm, text)
    return 0


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom merge`` and ``rom unlock`` to the sub-command parsers ``sub``."""
    s = sub.add_parser(
        "merge",
        parents=parents,
        help="concatenate the columns of stores with the same fields and row keys",
    )
    s.add_argument("stores", type=Path, nargs="+", help="the stores, in column order")
    add_output_arguments(s, "the merged store to write")
    s.set_defaults(func=_run_merge)

    s = store_parser(
        sub,
        "unlock",
        parents,
        "remove the writer lock of a store whose writer is gone",
        field=False,
        store_help="the store's index file",
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="also break a lock recorded by another host (make sure that job is gone)",
    )
    s.set_defaults(func=_run_unlock)
