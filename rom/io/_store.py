"""The public surface of the snapshot store: :class:`SnapshotStore` (creating, opening,
closing; reading and appending come from its base classes)."""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from mpi4py import MPI

from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import row_range

from ._format import StoreError
from ._format import as_field_dict
from ._format import as_keys
from ._format import segments_dir
from ._index import IndexContents
from ._index import read_index
from ._index import write_layout
from ._keys import check_same_fields
from ._keys import field_keys
from ._keys import metadata_error
from ._keys import sorted_keys
from ._lock import StoreLock
from ._lock import break_lock
from ._reading import StoreReading
from ._writing import StoreWriting

__all__ = ["SnapshotStore"]

logger = logging.getLogger("rom.io")

_CONSTRUCT = object()


class SnapshotStore(StoreReading, StoreWriting):
    """A crash-safe HDF5 store of snapshot matrices with partition-independent rows.

    Create with :meth:`create` (collective), open with :meth:`open`; do not call the
    constructor directly. Attributes are the same on every rank.

    Attributes
    ----------
    path : pathlib.Path
        The index file.
    fields : tuple of str
        Field names.
    n_snapshots : int
        Number of committed columns :math:`m`.
    parameter_names : tuple of str
        Names of the :math:`p` parameters.
    parameters : ndarray of shape (n_snapshots, p)
        Parameters :math:`\\mu_j` of each column.
    time : ndarray of shape (n_snapshots,)
        Time :math:`t_j` of each column (NaN where none was given).
    sample : ndarray of shape (n_snapshots,)
        Sample (trajectory) id :math:`s_j` of each column (-1 where none was given).
    attrs : dict
        User attributes given at creation.
    schema_version : int
        Version of the on-disk layout.

    Notes
    -----
    One writer at a time: a writable handle (:meth:`create`, :meth:`open` in mode ``"a"``)
    holds an advisory lock ``<path>.lock`` on rank 0 until :meth:`close`; a second writable
    handle, from this or another process, is refused with a :class:`StoreError` naming the
    holder's host and pid (:meth:`break_lock` removes a stale lock). Readers never wait: they
    may run while a writer appends, and each sees the snapshots committed when it opened the
    store.
    """

    read_gap_rows: int = 1024
    """Scattered reads (:meth:`read` with ``keys=``): a gap of more than this many rows
    between wanted rows starts a new contiguous block (rows are read in blocks and selected
    in numpy, as h5py fancy indexing with many indices is slow)."""
    read_block_rows: int = 2**16
    """Scattered reads: at most this many rows per block read."""

    def __init__(self, _token: object = None) -> None:
        if _token is not _CONSTRUCT:
            raise TypeError("use SnapshotStore.create(...) or SnapshotStore.open(...)")
        self.path = Path()
        self._dir = Path()
        self._comm: MPI.Comm = MPI.COMM_SELF
        self._mode = "r"
        self._ix = IndexContents()
        self._owned: dict[str, slice | np.ndarray] = {}
        self._gather_pos: dict[str, np.ndarray] = {}  # rank 0, mode "a": rows in rank order
        self._gather_counts: dict[str, np.ndarray] = {}  # rank 0, mode "a": rows per rank
        self._n_local: dict[str, int] = {}
        self._handles: OrderedDict[str, h5py.File] = OrderedDict()
        self._closed = False
        self._lock: StoreLock | None = None  # rank 0 of a writable handle

    @classmethod
    def _new(cls, path: Path, comm: MPI.Comm, mode: str) -> SnapshotStore:
        store = cls(_CONSTRUCT)
        store.path = path
        store._dir = segments_dir(path)
        store._comm = comm
        store._mode = mode
        return store

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        fields: dict[str, np.ndarray] | np.ndarray,
        *,
        parameter_names: tuple[str, ...] | list[str] = (),
        comm: MPI.Comm | None = None,
        overwrite: bool = False,
        attrs: dict | None = None,
    ) -> SnapshotStore:
        """Create an empty store and return it open for appending (collective).

        Parameters
        ----------
        path : path-like
            The index file; the segments go to the sibling directory ``<path>.d``.
        fields : dict of str to ndarray of shape (n_local,), or ndarray
            For each field, the int64 keys of the rows this rank owns, in the order in which
            this rank will pass its rows to :meth:`append`. Keys must be unique over all ranks.
            A bare array means one field named ``"u"``.
        parameter_names : sequence of str, keyword-only
            Names of the parameters given with each column.
        comm : mpi4py communicator, optional
            Serial when ``None``.
        overwrite : bool, keyword-only
            Remove an existing index and ``.d`` directory first; otherwise an existing path
            is refused.
        attrs : dict, optional
            User attributes (HDF5-storable scalars, strings or small arrays).

        Raises
        ------
        ValueError
            Invalid or duplicate keys, invalid names (on every rank).
        StoreError
            Existing path without ``overwrite``, a store held by another writer (naming its
            host and pid; see Notes of the class), or a failed write.
        """
        comm = get_comm(comm)
        path = Path(path)
        keys, err = field_keys(path, fields)
        pnames = tuple(parameter_names)
        attrs = dict(attrs or {})
        err = err or metadata_error(pnames, attrs)
        if err is not None and not err.startswith(str(path)):
            err = f"{path}: {err}"
        err = check_same_fields(err, None if err else sorted(keys), comm)
        check_collective(err, comm)
        store = cls._new(path, comm, "a")
        store._take_lock(create=True)
        try:
            store._check_new(overwrite)
            ix = store._ix
            ix.fields = tuple(comm.bcast(tuple(keys) if comm.rank == 0 else None, root=0))
            ix.parameter_names = pnames
            ix.attrs = attrs
            ix.parameters = np.zeros((0, len(pnames)))
            ix.created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            store._gather_keys(keys)
            store._init_files(overwrite)
        except BaseException:
            store._release_lock()
            raise
        logger.debug("created %s with fields %s", path, store.fields)
        return store

    def _take_lock(self, create: bool) -> None:
        """Rank 0 takes the writer lock; its verdict reaches every rank (collective)."""
        err = None
        if self._comm.rank == 0 and (create or self.path.exists()):
            try:
                if create:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock = StoreLock(self.path).acquire()
            except StoreError as e:
                err = str(e)
            except OSError as e:
                err = f"{self.path}: could not lock the store for writing: {e}"
        check_collective(err, self._comm, StoreError)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_new(self, overwrite: bool) -> None:
        """Refuse an existing store unless ``overwrite`` (collective)."""
        err = None
        path, ddir = self.path, self._dir
        if self._comm.rank == 0 and (path.exists() or ddir.exists()) and not overwrite:
            which = path if path.exists() else ddir
            err = f"{which}: already exists (pass overwrite=True to replace the store)"
        check_collective(err, self._comm, StoreError)

    def _gather_keys(self, keys: dict[str, np.ndarray]) -> None:
        """Rank 0 gathers the keys, checks uniqueness and learns where each rank's rows go;
        every rank gets the sorted keys and its positions in them (collective)."""
        comm, err = self._comm, None
        for name in self.fields:
            gathered = comm.gather(keys[name], root=0)
            if comm.rank == 0:
                sk, pos, e = sorted_keys(self.path, name, gathered)
                err = err or e
                self._ix.keys[name] = sk
                self._gather_pos[name] = pos
                self._gather_counts[name] = np.array([g.size for g in gathered], np.int64)
        check_collective(err, comm)
        for name in self.fields:
            if comm.size > 1:
                self._ix.keys[name] = comm.bcast(self._ix.keys.get(name), root=0)
            self._n_local[name] = keys[name].size
            self._owned[name] = np.searchsorted(self._ix.keys[name], keys[name])

    def _init_files(self, overwrite: bool) -> None:
        """Rank 0 writes the directory, the layout and the first (empty) index."""
        err = None
        if self._comm.rank == 0:
            try:
                if overwrite:
                    if self._dir.exists():
                        shutil.rmtree(self._dir)
                    if self.path.exists() or self.path.is_symlink():
                        self.path.unlink()
                self._dir.mkdir(parents=True)
                write_layout(self.path, self.fields, self._ix.keys)
                self._commit_index()
            except Exception as e:
                err = f"{self.path}: could not create the store: {type(e).__name__}: {e}"
        check_collective(err, self._comm, StoreError)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        comm: MPI.Comm | None = None,
        keys: dict[str, np.ndarray] | np.ndarray | None = None,
    ) -> SnapshotStore:
        """Open an existing store (collective over ``comm``).

        Parameters
        ----------
        path : path-like
            The index file.
        mode : {"r", "a"}
            Read only, or read and append.
        comm : mpi4py communicator, optional
            Serial when ``None``.
        keys : dict of str to ndarray, or ndarray, optional
            This rank's owned-row keys per field, used by ``read(rows="owned")`` and, in mode
            ``"a"``, by :meth:`append` (then they must cover every key exactly once over the
            ranks). Fields not given default to a balanced contiguous block of the sorted rows
            (:func:`rom.parallel.row_range`).

        Raises
        ------
        StoreError
            Missing, foreign, truncated or newer-schema file; keys not found; in mode
            ``"a"``, a store held by another writer (naming its host and pid).
        """
        comm = get_comm(comm)
        path = Path(path)
        if mode not in ("r", "a"):
            raise StoreError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
        store = cls._new(path, comm, mode)
        if mode == "a":
            store._take_lock(create=False)
        try:
            err = None
            try:
                store._ix = read_index(path)
            except StoreError as e:
                err = str(e)
            check_collective(err, comm, StoreError)
            store._set_owned(keys)
            if mode == "a":
                store._gather_positions()
        except BaseException:
            store._release_lock()
            raise
        return store

    def _set_owned(self, keys: Any) -> None:
        """This rank's rows per field: the positions of ``keys`` or a balanced block."""
        err = None
        given: dict[str, np.ndarray] = {}
        try:
            kd = {} if keys is None else as_field_dict(keys, f"{self.path}: open", self.fields)
            for name, k in kd.items():
                if name not in self.fields:
                    raise StoreError(f"{self.path}: keys given for unknown field {name!r}")
                a, e = as_keys(k, name)
                if e is not None:
                    raise StoreError(f"{self.path}: {e}")
                given[name] = self._positions(name, a)
        except StoreError as e:
            err = str(e)
        check_collective(err, self._comm, StoreError)
        for name in self.fields:
            if name in given:
                self._owned[name] = given[name]
            else:
                start, stop = row_range(self._ix.keys[name].size, self._comm)
                self._owned[name] = slice(start, stop)
            self._n_local[name] = self._n_rows(self._owned[name])

    def _gather_positions(self) -> None:
        """Mode "a": rank 0 learns where each rank's rows go and checks that they cover every
        row exactly once (collective)."""
        comm, err = self._comm, None
        for name in self.fields:
            gathered = comm.gather(self._owned_array(name), root=0)
            if comm.rank != 0:
                continue
            pos = np.concatenate(gathered)
            n = self._ix.keys[name].size
            if err is None and (pos.size != n or np.bincount(pos, minlength=n).max(initial=0) > 1):
                err = (
                    f"{self.path}: to append, the ranks' keys of field {name!r} must cover "
                    f"all {n} rows exactly once (got {pos.size} keys"
                    f"{', with duplicates' if np.unique(pos).size < pos.size else ''})"
                )
            self._gather_pos[name] = pos
            self._gather_counts[name] = np.array([g.size for g in gathered], np.int64)
        check_collective(err, comm, StoreError)

    # ------------------------------------------------------------------ metadata (local)
    @property
    def fields(self) -> tuple[str, ...]:
        return self._ix.fields

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return self._ix.parameter_names

    @property
    def attrs(self) -> dict[str, Any]:
        return self._ix.attrs

    @property
    def schema_version(self) -> int:
        return self._ix.schema_version

    @property
    def n_snapshots(self) -> int:
        return self._ix.n_snapshots

    @property
    def parameters(self) -> np.ndarray:
        return self._ix.parameters.copy()

    @property
    def time(self) -> np.ndarray:
        return self._ix.time.copy()

    @property
    def sample(self) -> np.ndarray:
        return self._ix.sample.copy()

    @property
    def segments(self) -> tuple[tuple[str, int], ...]:
        """The committed segments as ``(file name, number of columns)``."""
        ix = self._ix
        return tuple(zip(ix.segments, (int(c) for c in ix.seg_cols), strict=True))

    def read_mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored ``(points, cells)``, or ``None`` when no mesh was written."""
        mesh = self._ix.mesh
        if mesh is None:
            return None
        return mesh[0].copy(), mesh[1].copy()

    def n_dofs(self, field: str | None = None) -> int:
        """Global number of rows of a field."""
        return int(self._ix.keys[self._field(field)].size)

    def keys(self, field: str | None = None) -> np.ndarray:
        """All keys of a field on disk, sorted, shape (n_dofs,)."""
        return self._ix.keys[self._field(field)].copy()

    # ------------------------------------------------------------------ reading (local)
    def read(
        self,
        field: str | None = None,
        *,
        columns: None | slice | np.ndarray = None,
        rows: str | slice = "owned",
        keys: np.ndarray | None = None,
        comm: MPI.Comm | None = None,
    ) -> np.ndarray:
        """Read a block of a snapshot matrix (local, or collective over ``comm``).

        Parameters
        ----------
        field : str, optional
            Field name; may be omitted when the store has one field.
        columns : None, slice or 1-D int array, keyword-only
            Snapshot indices (all when ``None``); any order, repetitions allowed.
        rows : {"owned", "all"} or slice, keyword-only
            ``"owned"``: this rank's keys given to :meth:`open` (or its balanced block of the
            sorted rows); ``"all"``: every row in key order; a slice of the sorted rows.
        keys : 1-D int array, optional
            Explicit row keys (overrides ``rows``); a missing key raises :class:`StoreError`.
        comm : mpi4py communicator, optional, keyword-only
            Make the call collective over ``comm`` (every rank of it calls ``read``, each for
            its own rows): an error found by any rank, e.g. a damaged segment holding rows of
            that rank only, raises the same :class:`StoreError` on every rank instead of
            leaving the others waiting in their next collective. One small ``allgather``.

        Returns
        -------
        ndarray of shape (n_rows_selected, n_columns)
            float64, rows in the order of the requested keys (sorted-key order otherwise).

        Raises
        ------
        StoreError
            Unknown field or key, a missing/corrupt segment (naming the segment file), or a
            NaN or Inf in the values read (naming the field, the snapshot, the row key and
            the segment file: append refuses them, so one on disk means a damaged segment).

        Notes
        -----
        Scattered rows are read as contiguous row blocks and selected in numpy: a gap of
        more than :attr:`read_gap_rows` rows starts a new block, and no block is longer than
        :attr:`read_block_rows` rows (class attributes).
        """
        return self._read_columns(field, columns, rows, keys, comm)

    def iter_columns(
        self,
        field: str | None = None,
        *,
        chunk: int = 64,
        rows: str | slice = "owned",
        keys: np.ndarray | None = None,
        columns: None | slice | np.ndarray = None,
        progress: bool = False,
        comm: MPI.Comm | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream column blocks from disk (local, or collective over ``comm``).

        Yields ``(column_indices, block)`` with ``block`` of shape (n_rows, <= chunk): only
        the requested rows of at most ``chunk`` columns are in memory at a time. Row and
        column selection, errors and ``comm`` as in :meth:`read`; with ``comm``, every rank
        of it iterates over the same columns with the same ``chunk`` (as a distributed
        compression does), and each block's verdict is shared before the block is yielded,
        so a damaged block raises on every rank before the consumer's next collective.
        ``progress=True`` shows a tqdm bar on rank 0 when stderr is a terminal (nothing in a
        log file or pipe).
        """
        return self._iter_columns(field, chunk, rows, keys, columns, progress, comm)

    def verify(self) -> None:
        """Check every committed segment: readable, expected shapes, finite values (local).

        Reads each segment in row blocks (bounded memory). Returns ``None``; raises
        :class:`StoreError` naming the first bad segment and the problem (for a NaN or Inf:
        the field, snapshot and row key, as :meth:`read`).
        """
        self._verify_segments()

    # ------------------------------------------------------------------ writing (collective)
    def append(
        self,
        values: dict[str, np.ndarray] | np.ndarray,
        *,
        parameters: np.ndarray | None = None,
        time: np.ndarray | None = None,
        sample: np.ndarray | None = None,
    ) -> None:
        """Append :math:`c` columns to every field and commit them (collective).

        Parameters
        ----------
        values : dict of str to ndarray of shape (n_local, c), or ndarray
            For every field, this rank's owned rows in the order of its keys. A bare array is
            the single field. All fields have the same ``c``; 1-D means ``c = 1``.
        parameters : ndarray of shape (c, p) or (p,), optional
            Parameters of the columns; ``(p,)`` is used for every column. Required when the
            store has parameter names. Rank 0's values are stored.
        time : ndarray of shape (c,), optional
            Times of the columns (NaN when not given).
        sample : ndarray of shape (c,) of int, optional
            Sample (trajectory) ids (-1 when not given).

        Raises
        ------
        ValueError
            NaN or Inf (naming field and column), shape mismatches; nothing is written.
        StoreError
            The store is open read-only, or writing failed (the previous commit stays valid).

        Notes
        -----
        Returns after the commit: the new columns survive a crash from then on.
        """
        self._append(values, parameters, time, sample)

    def extend(self, other: SnapshotStore) -> None:
        """Append every column of another store, with its parameters, times and sample ids
        (collective; the segment files are copied, not re-gathered).

        ``other`` (open on the same communicator, e.g. read-only) must have the same field
        names, the same row keys of every field and the same parameter names; otherwise a
        :class:`StoreError` says what differs and nothing is written.
        """
        self._extend(other)

    def write_mesh(self, points: np.ndarray, cells: np.ndarray) -> None:
        """Store the mesh geometry and topology in input order (collective; rank 0's arrays).

        Parameters
        ----------
        points : ndarray of shape (n_nodes, gdim)
            Node coordinates.
        cells : ndarray of shape (n_cells, n_vertices_per_cell) of int
            Cell-to-node connectivity (node indices into ``points``).
        """
        self._write_mesh(points, cells)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the open segment files (local). Further use raises :class:`StoreError`."""
        for f in self._handles.values():
            try:
                f.close()
            except Exception:
                logger.debug("error closing a segment of %s", self.path, exc_info=True)
        self._handles.clear()
        self._release_lock()
        self._closed = True

    @staticmethod
    def break_lock(path: str | os.PathLike, *, force: bool = False) -> str:
        """Remove the writer lock of a store whose writer is gone (local, not collective).

        A writable handle holds ``<path>.lock`` (an advisory ``flock`` with the holder's host
        and pid in the file) until it is closed; the kernel releases it when the holder dies,
        so a lock normally needs no breaking. On a network file system it may outlive a
        crashed node: this removes the file so that a new writer can start.

        Parameters
        ----------
        path : path-like
            The store's index file.
        force : bool, keyword-only
            Also break a lock recorded by another host (whose processes cannot be checked).

        Returns
        -------
        str
            One line saying what was done.

        Raises
        ------
        StoreError
            The holder is alive on this host, or runs on another host and ``force`` is false.
        """
        return break_lock(Path(path), force=force)

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SnapshotStore({str(self.path)!r}, mode={self._mode!r}, fields={self.fields}, "
            f"n_snapshots={self.n_snapshots})"
        )
