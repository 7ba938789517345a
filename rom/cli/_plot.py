"""``rom plot``: singular values of a store, or the curves of a JSON summary, as an image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression import compress

from ._common import CLIError
from ._common import atomic_output
from ._common import check_not_input
from ._common import echo
from ._common import on_rank0
from ._common import open_field

__all__ = ["add_command"]


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


def _run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from rom import plotting

    src, out = Path(args.source), Path(args.out)
    check_not_input(out, [src])
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
        with open_field(src, args.field, comm) as (st, field):
            if "singular_value" in st.parameter_names:  # a modes store (rom compress)
                sv = st.parameters[:, st.parameter_names.index("singular_value")]
                total = None
            else:  # a snapshot store: all singular values of the field
                res = compress(st, method="batch", field=field, comm=comm)
                sv, total = res.singular_values, res.total_energy

        def draw() -> Any:
            return plotting.singular_values(
                sv, total_energy=total, title=f"singular values of {field!r}"
            )

    with atomic_output(out, comm) as tmp:
        on_rank0(comm, lambda: plotting.save(draw(), tmp), share=False)
    echo(comm, f"wrote {out}")
    return 0


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom plot`` to the sub-command parsers ``sub``."""
    s = sub.add_parser("plot", parents=parents, help="plot to a PNG (or PDF, SVG)")
    s.add_argument(
        "source", type=Path, help="a store (--kind sv) or a JSON file (summary.json, labels.json)"
    )
    s.add_argument("--kind", choices=("sv", "errors", "clusters", "indicator"), required=True)
    s.add_argument("--field", help="field name (optional when the store has one)")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_run)
