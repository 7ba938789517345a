"""Randomized SVD in an :math:`M` inner product (Halko, Martinsson, Tropp, SIAM Rev. 53, 2011).

For snapshots :math:`S` (rows distributed) and target rank :math:`k`, with
:math:`p = k + \\text{oversampling}` and :math:`q` power iterations::

    Omega ~ N(0, 1)^{m x p}                      (drawn from ``seed``, identical on every rank)
    Y = S Omega;  Q = M-orth(Y)                  (rank-revealing Cholesky-QR, Q^T M Q = I)
    repeat q times:  Z = S^T M Q;  Z = qr(Z);  Y = S Z;  Q = M-orth(Y)
    B = Q^T M S = Ub s Vb^T;  modes = Q Ub[:, :k],  sv = s[:k]

Since :math:`\\Omega` is drawn from the seed, not from the rows, results do not depend on the
rank count. Expected error (Halko et al., Theorem 10.6 for :math:`q = 0`; Corollary 10.10 with
power iterations), with :math:`\\sigma` the :math:`M`-singular values of :math:`S`:

.. math:: \\mathbb{E}\\,\\|S - QQ^TMS\\|_F \\le \\Big(1 + \\frac{k}{p-k-1}\\Big)^{1/2}
          \\Big(\\sum_{j>k} \\sigma_j^2\\Big)^{1/2} \\quad (q = 0).

:func:`randomized_svd_streamed` makes the same computation in passes over column chunks
(e.g. from a :class:`rom.io.SnapshotStore`), holding only :math:`O(n_{local}\\,p)` plus one
chunk: one pass for the sketch, one per power iteration (computing :math:`Z_j = S_j^T M Q`
and accumulating :math:`Y = \\sum_j S_j Z_j` in the same pass, so :math:`Z` is not
re-orthonormalized there) and one for :math:`B`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from mpi4py import MPI

from rom.compression._result import CompressionResult
from rom.linalg import cholesky_qr, sign_flips
from rom.parallel import (
    Product,
    allreduce_sum,
    apply_product,
    check_collective,
    get_comm,
    product_error,
    validate_local_rows,
)

__all__ = ["randomized_svd", "randomized_svd_streamed"]

logger = logging.getLogger(__name__)


def _options_error(rank, oversampling, power_iterations, n_columns: int) -> str | None:
    if n_columns == 0:
        return "snapshot matrix has no columns"
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        return f"rank must be a positive integer, got {rank!r}"
    if rank > n_columns:
        return f"rank={rank} exceeds the number of snapshots ({n_columns})"
    if not isinstance(oversampling, (int, np.integer)) or oversampling < 0:
        return f"oversampling must be a non-negative integer, got {oversampling!r}"
    if not isinstance(power_iterations, (int, np.integer)) or power_iterations < 0:
        return f"power_iterations must be a non-negative integer, got {power_iterations!r}"
    return None


def _test_matrix(m: int, p: int, seed) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, p))


def _finish(Q: np.ndarray, B: np.ndarray, rank: int, total: float, opts: dict) -> CompressionResult:
    Ub, s, Vbt = np.linalg.svd(B, full_matrices=False)
    k = min(rank, int(np.count_nonzero(s > 0)))
    Ub = Ub[:, :k]
    Ub = Ub * sign_flips(Vbt[:k].T)  # the sign convention, on the right singular vectors
    return CompressionResult(
        modes=Q @ Ub,
        singular_values=s[:k].copy(),
        error_bound=None,
        total_energy=float(total),
        n_snapshots=B.shape[1],
        method="randomized",
        details=dict(opts),
    )


def randomized_svd(
    X: np.ndarray,
    *,
    rank: int,
    oversampling: int = 10,
    power_iterations: int = 2,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    seed: int | np.random.SeedSequence = 0,
) -> CompressionResult:
    """Randomized rank-``rank`` SVD of a row-distributed snapshot matrix (module docstring).

    Parameters
    ----------
    X : ndarray of shape (n_local, m)
        This rank's rows of the snapshots.
    rank : int
        Number of modes :math:`k` (fewer if the numerical rank is smaller).
    oversampling : int
        Extra sketch columns; :math:`p = \\min(k + \\text{oversampling}, m)`.
    power_iterations : int
        Subspace iterations :math:`q` (each costs two passes over ``X``).
    product : operator, optional
        Inner product :math:`M`; modes are :math:`M`-orthonormal.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    seed : int
        Seed of the Gaussian test matrix (the same on every rank).

    Returns
    -------
    CompressionResult
        ``method="randomized"``, ``error_bound=None`` (the bound of the module docstring holds
        in expectation only); ``details``: ``rank``, ``oversampling``, ``power_iterations``,
        ``seed``.
    """
    comm = get_comm(comm)
    X, _ = validate_local_rows(X, "snapshot matrix", comm)
    err = _options_error(rank, oversampling, power_iterations, X.shape[1])
    check_collective(err or product_error(product, X.shape[0]), comm)
    m = X.shape[1]
    p = min(int(rank) + int(oversampling), m)
    opts = dict(rank=rank, oversampling=oversampling, power_iterations=power_iterations, seed=seed)
    total = float(allreduce_sum(float(np.sum(X * apply_product(product, X))), comm))
    Omega = _test_matrix(m, p, seed)
    Q, _ = cholesky_qr(X @ Omega, product=product, comm=comm)
    for _ in range(int(power_iterations)):
        Z = allreduce_sum(X.T @ apply_product(product, Q), comm)
        Z, _ = np.linalg.qr(Z)
        Q, _ = cholesky_qr(X @ Z, product=product, comm=comm)
    B = allreduce_sum(apply_product(product, Q).T @ X, comm)
    return _finish(Q, B, int(rank), total, opts)


def randomized_svd_streamed(
    blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    n_columns: int,
    *,
    rank: int,
    oversampling: int = 10,
    power_iterations: int = 2,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    seed: int | np.random.SeedSequence = 0,
) -> CompressionResult:
    """Pass-efficient randomized SVD over column chunks (module docstring).

    Parameters
    ----------
    blocks : callable
        ``blocks()`` returns a fresh iterator of ``(column_indices, block)`` with ``block`` of
        shape (n_local, c), e.g. ``lambda: store.iter_columns(field, chunk=64)``. It is called
        ``power_iterations + 2`` times; every rank must yield the same column indices.
    n_columns : int
        Total number of columns :math:`m`.
    rank, oversampling, power_iterations, product, comm, seed
        As in :func:`randomized_svd`; with the same seed the test matrix is the same.

    Returns
    -------
    CompressionResult
        As :func:`randomized_svd`.
    """
    comm = get_comm(comm)
    check_collective(_options_error(rank, oversampling, power_iterations, int(n_columns)), comm)
    m = int(n_columns)
    p = min(int(rank) + int(oversampling), m)
    Omega = _test_matrix(m, p, seed)
    opts = dict(rank=rank, oversampling=oversampling, power_iterations=power_iterations, seed=seed)

    product_checked = []

    def checked(block, where):
        Xb, _ = validate_local_rows(block, f"column block {where}", comm)
        if not product_checked:  # once, with the first block, before its first reduction
            check_collective(product_error(product, Xb.shape[0]), comm)
            product_checked.append(True)
        return Xb

    Y = None
    total = 0.0
    for cols, block in blocks():
        Xb = checked(block, cols[:1])
        total += float(np.sum(Xb * apply_product(product, Xb)))
        part = Xb @ Omega[cols]
        Y = part if Y is None else Y + part
    total = float(allreduce_sum(total, comm))
    Q, _ = cholesky_qr(Y, product=product, comm=comm)
    for _ in range(int(power_iterations)):
        MQ = apply_product(product, Q)
        Y = None
        for cols, block in blocks():
            Xb = checked(block, cols[:1])
            Zb = allreduce_sum(Xb.T @ MQ, comm)
            part = Xb @ Zb
            Y = part if Y is None else Y + part
        Q, _ = cholesky_qr(Y, product=product, comm=comm)
    MQ = apply_product(product, Q)
    B = np.zeros((Q.shape[1], m))
    for cols, block in blocks():
        Xb = checked(block, cols[:1])
        B[:, cols] = allreduce_sum(MQ.T @ Xb, comm)
    return _finish(Q, B, int(rank), total, opts)
