"""Names, limits and small helpers shared by the modules of :mod:`rom.io` (no store state)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "FORMAT",
    "SEGMENT_FORMAT",
    "LAYOUT_FORMAT",
    "SCHEMA_VERSION",
    "CHUNK_ELEMENTS",
    "GATHER_ELEMENTS",
    "MAX_OPEN_SEGMENTS",
    "StoreError",
    "fsync_path",
    "library_version",
    "segment_name",
    "segment_number",
    "segments_dir",
    "as_field_dict",
    "check_field_name",
    "as_keys",
    "normalize_columns",
    "decode_strings",
    "from_h5",
    "virtual_columns",
    "compatibility_error",
]

FORMAT = "rom-snapshot-store"
SEGMENT_FORMAT = "rom-snapshot-segment"
LAYOUT_FORMAT = "rom-snapshot-layout"
SCHEMA_VERSION = 1

CHUNK_ELEMENTS = 2**19  # 4 MiB of float64 per chunk
GATHER_ELEMENTS = 2**24  # rank 0 gathers at most 128 MiB per column block
MAX_OPEN_SEGMENTS = 64


class StoreError(ValueError):
    """A snapshot store is missing, foreign, corrupt, or used incorrectly.

    The message always names the file (and the dataset or segment) and the problem.
    """


def fsync_path(path: Path | str, directory: bool = False) -> None:
    """Flush a file (or, with ``directory=True``, a directory entry) to stable storage."""
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


def library_version() -> str:
    """``rom.__version__`` when the package is imported, else ``"unknown"``."""
    rom = sys.modules.get("rom")
    return str(getattr(rom, "__version__", "unknown"))


def segment_name(number: int) -> str:
    """File name of segment ``number`` (``seg-000001.h5``)."""
    return f"seg-{number:06d}.h5"


def segment_number(name: str) -> int:
    """Inverse of :func:`segment_name`."""
    return int(name[4:10])


def segments_dir(path: Path) -> Path:
    """The sibling directory ``<path>.d`` holding the layout and the segments."""
    return Path(str(path) + ".d")


def as_field_dict(obj: Any, what: str, fields: tuple[str, ...] | None) -> dict[str, Any]:
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


def check_field_name(name: Any) -> str | None:
    """An error message for an invalid field name, else ``None``."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return f"invalid field name {name!r} (a non-empty string without '/')"
    return None


def as_keys(k: Any, name: str) -> tuple[np.ndarray | None, str | None]:
    """``(int64 keys, None)``, or ``(None, error message)`` when ``k`` is not 1-D integers."""
    try:
        a = np.asarray(k)
    except (TypeError, ValueError) as e:
        return None, f"keys of field {name!r} are not an array: {e}"
    if a.ndim != 1:
        return None, f"keys of field {name!r} must be 1-D, got shape {a.shape}"
    if a.size and not np.issubdtype(a.dtype, np.integer):
        return None, f"keys of field {name!r} must be integers, got dtype {a.dtype}"
    return a.astype(np.int64), None


def normalize_columns(columns: Any, n: int, where: str) -> np.ndarray:
    """Column indices in ``[0, n)`` from ``None`` (all), a slice or integers (negative ok)."""
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


def decode_strings(values: Any) -> tuple[str, ...]:
    """HDF5 string arrays (bytes or str items) as a tuple of str."""
    return tuple(s.decode() if isinstance(s, bytes) else str(s) for s in values)


def from_h5(v: Any) -> Any:
    """An HDF5 attribute value as plain Python (str for bytes, lists for string arrays)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind == "O":
        return [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def virtual_columns(
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


def compatibility_error(a: Any, b: Any) -> str | None:
    """Why the columns of store ``b`` cannot be appended to store ``a`` (same field names,
    same row keys of every field, same parameter names), or ``None`` when they can."""
    if set(a.fields) != set(b.fields):
        return f"{b.path}: fields {tuple(b.fields)} differ from those of {a.path} {tuple(a.fields)}"
    for name in a.fields:
        ka, kb = a.keys(name), b.keys(name)
        if not np.array_equal(ka, kb):
            return (
                f"{b.path}: the row keys of field {name!r} differ from those of {a.path} "
                f"({kb.size} and {ka.size} rows)"
            )
    if tuple(a.parameter_names) != tuple(b.parameter_names):
        return (
            f"{b.path}: parameter names {tuple(b.parameter_names)} differ from those of "
            f"{a.path} {tuple(a.parameter_names)}"
        )
    return None
