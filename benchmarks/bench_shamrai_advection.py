"""Error-constrained clustering on the synthetic 1-D advection protocol (Shamrai, arXiv:2601.11626).

Protocol of docs/theory.md §4: exact solutions u0((x - beta t) mod 1) on 1024 cells,
201 times, each sample reshaped row-major to a 3072 x 67 block; r = 67, eps = 0.05, patience
10, seed 23. Compares the predictors (Weyl, residual, CGS2 estimator; norm and residual
orderings; corrected vs published forms) with baselines (random labels with K in
{10, 100, 1000}, k-means and HDBSCAN on flattened blocks, exact-SVD merging): clusters,
non-singletons, compression ratio CR, mean +- std of the true error over compressing
non-singleton clusters, violations (clusters over eps; for the predictors: before
certification), time, and the cost of one bound evaluation against an exact SVD of the same
candidate merge (measured in the same run). Bound tightness (bound / true error) is measured on
the clusters found by the estimator.

    .venv/bin/python benchmarks/bench_shamrai_advection.py --samples 200     # CI size
    .venv/bin/python benchmarks/bench_shamrai_advection.py --samples 5000 --no-exact \
        --no-published --baseline-sketch 2048 --tightness-max 50 \
        --out benchmarks/results/shamrai_advection_5000.json              # full protocol

Options beyond the protocol's parameters: ``--no-exact`` skips the exact-SVD merging baseline,
``--no-published`` the fits with the published (non-guaranteed) forms (the tightness study
still evaluates both published forms on the estimator's clusters), ``--no-hdbscan`` the
HDBSCAN baseline; ``--tightness-max N`` evaluates the bounds on a seeded random subset of at
most N of the estimator's non-singleton clusters (default: all). ``--baseline-sketch D`` runs
k-means and HDBSCAN on a Johnson-Lindenstrauss sketch ``X G / sqrt(D)`` of the flattened
blocks ``X`` (``G``: 205,824 x D standard normal, the row-major stream of
``default_rng([seed, D])``, generated 2048 rows at a time and never held whole); ``0`` runs
them on ``X`` itself; default ``0`` up to 1000 samples, 2048 above (k-means on ``X`` copies it
twice, and HDBSCAN's space-partitioning trees degenerate in 205,824 dimensions). The JSON
records which data they ran on (``baseline_data``, and the method names say ``sketch D=..``).
The baselines' clusters are certified by :func:`rom.local.merge_clustering.cluster_errors`, except
(serial) clusters of more than 0.5 GB of blocks (k-means can put most blocks in one cluster):
the same singular values from a QR of the transposed concatenation streamed 256 blocks at a
time; ``n_streamed`` counts them.

Memory: the blocks take samples * 1.65 MB and are held once, as the rows of one
``(samples, 205,824)`` array (on rank 0; serial blocks are views of its rows). The per-block
spectra add only singular values: blocks no wider than ``r + 5`` are cached as themselves (a
reference). The flattened blocks are that array (no copy); a sketch takes samples * D * 8
bytes. The JSON records rank 0's peak RSS after each phase (``memory``). Under
``mpirun -n P`` every rank keeps only its rows of every block, and rank 0 also the whole array
for the flattened baselines.

``--other-blas-threads T`` (default 1) limits the BLAS libraries other than numpy's (the
OpenBLAS bundled with scipy's wheel) to T threads: ``rom`` calls both, and two thread pools
busy-waiting on the same cores slow the predictions and make the timings erratic.

Writes ``benchmarks/results/shamrai_advection.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import numpy as np
from mpi4py import MPI
from threadpoolctl import ThreadpoolController
from threadpoolctl import threadpool_info

from rom.local import bounds
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.merge_clustering import cluster_errors
from rom.local.merge_clustering import clustering_metrics
from rom.parallel import distribute_rows
from rom.synthetic import advection_sample

RESULTS = Path(__file__).parent / "results"
SKETCH_CHUNK = 2048  # rows of the sketch's Gaussian matrix held at a time
SKETCH_AUTO = (1000, 2048)  # default --baseline-sketch: full data up to 1000 samples, else 2048
STREAM_GB = 0.5  # baseline clusters of more than this (GB of blocks) are certified streamed
STREAM_CHUNK = 256  # blocks per streamed QR step


def peak_rss_gb():
    """Peak resident set size of this process so far, GB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def limit_other_blas(threads):
    """Limit every BLAS library but numpy's to ``threads`` threads; their paths.

    With wheels, scipy bundles its own OpenBLAS next to numpy's; ``rom`` calls both (scipy's
    ``trtri``/``trmm`` in the range bases, numpy's elsewhere) and the idle pool's threads
    busy-wait while the other pool works, taking cores from it. scipy's calls here are small
    (``m x r`` triangular products). Nothing is limited when only one BLAS is loaded.
    """
    ctl = ThreadpoolController()
    blas = [lib for lib in ctl.lib_controllers if lib.user_api == "blas"]
    numpy_dirs = (Path(np.__file__).parent, Path(np.__file__).parent.parent / "numpy.libs")
    other = [
        lib.filepath
        for lib in blas
        if not any(Path(lib.filepath).is_relative_to(d) for d in numpy_dirs)
    ]
    if len(blas) < 2 or len(other) == len(blas):
        return []
    ctl.select(filepath=other).limit(limits=threads)
    return other


