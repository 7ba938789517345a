"""``rom cluster``: k-medoids clustering of the snapshots in the sine dissimilarity
(``docs/theory.md`` §3.1, §3.3), written as a labels JSON file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mpi4py import MPI

from rom.local import KMedoids
from rom.local import sine_dissimilarity
from rom.summary import jsonable

from ._common import CLIError
from ._common import add_output_arguments
from ._common import atomic_output
from ._common import check_output
from ._common import echo
from ._common import on_rank0
from ._common import open_field
from ._common import positive_int
from ._common import store_parser

__all__ = ["add_command"]


def _run(args: argparse.Namespace, comm: MPI.Comm) -> int:

    out = Path(args.out)
    check_output(out, args.overwrite, inputs=[Path(args.store)])
    with open_field(args.store, args.field, comm) as (st, field):
        m = st.n_snapshots
        if not 1 <= args.n_clusters <= m:
            raise CLIError(
                f"--n-clusters must be in [1, {m}] (the number of snapshots), got {args.n_clusters}"
            )
        X = st.read(field, comm=comm)  # a damaged segment fails on every rank
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
    with atomic_output(out, comm) as tmp:
        on_rank0(comm, lambda: tmp.write_text(json.dumps(result, indent=1)))
    echo(
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


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom cluster`` to the sub-command parsers ``sub``."""
    s = store_parser(
        sub, "cluster", parents, "k-medoids clustering of the snapshots in the sine dissimilarity"
    )
    s.add_argument("--n-clusters", type=positive_int, required=True)
    s.add_argument("--objective", choices=("sum", "max"), default="sum")
    s.add_argument("--n-init", type=positive_int, default=1, help="k-medoids restarts")
    s.add_argument("--seed", type=int, default=0)
    add_output_arguments(s, "labels JSON to write")
    s.set_defaults(func=_run)
