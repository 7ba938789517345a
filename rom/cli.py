"""The ``rom`` command line: inspect, compress, cluster, export and plot snapshot stores.

Run as ``rom ...``, ``python -m rom.cli ...`` or, collectively, ``mpirun -n P python -m
rom.cli ...`` (every rank reads its owned rows; results do not depend on ``P``)::

    rom info run/thermal/thermal.h5 [--json] [--verify]
    rom compress STORE --field F --method batch|incremental|hapod|randomized
                 [--rel-l2-err E | --l2-err E | --rtol R | --rank N | --eps E] [--chunk C]
                 --out MODES.h5
    rom cluster STORE --field F --n-clusters K [--objective sum|max] --out labels.json
    rom export STORE --field F [--columns 0:10 12] [--basis MODES.h5 [--n-modes N]]
               --out DIR --format vtx|xdmf
    rom plot STORE|summary.json|labels.json --kind sv|errors|clusters|indicator --out FILE.png

The command line measures in the Euclidean inner product of the stored rows (no mass matrix
is stored). Logging and progress bars come from rank 0 only. A missing, foreign or corrupt
file or a bad option prints one line ``rom: error: ...`` on stderr and exits with status 2
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.io import SnapshotStore, StoreError
from rom.parallel import (
    allreduce_sum,
    blas_threads,
    check_collective,
    limit_blas_per_rank,
    row_range,
)
from rom.summary import jsonable

__all__ = ["main", "build_parser", "describe_store", "format_info", "parse_columns", "CLIError"]

logger = logging.getLogger(__name__)

EXIT_USAGE = 2


class CLIError(ValueError):
    """A bad option or input of the command line (printed as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`CLIError` (one line, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(message)


# ---------------------------------------------------------------------------- helpers
def _on_rank0(comm: MPI.Comm, fn: Callable[[], Any], *, share: bool = True) -> Any:
    """Run ``fn`` on rank 0 and broadcast its result (``None`` elsewhere unless ``share``);
    an error raises on every rank."""
    result, err = None, None
    if comm.rank == 0:
        try:
            result = fn()
        except (StoreError, OSError, ValueError) as e:
            err = str(e) or type(e).__name__
    if comm.size > 1:
        if share:
            result, err = comm.bcast((result, err), root=0)
        else:
            err = comm.bcast(err, root=0)
    if err is not None:
        raise CLIError(err)
    return result


def _echo(comm: MPI.Comm, text: str) -> None:
    if comm.rank == 0:
        print(text, flush=True)


@contextlib.contextmanager
def _logging(level: str, comm: MPI.Comm) -> Iterator[None]:
    """Log the ``rom`` and ``solvers`` loggers to stderr while the command runs: rank 0 at
    ``level``, other ranks errors only; the previous configuration is restored after."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise CLIError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in ("rom", "solvers"):
        log = logging.getLogger(name)
        saved.append((log, log.level))
        log.addHandler(handler)
        log.setLevel(lvl if comm.rank == 0 else logging.ERROR)
    try:
        yield
    finally:
        for log, old in saved:
            log.removeHandler(handler)
            log.setLevel(old)


def _check_output(path: Path, overwrite: bool, *, store: bool = False) -> None:
    """Refuse to replace an existing output unless ``--overwrite`` (same verdict everywhere)."""
    exists = path.exists() or (store and Path(str(path) + ".d").exists())
    if exists and not overwrite:
        raise CLIError(f"{path}: already exists (pass --overwrite to replace it)")
    if not path.parent.is_dir():
        raise CLIError(f"{path.parent}: no such directory")


def parse_columns(specs: list[str] | None, n: int) -> np.ndarray:
    """Column indices from specs such as ``["0:10", "12", "-1", "::5"]`` (numpy slicing).

    Parameters
    ----------
    specs : list of str, or None
        Integers (negative counts from the end) and ``start:stop[:step]`` slices; ``None``
        means every column.
    n : int
        Number of columns available.

    Returns
    -------
    ndarray of int64
        The indices, in the order given (repetitions kept).

    Examples
    --------
    >>> parse_columns(["0:6:2", "-1"], 10).tolist()
    [0, 2, 4, 9]
    """
    if specs is None:
        return np.arange(n, dtype=np.int64)
    out: list[np.ndarray] = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            try:
                if ":" in part:
                    bits = [int(b) if b.strip() else None for b in part.split(":")]
                    if len(bits) > 3:
                        raise ValueError
                    out.append(np.arange(n, dtype=np.int64)[slice(*bits)])
                else:
                    j = int(part)
                    if not -n <= j < n:
                        raise CLIError(f"column {j} out of range for {n} snapshots")
                    out.append(np.array([j % n], dtype=np.int64))
            except CLIError:
                raise
            except ValueError:
                raise CLIError(
                    f"bad column spec {part!r} (use integers or start:stop[:step])"
                ) from None
    cols = np.concatenate(out) if out else np.zeros(0, np.int64)
    if cols.size == 0:
        raise CLIError(f"the column selection {specs} is empty")
    return cols


def _field_arg(store: SnapshotStore, field: str | None) -> str:
    if field is None:
        if len(store.fields) == 1:
            return store.fields[0]
        raise CLIError(f"{store.path}: the store has fields {list(store.fields)}; pass --field")
    if field not in store.fields:
        raise CLIError(f"{store.path}: no field {field!r} (fields: {list(store.fields)})")
    return field


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


# ---------------------------------------------------------------------------- info
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


def _cmd_info(args: argparse.Namespace, comm: MPI.Comm) -> int:
    with SnapshotStore.open(args.store, comm=comm) as st:
        d = _on_rank0(comm, lambda: describe_store(st))
        if args.verify:
            _on_rank0(comm, st.verify)
            d["verified"] = True
    text = format_info(d)
    if args.verify:
        text += "\nverified        every segment readable, shapes right, values finite"
    _echo(comm, json.dumps(d, indent=2) if args.json else text)
    return 0


# ---------------------------------------------------------------------------- compress
_TRUNCATION = ("rank", "rtol", "l2_err", "rel_l2_err", "eps")


def _cmd_compress(args: argparse.Namespace, comm: MPI.Comm) -> int:
    from rom.compression._compress import compress

    out = Path(args.out)
    if out.resolve() == Path(args.store).resolve():
        raise CLIError(f"{out}: the output would replace the input store")
    _check_output(out, args.overwrite, store=True)
    opts = {k: getattr(args, k) for k in _TRUNCATION if getattr(args, k) is not None}
    with SnapshotStore.open(args.store, comm=comm) as st:
        field = _field_arg(st, args.field)
        n_dofs = st.n_dofs(field)
        start, stop = row_range(n_dofs, comm)
        keys = st.keys(field)[start:stop]  # the rows compress() reads ("owned" = this block)
        mesh = st.read_mesh()
        t0 = time.perf_counter()
        res = compress(
            st,
            method=args.method,
            field=field,
            chunk=args.chunk,
            comm=comm,
            progress=not args.no_progress,
            **opts,
        )
        elapsed = time.perf_counter() - t0
    N = len(res.singular_values)
    if N == 0:
        raise CLIError("no mode kept (the snapshots are zero, or the truncation keeps none)")
    modes = SnapshotStore.create(
        out,
        {field: keys},
        parameter_names=("singular_value",),
        comm=comm,
        overwrite=args.overwrite,
        attrs={
            "content": "modes",
            "source": str(args.store),
            "field": field,
            "method": args.method,
            "n_snapshots": int(res.n_snapshots),
            "error_bound": float("nan") if res.error_bound is None else res.error_bound,
        },
    )
    with modes:
        modes.append(
            {field: res.modes},
            parameters=res.singular_values[:, None],
            time=np.zeros(N),
            sample=np.arange(N),
        )
        if mesh is not None:
            modes.write_mesh(*mesh)
    total = res.details.get("total_energy")
    rel = res.error_bound / math.sqrt(total) if res.error_bound is not None and total else None
    summary = {
        "store": str(args.store),
        "field": field,
        "method": args.method,
        "n_dofs": n_dofs,
        "n_snapshots": res.n_snapshots,
        "n_modes": N,
        "truncation": opts,
        "singular_values": res.singular_values,
        "error_bound": res.error_bound,
        "relative_error_bound": rel,
        "time_s": elapsed,
        "ranks": comm.size,
        "out": str(out),
    }
    if args.json:
        _echo(comm, json.dumps(jsonable(summary), indent=2))
    else:
        sv = res.singular_values
        bound = "-" if res.error_bound is None else f"{res.error_bound:.3e}"
        if rel is not None:
            bound += f" (relative {rel:.3e})"
        _echo(
            comm,
            "\n".join(
                [
                    f"compressed {res.n_snapshots} snapshots of {field!r} ({n_dofs} rows) with "
                    f"method {args.method!r} on {comm.size} rank(s) in {elapsed:.3g} s",
                    f"modes kept      {N}",
                    f"singular values {sv[0]:.6e} ... {sv[-1]:.6e}",
                    f"error bound     ||S - U U^T S||_F <= {bound}",
                    f"wrote           {out}",
                ]
            ),
        )
    return 0


# ---------------------------------------------------------------------------- cluster
def _cmd_cluster(args: argparse.Namespace, comm: MPI.Comm) -> int:
    from rom.local.clustering import KMedoids
    from rom.local.dissimilarity import sine_dissimilarity

    out = Path(args.out)
    _check_output(out, args.overwrite)
    with SnapshotStore.open(args.store, comm=comm) as st:
        field = _field_arg(st, args.field)
        m = st.n_snapshots
        if not 1 <= args.n_clusters <= m:
            raise CLIError(
                f"--n-clusters must be in [1, {m}] (the number of snapshots), got {args.n_clusters}"
            )
        X = st.read(field)
        params, names, sample, times = st.parameters, st.parameter_names, st.sample, st.time
    D = sine_dissimilarity(X, comm=comm)
    km = KMedoids(
        args.n_clusters, objective=args.objective, n_init=args.n_init, seed=args.seed
    ).fit(D)
    result = jsonable(
        {
            "store": str(args.store),
            "field": field,
            "dissimilarity": "sine",
            "objective": args.objective,
            "n_clusters": int(km.n_clusters_),
            "labels": km.labels_,
            "medoids": km.medoid_indices_,
            "cluster_sizes": km.cluster_sizes_,
            "cluster_widths": km.cluster_widths_,
            "objective_value": km.objective_value_,
            "parameter_names": list(names),
            "parameters": params,
            "sample": sample,
            "time": times,
        }
    )
    _on_rank0(comm, lambda: out.write_text(json.dumps(result, indent=1)))
    _echo(
        comm,
        "\n".join(
            [
                f"clustered {m} snapshots of {field!r} into {result['n_clusters']} clusters "
                f"(sine dissimilarity, {args.objective} objective)",
                f"medoids         {result['medoids']}",
                f"sizes           {result['cluster_sizes']}",
                "widths          " + ", ".join(f"{w:.3e}" for w in result["cluster_widths"]),
                f"wrote           {out}",
            ]
        ),
    )
    return 0


# ---------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace, comm: MPI.Comm) -> int:
    try:
        from solvers import export as ex
    except ImportError as e:
        raise CLIError(
            f"rom export needs dolfinx (install the fem extra: pip install -e '.[fem]'): {e}"
        ) from None
    with SnapshotStore.open(args.store, comm=comm) as st:
        field = _field_arg(st, args.field)
        cols = parse_columns(args.columns, st.n_snapshots)
        mesh = st.read_mesh()
        if args.mesh is not None:
            with SnapshotStore.open(args.mesh, comm=comm) as ms:
                mesh = ms.read_mesh()
                if mesh is None:
                    raise CLIError(f"{args.mesh}: the store has no mesh")
        if mesh is None:
            raise CLIError(
                f"{args.store}: the store has no mesh (/mesh/points, /mesh/cells); "
                "pass --mesh OTHER.h5"
            )
        points, cells = mesh
        bs = ex.block_size(points.shape[0], st.keys(field))
        name = args.name or field
        with contextlib.ExitStack() as stack:
            if args.basis is None:

                def values(k: np.ndarray) -> np.ndarray:
                    return st.read(field, keys=k, columns=cols)
            else:
                mst = stack.enter_context(SnapshotStore.open(args.basis, comm=comm))
                values = _reconstruction(st, field, cols, mst, args.n_modes, comm)
                name = args.name or f"{field}_reconstruction"
            files = ex.export_columns(
                args.out,
                points,
                cells,
                values,
                n_columns=cols.size,
                block_size=bs,
                name=name,
                times=cols.astype(float),
                fmt=args.format,
                comm=comm,
            )
    _echo(
        comm,
        f"exported {cols.size} column(s) of {field!r} as {name!r} to "
        + ", ".join(str(f) for f in files),
    )
    return 0


def _reconstruction(
    st: SnapshotStore,
    field: str,
    cols: np.ndarray,
    mst: SnapshotStore,
    n_modes: int | None,
    comm: MPI.Comm,
) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of :math:`V C` with :math:`C = \\arg\\min_C \\|VC - X\\|_F` (Euclidean least
    squares in the span of the first ``n_modes`` modes; collective)."""
    mfield = field if field in mst.fields else _field_arg(mst, None)
    n = mst.n_snapshots if n_modes is None else int(n_modes)
    if not 1 <= n <= mst.n_snapshots:
        raise CLIError(f"--n-modes must be in [1, {mst.n_snapshots}], got {n}")
    keys = st.keys(field)
    start, stop = row_range(keys.size, comm)
    err, V = None, None
    try:
        V = mst.read(mfield, keys=keys[start:stop], columns=slice(0, n))
    except StoreError as e:
        err = f"{mst.path}: the modes do not have the rows of {st.path} field {field!r}: {e}"
    check_collective(err, comm, StoreError)
    X = st.read(field, columns=cols)
    G = allreduce_sum(V.T @ V, comm)
    B = allreduce_sum(V.T @ X, comm)
    C = np.linalg.lstsq(G, B, rcond=None)[0]

    def values(k: np.ndarray) -> np.ndarray:
        return mst.read(mfield, keys=k, columns=slice(0, n)) @ C

    return values


# ---------------------------------------------------------------------------- plot
def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise CLIError(f"{path}: not a JSON file: {e}") from None
    except json.JSONDecodeError as e:
        raise CLIError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CLIError(f"{path}: expected a JSON object")
    return data


def _lookup(data: dict[str, Any], key: str) -> Any:
    """``data[key]`` or ``data["results"][key]``, else ``None``."""
    if key in data:
        return data[key]
    res = data.get("results")
    if isinstance(res, dict) and key in res:
        return res[key]
    return None


def _plot_from_json(path: Path, kind: str) -> Any:
    from rom import plotting

    data = _load_json(path)
    if kind == "sv":
        sv = _lookup(data, "singular_values")
        if sv is None:
            raise CLIError(f"{path}: no 'singular_values' (top level or under 'results')")
        return plotting.singular_values(sv, title=f"singular values ({path.name})")
    if kind == "errors":
        ev = _lookup(data, "error_vs_basis_size")
        if not isinstance(ev, dict) or "n" not in ev:
            raise CLIError(
                f"{path}: no 'error_vs_basis_size' with 'n' (top level or under 'results')"
            )
        n = ev["n"]
        curves = {
            f"held-out ROM error ({k})": v
            for k, v in ev.items()
            if k != "n" and isinstance(v, list) and len(v) == len(n)
        }
        tail = _lookup(data, "projection_tail_rel")
        if isinstance(tail, list) and len(tail) == len(n):
            curves["training POD tail"] = tail
        return plotting.errors(n, curves, title=path.name)
    if kind == "clusters":
        labels = _lookup(data, "labels")
        if labels is None:
            cl = _lookup(data, "clusters")
            data = cl if isinstance(cl, dict) else {}
            labels = data.get("labels")
        if labels is None:
            raise CLIError(f"{path}: no cluster 'labels' (write them with rom cluster)")
        params = data.get("parameters")
        P = np.asarray(params, dtype=float) if params else None
        if P is not None and P.ndim != 2:
            P = None
        t = data.get("time")
        return plotting.clusters(
            np.asarray(labels, dtype=np.int64),
            parameters=P,
            parameter_names=data.get("parameter_names", ()),
            sample=data.get("sample"),
            time=None if t is None else np.array(t, dtype=float),
            medoids=data.get("medoids"),
        )
    ind = _lookup(data, "indicator")
    if isinstance(ind, list):
        ind = {"values": ind}
    if not isinstance(ind, dict) or "values" not in ind:
        raise CLIError(f"{path}: no 'indicator' with 'values' (top level or under 'results')")
    return plotting.indicator(
        ind["values"], error=ind.get("error"), tol=ind.get("tol"), time=ind.get("time")
    )


def _cmd_plot(args: argparse.Namespace, comm: MPI.Comm) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from rom import plotting

    src, out = Path(args.source), Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"{out.parent}: no such directory")
    if src.suffix.lower() == ".json":
        if not src.exists():
            raise CLIError(f"{src}: no such file")

        def draw() -> Any:
            return _plot_from_json(src, args.kind)
    else:
        if args.kind != "sv":
            raise CLIError(
                f"--kind {args.kind} plots a JSON file (summary.json, labels.json); "
                "from a store only --kind sv"
            )
        with SnapshotStore.open(src, comm=comm) as st:
            field = _field_arg(st, args.field)
            if "singular_value" in st.parameter_names:  # a modes store (rom compress)
                sv = st.parameters[:, st.parameter_names.index("singular_value")]
                total = None
            else:  # a snapshot store: all singular values of the field
                from rom.compression._compress import compress

                res = compress(st, method="batch", field=field, comm=comm)
                sv, total = res.singular_values, res.details.get("total_energy")

        def draw() -> Any:
            return plotting.singular_values(
                sv, total_energy=total, title=f"singular values of {field!r}"
            )

    _on_rank0(comm, lambda: plotting.save(draw(), out), share=False)
    _echo(comm, f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------- parser
def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rom`` command (subcommands info, compress, cluster,
    export, plot)."""
    from rom import __version__
    from rom.compression._compress import METHODS

    common = _Parser(add_help=False)
    common.add_argument(
        "--log-level", default="WARNING", help="logging level on rank 0 (default WARNING)"
    )
    common.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of one line"
    )

    p = _Parser(
        prog="rom",
        description="Inspect, compress, cluster, export and plot snapshot "
        "stores (rom.io). Run under mpirun for a parallel run.",
    )
    p.add_argument("--version", action="version", version=f"rom {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("info", parents=[common], help="describe a snapshot store")
    s.add_argument("store", type=Path, help="the store's index file (e.g. thermal.h5)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument(
        "--verify",
        action="store_true",
        help="also read every segment: readable, right shapes, finite values",
    )
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser(
        "compress", parents=[common], help="compress a field into modes (written as a store)"
    )
    s.add_argument("store", type=Path, help="snapshot store (index file)")
    s.add_argument("--field", help="field name (optional when the store has one)")
    s.add_argument("--method", choices=METHODS, default="batch")
    s.add_argument(
        "--rel-l2-err",
        type=_nonneg_float,
        dest="rel_l2_err",
        help="relative tail: sum_{n>N} s_n^2 <= E^2 ||S||_F^2",
    )
    s.add_argument(
        "--l2-err", type=_nonneg_float, dest="l2_err", help="absolute tail: sum_{n>N} s_n^2 <= E^2"
    )
    s.add_argument("--rtol", type=_nonneg_float, help="keep s_n >= R s_1")
    s.add_argument("--rank", type=_positive_int, help="at most N modes (randomized: exactly)")
    s.add_argument(
        "--eps",
        type=_nonneg_float,
        help="hapod: mean-square target (1/m) ||S - U U^T S||_F^2 <= E^2",
    )
    s.add_argument("--chunk", type=_positive_int, default=64, help="columns per block")
    s.add_argument("--out", type=Path, required=True, help="modes store to write")
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_compress)

    s = sub.add_parser(
        "cluster",
        parents=[common],
        help="k-medoids clustering of the snapshots in the sine dissimilarity",
    )
    s.add_argument("store", type=Path, help="snapshot store (index file)")
    s.add_argument("--field", help="field name (optional when the store has one)")
    s.add_argument("--n-clusters", type=_positive_int, required=True)
    s.add_argument("--objective", choices=("sum", "max"), default="sum")
    s.add_argument("--n-init", type=_positive_int, default=1, help="k-medoids restarts")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True, help="labels JSON to write")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_cluster)

    s = sub.add_parser(
        "export",
        parents=[common],
        help="write columns (snapshots, modes, reconstructions) for ParaView",
    )
    s.add_argument("store", type=Path, help="snapshot store (index file)")
    s.add_argument("--field", help="field name (optional when the store has one)")
    s.add_argument(
        "--columns",
        nargs="+",
        metavar="SPEC",
        help="column indices or start:stop[:step] slices (default: all)",
    )
    s.add_argument(
        "--basis",
        type=Path,
        help="modes store: export the least-squares reconstructions in its span",
    )
    s.add_argument("--n-modes", type=_positive_int, help="use the first N modes of --basis")
    s.add_argument("--mesh", type=Path, help="take the mesh from this store instead")
    s.add_argument("--name", help="function name in ParaView (default: the field name)")
    s.add_argument("--out", type=Path, required=True, help="output directory")
    s.add_argument("--format", choices=("vtx", "xdmf"), default="vtx")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("plot", parents=[common], help="plot to a PNG (or PDF, SVG)")
    s.add_argument(
        "source", type=Path, help="a store (--kind sv) or a JSON file (summary.json, labels.json)"
    )
    s.add_argument("--kind", choices=("sv", "errors", "clusters", "indicator"), required=True)
    s.add_argument("--field", help="field name (optional when the store has one)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``rom`` command; returns the exit status (0, or 2 on an error)."""
    comm = MPI.COMM_WORLD
    limit_blas_per_rank()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        with _logging(args.log_level, comm), blas_threads(comm):
            return int(args.func(args, comm) or 0)
    except (StoreError, OSError, ValueError) as e:
        if debug:
            raise
        if comm.rank == 0:
            msg = " ".join(str(e).split()) or type(e).__name__
            print(f"rom: error: {msg}", file=sys.stderr, flush=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
