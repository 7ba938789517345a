"""Triangular products on row ranges (rom.triangular): the GIL, measured.

``Y = X triu(U)`` for a 200,000 x 400 C-ordered ``X`` (the triangular product of the
accurate POD's Cholesky-QR pass), three ways, in ``--repeat`` interleaved rounds (default 7),
each call right after an untimed call of itself (the *repeat* protocol of ``bench_pod``)::

    .venv/bin/python benchmarks/bench_triangular.py

``scipy_blas_threaded``
    one ``scipy.linalg.blas.dtrmm`` call with the BLAS threads (the POD's previous code);
``scipy_two_ranges``
    two row halves in two Python threads, one BLAS thread each, through
    ``scipy.linalg.blas.dtrmm`` (its f2py wrapper holds the GIL);
``trmm_rows_two_ranges``
    the same halves through ``rom.triangular.trmm_rows`` (scipy's Cython-level ``dtrmm`` by
    ctypes, GIL released), as ``rom.compression._pod.right_solve_upper`` runs them.

Each copies ``X`` into a preallocated result first (as ``right_solve_upper`` does). Results are
checked against numpy's ``X @ triu(U)``. Targets: ``trmm_rows`` in two ranges at least 1.5x
faster than scipy's wrapper in two ranges (the GIL is released) and within 1.15x of one
BLAS-threaded call. Results: ``benchmarks/results/triangular.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.linalg as sla
from bench_pod import interleaved, machine
from threadpoolctl import threadpool_limits

from rom.parallel import row_threads, split_rows
from rom.triangular import trmm_rows

RESULTS = Path(__file__).parent / "results"


def variants(X, U, out):
    """The three ways of ``out = X triu(U)`` (module docstring)."""
    n = X.shape[0]
    Uf = np.asfortranarray(np.triu(U))
    Uc = np.ascontiguousarray(np.triu(U))

    def copy(lo, hi):
        out[lo:hi] = X[lo:hi]

    def blas_threaded():
        split_rows(copy, n)
        sla.blas.dtrmm(1.0, Uf, out.T, side=0, lower=0, trans_a=1, overwrite_b=1)
        return out

    def ranges(kernel):
        def part(lo, hi):
            copy(lo, hi)
            kernel(out[lo:hi])

        def run():
            with row_threads() as T:
                split_rows(part, n, threads=T)
            return out

        return run

    def scipy_kernel(B):
        res = sla.blas.dtrmm(1.0, Uf, B.T, side=0, lower=0, trans_a=1, overwrite_b=1)
        assert np.shares_memory(res, B)  # a row range of a C-ordered array: in place

    return {
        "scipy_blas_threaded": blas_threaded,
        "scipy_two_ranges": ranges(scipy_kernel),
        "trmm_rows_two_ranges": ranges(lambda B: trmm_rows(B, Uc)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--cols", type=int, default=400)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.cols))
    U = np.triu(rng.standard_normal((args.cols, args.cols))) / np.sqrt(args.cols)
    U += np.eye(args.cols)
    out = np.zeros_like(X)
    ref = X @ np.triu(U)
    with threadpool_limits(limits=2, user_api="blas"):  # two row ranges, two BLAS threads
        times, _ = interleaved(variants(X, U, out), args.repeat)
        errors = {}
        for name, fn in variants(X, U, out).items():
            errors[name] = float(np.abs(fn() - ref).max() / np.abs(ref).max())
    rec = times["repeat"]
    med = {k: float(np.median(v)) for k, v in rec.items()}

    def per_round(a, b):
        return float(np.median(np.asarray(rec[a]) / np.asarray(rec[b])))

    ratios = {
        "scipy_two_ranges_over_trmm_rows": per_round("scipy_two_ranges", "trmm_rows_two_ranges"),
        "trmm_rows_over_scipy_blas_threaded": per_round(
            "trmm_rows_two_ranges", "scipy_blas_threaded"
        ),
    }
    res = {
        "shape": [args.rows, args.cols],
        "machine": machine(),
        "timing": f"interleaved rounds, {args.repeat} of them; repeat protocol judged",
        "all_times_s": times,
        "median_s": med,
        "round_ratio_medians": ratios,
        "max_rel_error_vs_numpy": errors,
        "targets": {
            "trmm_rows two ranges >= 1.5x faster than scipy two ranges": ratios[
                "scipy_two_ranges_over_trmm_rows"
            ]
            >= 1.5,
            "trmm_rows two ranges within 1.15x of one BLAS-threaded call": ratios[
                "trmm_rows_over_scipy_blas_threaded"
            ]
            <= 1.15,
            "every variant equals numpy's product to 1e-14": max(errors.values()) <= 1e-14,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "triangular.json").write_text(json.dumps(res, indent=1))
    print(
        json.dumps(
            {
                k: res[k]
                for k in ("median_s", "round_ratio_medians", "max_rel_error_vs_numpy", "targets")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
