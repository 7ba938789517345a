"""One entry point for snapshot compression: batch, incremental, HAPOD or randomized.

``compress(source, method=...)`` takes an ndarray of this rank's owned rows or a
:class:`rom.io.SnapshotStore` and returns a :class:`CompressionResult`. For a store, the
streaming methods read column chunks of ``chunk`` columns (memory :math:`O(n_{local}(N +
\\text{chunk}))`); ``method="batch"`` reads the whole matrix into memory, use it only when the
owned rows of all snapshots fit.

Methods and their ``error_bound`` (on the Frobenius :math:`M`-norm projection error
:math:`\\|S - UU^TMS\\|_F` of the data):

``"batch"``
    :func:`rom.compression.pod` on all columns (``pod_method="auto"`` by default: the
    accurate method unless the tail lies far above the method of snapshots' floor): the
    tail :math:`\\sqrt{\\sum_{n>N}\\sigma_n^2}` (plus the factorization residual).
``"incremental"``
    :class:`rom.compression.IncrementalSVD`: the running :math:`\\sqrt{D}`.
``"hapod"``
    :func:`rom.compression.dist_hapod` (star tree over column chunks): the local tails,
    :math:`\\sqrt{\\sum_\\alpha t_\\alpha}`.
``"randomized"``
    :func:`rom.compression.randomized_svd`: ``None`` with a rank only; with ``l2_err`` or
    ``rel_l2_err`` the explicit residual of its basis plus the truncated tail.

Discarded energy is always a sum of discarded :math:`\\sigma^2` (smallest first) or an
explicitly formed residual, never ``total - kept`` (docs/theory.md §1).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression._hapod import column_chunks
from rom.compression._hapod import dist_hapod
from rom.compression._hapod import is_store
from rom.compression._pod import pod
from rom.compression._result import CompressionResult
from rom.compression.incremental_svd import IncrementalSVD
from rom.compression.randomized import randomized_svd
from rom.compression.randomized import randomized_svd_streamed
from rom.compression.truncation import validate_truncation
from rom.compression.truncation import warn_unmet_tolerance
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import product_error
from rom.parallel import validate_local_rows

__all__ = ["CompressionResult", "compress", "METHODS"]

logger = logging.getLogger(__name__)

METHODS = ("batch", "incremental", "hapod", "randomized")

_OPTIONS = {
    "batch": {"rank", "rtol", "l2_err", "rel_l2_err", "pod_method"},
    "incremental": {"rank", "rtol", "l2_err", "rel_l2_err", "novelty_tol", "orth_tol"},
    "hapod": {"eps", "l2_err", "rel_l2_err", "omega", "pod_method"},
    "randomized": {
        "rank",
        "rtol",
        "l2_err",
        "rel_l2_err",
        "oversampling",
        "power_iterations",
        "block_size",
        "seed",
    },
}


def _energy(blocks, product, comm) -> float:
    """:math:`\\|S\\|_M^2` in one streaming pass (blocks and product checked collectively)."""
    tot, err = 0.0, None
    for i, (_, b) in enumerate(blocks()):
        if err is None:
            err = product_error(product, b.shape[0]) if i == 0 else None
            err = err or _finite_block_error(b, i)
        if err is None:
            tot += float(np.sum(b * apply_product(product, b)))
    check_collective(err, comm)
    return float(allreduce_sum(tot, comm))


def _finite_block_error(b: np.ndarray, i: int) -> str | None:
    if np.all(np.isfinite(b)):
        return None
    return f"snapshot matrix contains NaN or Inf (column block {i})"


def compress(
    source: Any,
    *,
    method: str = "batch",
    field: str | None = None,
    chunk: int = 64,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    progress: bool = False,
    **truncation: Any,
) -> CompressionResult:
    """Compress snapshots into :math:`M`-orthonormal modes (collective).

    Parameters
    ----------
    source : ndarray of shape (n_local, m) or SnapshotStore
        Owned rows of the snapshots, or a store opened with the same ``comm`` (its owned rows
        are read; for a store every method but ``"batch"`` streams column chunks).
    method : {"batch", "incremental", "hapod", "randomized"}
        See the module docstring.
    field : str, optional
        Store field (may be omitted when the store has one).
    chunk : int
        Columns per block (incremental block size, HAPOD leaf size, streaming chunk).
    product : operator, optional
        Inner product :math:`M` on owned rows.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    progress : bool
        Progress bar on rank 0 while streaming a store (tqdm, terminals only).
    **truncation
        ``"batch"``: ``rank``, ``rtol``, ``l2_err``, ``rel_l2_err`` (:mod:`rom.compression.truncation`),
        ``pod_method`` ("auto", the default: :func:`rom.compression.pod`'s choice; "qr":
        singular values and the bound resolved to round-off; "snapshots": faster, tails
        below about :math:`\\sqrt{u}\\|S\\|` are noise).
        ``"incremental"``: ``rank``, ``rtol``, ``l2_err`` (allowance spread over the
        columns), ``rel_l2_err`` (allowance :math:`\\varepsilon^2\\|C_t\\|^2` per block),
        ``novelty_tol``, ``orth_tol``.
        ``"hapod"``: ``eps`` (mean-square target), or ``l2_err``
        (:math:`\\varepsilon^* = \\mathrm{l2\\_err}/\\sqrt{m}`), or ``rel_l2_err``
        (:math:`\\varepsilon^* = \\mathrm{rel\\_l2\\_err}\\,\\|S\\|_M/\\sqrt{m}`, one extra
        pass over a store); ``omega``; ``pod_method`` of the nodes (default "auto":
        :func:`rom.compression.hapod`).
        ``"randomized"``: ``rank`` and/or a tolerance ``l2_err`` / ``rel_l2_err`` (adaptive
        range finder, :func:`rom.compression.randomized_svd`), ``rtol``, ``oversampling``,
        ``power_iterations``, ``block_size``, ``seed``.

    Returns
    -------
    CompressionResult

    Warns
    -----
    ToleranceWarning
        When ``l2_err`` / ``rel_l2_err`` (``eps`` for ``"hapod"``) is below what the method
        can certify on these snapshots: the modes it can resolve are kept and
        ``error_bound``, still an upper bound, exceeds the request. ``"randomized"`` raises
        a ``ValueError`` instead, before any work, for a tolerance below its floor.
    """
    comm = get_comm(comm)
    t0 = time.perf_counter()
    err = None
    if method not in METHODS:
        err = f"method must be one of {METHODS}, got {method!r}"
    elif set(truncation) - _OPTIONS[method]:
        err = (
            f"method {method!r} does not take {sorted(set(truncation) - _OPTIONS[method])}; "
            f"options: {sorted(_OPTIONS[method])}"
        )
    elif isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        err = f"chunk must be a positive integer, got {chunk!r}"
    elif method == "randomized" and not {"rank", "l2_err", "rel_l2_err"} & set(truncation):
        err = "method 'randomized' needs rank=, l2_err= or rel_l2_err="
    elif method == "hapod" and sum(k in truncation for k in ("eps", "l2_err", "rel_l2_err")) != 1:
        err = "method 'hapod' needs exactly one of eps=, l2_err=, rel_l2_err="
    check_collective(err, comm)
    store = is_store(source)
    if not store:  # an array-like of owned rows (NaN/Inf are caught by each method)
        source, n_rows = validate_local_rows(source, "snapshot matrix", comm, check_finite=False)
    n = int(source.n_snapshots) if store else source.shape[1]
    err = "the source has no snapshots" if n == 0 else None
    if err is None and not store:
        no_rows = "snapshot matrix has no rows (on any rank)" if n_rows == 0 else None
        err = no_rows or product_error(product, source.shape[0])
    if err is None and truncation.get("rank") is not None:
        err = validate_truncation(rank=truncation["rank"], n_columns=n)
    check_collective(err, comm)
    if store:
        n, _ = column_chunks(source, chunk=int(chunk), field=field)

        def blocks():
            return source.iter_columns(field, chunk=int(chunk), progress=progress, comm=comm)
    else:
        n, blocks = column_chunks(source, chunk=int(chunk))
    timings: dict[str, float] = {}
    if method == "batch":
        X = source.read(field, comm=comm) if store else source
        opts = {"pod_method": "auto", **truncation}
        res = pod(X, product=product, comm=comm, **opts)
    elif method == "incremental":
        res = _incremental(blocks, n, product, comm, truncation)
    elif method == "hapod":
        res = _hapod(source, blocks, n, chunk, field, product, comm, truncation, timings)
    elif store:
        res = randomized_svd_streamed(blocks, n, product=product, comm=comm, **truncation)
    else:
        res = randomized_svd(source, product=product, comm=comm, **truncation)
    timings["total"] = time.perf_counter() - t0
    logger.debug(
        "compress(%s): %d snapshots -> %d modes in %.3g s", method, n, res.n_modes, timings["total"]
    )
    return replace(res, method=method, details={**res.details, "timings": timings})


def _incremental(blocks, n, product, comm, truncation) -> CompressionResult:
    est = IncrementalSVD(
        product=product,
        comm=comm,
        keep_coefficients=False,
        n_total=n if truncation.get("l2_err") is not None else None,
        **truncation,
    )
    for _, b in blocks():
        est.partial_fit(b)
    est.check_orthonormality()
    warn_unmet_tolerance(
        "compress(method='incremental')",
        est.error_bound_,
        est.total_energy_,
        n_modes=len(est.singular_values_),
        rank=truncation.get("rank"),
        l2_err=truncation.get("l2_err"),
        rel_l2_err=truncation.get("rel_l2_err"),
        hint="; method='batch' resolves the tail down to round-off",
        stacklevel=4,
    )
    return CompressionResult(
        modes=est.modes_,
        singular_values=est.singular_values_,
        error_bound=est.error_bound_,
        total_energy=est.total_energy_,
        n_snapshots=n,
        method="incremental",
        details={"discarded_energy": est.discarded_energy_},
    )


def _hapod(source, blocks, n, chunk, field, product, comm, truncation, timings):
    if "eps" in truncation:
        eps = float(truncation["eps"])
    elif "l2_err" in truncation:
        eps = float(truncation["l2_err"]) / math.sqrt(n)
    else:
        t1 = time.perf_counter()
        total = _energy(blocks, product, comm)
        timings["energy_pass"] = time.perf_counter() - t1
        # total < 0 only with an indefinite product: the first node POD's Gram check names it
        eps = float(truncation["rel_l2_err"]) * math.sqrt(max(total, 0.0) / n)
    return dist_hapod(
        source,
        eps=eps,
        omega=truncation.get("omega", 0.9),
        chunk=int(chunk),
        field=field,
        product=product,
        comm=comm,
        pod_method=truncation.get("pod_method", "auto"),
    )
