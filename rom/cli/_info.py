"""``rom info``: describe a snapshot store (metadata only; ``--verify`` reads every segment)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.io import SnapshotStore
from rom.summary import jsonable

from ._common import echo
from ._common import on_rank0

__all__ = ["describe_store", "format_info", "add_command"]


def _dir_size(path: Path) -> int:
    total = path.stat().st_size if path.exists() else 0
    d = Path(str(path) + ".d")
    if d.is_dir():
        total += sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    return total


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""  # pragma: no cover


def describe_store(store: SnapshotStore) -> dict[str, Any]:
    """A JSON-ready description of an open store (local; reads only metadata).

    Returns
    -------
    dict
        ``path``, ``format``, ``schema_version``, ``created``, ``library_version``,
        ``n_snapshots``, ``fields`` (name to ``n_dofs`` and ``shape``), ``parameters`` (name
        to ``min``/``max``), ``samples`` (``n_samples``, ``ids``, ``unassigned``), ``time``
        (``min``/``max`` or ``None``), ``segments`` (``count``, ``n_columns``), ``mesh``
        (``n_points``, ``n_cells``, ``gdim``, ``vertices_per_cell`` or ``None``), ``attrs``
        and ``size_bytes`` (index plus its ``.d`` directory).
    """
    import h5py

    with h5py.File(store.path, "r") as f:
        root = {k: jsonable(f.attrs.get(k)) for k in ("format", "created", "library_version")}
    m = store.n_snapshots
    P = store.parameters
    params = {
        name: {
            "min": float(P[:, i].min()) if m else None,
            "max": float(P[:, i].max()) if m else None,
        }
        for i, name in enumerate(store.parameter_names)
    }
    s = store.sample
    ids = np.unique(s[s >= 0])
    t = store.time
    tf = t[np.isfinite(t)]
    segs = store.segments
    mesh = store.read_mesh()
    return jsonable(
        {
            "path": str(store.path),
            "format": root["format"],
            "schema_version": store.schema_version,
            "created": root["created"],
            "library_version": root["library_version"],
            "n_snapshots": m,
            "fields": {
                name: {"n_dofs": store.n_dofs(name), "shape": [store.n_dofs(name), m]}
                for name in store.fields
            },
            "parameters": params,
            "samples": {
                "n_samples": int(ids.size),
                "ids": ids[:50],
                "unassigned": int(np.count_nonzero(s < 0)),
            },
            "time": {"min": float(tf.min()), "max": float(tf.max())} if tf.size else None,
            "segments": {"count": len(segs), "n_columns": [c for _, c in segs]},
            "mesh": None
            if mesh is None
            else {
                "n_points": int(mesh[0].shape[0]),
                "n_cells": int(mesh[1].shape[0]),
                "gdim": int(mesh[0].shape[1]),
                "vertices_per_cell": int(mesh[1].shape[1]),
            },
            "attrs": store.attrs,
            "size_bytes": _dir_size(store.path),
        }
    )


def format_info(d: dict[str, Any]) -> str:
    """The text of ``rom info``: a :func:`describe_store` dictionary as aligned lines."""
    lines = [
        f"store           {d['path']}",
        f"format          {d['format']} (schema version {d['schema_version']}, "
        f"rom {d['library_version']}, created {d['created']})",
        f"size on disk    {_human(d['size_bytes'])} ({d['size_bytes']} bytes)",
        f"snapshots       {d['n_snapshots']}",
        "fields",
    ]
    for name, fd in d["fields"].items():
        lines.append(f"  {name:<14}({fd['shape'][0]}, {fd['shape'][1]})")
    lines.append("parameters" + ("" if d["parameters"] else "      (none)"))
    for name, r in d["parameters"].items():
        lo = "-" if r["min"] is None else f"{r['min']:.6g}"
        hi = "-" if r["max"] is None else f"{r['max']:.6g}"
        lines.append(f"  {name:<14}[{lo}, {hi}]")
    sm = d["samples"]
    lines.append(f"samples         {sm['n_samples']} ({sm['unassigned']} columns without one)")
    tm = d["time"]
    lines.append(
        "time            " + ("-" if tm is None else f"[{tm['min']:.6g}, {tm['max']:.6g}]")
    )
    sg = d["segments"]
    cols = sg["n_columns"]
    lines.append(
        f"segments        {sg['count']}"
        + (f" ({min(cols)}..{max(cols)} columns each)" if cols else "")
    )
    ms = d["mesh"]
    lines.append(
        "mesh            "
        + (
            "none"
            if ms is None
            else (
                f"{ms['n_points']} points (dimension {ms['gdim']}), {ms['n_cells']} cells "
                f"({ms['vertices_per_cell']} vertices each)"
            )
        )
    )
    if d["attrs"]:
        lines.append("attrs           " + ", ".join(f"{k}={v}" for k, v in d["attrs"].items()))
    return "\n".join(lines)


def _run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    with SnapshotStore.open(args.store, comm=comm) as st:
        d = on_rank0(comm, lambda: describe_store(st))
        if args.verify:
            on_rank0(comm, st.verify)
            d["verified"] = True
    text = format_info(d)
    if args.verify:
        text += "\nverified        every segment readable, shapes right, values finite"
    echo(comm, json.dumps(d, indent=2) if args.json else text)
    return 0


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom info`` to the sub-command parsers ``sub``."""
    s = sub.add_parser("info", parents=parents, help="describe a snapshot store")
    s.add_argument("store", type=Path, help="the store's index file (e.g. thermal.h5)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--verify",
        action="store_true",
        help="also read every segment: readable, right shapes, finite values",
    )
    s.set_defaults(func=_run)
