"""The checks of :meth:`rom.io.SnapshotStore.create`: field names, keys, metadata, and the
global key order rank 0 derives from every rank's keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from ._format import StoreError
from ._format import as_field_dict
from ._format import as_keys
from ._format import check_field_name

__all__ = ["field_keys", "metadata_error", "check_same_fields", "sorted_keys"]


def field_keys(path: Path, fields: Any) -> tuple[dict[str, np.ndarray], str | None]:
    """This rank's int64 keys per field, or an error message."""
    try:
        fdict = as_field_dict(fields, f"{path}: create", None)
    except StoreError as e:
        return {}, str(e)
    if not fdict:
        return {}, f"{path}: create needs at least one field"
    keys: dict[str, np.ndarray] = {}
    for name, k in fdict.items():
        err = check_field_name(name)
        if err is None:
            a, err = as_keys(k, name)
        if err is not None:
            return keys, err
        keys[name] = a
    return keys, None


def metadata_error(pnames: tuple, attrs: dict) -> str | None:
    if not all(isinstance(s, str) for s in pnames):
        return f"parameter_names must be strings, got {pnames!r}"
    if len(set(pnames)) != len(pnames):
        return f"parameter_names are not unique: {pnames!r}"
    if not all(isinstance(s, str) and "/" not in s for s in attrs):
        return "attrs keys must be strings without '/'"
    return None


def check_same_fields(err: str | None, names: list[str] | None, comm: MPI.Comm) -> str | None:
    """Every rank must pass the same field names (one allgather on every rank)."""
    if comm.size == 1:
        return err
    if err is not None:
        comm.allgather(None)
        return err
    all_names = comm.allgather(names)
    if any(n != names for n in all_names):
        return f"ranks pass different field names: {all_names}"
    return None


def sorted_keys(path: Path, name: str, gathered: list[np.ndarray]) -> tuple:
    """Rank 0: ``(sorted keys, position of each gathered key in them, error or None)``."""
    allk = np.concatenate(gathered) if gathered else np.zeros(0, np.int64)
    order = np.argsort(allk, kind="stable")
    sk = allk[order]
    dup = np.flatnonzero(sk[1:] == sk[:-1])
    err = None
    if allk.size == 0:
        err = f"{path}: field {name!r} has no rows on any rank"
    elif dup.size:
        err = (
            f"{path}: field {name!r} has duplicate keys over the ranks "
            f"({dup.size} duplicates, first key {sk[dup[0]]})"
        )
    pos = np.empty(allk.size, dtype=np.int64)
    pos[order] = np.arange(allk.size)
    return sk, pos, err