def generate(samples, *, seed, n_cells, n_times, cols, comm):
    """The advection blocks of :func:`rom.synthetic.advection_blocks` (same samples), held once.

    Rank 0 keeps every sample flattened as a row of one ``(samples, n_times * n_cells)`` array
    ``data`` (None elsewhere). Serial: the blocks are views of its rows reshaped to
    ``(-1, cols)``; under MPI each rank keeps copies of its rows of every block only.
    """
    size = n_times * n_cells
    if size % cols:
        raise ValueError(f"n_times*n_cells = {size} must be divisible by the rank {cols}")
    data = np.empty((samples, size)) if comm.rank == 0 else None
    rng = np.random.default_rng(seed)  # the stream of advection_blocks(samples, seed=seed)
    blocks = []
    for i in range(samples):
        u = advection_sample(rng, n_cells=n_cells, n_times=n_times)
        if data is not None:
            data[i] = u.ravel()
        if comm.size == 1:
            blocks.append(data[i].reshape(-1, cols))
        else:
            blocks.append(distribute_rows(u.reshape(-1, cols), comm))
    return data, blocks


def gaussian_sketch(X, dim, seed, chunk=SKETCH_CHUNK):
    """Johnson-Lindenstrauss sketch ``X G / sqrt(dim)`` of the rows of ``X``.

    ``G`` (``X.shape[1] x dim``, standard normal) comes from ``default_rng([seed, dim])`` and is
    generated ``chunk`` rows at a time, so only ``chunk x dim`` of it is ever held; its rows come
    in stream order, so ``G`` does not depend on ``chunk``.
    """
    rng = np.random.default_rng([seed, dim])
    Y = np.zeros((X.shape[0], dim))
    for a in range(0, X.shape[1], chunk):
        G = rng.standard_normal((min(chunk, X.shape[1] - a), dim))
        Y += X[:, a : a + chunk] @ G
    Y /= np.sqrt(dim)
    return Y


def labels_to_clusters(labels):
    """Clusters (lists of block indices, by first appearance); label -1 (noise) -> singletons."""
    clusters, where = [], {}
    for j, lab in enumerate(labels):
        if lab < 0:
            clusters.append([j])
        elif lab in where:
            clusters[where[lab]].append(j)
        else:
            where[lab] = len(clusters)
            clusters.append([j])
    return clusters


def streamed_error(blocks, members, *, r, chunk=STREAM_CHUNK):
    """True e_r of a wide concatenation (serial) without forming it.

    ``X = [A_1 ... A_K]`` and ``X^T`` have the same singular values, those of the triangular
    factor of a QR of ``X^T``, accumulated ``chunk`` blocks at a time:
    ``R <- qr([R; A_j^T ...], 'r')`` (Householder QR, as stable as the TSQR of
    :func:`rom.local.merge_clustering.cluster_errors`). Holds ``(m + chunk * n_j) x m`` at a time.
    """
    m = blocks[members[0]].shape[0]
    R = np.zeros((0, m))
    for start in range(0, len(members), chunk):
        R = np.linalg.qr(
            np.vstack([R] + [blocks[j].T for j in members[start : start + chunk]]), mode="r"
        )
    sv2 = np.linalg.svd(R, compute_uv=False) ** 2
    total = float(np.sum(sv2))
    tail = float(np.sum(np.sort(sv2[r:])))  # from the smallest term, as in rom.local.bounds._tail
    return float(np.sqrt(tail / total)) if total > 0 else 0.0


