"""The read side of :class:`rom.io.SnapshotStore`: row and column selection, segment files,
streaming, verification (all local, nothing collective)."""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from mpi4py import MPI

from rom.parallel import check_collective

from ._format import CHUNK_ELEMENTS
from ._format import MAX_OPEN_SEGMENTS
from ._format import StoreError
from ._format import as_keys
from ._format import normalize_columns
from ._index import IndexContents

__all__ = ["StoreReading", "row_blocks"]

logger = logging.getLogger("rom.io")


def row_blocks(rows: np.ndarray, gap_rows: int, block_rows: int) -> np.ndarray:
    """Bounds ``[0, b_1, ..., len(rows)]`` of runs of sorted unique ``rows`` to read as
    contiguous blocks: a new block at every gap wider than ``gap_rows`` and at every multiple
    of ``block_rows``."""
    d = np.diff(rows)
    breaks = np.flatnonzero((d > gap_rows) | (np.diff(rows // block_rows) != 0)) + 1
    return np.concatenate([[0], breaks, [rows.size]])


def _agreed(fn: Callable[[], Any], comm: Any) -> Any:
    """``fn()``; with a ``comm``, a ``StoreError`` it raises on one rank is raised on every rank
    (collective: every rank calls), without one it propagates as is."""
    out, err = None, None
    try:
        out = fn()
    except StoreError as e:
        if comm is None:
            raise
        err = str(e)
    if comm is not None:
        check_collective(err, comm, StoreError)
    return out


class StoreReading:
    """The reading of :class:`rom.io.SnapshotStore` (a private base class: the public methods,
    with their documentation, are the store's)."""

    read_gap_rows: int  # class attributes of SnapshotStore
    read_block_rows: int

    path: Path
    _dir: Path
    _comm: MPI.Comm
    _ix: IndexContents
    _owned: dict[str, slice | np.ndarray]
    _handles: OrderedDict[str, h5py.File]
    _closed: bool

    def _field(self, field: str | None) -> str:
        if field is None:
            if len(self._ix.fields) == 1:
                return self._ix.fields[0]
            raise StoreError(f"{self.path}: store has fields {self._ix.fields}; pass field=")
        if field not in self._ix.fields:
            raise StoreError(f"{self.path}: no field {field!r} (fields: {self._ix.fields})")
        return field

    # ------------------------------------------------------------------ row selection
    def _positions(self, name: str, keys: np.ndarray) -> np.ndarray:
        sk = self._ix.keys[name]
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
    def _n_rows(sel: slice | np.ndarray) -> int:
        return sel.stop - sel.start if isinstance(sel, slice) else int(sel.size)

    def _row_selection(self, name: str, rows: Any, keys: Any) -> slice | np.ndarray:
        if keys is not None:
            a, e = as_keys(keys, name)
            if e is not None:
                raise StoreError(f"{self.path}: {e}")
            return self._positions(name, a)
        n = self._ix.keys[name].size
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

    # ------------------------------------------------------------------ segment files
    def _segment(self, s: int) -> h5py.File:
        name = self._ix.segments[s]
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
                f"{self.path}: segment {p} is not a readable HDF5 file (truncated or corrupt): "
                f"{' '.join(str(e).split())}"
            ) from None
        self._handles[name] = f
        if len(self._handles) > MAX_OPEN_SEGMENTS:
            self._handles.popitem(last=False)[1].close()
        return f

    def _dataset(self, s: int, name: str) -> h5py.Dataset:
        f = self._segment(s)
        expect = (self._ix.keys[name].size, int(self._ix.seg_cols[s]))
        try:
            ds = f[f"fields/{name}/values"]
        except KeyError:
            raise StoreError(
                f"{self.path}: segment {f.filename} has no dataset fields/{name}/values"
            ) from None
        except (OSError, RuntimeError) as e:
            raise StoreError(
                f"{self.path}: segment {f.filename} is unreadable (truncated or corrupt): "
                f"{' '.join(str(e).split())}"
            ) from None
        if not isinstance(ds, h5py.Dataset) or ds.shape != expect:
            raise StoreError(
                f"{self.path}: segment {f.filename} dataset fields/{name}/values has shape "
                f"{getattr(ds, 'shape', None)}, expected {expect}"
            )
        return ds

    def _read_scattered(
        self, ds: h5py.Dataset, rowsel: np.ndarray, c0: int, c1: int, lc: Any
    ) -> np.ndarray:
        """Rows ``rowsel`` (any order, repetitions allowed) of columns ``c0:c1`` then ``lc``,
        read as contiguous row blocks (:func:`row_blocks`) and selected in numpy."""
        u, inv = np.unique(rowsel, return_inverse=True)
        n_cols = c1 - c0 if isinstance(lc, slice) else len(lc)
        buf = np.empty((u.size, n_cols))
        bounds = row_blocks(u, self.read_gap_rows, self.read_block_rows)
        for i0, i1 in zip(bounds[:-1], bounds[1:], strict=True):
            a, b = int(u[i0]), int(u[i1 - 1]) + 1
            block = ds[a:b, c0:c1]
            buf[i0:i1] = block[u[i0:i1] - a][:, lc]
        return buf[inv.reshape(-1)]

    def _read_segment(
        self, s: int, name: str, rowsel: slice | np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """Rows ``rowsel`` and local columns ``cols`` of segment ``s`` (in requested order)."""
        ds = self._dataset(s, name)
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        lc = slice(None) if np.array_equal(cols, np.arange(c0, c1)) else cols - c0
        if self._n_rows(rowsel) <= 0:
            return np.empty((0, cols.size))
        try:
            if isinstance(rowsel, slice):
                return ds[rowsel.start : rowsel.stop, c0:c1][:, lc]
            return self._read_scattered(ds, rowsel, c0, c1, lc)
        except (OSError, RuntimeError) as e:  # h5py reports damaged chunks as either
            raise StoreError(
                f"{self.path}: segment {ds.file.filename} fields/{name}/values is unreadable "
                f"(truncated or corrupt): {e}"
            ) from None

    # ------------------------------------------------------------------ reading
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    def _read_columns(
        self, field: str | None, columns: Any, rows: Any, keys: Any, comm: Any = None
    ) -> np.ndarray:
        """:meth:`SnapshotStore.read <rom.io.SnapshotStore.read>`."""

        def read() -> np.ndarray:
            self._check_open()
            name = self._field(field)
            rowsel = self._row_selection(name, rows, keys)
            cols = normalize_columns(columns, self._ix.n_snapshots, f"{self.path}: read")
            return self._read(name, rowsel, cols)

        return _agreed(read, comm)

    def _read(self, name: str, rowsel: slice | np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Rows ``rowsel`` of columns ``cols`` (global snapshot indices, any order); every
        value read is checked to be finite (append refuses NaN and Inf, so one on disk means
        a damaged segment)."""
        out = np.empty((self._n_rows(rowsel), cols.size))
        if cols.size == 0:
            return out
        offsets = np.concatenate([[0], np.cumsum(self._ix.seg_cols)])
        seg = np.searchsorted(offsets, cols, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            if where[-1] - where[0] + 1 == where.size:  # contiguous output columns
                where = slice(int(where[0]), int(where[-1]) + 1)
            block = self._read_segment(int(s), name, rowsel, cols[where] - offsets[s])
            finite = np.isfinite(block)
            if not finite.all():
                self._raise_non_finite(int(s), name, rowsel, cols[where], finite)
            out[:, where] = block
        return out

    def _raise_non_finite(
        self, s: int, name: str, rowsel: slice | np.ndarray, cols: np.ndarray, finite: np.ndarray
    ) -> None:
        """Name the first NaN or Inf of a block read from segment ``s``: field, snapshot
        (global column), row key and segment file."""
        i, j = np.argwhere(~finite)[0]
        row = rowsel.start + i if isinstance(rowsel, slice) else rowsel[i]
        raise StoreError(
            f"{self.path}: NaN or Inf in field {name!r}, snapshot {int(cols[j])}, row key "
            f"{int(self._ix.keys[name][row])}, in segment {self._dir / self._ix.segments[s]} "
            f"(the segment is damaged; 'rom info --verify' checks every segment)"
        )

    def _iter_columns(
        self,
        field: str | None,
        chunk: Any,
        rows: Any,
        keys: Any,
        columns: Any,
        progress: bool,
        comm: Any = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """:meth:`SnapshotStore.iter_columns <rom.io.SnapshotStore.iter_columns>`."""

        def arguments() -> tuple:
            self._check_open()
            if not isinstance(chunk, (int, np.integer)) or chunk < 1:
                raise StoreError(f"{self.path}: chunk must be a positive integer, got {chunk!r}")
            name = self._field(field)
            rowsel = self._row_selection(name, rows, keys)
            cols = normalize_columns(columns, self._ix.n_snapshots, f"{self.path}: iter_columns")
            return (name, rowsel, cols, int(chunk), progress, comm)

        return self._iter(*_agreed(arguments, comm))

    def _iter(
        self,
        name: str,
        rowsel: slice | np.ndarray,
        cols: np.ndarray,
        chunk: int,
        progress: bool,
        comm: Any,
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
                block = self._read_block(name, rowsel, cj, comm)
                if bar is not None:
                    bar.update(cj.size)
                yield cj.copy(), block
        finally:
            if bar is not None:
                bar.close()

    def _read_block(
        self, name: str, rowsel: slice | np.ndarray, cols: np.ndarray, comm: Any
    ) -> np.ndarray:
        """:meth:`_read`; with ``comm``, a failure on any rank raises on every rank."""
        if comm is None:
            return self._read(name, rowsel, cols)
        block, err = None, None
        try:
            block = self._read(name, rowsel, cols)
        except StoreError as e:
            err = str(e)
        check_collective(err, comm, StoreError)
        return block

    # ------------------------------------------------------------------ verification
    def _verify_segment(self, s: int) -> None:
        c = int(self._ix.seg_cols[s])
        f = self._segment(s)
        for key in ("time", "sample"):
            if key not in f or f[key].shape != (c,):
                raise StoreError(
                    f"{self.path}: segment {f.filename} dataset {key} is missing or "
                    f"has the wrong shape"
                )
        first = int(self._ix.seg_cols[:s].sum())
        for name in self._ix.fields:
            ds = self._dataset(s, name)
            nd = ds.shape[0]
            step = max(1, CHUNK_ELEMENTS // max(c, 1))
            for r0 in range(0, nd, step):
                finite = np.isfinite(ds[r0 : min(nd, r0 + step), :])
                if not finite.all():
                    self._raise_non_finite(
                        s, name, slice(r0, nd), np.arange(first, first + c), finite
                    )

    def _verify_segments(self) -> None:
        """:meth:`SnapshotStore.verify <rom.io.SnapshotStore.verify>`."""
        self._check_open()
        for s, seg in enumerate(self._ix.segments):
            try:
                self._verify_segment(s)
            except (OSError, RuntimeError) as e:
                raise StoreError(
                    f"{self.path}: segment {self._dir / seg} is unreadable (truncated or "
                    f"corrupt): {' '.join(str(e).split())}"
                ) from None
