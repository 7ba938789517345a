"""The write side of :class:`rom.io.SnapshotStore`: validating an append on every rank,
gathering its rows on rank 0, writing the segment and committing the index."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.parallel import check_collective

from ._format import CHUNK_ELEMENTS
from ._format import GATHER_ELEMENTS
from ._format import SCHEMA_VERSION
from ._format import SEGMENT_FORMAT
from ._format import StoreError
from ._format import as_field_dict
from ._format import compatibility_error
from ._format import fsync_path
from ._format import segment_name
from ._format import segment_number
from ._h5file import H5Writer
from ._h5file import one_line
from ._index import IndexContents
from ._index import read_index
from ._index import write_index

__all__ = ["StoreWriting", "append_metadata"]

logger = logging.getLogger("rom.io")


def append_metadata(
    where: str, names: tuple[str, ...], c: int, parameters: Any, time: Any, sample: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(parameters (c, p), time (c,), sample (c,))`` of an append of ``c`` columns
    to a store with parameter names ``names``; raises ``ValueError`` naming ``where``."""
    p = len(names)
    if parameters is None:
        if p:
            raise ValueError(f"{where}: parameters are required (names {names})")
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


class StoreWriting:
    """The appending of :class:`rom.io.SnapshotStore` (a private base class: the public
    methods, with their documentation, are the store's).

    Uses ``_check_open`` and ``_owned_array`` of :class:`rom.io._reading.StoreReading`.
    """

    path: Path
    _dir: Path
    _comm: MPI.Comm
    _mode: str
    _ix: IndexContents
    _owned: dict[str, slice | np.ndarray]
    _n_local: dict[str, int]
    _gather_pos: dict[str, np.ndarray]
    _gather_counts: dict[str, np.ndarray]

    # ------------------------------------------------------------------ append
    def _append(self, values: Any, parameters: Any, time: Any, sample: Any) -> None:
        """:meth:`SnapshotStore.append <rom.io.SnapshotStore.append>`."""
        comm = self._comm
        err, exc_type, c = None, ValueError, -1
        arrays: dict[str, np.ndarray] = {}
        meta = None
        try:
            arrays, c = self._append_arrays(values)
            meta = append_metadata(
                f"{self.path}: append", self._ix.parameter_names, c, parameters, time, sample
            )
        except ValueError as e:  # StoreError included
            err, exc_type = str(e), type(e)
        self._append_verdict(err, exc_type, c)
        if comm.size > 1:
            meta = comm.bcast(meta if comm.rank == 0 else None)
        seg_name = segment_name(self._next_segment_number())
        werr = self._write_segment(seg_name, arrays, c, meta)
        check_collective(werr, comm, StoreError)
        if comm.rank != 0:
            self._record_append(seg_name, c, meta)
        logger.debug("%s: committed %s (%d columns)", self.path, seg_name, c)

    def _append_array(self, name: str, value: Any) -> np.ndarray:
        """This rank's rows of one field as a checked float64 (n_local, c) array."""
        a = np.asarray(value)
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
        return np.ascontiguousarray(a, dtype=np.float64)

    def _append_arrays(self, values: Any) -> tuple[dict[str, np.ndarray], int]:
        """Checked arrays of every field and their common number of columns (local)."""
        self._check_open()
        if self._mode != "a":
            raise StoreError(f"{self.path}: store is open read-only (mode 'r'); cannot append")
        vd = as_field_dict(values, f"{self.path}: append", self._ix.fields)
        if set(vd) != set(self._ix.fields):
            raise ValueError(
                f"{self.path}: append needs exactly the fields {self._ix.fields}, got {tuple(vd)}"
            )
        arrays, c = {}, -1
        for name in self._ix.fields:
            a = self._append_array(name, vd[name])
            if c < 0:
                c = a.shape[1]
            elif a.shape[1] != c:
                raise ValueError(
                    f"{self.path}: fields have different numbers of columns "
                    f"({self._ix.fields[0]!r}: {c}, {name!r}: {a.shape[1]})"
                )
            bad = ~np.isfinite(a)
            if bad.any():
                j = int(np.flatnonzero(bad.any(axis=0))[0])
                raise ValueError(
                    f"{self.path}: NaN or Inf in field {name!r}, column {j} of this append "
                    f"(snapshot {self._ix.n_snapshots + j}); nothing written"
                )
            arrays[name] = a
        if c == 0:
            raise ValueError(f"{self.path}: append needs at least one column")
        return arrays, c

    def _append_verdict(self, err: str | None, exc_type: type, c: int) -> None:
        """Raise the first rank's error on every rank, or a mismatch of column counts."""
        comm = self._comm
        if comm.size == 1:
            if err is not None:
                raise exc_type(err)
            return
        verdicts = comm.allgather((err, c, exc_type is StoreError))
        errs = [(r, v) for r, v in enumerate(verdicts) if v[0] is not None]
        if errs:
            r, (msg, _, is_store) = errs[0]
            raise (StoreError if is_store else ValueError)(
                f"{msg} (reported by rank {r} of {comm.size})"
            )
        if len({v[1] for v in verdicts}) > 1:
            raise ValueError(
                f"{self.path}: ranks append different numbers of columns: "
                f"{[v[1] for v in verdicts]}"
            )

    def _next_segment_number(self) -> int:
        if not self._ix.segments:
            return 1
        return segment_number(self._ix.segments[-1]) + 1

    def _record_append(self, seg_name: str, c: int, meta: tuple) -> None:
        params, tvec, svec = meta
        ix = self._ix
        ix.segments.append(seg_name)
        ix.seg_cols = np.append(ix.seg_cols, c).astype(np.int64)
        ix.parameters = np.concatenate([ix.parameters, params])
        ix.time = np.concatenate([ix.time, tvec])
        ix.sample = np.concatenate([ix.sample, svec])

    def _open_segment(self, tmp: Path, number: int, meta: tuple) -> H5Writer:
        """Rank 0: the temporary segment file with its per-column metadata."""
        params, tvec, svec = meta
        w = H5Writer(tmp, "w")
        try:
            f = w.file
            f.attrs["format"] = SEGMENT_FORMAT
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["number"] = number
            f.create_dataset("parameters", data=params)
            f.create_dataset("time", data=tvec)
            f.create_dataset("sample", data=svec)
            w.check()
        except BaseException:
            w.close(discard=True)
            raise
        return w

    def _write_segment(
        self, seg_name: str, arrays: dict[str, np.ndarray], c: int, meta: tuple
    ) -> str | None:
        """Write and commit the segment (collective: every rank takes part in the gathers);
        the error message of rank 0, or ``None``.

        Whatever fails, rank 0 closes the temporary segment and removes it: no HDF5 file is
        left open (see :mod:`rom.io._h5file`), and a later append writes it again.
        """
        rank0 = self._comm.rank == 0
        werr, w = None, None
        tmp = self._dir / (seg_name + ".tmp")
        if rank0:
            try:
                w = self._open_segment(tmp, segment_number(seg_name), meta)
            except Exception as e:
                werr = f"{tmp}: could not write segment: {one_line(e)}"
        for name in self._ix.fields:
            werr = self._gather_write(w, name, arrays[name], c, werr)
        if w is not None and werr is not None:
            w.close(discard=True)
        elif w is not None:
            try:
                w.close()  # raises the first write error, after removing the file
            except Exception as e:
                return f"{tmp}: could not write segment: {one_line(e)}"
            try:
                self._publish_segment(tmp, seg_name, c, meta)
            except Exception as e:
                werr = f"{self.path}: could not commit {seg_name}: {one_line(e)}"
                self._reload_after_failure()
                with contextlib.suppress(OSError):
                    tmp.unlink()
        return werr

    def _publish_segment(self, tmp: Path, seg_name: str, c: int, meta: tuple) -> None:
        """Rank 0: rename the written segment into place, then commit the new index."""
        fsync_path(tmp)
        os.replace(tmp, self._dir / seg_name)
        fsync_path(self._dir, directory=True)
        self._record_append(seg_name, c, meta)
        self._commit_index()

    def _commit_index(self) -> None:
        write_index(self.path, self._ix)

    def _reload_after_failure(self) -> None:
        """Reset the in-memory state to the committed index after a failed commit."""
        try:
            self._ix = read_index(self.path)
        except StoreError:
            logger.exception("%s: could not re-read the index after a failed commit", self.path)

    def _gather_write(
        self, w: H5Writer | None, name: str, a: np.ndarray, c: int, werr: str | None
    ) -> str | None:
        """Gather ``a`` (this rank's rows) on rank 0 and write it in key order.

        Every rank takes part in every Gatherv even after rank 0 failed to write, so that
        the error is reported collectively afterwards instead of leaving ranks waiting.
        """
        comm = self._comm
        nd = self._ix.keys[name].size
        ds = None
        if comm.rank == 0 and werr is None:
            try:
                chunks = (max(1, min(nd, CHUNK_ELEMENTS // c)), c)
                ds = w.file.create_dataset(
                    f"fields/{name}/values", shape=(nd, c), dtype=np.float64, chunks=chunks
                )
                w.check()
            except Exception as e:
                werr = f"{w.path}: could not create fields/{name}/values: {one_line(e)}"
                ds = None
        step = max(1, GATHER_ELEMENTS // max(nd, 1))
        for j0 in range(0, c, step):
            j1 = min(c, j0 + step)
            buf = self._gather_block(name, np.ascontiguousarray(a[:, j0:j1]), nd)
            if comm.rank == 0 and ds is not None:
                try:
                    out = np.empty((nd, j1 - j0))
                    pos = self._gather_pos[name] if comm.size > 1 else self._owned_array(name)
                    out[pos] = buf
                    ds[:, j0:j1] = out
                    w.check()
                except Exception as e:
                    werr = f"{w.path}: could not write fields/{name}/values: {one_line(e)}"
                    ds = None
        return werr

    def _gather_block(self, name: str, send: np.ndarray, nd: int) -> np.ndarray | None:
        """Every rank's rows of a column block, in rank order on rank 0 (``None`` elsewhere)."""
        comm = self._comm
        if comm.size == 1:
            return send
        if comm.rank != 0:
            comm.Gatherv(send, None, root=0)
            return None
        width = send.shape[1]
        counts = [int(k) * width for k in self._gather_counts[name]]
        displs = [0, *np.cumsum(counts)[:-1].tolist()]
        buf = np.empty((nd, width))
        comm.Gatherv(send, [buf, counts, displs, MPI.DOUBLE], root=0)
        return buf

    # ------------------------------------------------------------------ extend
    def _extend(self, other: Any) -> None:
        """:meth:`SnapshotStore.extend <rom.io.SnapshotStore.extend>`."""
        comm = self._comm
        err = None
        try:
            self._check_open()
            other._check_open()
            if self._mode != "a":
                raise StoreError(f"{self.path}: store is open read-only (mode 'r'); cannot extend")
            err = compatibility_error(self, other)
        except StoreError as e:
            err = str(e)
        check_collective(err, comm, StoreError)
        seg_cols = other._ix.seg_cols
        if seg_cols.size == 0:
            return
        first = self._next_segment_number()
        names = [segment_name(first + s) for s in range(seg_cols.size)]
        werr = None
        if comm.rank == 0:
            try:
                for s, name in enumerate(names):
                    self._copy_segment(other._dir / other._ix.segments[s], name)
                fsync_path(self._dir, directory=True)
                self._record_extend(names, other._ix)
                self._commit_index()
            except Exception as e:
                werr = f"{self.path}: could not add the columns of {other.path}: {one_line(e)}"
                self._reload_after_failure()
        check_collective(werr, comm, StoreError)
        if comm.rank != 0:
            self._record_extend(names, other._ix)

    def _copy_segment(self, src: Path, name: str) -> None:
        """Rank 0: copy a segment of another store in as ``name`` (temporary name, rename;
        the temporary file is removed when anything fails)."""
        tmp = self._dir / (name + ".tmp")
        try:
            shutil.copyfile(src, tmp)
            with H5Writer(tmp, "r+") as w:
                w.file.attrs["number"] = segment_number(name)
            fsync_path(tmp)
            os.replace(tmp, self._dir / name)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _record_extend(self, names: list[str], other: IndexContents) -> None:
        ix = self._ix
        ix.segments.extend(names)
        ix.seg_cols = np.concatenate([ix.seg_cols, other.seg_cols]).astype(np.int64)
        ix.parameters = np.concatenate([ix.parameters, other.parameters])
        ix.time = np.concatenate([ix.time, other.time])
        ix.sample = np.concatenate([ix.sample, other.sample])

    # ------------------------------------------------------------------ mesh
    def _checked_mesh(self, points: Any, cells: Any) -> tuple[np.ndarray, np.ndarray]:
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
        return pts, cls_

    def _write_mesh(self, points: Any, cells: Any) -> None:
        """:meth:`SnapshotStore.write_mesh <rom.io.SnapshotStore.write_mesh>`."""
        comm = self._comm
        err = None
        if comm.rank == 0:
            try:
                self._ix.mesh = self._checked_mesh(points, cells)
                self._commit_index()
            except ValueError as e:
                err = str(e)
            except Exception as e:
                err = f"{self.path}: could not write the mesh: {one_line(e)}"
                self._reload_after_failure()
        check_collective(err, comm, StoreError)
        if comm.size > 1:
            self._ix.mesh = comm.bcast(self._ix.mesh, root=0)