def baseline_errors(blocks, clusters, *, r, comm):
    """:func:`cluster_errors`, except (serial) clusters whose concatenation would exceed
    ``STREAM_GB``: :func:`streamed_error` (a k-means cluster can hold most blocks)."""
    errors, n_streamed = np.zeros(len(clusters)), 0
    for c, members in enumerate(clusters):
        if len(members) < 2:
            continue
        width = sum(blocks[j].shape[1] for j in members)
        if comm.size == 1 and blocks[members[0]].shape[0] * width * 8 > STREAM_GB * 1e9:
            errors[c] = streamed_error(blocks, members, r=r)
            n_streamed += 1
        else:
            errors[c] = cluster_errors(blocks, [members], rank=r, comm=comm)[0]
    return errors, n_streamed


def baseline_row(name, clusters, blocks, widths, *, r, eps, comm, n_rows, fit_time):
    t0 = time.perf_counter()
    errors, n_streamed = baseline_errors(blocks, clusters, r=r, comm=comm)
    t_metric = time.perf_counter() - t0
    m = clustering_metrics(widths, clusters, errors, n_rows=n_rows, rank=r, eps=eps)
    m.update(
        cluster_time=fit_time,
        certify_time=t_metric,
        n_streamed=n_streamed,
        largest_cluster=max(len(members) for members in clusters),
    )
    return {"method": name, **m}


def tightness(blocks, clusters, *, r, comm, max_clusters=None, seed=0):
    """bound / true error on every non-singleton cluster (blocks in cluster order).

    ``max_clusters``: at most that many, a seeded random subset (kept in cluster order).
    """
    multi = [members for members in clusters if len(members) >= 2]
    n_total = len(multi)
    if max_clusters is not None and n_total > max_clusters:
        pick = np.random.default_rng([seed, 1]).choice(n_total, max_clusters, replace=False)
        multi = [multi[c] for c in sorted(pick)]
    rows = []
    for members in multi:
        bl = [blocks[j] for j in members]
        row = {"n_blocks": len(members)}
        for key, f, kw in [
            ("true", bounds.exact_error, {}),
            ("estimator", bounds.estimator_bound, {}),
            ("estimator_published", bounds.estimator_bound, {"published": True}),
            ("weyl", bounds.weyl_bound, {}),
            ("weyl_published", bounds.weyl_bound, {"published": True}),
            ("residual", bounds.residual_bound, {}),
            ("kyfan_lower", bounds.kyfan_lower_bound, {}),
        ]:
            t = time.perf_counter()
            row[key] = f(bl, rank=r, comm=comm, **kw)
            row[key + "_time"] = time.perf_counter() - t
        if row["true"] > 0:
            rows.append(row)
    summary = {}
    for key in (
        "estimator",
        "estimator_published",
        "weyl",
        "weyl_published",
        "residual",
        "kyfan_lower",
    ):
        ratio = np.array([row[key] / row["true"] for row in rows])
        if key == "kyfan_lower":
            viol = int(sum(row[key] > row["true"] + 1e-7 for row in rows))
        else:
            viol = int(sum(row[key] < row["true"] - 1e-7 for row in rows))
        summary[key] = {
            "median_ratio": float(np.median(ratio)) if ratio.size else None,
            "max_ratio": float(ratio.max()) if ratio.size else None,
            "min_ratio": float(ratio.min()) if ratio.size else None,
            "violations": viol,
            # from scratch on whole clusters (block SVDs included), vs TSQR + SVD of the same
            "time_vs_exact_svd": float(
                sum(row[key + "_time"] for row in rows) / sum(row["true_time"] for row in rows)
            )
            if rows
            else None,
        }
    return {
        "n_clusters": len(rows),
        "n_nonsingleton_clusters": n_total,
        "max_clusters": max_clusters,
        "summary": summary,
    }


