"""Whole-store operations: :func:`merge_stores` concatenates the columns of stores with the
same fields and row keys (e.g. one store per job of a parameter sweep run as a job array);
:func:`move_store` moves a finished store into place (index and segment directory)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from mpi4py import MPI

from rom.parallel import get_comm
from rom.parallel import row_range

from ._format import StoreError
from ._format import compatibility_error
from ._format import fsync_path
from ._format import segments_dir
from ._index import read_index
from ._index import write_index
from ._lock import StoreLock
from ._store import SnapshotStore

__all__ = ["merge_stores", "move_store"]


def merge_stores(
    sources: Sequence[str | os.PathLike],
    path: str | os.PathLike,
    *,
    comm: MPI.Comm | None = None,
    overwrite: bool = False,
) -> None:
    """Write one store holding the columns of ``sources`` in order (collective).

    Column :math:`j` of the result is column :math:`j - m_1 - \\dots - m_{k-1}` of source
    :math:`k`, where :math:`m_i` is the number of snapshots of source :math:`i`; parameters,
    times and sample ids are carried over unchanged (sample ids are not renumbered). The
    attributes and the mesh are those of the first source (the mesh of the first one that
    has one); the attribute ``merged_from`` lists the sources as a JSON array.

    Parameters
    ----------
    sources : sequence of path-like
        The stores; they must have the same field names, the same row keys of every field
        and the same parameter names.
    path : path-like
        The new store (refused when it exists, unless ``overwrite``).
    comm : mpi4py communicator, optional
        Serial when ``None``.
    overwrite : bool, keyword-only
        Replace an existing store at ``path``.

    Raises
    ------
    StoreError
        No source, a source that is missing or corrupt, sources that differ (naming the
        first that does and how), ``path`` among the sources, or a failed write; nothing is
        written at ``path`` unless every source is compatible.
    """
    comm = get_comm(comm)
    paths = [Path(p) for p in sources]
    out = Path(path)
    if not paths:
        raise StoreError(f"{out}: merge needs at least one source store")
    if any(out.resolve() == p.resolve() for p in paths):
        raise StoreError(f"{out}: the merged store would replace one of its sources")
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(SnapshotStore.open(p, comm=comm)) for p in paths]
        first = stores[0]
        for other in stores[1:]:
            err = compatibility_error(first, other)
            if err is not None:
                raise StoreError(err)
        keys = {}
        for name in first.fields:
            start, stop = row_range(first.n_dofs(name), comm)
            keys[name] = first.keys(name)[start:stop]
        attrs = dict(first.attrs, merged_from=json.dumps([str(p) for p in paths]))
        merged = SnapshotStore.create(
            out,
            keys,
            parameter_names=first.parameter_names,
            comm=comm,
            overwrite=overwrite,
            attrs=attrs,
        )
        with merged:
            for st in stores:
                merged.extend(st)
            mesh = next((m for m in (st.read_mesh() for st in stores) if m is not None), None)
            if mesh is not None:
                merged.write_mesh(*mesh)


def _replace_store(src: Path, dst: Path, overwrite: bool) -> None:
    """Under both locks: put ``src`` (index and ``.d``) where ``dst`` is."""
    ix = read_index(src)
    ddst = segments_dir(dst)
    if (dst.exists() or ddst.exists()) and not overwrite:
        which = dst if dst.exists() else ddst
        raise StoreError(f"{which}: already exists (pass overwrite=True to replace the store)")
    old = None
    if ddst.exists():
        old = ddst.with_name(f"{ddst.name}.old-{os.getpid()}")
        os.replace(ddst, old)
    os.replace(segments_dir(src), ddst)
    if src.name == dst.name:  # the index refers to its segments as "<name>.d/..."
        os.replace(src, dst)
    else:
        write_index(dst, ix)
        src.unlink()
    fsync_path(dst.parent, directory=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def move_store(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Move a closed store (index and ``<src>.d``) to ``dst`` (local: call it on one rank).

    The segment directory is renamed first and the index last, so that ``dst`` is either the
    previous store or the new one except for the instant between the two renames. Both
    stores' writer locks are taken for the move: a store open for writing at either place
    is refused (:class:`StoreError` naming the holder).

    Parameters
    ----------
    src : path-like
        A store nobody writes to; its files are gone afterwards.
    dst : path-like
        Where it goes, in an existing directory on the same file system.
    overwrite : bool, keyword-only
        Replace a store (or file) at ``dst``; otherwise an existing ``dst`` is refused.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise StoreError(f"{dst}: source and destination are the same store")
    src_lock = StoreLock(src).acquire()
    try:
        dst_lock = StoreLock(dst).acquire()
        try:
            _replace_store(src, dst, overwrite)
        finally:
            dst_lock.release()
    finally:
        src_lock.release()
