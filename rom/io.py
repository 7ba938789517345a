"""Crash-safe, partition-independent HDF5 snapshot store (``DESIGN.md`` section 3).

A store holds snapshot matrices :math:`X_f \\in \\mathbb{R}^{n_f \\times m}` (one column per
snapshot) for one or several fields :math:`f`, plus per-column parameters
:math:`\\mu_j \\in \\mathbb{R}^p`, times :math:`t_j` and sample (trajectory) ids :math:`s_j`.
Each row carries a partition-independent int64 key (e.g. input node index times block size
plus component); on disk the rows are sorted by key, so a store written with :math:`P` ranks
reads back identically with any :math:`Q` ranks.

Layout (see ``docs/hdf5-schema.md``)::

    run/thermal.h5                  index: small, rewritten completely at every commit
    run/thermal.h5.d/layout.h5      the sorted row keys of each field (written once)
    run/thermal.h5.d/seg-000001.h5  the values of append 1, (n_f, c_1) per field
    run/thermal.h5.d/seg-000002.h5  ...

Crash safety comes from write-new-then-rename: an append writes its segment to a temporary
name, fsyncs it and renames it; then it writes a complete new index to ``<path>.tmp``, fsyncs
it and renames it over ``<path>`` (the commit), and fsyncs the directory. A writer killed at
any moment leaves the previous index, and every segment it lists, intact. Segments are never
modified once listed. An orphan segment (written but never committed) is ignored and
overwritten by the next append.

Under MPI all writes happen on rank 0: at creation it gathers every rank's keys; at each
append it gathers the values (``Gatherv`` of float64 column blocks, bounded memory) and
writes them in key order. Reads are local: each rank opens the segments read-only and reads
the rows it needs (contiguous row blocks, selected in numpy). Errors found by one rank are
raised on every rank with the same message (:func:`rom.parallel.check_collective`).
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from mpi4py import MPI

from rom.parallel import check_collective, get_comm, row_range

__all__ = ["SnapshotStore", "StoreError", "SCHEMA_VERSION", "FORMAT"]

logger = logging.getLogger(__name__)

FORMAT = "rom-snapshot-store"
SEGMENT_FORMAT = "rom-snapshot-segment"
LAYOUT_FORMAT = "rom-snapshot-layout"
SCHEMA_VERSION = 1

_CHUNK_ELEMENTS = 2**19  # 4 MiB of float64 per chunk
_GATHER_ELEMENTS = 2**24  # rank 0 gathers at most 128 MiB per column block
_GAP_ROWS = 1024  # scattered reads: a gap wider than this starts a new row block
_BLOCK_ROWS = 2**16  # scattered reads: at most this many rows per block read
_MAX_OPEN_SEGMENTS = 64


class StoreError(ValueError):
    """A snapshot store is missing, foreign, corrupt, or used incorrectly.

    The message always names the file (and the dataset or segment) and the problem.
    """


def _fsync_path(path: Path | str, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # some file systems refuse to open directories
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:  # directory fsync is not supported everywhere
        if not directory:
            raise
    finally:
        os.close(fd)


def _library_version() -> str:
    rom = sys.modules.get("rom")
    return str(getattr(rom, "__version__", "unknown"))


def _segment_name(number: int) -> str:
    return f"seg-{number:06d}.h5"


def _as_field_dict(obj: Any, what: str, fields: tuple[str, ...] | None) -> dict[str, Any]:
    """Normalize ``{name: array}`` or a bare array (the single field) to a dict."""
    if isinstance(obj, dict):
        return dict(obj)
    if fields is None:
        return {"u": obj}
    if len(fields) != 1:
        raise StoreError(
            f"{what}: a bare array is ambiguous, the store has fields {fields}; pass a dict"
        )
    return {fields[0]: obj}


def _check_field_name(name: Any) -> str | None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return f"invalid field name {name!r} (a non-empty string without '/')"
    return None


def _as_keys(k: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    try:
        a = np.asarray(k)
    except (TypeError, ValueError) as e:
        return None, f"keys of field {name!r} are not an array: {e}"
    if a.ndim != 1:
        return None, f"keys of field {name!r} must be 1-D, got shape {a.shape}"
    if a.size and not np.issubdtype(a.dtype, np.integer):
        return None, f"keys of field {name!r} must be integers, got dtype {a.dtype}"
    return a.astype(np.int64), None


def _normalize_columns(columns: Any, n: int, where: str) -> np.ndarray:
    if columns is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(columns, slice):
        return np.arange(n, dtype=np.int64)[columns]
    c = np.asarray(columns)
    if c.ndim == 0:
        c = c.reshape(1)
    if c.ndim != 1 or (c.size and not np.issubdtype(c.dtype, np.integer)):
        raise StoreError(f"{where}: columns must be None, a slice or a 1-D integer array")
    c = c.astype(np.int64)
    if c.size and (c.min() < -n or c.max() >= n):
        raise StoreError(f"{where}: column index out of range for {n} snapshots")
    return np.where(c < 0, c + n, c)


class SnapshotStore:
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
    A single writer at a time: opening the same store in mode ``"a"`` from two jobs is not
    detected and the later commit wins. Readers may run while a writer appends; each reader
    sees the snapshots committed when it opened the store.
    """

    def __init__(self, _token: object = None) -> None:
        if _token is not _CONSTRUCT:
            raise TypeError("use SnapshotStore.create(...) or SnapshotStore.open(...)")
        self.path = Path()
        self._dir = Path()
        self._comm: MPI.Comm = MPI.COMM_SELF
        self._mode = "r"
        self.fields: tuple[str, ...] = ()
        self.parameter_names: tuple[str, ...] = ()
        self.schema_version = SCHEMA_VERSION
        self.attrs: dict[str, Any] = {}
        self._created = ""
        self._keys: dict[str, np.ndarray] = {}
        self._owned: dict[str, slice | np.ndarray] = {}
        self._gather_pos: dict[str, np.ndarray] = {}  # rank 0, mode "a": rows in rank order
        self._gather_counts: dict[str, np.ndarray] = {}  # rank 0, mode "a": rows per rank
        self._n_local: dict[str, int] = {}
        self._segments: list[str] = []
        self._seg_cols: np.ndarray = np.zeros(0, dtype=np.int64)
        self._parameters = np.zeros((0, 0))
        self._time = np.zeros(0)
        self._sample = np.zeros(0, dtype=np.int64)
        self._mesh: tuple[np.ndarray, np.ndarray] | None = None
        self._handles: OrderedDict[str, h5py.File] = OrderedDict()
        self._closed = False

    # ------------------------------------------------------------------ creation / opening
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
            Existing path without ``overwrite``, or a failed write.
        """
        comm = get_comm(comm)
        path = Path(path)
        err = None
        keys: dict[str, np.ndarray] = {}
        try:
            fdict = _as_field_dict(fields, f"{path}: create", None)
        except StoreError as e:
            fdict, err = {}, str(e)
        if err is None and not fdict:
            err = f"{path}: create needs at least one field"
        for name, k in fdict.items():
            err = err or _check_field_name(name)
            if err is None:
                a, err = _as_keys(k, name)
                if a is not None:
                    keys[name] = a
        pnames = tuple(parameter_names)
        if err is None and not all(isinstance(s, str) for s in pnames):
            err = f"parameter_names must be strings, got {pnames!r}"
        if err is None and len(set(pnames)) != len(pnames):
            err = f"parameter_names are not unique: {pnames!r}"
        attrs = dict(attrs or {})
        if err is None and not all(isinstance(s, str) and "/" not in s for s in attrs):
            err = "attrs keys must be strings without '/'"
        if err is not None and not err.startswith(str(path)):
            err = f"{path}: {err}"
        names = sorted(fdict) if err is None else None
        if comm.size > 1 and err is None:
            all_names = comm.allgather(names)
            if any(n != names for n in all_names):
                err = f"ranks pass different field names: {all_names}"
        elif comm.size > 1:
            comm.allgather(None)
        check_collective(err, comm)
        ddir = Path(str(path) + ".d")
        if comm.rank == 0 and (path.exists() or ddir.exists()) and not overwrite:
            which = path if path.exists() else ddir
            err = f"{which}: already exists (pass overwrite=True to replace the store)"
        check_collective(err, comm, StoreError)

        store = cls(_CONSTRUCT)
        store.path = path
        store._dir = Path(str(path) + ".d")
        store._comm = comm
        store._mode = "a"
        store.fields = tuple(fdict)  # rank 0's order is the file order
        store.fields = tuple(comm.bcast(store.fields if comm.rank == 0 else None, root=0))
        store.parameter_names = pnames
        store.attrs = attrs
        store._parameters = np.zeros((0, len(pnames)))
        store._created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

        # rank 0 gathers the keys, checks uniqueness, learns where each rank's rows go
        err = None
        for name in store.fields:
            local = keys[name]
            gathered = comm.gather(local, root=0)
            if comm.rank == 0:
                allk = np.concatenate(gathered) if gathered else np.zeros(0, np.int64)
                order = np.argsort(allk, kind="stable")
                sk = allk[order]
                dup = np.flatnonzero(sk[1:] == sk[:-1])
                if err is None and allk.size == 0:
                    err = f"{path}: field {name!r} has no rows on any rank"
                elif err is None and dup.size:
                    err = (
                        f"{path}: field {name!r} has duplicate keys over the ranks "
                        f"({dup.size} duplicates, first key {sk[dup[0]]})"
                    )
                store._keys[name] = sk
                pos = np.empty(allk.size, dtype=np.int64)
                pos[order] = np.arange(allk.size)
                store._gather_pos[name] = pos
                store._gather_counts[name] = np.array([g.size for g in gathered], np.int64)
        check_collective(err, comm)
        for name in store.fields:
            sk = comm.bcast(store._keys.get(name), root=0) if comm.size > 1 else store._keys[name]
            store._keys[name] = sk
            store._n_local[name] = keys[name].size
            store._owned[name] = np.searchsorted(sk, keys[name])

        err = None
        if comm.rank == 0:
            try:
                if overwrite:
                    if store._dir.exists():
                        shutil.rmtree(store._dir)
                    if path.exists() or path.is_symlink():
                        path.unlink()
                store._dir.mkdir(parents=True)
                store._write_layout()
                store._commit_index()
            except Exception as e:
                err = f"{path}: could not create the store: {type(e).__name__}: {e}"
        check_collective(err, comm, StoreError)
        logger.debug("created %s with fields %s", path, store.fields)
        return store

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
            Missing, foreign, truncated or newer-schema file; keys not found.
        """
        comm = get_comm(comm)
        path = Path(path)
        if mode not in ("r", "a"):
            raise StoreError(f"{path}: mode must be 'r' or 'a', got {mode!r}")
        store = cls(_CONSTRUCT)
        store.path = path
        store._dir = Path(str(path) + ".d")
        store._comm = comm
        store._mode = mode
        err = None
        try:
            store._load_index()
        except StoreError as e:
            err = str(e)
        check_collective(err, comm, StoreError)

        err = None
        given: dict[str, np.ndarray] = {}
        try:
            kd = {} if keys is None else _as_field_dict(keys, f"{path}: open", store.fields)
            for name, k in kd.items():
                if name not in store.fields:
                    raise StoreError(f"{path}: keys given for unknown field {name!r}")
                a, e = _as_keys(k, name)
                if e is not None:
                    raise StoreError(f"{path}: {e}")
                given[name] = store._positions(name, a)
        except StoreError as e:
            err = str(e)
        check_collective(err, comm, StoreError)
        for name in store.fields:
            if name in given:
                store._owned[name] = given[name]
            else:
                start, stop = row_range(store._keys[name].size, comm)
                store._owned[name] = slice(start, stop)
            store._n_local[name] = store._n_rows(name, store._owned[name])

        if mode == "a":
            err = None
            for name in store.fields:
                own = store._owned[name]
                if isinstance(own, slice):
                    own = np.arange(own.start, own.stop, dtype=np.int64)
                gathered = comm.gather(own, root=0)
                if comm.rank == 0:
                    pos = np.concatenate(gathered)
                    n = store._keys[name].size
                    if err is None and (
                        pos.size != n or np.bincount(pos, minlength=n).max(initial=0) > 1
                    ):
                        err = (
                            f"{path}: to append, the ranks' keys of field {name!r} must cover "
                            f"all {n} rows exactly once (got {pos.size} keys"
                            f"{', with duplicates' if np.unique(pos).size < pos.size else ''})"
                        )
                    store._gather_pos[name] = pos
                    store._gather_counts[name] = np.array([g.size for g in gathered], np.int64)
            check_collective(err, comm, StoreError)
        return store

    def _load_index(self) -> None:
        path = self.path
        if not path.exists():
            raise StoreError(f"{path}: no such file (snapshot store index)")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise StoreError(
                f"{path}: not a readable HDF5 file (not HDF5, truncated or corrupt): {e}"
            ) from None
        with f:
            try:
                fmt = f.attrs.get("format")
                version = int(f.attrs.get("schema_version", -1))
            except (OSError, RuntimeError, TypeError, ValueError) as e:
                raise StoreError(
                    f"{path}: corrupt HDF5 file (unreadable attributes): {e}"
                ) from None
            if isinstance(fmt, bytes):
                fmt = fmt.decode()
            if fmt != FORMAT:
                raise StoreError(
                    f"{path}: not a rom snapshot store (root attribute 'format' is {fmt!r}, "
                    f"expected {FORMAT!r})"
                )
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: schema_version {version} is newer than the supported "
                    f"{SCHEMA_VERSION}; upgrade the rom library"
                )
            if version < 1:
                raise StoreError(f"{path}: invalid schema_version {version}")
            try:
                self.schema_version = version
                self._created = str(f.attrs.get("created", ""))
                self.fields = tuple(
                    s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["fields"]
                )
                names = f["segments/names"][...]
                self._segments = [s.decode() if isinstance(s, bytes) else str(s) for s in names]
                self._seg_cols = np.asarray(f["segments/n_columns"][...], dtype=np.int64)
                self._parameters = np.asarray(f["parameters"][...], dtype=np.float64)
                self.parameter_names = tuple(
                    s.decode() if isinstance(s, bytes) else str(s)
                    for s in f["parameters"].attrs["names"]
                )
                self._time = np.asarray(f["time"][...], dtype=np.float64)
                self._sample = np.asarray(f["sample"][...], dtype=np.int64)
                self.attrs = {k: _from_h5(v) for k, v in f["attrs"].attrs.items()}
                if "mesh" in f:
                    self._mesh = (f["mesh/points"][...], f["mesh/cells"][...])
                n = int(f.attrs["n_snapshots"])
            except (KeyError, OSError, RuntimeError, TypeError, ValueError) as e:
                raise StoreError(f"{path}: corrupt snapshot store index: {e}") from None
        p = len(self.parameter_names)
        if (
            len(self._segments) != self._seg_cols.size
            or int(self._seg_cols.sum()) != n
            or self._parameters.shape != (n, p)
            or self._time.shape != (n,)
            or self._sample.shape != (n,)
        ):
            raise StoreError(f"{path}: corrupt snapshot store index (inconsistent sizes)")
        layout = self._dir / "layout.h5"
        if not layout.exists():
            raise StoreError(f"{path}: missing layout file {layout}")
        try:
            with h5py.File(layout, "r") as g:
                for name in self.fields:
                    self._keys[name] = np.asarray(g[f"fields/{name}/keys"][...], dtype=np.int64)
        except (OSError, KeyError) as e:
            raise StoreError(f"{layout}: unreadable or incomplete layout file: {e}") from None
        for name in self.fields:
            k = self._keys[name]
            if k.size == 0 or np.any(k[1:] <= k[:-1]):
                raise StoreError(f"{layout}: keys of field {name!r} are not sorted and unique")

    # ------------------------------------------------------------------ writing (rank 0)
    def _write_layout(self) -> None:
        final = self._dir / "layout.h5"
        tmp = self._dir / "layout.h5.tmp"
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = LAYOUT_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            for name in self.fields:
                f.create_dataset(f"fields/{name}/keys", data=self._keys[name])
        _fsync_path(tmp)
        os.replace(tmp, final)
        _fsync_path(self._dir, directory=True)

    def _commit_index(self) -> None:
        """Write a complete index to ``<path>.tmp`` and rename it over ``<path>``."""
        tmp = Path(str(self.path) + ".tmp")
        rel = os.path.basename(self._dir)
        n = self.n_snapshots
        offsets = np.concatenate([[0], np.cumsum(self._seg_cols)]).astype(np.int64)
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created"] = self._created
            f.attrs["library_version"] = _library_version()
            f.attrs["n_snapshots"] = n
            f.attrs["fields"] = np.array(self.fields, dtype=h5py.string_dtype())
            for name in self.fields:
                nd = self._keys[name].size
                g = f.create_group(f"fields/{name}")
                _virtual_columns(
                    g,
                    "values",
                    nd,
                    [f"{rel}/{seg}" for seg in self._segments],
                    f"fields/{name}/values",
                    offsets,
                )
                kl = h5py.VirtualLayout(shape=(nd,), dtype=np.int64)
                kl[:] = h5py.VirtualSource(
                    f"{rel}/layout.h5", f"fields/{name}/keys", shape=(nd,), dtype=np.int64
                )
                g.create_virtual_dataset("keys", kl)
            ds = f.create_dataset(
                "parameters", data=self._parameters.reshape(n, len(self.parameter_names))
            )
            ds.attrs["names"] = np.array(self.parameter_names, dtype=h5py.string_dtype())
            f.create_dataset("time", data=self._time)
            f.create_dataset("sample", data=self._sample)
            seg = f.create_group("segments")
            seg.create_dataset("names", data=np.array(self._segments, dtype=h5py.string_dtype()))
            seg.create_dataset("n_columns", data=self._seg_cols.astype(np.int64))
            ua = f.create_group("attrs")
            for k, v in self.attrs.items():
                ua.attrs[k] = v
            if self._mesh is not None:
                f.create_dataset("mesh/points", data=self._mesh[0])
                f.create_dataset("mesh/cells", data=self._mesh[1])
        _fsync_path(tmp)
        os.replace(tmp, self.path)  # the commit
        _fsync_path(self.path.parent, directory=True)

    # ------------------------------------------------------------------ append
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
        comm = self._comm
        err = None
        c = -1
        try:
            self._check_open()
            if self._mode != "a":
                raise StoreError(f"{self.path}: store is open read-only (mode 'r'); cannot append")
            vd = _as_field_dict(values, f"{self.path}: append", self.fields)
            if set(vd) != set(self.fields):
                raise ValueError(
                    f"{self.path}: append needs exactly the fields {self.fields}, got {tuple(vd)}"
                )
            arrays = {}
            for name in self.fields:
                a = np.asarray(vd[name])
                if a.ndim == 1:
                    a = a[:, None]
                if a.ndim != 2 or np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
                    raise ValueError(
                        f"{self.path}: values of field {name!r} must be a real 2-D array, "
                        f"got shape {a.shape} dtype {a.dtype}"
                    )
                if a.shape[0] != self._n_local[name]:
                    raise ValueError(
                        f"{self.path}: values of field {name!r} have {a.shape[0]} rows on this "
                        f"rank, expected {self._n_local[name]} (one per owned key)"
                    )
                if c < 0:
                    c = a.shape[1]
                elif a.shape[1] != c:
                    raise ValueError(
                        f"{self.path}: fields have different numbers of columns "
                        f"({self.fields[0]!r}: {c}, {name!r}: {a.shape[1]})"
                    )
                a = np.ascontiguousarray(a, dtype=np.float64)
                bad = ~np.isfinite(a)
                if bad.any():
                    j = int(np.flatnonzero(bad.any(axis=0))[0])
                    raise ValueError(
                        f"{self.path}: NaN or Inf in field {name!r}, column {j} of this append "
                        f"(snapshot {self.n_snapshots + j}); nothing written"
                    )
                arrays[name] = a
            if c == 0:
                raise ValueError(f"{self.path}: append needs at least one column")
            params, tvec, svec = self._check_metadata(c, parameters, time, sample)
        except ValueError as e:  # StoreError included
            err, exc_type = str(e), type(e)
        else:
            exc_type = ValueError
        if comm.size > 1:
            verdicts = comm.allgather((err, c, exc_type is StoreError))
            errs = [(r, v) for r, v in enumerate(verdicts) if v[0] is not None]
            if errs:
                r, (msg, _, is_store) = errs[0]
                raise (StoreError if is_store else ValueError)(
                    f"{msg} (reported by rank {r} of {comm.size})"
                )
            cs = {v[1] for v in verdicts}
            if len(cs) > 1:
                raise ValueError(
                    f"{self.path}: ranks append different numbers of columns: "
                    f"{[v[1] for v in verdicts]}"
                )
        elif err is not None:
            raise exc_type(err)

        if comm.size > 1:
            params, tvec, svec = comm.bcast((params, tvec, svec) if comm.rank == 0 else None)
        number = self._next_segment_number()
        seg_name = _segment_name(number)
        werr = None
        f = None
        tmp = self._dir / (seg_name + ".tmp")
        if comm.rank == 0:
            try:
                f = h5py.File(tmp, "w")
                f.attrs["format"] = SEGMENT_FORMAT
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["number"] = number
                f.create_dataset("parameters", data=params)
                f.create_dataset("time", data=tvec)
                f.create_dataset("sample", data=svec)
            except Exception as e:
                werr = f"{tmp}: could not write segment: {type(e).__name__}: {e}"
        for name in self.fields:
            werr = self._gather_write(f, name, arrays[name], c, werr)
        if comm.rank == 0 and werr is None:
            try:
                f.close()
                f = None
                _fsync_path(tmp)
                os.replace(tmp, self._dir / seg_name)
                _fsync_path(self._dir, directory=True)
                self._segments.append(seg_name)
                self._seg_cols = np.append(self._seg_cols, c).astype(np.int64)
                self._parameters = np.concatenate([self._parameters, params])
                self._time = np.concatenate([self._time, tvec])
                self._sample = np.concatenate([self._sample, svec])
                self._commit_index()
            except Exception as e:
                werr = f"{self.path}: could not commit {seg_name}: {type(e).__name__}: {e}"
                self._reload_after_failure()
        if f is not None:  # a failed write: drop the temporary segment
            try:
                f.close()
                tmp.unlink()
            except Exception:
                logger.debug("could not remove %s", tmp, exc_info=True)
        check_collective(werr, comm, StoreError)
        if comm.rank != 0:
            self._segments.append(seg_name)
            self._seg_cols = np.append(self._seg_cols, c).astype(np.int64)
            self._parameters = np.concatenate([self._parameters, params])
            self._time = np.concatenate([self._time, tvec])
            self._sample = np.concatenate([self._sample, svec])
        logger.debug("%s: committed %s (%d columns)", self.path, seg_name, c)

    def _reload_after_failure(self) -> None:
        """Reset the in-memory state to the committed index after a failed commit."""
        try:
            self._load_index()
        except StoreError:
            logger.exception("%s: could not re-read the index after a failed commit", self.path)

    def _check_metadata(
        self, c: int, parameters: Any, time: Any, sample: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = len(self.parameter_names)
        where = f"{self.path}: append"
        if parameters is None:
            if p:
                raise ValueError(f"{where}: parameters are required (names {self.parameter_names})")
            params = np.zeros((c, 0))
        else:
            params = np.asarray(parameters, dtype=np.float64)
            if params.ndim == 1 and params.shape == (p,):
                params = np.broadcast_to(params, (c, p)).copy()
            if params.shape != (c, p):
                raise ValueError(
                    f"{where}: parameters must have shape ({c}, {p}) or ({p},), "
                    f"got {np.shape(parameters)}"
                )
            if not np.all(np.isfinite(params)):
                raise ValueError(f"{where}: parameters contain NaN or Inf")
        if time is None:
            tvec = np.full(c, np.nan)
        else:
            tvec = np.asarray(time, dtype=np.float64).reshape(-1)
            if tvec.shape != (c,):
                raise ValueError(f"{where}: time must have shape ({c},), got {np.shape(time)}")
            if not np.all(np.isfinite(tvec)):
                raise ValueError(f"{where}: time contains NaN or Inf")
        if sample is None:
            svec = np.full(c, -1, dtype=np.int64)
        else:
            s = np.asarray(sample).reshape(-1)
            if s.shape != (c,) or (s.size and not np.issubdtype(s.dtype, np.integer)):
                raise ValueError(
                    f"{where}: sample must be integers of shape ({c},), got {np.shape(sample)}"
                )
            svec = s.astype(np.int64)
        return params, tvec, svec

    def _next_segment_number(self) -> int:
        if not self._segments:
            return 1
        return int(self._segments[-1][4:10]) + 1

    def _gather_write(
        self, f: h5py.File | None, name: str, a: np.ndarray, c: int, werr: str | None
    ) -> str | None:
        """Gather ``a`` (this rank's rows) on rank 0 and write it in key order.

        Every rank takes part in every Gatherv even after rank 0 failed to write, so that
        the error is reported collectively afterwards instead of leaving ranks waiting.
        """
        comm = self._comm
        nd = self._keys[name].size
        ds = None
        if comm.rank == 0 and werr is None:
            try:
                chunks = (max(1, min(nd, _CHUNK_ELEMENTS // c)), c)
                ds = f.create_dataset(
                    f"fields/{name}/values", shape=(nd, c), dtype=np.float64, chunks=chunks
                )
            except Exception as e:
                werr = f"{f.filename}: could not create fields/{name}/values: {e}"
        step = max(1, _GATHER_ELEMENTS // max(nd, 1))
        for j0 in range(0, c, step):
            j1 = min(c, j0 + step)
            send = np.ascontiguousarray(a[:, j0:j1])
            if comm.size == 1:
                buf = send
            elif comm.rank == 0:
                counts = [int(k) * (j1 - j0) for k in self._gather_counts[name]]
                displs = [0, *np.cumsum(counts)[:-1].tolist()]
                buf = np.empty((nd, j1 - j0))
                comm.Gatherv(send, [buf, counts, displs, MPI.DOUBLE], root=0)
            else:
                comm.Gatherv(send, None, root=0)
            if comm.rank == 0 and ds is not None:
                try:
                    out = np.empty((nd, j1 - j0))
                    pos = self._gather_pos[name] if comm.size > 1 else self._owned_array(name)
                    out[pos] = buf
                    ds[:, j0:j1] = out
                except Exception as e:
                    werr = f"{f.filename}: could not write fields/{name}/values: {e}"
                    ds = None
        return werr

    # ------------------------------------------------------------------ mesh
    def write_mesh(self, points: np.ndarray, cells: np.ndarray) -> None:
        """Store the mesh geometry and topology in input order (collective; rank 0's arrays).

        Parameters
        ----------
        points : ndarray of shape (n_nodes, gdim)
            Node coordinates.
        cells : ndarray of shape (n_cells, n_vertices_per_cell) of int
            Cell-to-node connectivity (node indices into ``points``).
        """
        comm = self._comm
        err = None
        pts = cls_ = None
        if comm.rank == 0:
            try:
                self._check_open()
                if self._mode != "a":
                    raise StoreError(f"{self.path}: store is open read-only; cannot write mesh")
                pts = np.asarray(points, dtype=np.float64)
                cls_ = np.asarray(cells)
                if pts.ndim != 2 or not np.all(np.isfinite(pts)):
                    raise ValueError(f"{self.path}: mesh points must be a finite 2-D array")
                if cls_.ndim != 2 or (cls_.size and not np.issubdtype(cls_.dtype, np.integer)):
                    raise ValueError(f"{self.path}: mesh cells must be a 2-D integer array")
                cls_ = cls_.astype(np.int64)
                if cls_.size and (cls_.min() < 0 or cls_.max() >= pts.shape[0]):
                    raise ValueError(f"{self.path}: mesh cells refer to missing points")
                self._mesh = (pts, cls_)
                self._commit_index()
            except ValueError as e:
                err = str(e)
            except Exception as e:
                err = f"{self.path}: could not write the mesh: {type(e).__name__}: {e}"
        check_collective(err, comm, StoreError)
        if comm.size > 1:
            self._mesh = comm.bcast(self._mesh, root=0)

    def read_mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored ``(points, cells)``, or ``None`` when no mesh was written."""
        if self._mesh is None:
            return None
        return self._mesh[0].copy(), self._mesh[1].copy()

    # ------------------------------------------------------------------ read side
    @property
    def n_snapshots(self) -> int:
        return int(self._seg_cols.sum())

    @property
    def parameters(self) -> np.ndarray:
        return self._parameters.copy()

    @property
    def time(self) -> np.ndarray:
        return self._time.copy()

    @property
    def sample(self) -> np.ndarray:
        return self._sample.copy()

    @property
    def segments(self) -> tuple[tuple[str, int], ...]:
        """The committed segments as ``(file name, number of columns)``."""
        return tuple(zip(self._segments, (int(c) for c in self._seg_cols), strict=True))

    def _field(self, field: str | None) -> str:
        if field is None:
            if len(self.fields) == 1:
                return self.fields[0]
            raise StoreError(f"{self.path}: store has fields {self.fields}; pass field=")
        if field not in self.fields:
            raise StoreError(f"{self.path}: no field {field!r} (fields: {self.fields})")
        return field

    def n_dofs(self, field: str | None = None) -> int:
        """Global number of rows of a field."""
        return int(self._keys[self._field(field)].size)

    def keys(self, field: str | None = None) -> np.ndarray:
        """All keys of a field on disk, sorted, shape (n_dofs,)."""
        return self._keys[self._field(field)].copy()

    def _positions(self, name: str, keys: np.ndarray) -> np.ndarray:
        sk = self._keys[name]
        pos = np.searchsorted(sk, keys)
        pos_c = np.minimum(pos, sk.size - 1)
        missing = sk[pos_c] != keys
        if missing.any():
            raise StoreError(
                f"{self.path}: {int(missing.sum())} keys not found in field {name!r} "
                f"(first: {keys[missing][0]})"
            )
        return pos_c.astype(np.int64)

    def _owned_array(self, name: str) -> np.ndarray:
        own = self._owned[name]
        if isinstance(own, slice):
            return np.arange(own.start, own.stop, dtype=np.int64)
        return own

    @staticmethod
    def _n_rows(name: str, sel: slice | np.ndarray) -> int:
        return sel.stop - sel.start if isinstance(sel, slice) else int(sel.size)

    def _row_selection(self, name: str, rows: Any, keys: Any) -> slice | np.ndarray:
        if keys is not None:
            a, e = _as_keys(keys, name)
            if e is not None:
                raise StoreError(f"{self.path}: {e}")
            return self._positions(name, a)
        n = self._keys[name].size
        if isinstance(rows, str) and rows == "owned":
            return self._owned[name]
        if isinstance(rows, str) and rows == "all":
            return slice(0, n)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                return slice(start, max(start, stop))
            return np.arange(start, stop, step, dtype=np.int64)
        raise StoreError(f"{self.path}: rows must be 'owned', 'all' or a slice, got {rows!r}")

    def _segment(self, s: int) -> h5py.File:
        name = self._segments[s]
        f = self._handles.get(name)
        if f is not None:
            self._handles.move_to_end(name)
            return f
        p = self._dir / name
        if not p.exists():
            raise StoreError(f"{self.path}: segment {p} is missing")
        try:
            f = h5py.File(p, "r")
        except OSError as e:
            raise StoreError(
                f"{self.path}: segment {p} is not a readable HDF5 file (truncated or corrupt): {e}"
            ) from None
        self._handles[name] = f
        if len(self._handles) > _MAX_OPEN_SEGMENTS:
            self._handles.popitem(last=False)[1].close()
        return f

    def _dataset(self, s: int, name: str) -> h5py.Dataset:
        f = self._segment(s)
        expect = (self._keys[name].size, int(self._seg_cols[s]))
        try:
            ds = f[f"fields/{name}/values"]
        except KeyError:
            raise StoreError(
                f"{self.path}: segment {f.filename} has no dataset fields/{name}/values"
            ) from None
        if ds.shape != expect:
            raise StoreError(
                f"{self.path}: segment {f.filename} dataset fields/{name}/values has shape "
                f"{ds.shape}, expected {expect}"
            )
        return ds

    def _read_segment(
        self, s: int, name: str, rowsel: slice | np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """Rows ``rowsel`` and local columns ``cols`` of segment ``s`` (in requested order)."""
        ds = self._dataset(s, name)
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        lc = slice(None) if np.array_equal(cols, np.arange(c0, c1)) else cols - c0
        try:
            if isinstance(rowsel, slice):
                if rowsel.stop <= rowsel.start:
                    return np.empty((0, cols.size))
                return ds[rowsel.start : rowsel.stop, c0:c1][:, lc]
            if rowsel.size == 0:
                return np.empty((0, cols.size))
            # contiguous row blocks covering the wanted rows (a new block at every gap wider
            # than _GAP_ROWS and every _BLOCK_ROWS boundary), selected in numpy: h5py fancy
            # indexing with many indices is slow
            u, inv = np.unique(rowsel, return_inverse=True)
            buf = np.empty((u.size, cols.size))
            d = np.diff(u)
            breaks = np.flatnonzero((d > _GAP_ROWS) | (np.diff(u // _BLOCK_ROWS) != 0)) + 1
            bounds = np.concatenate([[0], breaks, [u.size]])
            for i0, i1 in zip(bounds[:-1], bounds[1:], strict=True):
                a, b = int(u[i0]), int(u[i1 - 1]) + 1
                block = ds[a:b, c0:c1]
                buf[i0:i1] = block[u[i0:i1] - a][:, lc]
            return buf[inv.reshape(-1)]
        except OSError as e:
            raise StoreError(
                f"{self.path}: segment {ds.file.filename} fields/{name}/values is unreadable "
                f"(truncated or corrupt): {e}"
            ) from None

    def read(
        self,
        field: str | None = None,
        *,
        columns: None | slice | np.ndarray = None,
        rows: str | slice = "owned",
        keys: np.ndarray | None = None,
    ) -> np.ndarray:
        """Read a block of a snapshot matrix (local, not collective).

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

        Returns
        -------
        ndarray of shape (n_rows_selected, n_columns)
            float64, rows in the order of the requested keys (sorted-key order otherwise).

        Raises
        ------
        StoreError
            Unknown field or key, or a missing/corrupt segment (naming the segment file).
        """
        self._check_open()
        name = self._field(field)
        rowsel = self._row_selection(name, rows, keys)
        cols = _normalize_columns(columns, self.n_snapshots, f"{self.path}: read")
        return self._read(name, rowsel, cols)

    def _read(self, name: str, rowsel: slice | np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty((self._n_rows(name, rowsel), cols.size))
        if cols.size == 0:
            return out
        offsets = np.concatenate([[0], np.cumsum(self._seg_cols)])
        seg = np.searchsorted(offsets, cols, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            if where[-1] - where[0] + 1 == where.size:  # contiguous output columns
                where = slice(int(where[0]), int(where[-1]) + 1)
            out[:, where] = self._read_segment(int(s), name, rowsel, cols[where] - offsets[s])
        return out

    def iter_columns(
        self,
        field: str | None = None,
        *,
        chunk: int = 64,
        rows: str | slice = "owned",
        keys: np.ndarray | None = None,
        columns: None | slice | np.ndarray = None,
        progress: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream column blocks from disk (local, not collective).

        Yields ``(column_indices, block)`` with ``block`` of shape (n_rows, <= chunk): only
        the requested rows of at most ``chunk`` columns are in memory at a time. Row and
        column selection as in :meth:`read`. ``progress=True`` shows a tqdm bar on rank 0
        when stderr is a terminal (nothing in a log file or pipe).
        """
        self._check_open()
        if not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise StoreError(f"{self.path}: chunk must be a positive integer, got {chunk!r}")
        name = self._field(field)
        rowsel = self._row_selection(name, rows, keys)
        cols = _normalize_columns(columns, self.n_snapshots, f"{self.path}: iter_columns")
        return self._iter(name, rowsel, cols, int(chunk), progress)

    def _iter(
        self, name: str, rowsel: slice | np.ndarray, cols: np.ndarray, chunk: int, progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        bar = None
        if progress and self._comm.rank == 0 and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                bar = tqdm(total=cols.size, unit="col", desc=self.path.name)
            except ImportError:
                bar = None
        try:
            for j in range(0, cols.size, chunk):
                cj = cols[j : j + chunk]
                block = self._read(name, rowsel, cj)
                if bar is not None:
                    bar.update(cj.size)
                yield cj.copy(), block
        finally:
            if bar is not None:
                bar.close()

    def verify(self) -> None:
        """Check every committed segment: readable, expected shapes, finite values (local).

        Reads each segment in row blocks (bounded memory). Returns ``None``; raises
        :class:`StoreError` naming the first bad segment and the problem.
        """
        self._check_open()
        for s, seg in enumerate(self._segments):
            c = int(self._seg_cols[s])
            f = self._segment(s)
            try:
                for key, shape in (("time", (c,)), ("sample", (c,))):
                    if key not in f or f[key].shape != shape:
                        raise StoreError(
                            f"{self.path}: segment {f.filename} dataset {key} is missing or "
                            f"has the wrong shape"
                        )
                for name in self.fields:
                    ds = self._dataset(s, name)
                    nd = ds.shape[0]
                    step = max(1, _CHUNK_ELEMENTS // max(c, 1))
                    for r0 in range(0, nd, step):
                        block = ds[r0 : min(nd, r0 + step), :]
                        if not np.all(np.isfinite(block)):
                            raise StoreError(
                                f"{self.path}: segment {f.filename} fields/{name}/values "
                                f"contains NaN or Inf"
                            )
            except OSError as e:
                raise StoreError(
                    f"{self.path}: segment {self._dir / seg} is unreadable (truncated or "
                    f"corrupt): {e}"
                ) from None

    # ------------------------------------------------------------------ lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    def close(self) -> None:
        """Close the open segment files (local). Further use raises :class:`StoreError`."""
        for f in self._handles.values():
            try:
                f.close()
            except Exception:
                logger.debug("error closing a segment of %s", self.path, exc_info=True)
        self._handles.clear()
        self._closed = True

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SnapshotStore({str(self.path)!r}, mode={self._mode!r}, fields={self.fields}, "
            f"n_snapshots={self.n_snapshots})"
        )


_CONSTRUCT = object()


def _virtual_columns(
    group: h5py.Group, name: str, n_rows: int, files: list[str], dset: str, offsets: np.ndarray
) -> None:
    """Create a float64 virtual dataset (n_rows, offsets[-1]) whose column block
    ``offsets[s]:offsets[s+1]`` maps dataset ``dset`` of ``files[s]``; fill value NaN.

    Uses the low-level API: the high-level ``VirtualLayout`` costs several times more per
    source, and the index (one source per segment) is rewritten at every commit.
    """
    n = int(offsets[-1])
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.array(np.nan))
    vspace = h5py.h5s.create_simple((n_rows, n))
    for s, fname in enumerate(files):
        c = int(offsets[s + 1] - offsets[s])
        vspace.select_hyperslab((0, int(offsets[s])), (n_rows, c))
        src = h5py.h5s.create_simple((n_rows, c))
        dcpl.set_virtual(vspace, fname.encode(), dset.encode(), src)
    vspace.select_all()
    h5py.h5d.create(group.id, name.encode(), h5py.h5t.IEEE_F64LE, vspace, dcpl=dcpl)


def _from_h5(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind == "O":
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v