def parse_args():
    """Command-line options (the protocol's parameters and the study's switches)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--rank", type=int, default=67)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--n-cells", type=int, default=1024)
    ap.add_argument("--n-times", type=int, default=201)
    ap.add_argument("--no-exact", action="store_true", help="skip the exact-SVD merging baseline")
    ap.add_argument(
        "--no-published",
        action="store_true",
        help="skip the fits with the published (non-guaranteed) forms",
    )
    ap.add_argument("--no-hdbscan", action="store_true")
    ap.add_argument(
        "--fits",
        default=None,
        metavar="NAMES",
        help="comma-separated fits to run (e.g. exact/norm); default: all",
    )
    ap.add_argument(
        "--fits-only",
        action="store_true",
        help="run the fits only: no baselines, no tightness study",
    )
    ap.add_argument(
        "--no-random",
        action="store_true",
        help="skip the random-label baselines",
    )
    ap.add_argument(
        "--baseline-sketch",
        type=int,
        default=None,
        metavar="D",
        help="run k-means/HDBSCAN on a Gaussian sketch of the flattened blocks to D "
        "dimensions (0: on the flattened blocks; default: 0 up to "
        f"{SKETCH_AUTO[0]} samples, else {SKETCH_AUTO[1]})",
    )
    ap.add_argument(
        "--tightness-max",
        type=int,
        default=None,
        metavar="N",
        help="bound tightness on at most N (seeded random) clusters (default: all)",
    )
    ap.add_argument(
        "--other-blas-threads",
        type=int,
        default=1,
        metavar="T",
        help="threads of the BLAS libraries other than numpy's, e.g. scipy's "
        "bundled OpenBLAS (default 1; 0: leave them alone)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "shamrai_advection.json")
    args = ap.parse_args()
    if args.baseline_sketch is None:
        args.baseline_sketch = 0 if args.samples <= SKETCH_AUTO[0] else SKETCH_AUTO[1]
    if args.baseline_sketch < 0:
        ap.error("--baseline-sketch must be >= 0")
    if args.tightness_max is not None and args.tightness_max < 1:
        ap.error("--tightness-max must be >= 1")
    return args


def fit_runs(args):
    """The fits asked for, in the order they run: each the ``predictor``, ``ordering`` and
    ``published`` options of its :class:`ErrorConstrainedClustering`."""
    runs = [
        (predictor, ordering, False)
        for predictor in ("weyl", "residual", "estimator")
        for ordering in ("norm", "residual")
    ]
    if not args.no_published:
        runs += [
            ("weyl", "norm", True),
            ("estimator", "norm", True),
            ("estimator", "residual", True),
        ]
    if not args.no_exact:
        runs += [("exact", "norm", False), ("exact", "residual", False)]
    runs = [dict(zip(("predictor", "ordering", "published"), run)) for run in runs]
    if args.fits:
        wanted = set(args.fits.split(","))
        runs = [run for run in runs if run_name(**run) in wanted]
    return runs


def run_name(predictor, ordering, published):
    """``predictor[-published]/ordering``, the name of a fit in the table and the JSON."""
    return f"{predictor}{'-published' if published else ''}/{ordering}"


def run_fits(args, blocks, *, comm, memory):
    """Every fit of :func:`fit_runs` on one shared set of block spectra.

    Returns ``(rows, fitted, t_spectra)``: the table rows, the fitted estimators by name and
    the time of the per-block SVDs.
    """
    r, root = args.rank, comm.rank == 0
    # one set of per-block SVDs for every fit (estimator width r + 5 covers the others)
    t1 = time.perf_counter()
    spectra = bounds.block_spectra(blocks, comm=comm, keep=r + 5)
    t_spectra = time.perf_counter() - t1
    memory["peak_rss_gb"]["spectra"] = peak_rss_gb()
    if root:
        print(f"block spectra in {t_spectra:.1f} s (shared by the fits below)", flush=True)
    rows, fitted = [], {}
    for run in fit_runs(args):
        name = run_name(**run)
        t1 = time.perf_counter()
        est = ErrorConstrainedClustering(
            rank=r, eps=args.eps, patience=args.patience, comm=comm, **run
        ).fit(blocks, spectra=spectra)
        wall = time.perf_counter() - t1
        m = dict(est.metrics_)
        m["wall_time"] = wall
        m["time_per_evaluation"] = m["predict_time"] / max(1, m["n_evaluations"])
        rows.append({"method": name, **m})
        fitted[name] = est
        if root:
            print(
                f"  {name:28s} {m['n_clusters']:5d} clusters  CR {m['compression_ratio']:.2f}"
                f"  {wall:.1f} s",
                flush=True,
            )
    memory["peak_rss_gb"]["fits"] = peak_rss_gb()
    exact_cost = next(
        (row["time_per_evaluation"] for row in rows if row["method"] == "exact/norm"), None
    )
    for row in rows:
        row["cost_vs_exact_svd"] = row["time_per_evaluation"] / exact_cost if exact_cost else None
    return rows, fitted, t_spectra


def broadcast_baseline(name, cluster, args, blocks, widths, *, comm, n_rows):
    """``baseline_row`` of the labels ``cluster()`` computes on rank 0 (broadcast to all); the
    fit time includes the broadcast."""
    t1 = time.perf_counter()
    labels = comm.bcast(cluster() if comm.rank == 0 else None, root=0)
    return baseline_row(
        name,
        labels_to_clusters(labels),
        blocks,
        widths,
        r=args.rank,
        eps=args.eps,
        comm=comm,
        n_rows=n_rows,
        fit_time=time.perf_counter() - t1,
    )


def random_baselines(args, blocks, widths, *, comm, n_rows):
    """Random labels with K in {10, 100, 1000} (drawn on rank 0, broadcast)."""
    rows = []
    rng = np.random.default_rng(args.seed)
    for K in () if args.no_random else (10, 100, 1000):
        if K > args.samples:
            continue
        draw = lambda K=K: rng.integers(K, size=args.samples)  # noqa: E731
        rows.append(
            broadcast_baseline(
                f"random K={K}", draw, args, blocks, widths, comm=comm, n_rows=n_rows
            )
        )
    return rows


def baseline_features(args, data, *, comm, n_rows):
    """Rank 0's features for k-means/HDBSCAN (the flattened blocks, rows of ``data``, no copy;
    or their sketch) and the ``baseline_data`` record."""
    D = args.baseline_sketch
    t1 = time.perf_counter()
    feats = (gaussian_sketch(data, D, args.seed) if D else data) if comm.rank == 0 else None
    info = {
        "kind": "sketch" if D else "full",
        "dim": D or n_rows * args.rank,
        "dtype": "float64",
        "time": time.perf_counter() - t1,
    }
    if D:
        info["sketch"] = (
            f"X G / sqrt({D}), X the flattened blocks, G standard normal "
            f"(row-major stream of default_rng([{args.seed}, {D}]))"
        )
    if comm.rank == 0:
        print(
            f"k-means/HDBSCAN on {info['kind']} data, {info['dim']} dims ({info['time']:.1f} s)",
            flush=True,
        )
    return feats, info


def feature_baselines(args, feats, blocks, widths, *, K, comm, n_rows, memory):
    """k-means with ``K`` clusters and HDBSCAN on rank 0's features; labels broadcast."""
    from sklearn.cluster import HDBSCAN
    from sklearn.cluster import KMeans

    suffix = f" (sketch D={args.baseline_sketch})" if args.baseline_sketch else ""
    methods = [
        (
            f"k-means K={K}{suffix}",
            "k-means",
            lambda: KMeans(n_clusters=K, n_init=3, random_state=args.seed).fit_predict(feats),
        )
    ]
    if not args.no_hdbscan:
        methods.append(
            (
                f"HDBSCAN min=2{suffix}",
                "hdbscan",
                lambda: HDBSCAN(min_cluster_size=2, copy=True).fit_predict(feats),
            )
        )
    rows = []
    for name, key, cluster in methods:
        rows.append(
            broadcast_baseline(name, cluster, args, blocks, widths, comm=comm, n_rows=n_rows)
        )
        memory["peak_rss_gb"][key] = peak_rss_gb()
    return rows


