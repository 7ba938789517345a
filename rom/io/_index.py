"""The index file and the layout file of a store: their contents, reading and committing.

The index (``<path>``) is small and rewritten completely at every commit: write a new file to
``<path>.tmp``, fsync it, rename it over ``<path>`` and fsync the directory. The layout
(``<path>.d/layout.h5``) holds the sorted row keys of each field and is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._format import FORMAT
from ._format import LAYOUT_FORMAT
from ._format import SCHEMA_VERSION
from ._format import StoreError
from ._format import decode_strings
from ._format import from_h5
from ._format import fsync_path
from ._format import library_version
from ._format import segments_dir
from ._format import virtual_columns
from ._h5file import H5Writer

__all__ = ["IndexContents", "read_index", "write_index", "write_layout"]


@dataclass
class IndexContents:
    """Everything the index and the layout say about a store (the committed state).

    ``keys`` maps each field to its sorted int64 row keys; ``seg_cols[s]`` is the number of
    columns of segment ``segments[s]``; ``parameters`` has shape (n_snapshots, p).
    """

    fields: tuple[str, ...] = ()
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    seg_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    parameter_names: tuple[str, ...] = ()
    parameters: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    attrs: dict[str, Any] = field(default_factory=dict)
    mesh: tuple[np.ndarray, np.ndarray] | None = None
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def n_snapshots(self) -> int:
        return int(self.seg_cols.sum())


# ---------------------------------------------------------------------------- reading
def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        raise StoreError(f"{path}: no such file (snapshot store index)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise StoreError(
            f"{path}: not a readable HDF5 file (not HDF5, truncated or corrupt): {e}"
        ) from None


def _check_header(f: h5py.File, path: Path) -> int:
    """The schema version, after checking the root attributes ``format`` and
    ``schema_version``."""
    try:
        fmt = f.attrs.get("format")
        version = int(f.attrs.get("schema_version", -1))
    except (OSError, RuntimeError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: corrupt HDF5 file (unreadable attributes): {e}") from None
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
    return version


def _read_body(f: h5py.File, path: Path, ix: IndexContents) -> int:
    """Fill ``ix`` from an open index; returns the root attribute ``n_snapshots``."""
    try:
        ix.created = str(f.attrs.get("created", ""))
        ix.fields = decode_strings(f.attrs["fields"])
        ix.segments = list(decode_strings(f["segments/names"][...]))
        ix.seg_cols = np.asarray(f["segments/n_columns"][...], dtype=np.int64)
        ix.parameters = np.asarray(f["parameters"][...], dtype=np.float64)
        ix.parameter_names = decode_strings(f["parameters"].attrs["names"])
        ix.time = np.asarray(f["time"][...], dtype=np.float64)
        ix.sample = np.asarray(f["sample"][...], dtype=np.int64)
        ix.attrs = {k: from_h5(v) for k, v in f["attrs"].attrs.items()}
        if "mesh" in f:
            ix.mesh = (f["mesh/points"][...], f["mesh/cells"][...])
        return int(f.attrs["n_snapshots"])
    except (KeyError, OSError, RuntimeError, TypeError, ValueError) as e:
        raise StoreError(f"{path}: corrupt snapshot store index: {e}") from None


def _check_sizes(ix: IndexContents, n: int, path: Path) -> None:
    p = len(ix.parameter_names)
    if (
        len(ix.segments) != ix.seg_cols.size
        or int(ix.seg_cols.sum()) != n
        or ix.parameters.shape != (n, p)
        or ix.time.shape != (n,)
        or ix.sample.shape != (n,)
    ):
        raise StoreError(f"{path}: corrupt snapshot store index (inconsistent sizes)")


def _read_layout(path: Path, ix: IndexContents) -> None:
    layout = segments_dir(path) / "layout.h5"
    if not layout.exists():
        raise StoreError(f"{path}: missing layout file {layout}")
    try:
        with h5py.File(layout, "r") as g:
            for name in ix.fields:
                ix.keys[name] = np.asarray(g[f"fields/{name}/keys"][...], dtype=np.int64)
    except (OSError, KeyError) as e:
        raise StoreError(f"{layout}: unreadable or incomplete layout file: {e}") from None
    for name in ix.fields:
        k = ix.keys[name]
        if k.size == 0 or np.any(k[1:] <= k[:-1]):
            raise StoreError(f"{layout}: keys of field {name!r} are not sorted and unique")


def read_index(path: Path) -> IndexContents:
    """Read and check the committed index of the store ``path`` and its layout file.

    Raises
    ------
    StoreError
        Missing, foreign, truncated, inconsistent or newer-schema file, or a bad layout.
    """
    ix = IndexContents()
    with _open_h5(path) as f:
        ix.schema_version = _check_header(f, path)
        n = _read_body(f, path, ix)
    _check_sizes(ix, n, path)
    _read_layout(path, ix)
    return ix


# ---------------------------------------------------------------------------- writing
def write_layout(path: Path, fields: tuple[str, ...], keys: dict[str, np.ndarray]) -> None:
    """Write ``<path>.d/layout.h5`` (sorted keys per field) through a temporary name."""
    ddir = segments_dir(path)
    final = ddir / "layout.h5"
    tmp = ddir / "layout.h5.tmp"
    with H5Writer(tmp, "w") as w:
        f = w.file
        f.attrs["format"] = LAYOUT_FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        for name in fields:
            f.create_dataset(f"fields/{name}/keys", data=keys[name])
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(ddir, directory=True)


def _write_field_views(f: h5py.File, rel: str, ix: IndexContents) -> None:
    """The virtual datasets ``fields/<name>/values`` (over the segments) and ``keys``."""
    offsets = np.concatenate([[0], np.cumsum(ix.seg_cols)]).astype(np.int64)
    for name in ix.fields:
        nd = ix.keys[name].size
        g = f.create_group(f"fields/{name}")
        virtual_columns(
            g,
            "values",
            nd,
            [f"{rel}/{seg}" for seg in ix.segments],
            f"fields/{name}/values",
            offsets,
        )
        kl = h5py.VirtualLayout(shape=(nd,), dtype=np.int64)
        kl[:] = h5py.VirtualSource(
            f"{rel}/layout.h5", f"fields/{name}/keys", shape=(nd,), dtype=np.int64
        )
        g.create_virtual_dataset("keys", kl)


def _write_metadata(f: h5py.File, ix: IndexContents) -> None:
    n = ix.n_snapshots
    ds = f.create_dataset("parameters", data=ix.parameters.reshape(n, len(ix.parameter_names)))
    ds.attrs["names"] = np.array(ix.parameter_names, dtype=h5py.string_dtype())
    f.create_dataset("time", data=ix.time)
    f.create_dataset("sample", data=ix.sample)
    seg = f.create_group("segments")
    seg.create_dataset("names", data=np.array(ix.segments, dtype=h5py.string_dtype()))
    seg.create_dataset("n_columns", data=ix.seg_cols.astype(np.int64))
    ua = f.create_group("attrs")
    for k, v in ix.attrs.items():
        ua.attrs[k] = v
    if ix.mesh is not None:
        f.create_dataset("mesh/points", data=ix.mesh[0])
        f.create_dataset("mesh/cells", data=ix.mesh[1])


def write_index(path: Path, ix: IndexContents) -> None:
    """Write a complete index to ``<path>.tmp`` and rename it over ``<path>`` (the commit)."""
    tmp = Path(str(path) + ".tmp")
    rel = os.path.basename(segments_dir(path))
    with H5Writer(tmp, "w") as w:  # a failed write removes the temporary file
        f = w.file
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["created"] = ix.created
        f.attrs["library_version"] = library_version()
        f.attrs["n_snapshots"] = ix.n_snapshots
        f.attrs["fields"] = np.array(ix.fields, dtype=h5py.string_dtype())
        _write_field_views(f, rel, ix)
        _write_metadata(f, ix)
    fsync_path(tmp)
    os.replace(tmp, path)  # the commit
    fsync_path(path.parent, directory=True)
