"""One entry point for snapshot compression: batch, incremental, HAPOD or randomized.

``compress(source, method=...)`` takes an ndarray of this rank's owned rows or a
:class:`rom.io.SnapshotStore` and returns a :class:`CompressionResult`. For a store, the
streaming methods read column chunks of ``chunk`` columns (memory :math:`O(n_{local}(N +
\\text{chunk}))`); ``method="batch"`` reads the whole matrix into memory, use it only when the
owned rows of all snapshots fit.

=============  ==============================================  ================================
method         algorithm                                       ``error_bound``
=============  ==============================================  ================================
"batch"        :func:`rom.compression._pod.pod` on all columns              tail :math:`\\sqrt{\\sum_{n>N}
                                                               \\sigma_n^2}` (exact)
"incremental"  :class:`rom.compression.incremental_svd.IncrementalSVD`     :math:`\\sqrt{D}` (running)
"hapod"        :func:`rom.compression._hapod.dist_hapod` (star, chunks)     :math:`\\sqrt{\\sum_\\alpha
                                                               t_\\alpha}` (local tails)
"randomized"   :func:`rom.compression.randomized.randomized_svd`           ``None``
=============  ==============================================  ================================

Every bound is on the Frobenius :math:`M`-norm projection error
:math:`\\|S - UU^TMS\\|_F` of the data.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression._hapod import _is_store, column_chunks, dist_hapod
from rom.compression._pod import pod
from rom.compression.incremental_svd import IncrementalSVD
from rom.compression.randomized import randomized_svd, randomized_svd_streamed
from rom.compression.truncation import truncation_rank, validate_truncation
from rom.parallel import Product, allreduce_sum, apply_product, check_collective, get_comm

__all__ = ["CompressionResult", "compress", "METHODS"]

logger = logging.getLogger(__name__)

METHODS = ("batch", "incremental", "hapod", "randomized")

_OPTIONS = {
    "batch": {"rank", "rtol", "l2_err", "rel_l2_err", "pod_method"},
    "incremental": {"rank", "rtol", "l2_err", "rel_l2_err", "novelty_tol", "orth_tol"},
    "hapod": {"eps", "l2_err", "rel_l2_err", "omega", "pod_method"},
    "randomized": {"rank", "oversampling", "power_iterations", "seed"},
}


@dataclass
class CompressionResult:
    """Outcome of :func:`compress`.

    Attributes
    ----------
    modes : ndarray of shape (n_local, N)
        This rank's rows of the :math:`M`-orthonormal modes.
    singular_values : ndarray of shape (N,)
    method : str
    n_snapshots : int
    error_bound : float or None
        Upper bound on :math:`\\|S - UU^TMS\\|_F` (``None`` for ``"randomized"``).
    timings : dict
        Seconds: ``"total"`` and, where measured, ``"energy_pass"``.
    details : dict
        Method-specific extras (e.g. the :class:`rom.compression._hapod.HapodResult`).
    """

    modes: np.ndarray
    singular_values: np.ndarray
    method: str
    n_snapshots: int
    error_bound: float | None
    timings: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def _energy(blocks, product, comm) -> float:
    """:math:`\\|S\\|_M^2` in one streaming pass."""
    tot = 0.0
    for _, b in blocks():
        tot += float(np.sum(b * apply_product(product, b)))
    return float(allreduce_sum(tot, comm))


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
        ``pod_method`` ("qr", the default: singular values and the bound resolved to
        round-off; "snapshots": faster, tails below about :math:`\\sqrt{u}\\|S\\|` are
        noise).
        ``"incremental"``: ``rank``, ``rtol``, ``l2_err`` (allowance spread over the
        columns), ``rel_l2_err`` (allowance :math:`\\varepsilon^2\\|C_t\\|^2` per block),
        ``novelty_tol``, ``orth_tol``.
        ``"hapod"``: ``eps`` (mean-square target), or ``l2_err``
        (:math:`\\varepsilon^* = \\mathrm{l2\\_err}/\\sqrt{m}`), or ``rel_l2_err``
        (:math:`\\varepsilon^* = \\mathrm{rel\\_l2\\_err}\\,\\|S\\|_M/\\sqrt{m}`, one extra
        pass over a store); ``omega``; ``pod_method`` (default "qr").
        ``"randomized"``: ``rank`` (required), ``oversampling``, ``power_iterations``,
        ``seed``.

    Returns
    -------
    CompressionResult
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
    elif not isinstance(chunk, (int, np.integer)) or chunk < 1:
        err = f"chunk must be a positive integer, got {chunk!r}"
    elif not (_is_store(source) or isinstance(source, np.ndarray)):
        err = (
            f"source must be an ndarray of owned rows or a SnapshotStore, "
            f"got {type(source).__name__}"
        )
    elif method == "randomized" and "rank" not in truncation:
        err = "method 'randomized' needs rank="
    elif method == "hapod" and sum(k in truncation for k in ("eps", "l2_err", "rel_l2_err")) != 1:
        err = "method 'hapod' needs exactly one of eps=, l2_err=, rel_l2_err="
    check_collective(err, comm)
    store = _is_store(source)
    if store:
        n, _ = column_chunks(source, chunk=int(chunk), field=field)

        def blocks():
            return source.iter_columns(field, chunk=int(chunk), progress=progress)
    else:
        n, blocks = column_chunks(source, chunk=int(chunk))
    timings: dict[str, float] = {}
    details: dict[str, Any] = {}

    if method == "batch":
        X = source.read(field) if store else source
        opts = {k: v for k, v in truncation.items() if k != "pod_method"}
        check_collective(validate_truncation(**opts), comm)
        # all modes, then the rule here: the tail is summed from the dropped values (smallest
        # first) plus the unresolved remainder, never as total - kept (METHODS section 1)
        U, s, d = pod(
            X,
            product=product,
            comm=comm,
            method=truncation.get("pod_method", "qr"),
            return_details=True,
        )
        total = d["total_energy"]
        extra = max(total - float(np.sum(s[::-1] ** 2)), 0.0)
        N = truncation_rank(s, total_energy=total, extra_tail=extra, **opts)
        bound = math.sqrt(float(np.sum(s[N:][::-1] ** 2)) + extra)
        U, s = U[:, :N], s[:N]
        details["total_energy"] = total
    elif method == "incremental":
        est = IncrementalSVD(
            product=product,
            comm=comm,
            keep_coefficients=False,
            n_total=n if truncation.get("l2_err") is not None else None,
            **truncation,
        )
        for _, b in blocks():
            est.partial_fit(b)
        if n == 0:
            check_collective("compress: the source has no snapshots", comm)
        est.check_orthonormality()
        U, s, bound = est.modes_, est.singular_values_, est.error_bound_
        details["total_energy"] = est.total_energy_
    elif method == "hapod":
        if n == 0:
            check_collective("compress: the source has no snapshots", comm)
        if "eps" in truncation:
            eps = float(truncation["eps"])
        elif "l2_err" in truncation:
            eps = float(truncation["l2_err"]) / math.sqrt(n)
        else:
            t1 = time.perf_counter()
            total = _energy(blocks, product, comm)
            timings["energy_pass"] = time.perf_counter() - t1
            eps = float(truncation["rel_l2_err"]) * math.sqrt(total / n)
        U, s, res = dist_hapod(
            source,
            eps=eps,
            omega=truncation.get("omega", 0.9),
            chunk=int(chunk),
            field=field,
            product=product,
            comm=comm,
            method=truncation.get("pod_method", "qr"),
        )
        bound = res.error_bound
        details["hapod"] = res
    else:  # randomized
        opts = {
            k: truncation[k]
            for k in ("oversampling", "power_iterations", "seed")
            if k in truncation
        }
        if store:
            U, s = randomized_svd_streamed(
                blocks, n, rank=truncation["rank"], product=product, comm=comm, **opts
            )
        else:
            U, s = randomized_svd(
                source, rank=truncation["rank"], product=product, comm=comm, **opts
            )
        bound = None
    timings["total"] = time.perf_counter() - t0
    logger.debug(
        "compress(%s): %d snapshots -> %d modes in %.3g s", method, n, len(s), timings["total"]
    )
    return CompressionResult(
        modes=U,
        singular_values=s,
        method=method,
        n_snapshots=n,
        error_bound=bound,
        timings=timings,
        details=details,
    )