def run_baselines(args, data, blocks, fitted, *, comm, n_rows, memory):
    """Random, k-means and HDBSCAN baselines, then the bound tightness on the estimator's
    clusters. Returns ``(rows, tightness, baseline_data)``."""
    widths = [A.shape[1] for A in blocks]
    rows = random_baselines(args, blocks, widths, comm=comm, n_rows=n_rows)
    memory["peak_rss_gb"]["random"] = peak_rss_gb()
    feats, baseline_data = baseline_features(args, data, comm=comm, n_rows=n_rows)
    K_est = fitted["estimator/norm"].metrics_["n_clusters"]
    rows += feature_baselines(
        args, feats, blocks, widths, K=K_est, comm=comm, n_rows=n_rows, memory=memory
    )
    del feats
    t1 = time.perf_counter()
    tight = tightness(
        blocks,
        fitted["estimator/norm"].clusters_,
        r=args.rank,
        comm=comm,
        max_clusters=args.tightness_max,
        seed=args.seed,
    )
    tight["time"] = time.perf_counter() - t1
    memory["peak_rss_gb"]["tightness"] = peak_rss_gb()
    return rows, tight, baseline_data


def print_table(rows, tight):
    """The methods table and the tightness summary (rank 0)."""
    head = (
        f"{'method':28s} {'clusters':>8s} {'non-s':>6s} {'CR':>6s} {'mean err':>9s} "
        f"{'std':>8s} {'viol':>5s} {'pre-viol':>8s} {'time s':>8s} {'eval/exact':>10s}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for row in rows:
        pre = row.get("precertify_violations", "")
        cost = row.get("cost_vs_exact_svd")
        t = row.get("wall_time", row["cluster_time"] + row["certify_time"])
        print(
            f"{row['method']:28s} {row['n_clusters']:8d} {row['n_nonsingletons']:6d} "
            f"{row['compression_ratio']:6.2f} {row['mean_error']:9.4f} "
            f"{row['std_error']:8.4f} {row['violations']:5d} {pre!s:>8s} {t:8.1f} "
            f"{'' if cost is None else f'{cost:10.3f}'}"
        )
    if tight is None:
        return
    print(
        f"\nbound / true error on {tight['n_clusters']} of the "
        f"{tight['n_nonsingleton_clusters']} non-singleton clusters of estimator/norm:"
    )
    for key, s in tight["summary"].items():
        if s["median_ratio"] is not None:
            print(
                f"  {key:22s} median {s['median_ratio']:9.3f}  min {s['min_ratio']:9.3f}"
                f"  max {s['max_ratio']:9.3f}  violations {s['violations']}"
                f"  time/exact SVD {s['time_vs_exact_svd']:.2f}"
            )


NOTES = (
    "violations: clusters with exact e_r > eps after certification; "
    "precertify_violations: accepted by the predictor with e_r > eps; "
    "cost_vs_exact_svd: time per candidate evaluation / the exact-SVD "
    "predictor's time per candidate evaluation (same run); the per-block SVDs "
    "(spectra_time) are computed once and shared by all fits, so wall_time "
    "excludes them; errors: mean/std "
    "over non-singleton clusters that compress; k-means/HDBSCAN ran on "
    "baseline_data (the flattened blocks or their Gaussian sketch; its time "
    "is not in their cluster_time); memory: rank 0's peak RSS after each "
    "phase."
)


def result_record(args, rows, tight, *, comm, n_rows, limited, times, baseline_data, memory):
    """The JSON record of the run (``times``: generation and spectra times)."""
    return {
        "protocol": {
            "samples": args.samples,
            "seed": args.seed,
            "rank": args.rank,
            "eps": args.eps,
            "patience": args.patience,
            "n_cells": args.n_cells,
            "n_times": args.n_times,
            "block_shape": [n_rows, args.rank],
            "ranks": comm.size,
            "runs": [row["method"] for row in rows if "wall_time" in row],
        },
        "machine": {
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "blas": [
                (i["internal_api"], i.get("version"), i["num_threads"]) for i in threadpool_info()
            ],
            "blas_limited": [Path(f).name for f in limited],
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "generation_time": times["generation"],
        "spectra_time": times["spectra"],
        "baseline_data": baseline_data,
        "memory": memory,
        "notes": NOTES,
        "methods": rows,
        "tightness_on_estimator_clusters": tight,
    }


def main():
    args = parse_args()
    limited = limit_other_blas(args.other_blas_threads) if args.other_blas_threads > 0 else []
    comm = MPI.COMM_WORLD
    root = comm.rank == 0
    r = args.rank
    memory = {}

    t0 = time.perf_counter()
    data, blocks = generate(
        args.samples, seed=args.seed, n_cells=args.n_cells, n_times=args.n_times, cols=r, comm=comm
    )
    times = {"generation": time.perf_counter() - t0}
    n_rows = args.n_times * args.n_cells // r
    memory["data_gb"] = data.nbytes / 1e9 if root else None
    memory["peak_rss_gb"] = {"generation": peak_rss_gb()}
    if root:
        print(
            f"{args.samples} blocks of {n_rows} x {r} generated in {times['generation']:.1f} s "
            f"({comm.size} rank(s), {memory['data_gb']:.2f} GB)",
            flush=True,
        )
    rows, fitted, times["spectra"] = run_fits(args, blocks, comm=comm, memory=memory)
    tight, baseline_data = None, None
    if not args.fits_only:
        more, tight, baseline_data = run_baselines(
            args, data, blocks, fitted, comm=comm, n_rows=n_rows, memory=memory
        )
        rows += more
    if root:
        print_table(rows, tight)
        result = result_record(
            args,
            rows,
            tight,
            comm=comm,
            n_rows=n_rows,
            limited=limited,
            times=times,
            baseline_data=baseline_data,
            memory=memory,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
