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

To a tolerance (``l2_err=`` or ``rel_l2_err=``, target energy :math:`\\tau^2`; ``rank``
optional, then a cap), the basis grows in blocks of ``block_size`` = :math:`b` columns, a
blocked form of the adaptive range finder of Halko et al. (Algorithm 4.2)::

    Q = [],  repeat:
        Omega ~ N(0, 1)^{m x b}  (next draw of the seeded generator, in the column space)
        H = (I - Q Q^T M)^2 S Omega                                   (CGS2)
        estimate ||S - Q Q^T M S||_F^2 ~ ||H||_F^2 / (t b),  t = 1/10
        if the estimate <= tau^2 / 2:  B = Q^T M S,  E = S - Q B  (formed explicitly)
            stop if ||E||_M^2 <= tau^2 / 2
        Y = H, q power iterations;  Q = [Q, range_basis((I - Q Q^T M)^2 Y)]
    B = Ub s Vb^T, N by the truncation rules with ||E||_M^2 as extra tail

The probes :math:`\\Omega` are independent of the current :math:`Q`, and
:math:`\\|E\\Omega\\|_F^2` is a weighted sum of :math:`\\chi^2_b` variables with weights
:math:`\\sigma_i(E)^2`; by a Chernoff bound (:math:`\\log(1 + 2\\lambda w)` is subadditive in
:math:`w`, so the rank-one bound holds for every :math:`E`) :math:`P(\\|E\\Omega\\|_F^2 \\le t\\,b\\,\\|E\\|_F^2)
\\le (t e^{1-t})^{b/2}` (:math:`9 \\cdot 10^{-4}` for :math:`b = 10`, :math:`8 \\cdot 10^{-7}`
for :math:`b = 20`). That probability only concerns the stopping test: the reported
``error_bound`` :math:`= (\\|E\\|_M^2 + \\sum_{n>N}s_n^2)^{1/2}` comes from the explicit
residual, and a test that stops too early costs more passes, never a wrong bound. The
explicit residual is resolved to about :math:`u\\sqrt{m}\\,\\|S\\|_M` (the indicator
:math:`\\|S\\|_F^2 - \\|B\\|_F^2` is not used: its cancellation floors it at
:math:`\\sqrt{u}`, docs/theory.md §1), so a relative target below :math:`100\\,u\\sqrt{m}` raises a
``ValueError`` (it cannot be certified).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from rom.compression._result import CompressionResult
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.linalg import cholesky_qr
from rom.linalg import gram_matrix
from rom.linalg import project_out
from rom.linalg import range_basis
from rom.linalg import sign_flips
from rom.linalg import tail_energies
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import product_error
from rom.parallel import validate_local_rows

__all__ = ["randomized_svd", "randomized_svd_streamed"]

logger = logging.getLogger(__name__)


def _options_error(
    rank, oversampling, power_iterations, n_columns: int, rules=None, block_size=10
) -> str | None:
    rules = rules or {}
    if n_columns == 0:
        return "snapshot matrix has no columns"
    if rank is None and rules.get("l2_err") is None and rules.get("rel_l2_err") is None:
        return "randomized_svd needs rank=, l2_err= or rel_l2_err="
    err = validate_truncation(rank=rank, n_columns=n_columns, **rules)
    if err is not None:
        return err
    bs = block_size
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        return f"block_size must be a positive integer, got {bs!r}"
    if not isinstance(oversampling, (int, np.integer)) or oversampling < 0:
        return f"oversampling must be a non-negative integer, got {oversampling!r}"
    if not isinstance(power_iterations, (int, np.integer)) or power_iterations < 0:
        return f"power_iterations must be a non-negative integer, got {power_iterations!r}"
    return None


def _test_matrix(m: int, p: int, seed) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((m, p))


#: Safety factor :math:`t` of the probe estimate (module docstring).
_PROBE_T = 0.1
#: Relative targets below ``_FLOOR_FACTOR * u * sqrt(m)`` cannot be certified.
_FLOOR_FACTOR = 100.0


@dataclass
class _Operators:
    """The snapshot matrix :math:`S` seen through the products the adaptive loop needs."""

    times: Callable[[np.ndarray], np.ndarray]  # Omega (m, b) -> S Omega, owned rows
    adjoint: Callable[[np.ndarray], np.ndarray]  # Q (n_local, k) -> S^T M Q, replicated
    residual: Callable[[np.ndarray, np.ndarray], float]  # (Q, B) -> ||S - Q B||_M^2


def _target_energy(rules: dict, total: float) -> float:
    """:math:`\\tau^2`: the strictest of ``l2_err**2`` and ``rel_l2_err**2 * total``."""
    t = math.inf
    if rules.get("l2_err") is not None:
        t = min(t, float(rules["l2_err"]) ** 2)
    if rules.get("rel_l2_err") is not None:
        t = min(t, float(rules["rel_l2_err"]) ** 2 * total)
    return t


def _floor_error(rules: dict, total: float, m: int) -> str | None:
    floor = _FLOOR_FACTOR * np.finfo(float).eps * math.sqrt(m)
    if total > 0 and _target_energy(rules, total) < floor**2 * total:
        return (
            f"the requested tolerance (relative {math.sqrt(_target_energy(rules, total) / total):.1e})"
            f" is below what randomized_svd can certify ({floor:.1e} relative, the rounding of"
            " the explicit residual); use pod(pod_method='qr')"
        )
    return None


def _grow(ops: _Operators, Q, H, power_iterations, product, comm, total) -> np.ndarray:
    """Append the range of the probe block ``H`` (after ``q`` power iterations) to ``Q``."""
    Y = H
    for _ in range(int(power_iterations)):
        Z, _ = np.linalg.qr(ops.adjoint(Y))
        Y, _ = project_out(Q, ops.times(Z), product=product, comm=comm)
    Y, _ = project_out(Q, Y, product=product, comm=comm)  # CGS2 once more: J _|_M Q
    drop = (np.finfo(float).eps ** 2) * total  # absolute noise of a direction's energy
    rb = range_basis(Y, product=product, comm=comm, drop_below=drop)
    return np.hstack([Q, rb.basis])


def _adaptive(ops: _Operators, n_local, m, total, target2, opts, product, comm):
    """The adaptive loop of the module docstring: ``(Q, B, ||S - QB||_M^2)``."""
    rng = np.random.default_rng(opts["seed"])
    b, cap = int(opts["block_size"]), m
    if opts["rank"] is not None:
        cap = min(m, int(opts["rank"]) + int(opts["oversampling"]))
    Q = np.zeros((n_local, 0))
    while True:
        H, _ = project_out(Q, ops.times(rng.standard_normal((m, b))), product=product, comm=comm)
        G = gram_matrix(H, product=product, comm=comm, check=True)
        estimate = max(float(np.trace(G)), 0.0) / (_PROBE_T * b)
        if estimate <= 0.5 * target2 or Q.shape[1] >= cap:
            B = ops.adjoint(Q).T
            resid2 = ops.residual(Q, B)
            if resid2 <= 0.5 * target2 or Q.shape[1] >= cap:
                return Q, B, resid2
        k = Q.shape[1]
        Q = _grow(ops, Q, H, opts["power_iterations"], product, comm, total)
        if Q.shape[1] > cap:
            Q = Q[:, :cap]
        if Q.shape[1] == k:  # no new direction resolved: the basis spans all S does
            B = ops.adjoint(Q).T
            return Q, B, ops.residual(Q, B)


def _finish_to_tolerance(Q, B, resid2, total, rules, rank, opts) -> CompressionResult:
    """SVD of :math:`B`, truncation with the explicit residual as extra tail."""
    Ub, s, Vbt = np.linalg.svd(B, full_matrices=False)
    N = truncation_rank(s, rank=rank, total_energy=total, extra_tail=resid2, **rules)
    bound2 = resid2 + float(tail_energies(s)[N])
    target2 = _target_energy(rules, total)
    if bound2 > target2 * (1 + 1e-12):
        warnings.warn(
            f"randomized_svd: error bound {math.sqrt(bound2):.3e} exceeds the requested"
            f" {math.sqrt(target2):.3e} (rank={rank} caps the basis)",
            stacklevel=3,
        )
    Ub = Ub[:, :N] * sign_flips(Vbt[:N].T)
    return CompressionResult(
        modes=Q @ Ub,
        singular_values=s[:N].copy(),
        error_bound=float(math.sqrt(max(bound2, 0.0))),
        total_energy=float(total),
        n_snapshots=B.shape[1],
        method="randomized",
        details={**opts, **rules, "basis_size": Q.shape[1]},
    )


def _finish(
    Q: np.ndarray, B: np.ndarray, rank: int, total: float, opts: dict, rtol=None
) -> CompressionResult:
    Ub, s, Vbt = np.linalg.svd(B, full_matrices=False)
    k = min(rank, int(np.count_nonzero(s > 0)))
    if rtol is not None:
        k = min(k, truncation_rank(s, rtol=rtol))
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
    rank: int | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    rtol: float | None = None,
    oversampling: int = 10,
    power_iterations: int = 2,
    block_size: int = 10,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    seed: int | np.random.SeedSequence = 0,
) -> CompressionResult:
    """Randomized SVD of a row-distributed snapshot matrix, to a rank or a tolerance.

    Parameters
    ----------
    X : ndarray of shape (n_local, m)
        This rank's rows of the snapshots.
    rank : int, optional
        Number of modes :math:`k` (fewer if the numerical rank is smaller). With a tolerance
        it is a cap (the basis then stops at ``rank + oversampling`` columns).
    l2_err, rel_l2_err : float, optional
        Tolerance on :math:`\\|S - UU^TMS\\|_{M,F}` (absolute, or relative to
        :math:`\\|S\\|_{M,F}`): the adaptive range finder of the module docstring, and the
        truncation rules of :mod:`rom.compression.truncation`. A relative target below
        :math:`100\\,u\\sqrt{m}` raises ``ValueError``; one a ``rank`` cap prevents warns.
    rtol : float, optional
        Additional truncation rule (:math:`\\sigma_n \\ge \\mathrm{rtol}\\,\\sigma_1`),
        with a rank or a tolerance.
    oversampling : int
        Extra sketch columns; :math:`p = \\min(k + \\text{oversampling}, m)`.
    power_iterations : int
        Subspace iterations :math:`q` (each costs two passes over ``X``).
    block_size : int
        Columns added per step of the adaptive range finder (probes per error estimate).
    product : operator, optional
        Inner product :math:`M`; modes are :math:`M`-orthonormal.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    seed : int
        Seed of the Gaussian test matrices (the same on every rank).

    Returns
    -------
    CompressionResult
        ``method="randomized"``. With a rank only: ``error_bound=None`` (the bound of the
        module docstring holds in expectation only). With a tolerance: ``error_bound``
        :math:`= (\\|E\\|_M^2 + \\sum_{n>N}s_n^2)^{1/2}` from the explicit residual
        :math:`E = S - QB` (deterministic). ``details``: the options and, with a tolerance,
        ``basis_size``.
    """
    comm = get_comm(comm)
    X, n_rows = validate_local_rows(X, "snapshot matrix", comm)
    rules = dict(rtol=rtol, l2_err=l2_err, rel_l2_err=rel_l2_err)
    err = "snapshot matrix has no rows (on any rank)" if n_rows == 0 else None
    err = err or _options_error(rank, oversampling, power_iterations, X.shape[1], rules, block_size)
    check_collective(err or product_error(product, X.shape[0]), comm)
    m = X.shape[1]
    opts = dict(rank=rank, oversampling=oversampling, power_iterations=power_iterations, seed=seed)
    total = float(allreduce_sum(float(np.sum(X * apply_product(product, X))), comm))
    if l2_err is not None or rel_l2_err is not None:
        check_collective(_floor_error(rules, total, m), comm)
        ops = _Operators(
            times=lambda W: X @ W,
            adjoint=lambda Q: allreduce_sum(X.T @ apply_product(product, Q), comm),
            residual=lambda Q, B: _energy_of(X - Q @ B, product, comm),
        )
        opts["block_size"] = block_size
        Q, B, resid2 = _adaptive(
            ops, X.shape[0], m, total, _target_energy(rules, total), opts, product, comm
        )
        return _finish_to_tolerance(Q, B, resid2, total, rules, rank, opts)
    p = min(int(rank) + int(oversampling), m)
    Omega = _test_matrix(m, p, seed)
    Q, _ = cholesky_qr(X @ Omega, product=product, comm=comm)
    for _ in range(int(power_iterations)):
        Z = allreduce_sum(X.T @ apply_product(product, Q), comm)
        Z, _ = np.linalg.qr(Z)
        Q, _ = cholesky_qr(X @ Z, product=product, comm=comm)
    B = allreduce_sum(apply_product(product, Q).T @ X, comm)
    return _finish(Q, B, int(rank), total, opts, rtol)


def _energy_of(E: np.ndarray, product, comm) -> float:
    """:math:`\\|E\\|_M^2` summed over ranks (collective)."""
    return max(float(allreduce_sum(float(np.sum(E * apply_product(product, E))), comm)), 0.0)


def randomized_svd_streamed(
    blocks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
    n_columns: int,
    *,
    rank: int | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    rtol: float | None = None,
    oversampling: int = 10,
    power_iterations: int = 2,
    block_size: int = 10,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    seed: int | np.random.SeedSequence = 0,
) -> CompressionResult:
    """Pass-efficient randomized SVD over column chunks (module docstring).

    Parameters
    ----------
    blocks : callable
        ``blocks()`` returns a fresh iterator of ``(column_indices, block)`` with ``block`` of
        shape (n_local, c), e.g. ``lambda: store.iter_columns(field, chunk=64)``. With a rank
        it is called ``power_iterations + 2`` times; with a tolerance once per pass of the
        adaptive loop. Every rank must yield the same column indices.
    n_columns : int
        Total number of columns :math:`m`.
    rank, l2_err, rel_l2_err, rtol, oversampling, power_iterations, block_size, product, comm, seed
        As in :func:`randomized_svd`; with the same seed the results are the same.

    Returns
    -------
    CompressionResult
        As :func:`randomized_svd`.
    """
    comm = get_comm(comm)
    rules = dict(rtol=rtol, l2_err=l2_err, rel_l2_err=rel_l2_err)
    err = _options_error(rank, oversampling, power_iterations, int(n_columns), rules, block_size)
    check_collective(err, comm)
    m = int(n_columns)
    opts = dict(rank=rank, oversampling=oversampling, power_iterations=power_iterations, seed=seed)

    product_checked = []

    def checked():
        for cols, block in blocks():
            Xb, _ = validate_local_rows(block, f"column block {cols[:1]}", comm)
            if not product_checked:  # once, with the first block, before its first reduction
                check_collective(product_error(product, Xb.shape[0]), comm)
                product_checked.append(True)
            yield cols, Xb

    if l2_err is not None or rel_l2_err is not None:
        return _streamed_to_tolerance(checked, m, rules, rank, opts, block_size, product, comm)
    p = min(int(rank) + int(oversampling), m)
    Omega = _test_matrix(m, p, seed)
    Y = None
    total = 0.0
    for cols, Xb in checked():
        total += float(np.sum(Xb * apply_product(product, Xb)))
        part = Xb @ Omega[cols]
        Y = part if Y is None else Y + part
    total = float(allreduce_sum(total, comm))
    Q, _ = cholesky_qr(Y, product=product, comm=comm)
    for _ in range(int(power_iterations)):
        MQ = apply_product(product, Q)
        Y = None
        for _, Xb in checked():
            Zb = allreduce_sum(Xb.T @ MQ, comm)
            part = Xb @ Zb
            Y = part if Y is None else Y + part
        Q, _ = cholesky_qr(Y, product=product, comm=comm)
    return _finish(
        Q, _streamed_adjoint(checked, Q, m, product, comm).T, int(rank), total, opts, rtol
    )


def _streamed_adjoint(checked, Q, m, product, comm) -> np.ndarray:
    """:math:`S^TMQ` (m, k), one pass."""
    MQ = apply_product(product, Q)
    Z = np.zeros((m, Q.shape[1]))
    for cols, Xb in checked():
        Z[cols] = allreduce_sum(Xb.T @ MQ, comm)
    return Z


def _streamed_to_tolerance(checked, m, rules, rank, opts, block_size, product, comm):
    """The adaptive loop over column chunks: one pass per product with :math:`S`."""
    total, n_local = 0.0, 0
    for _, Xb in checked():
        total += float(np.sum(Xb * apply_product(product, Xb)))
        n_local = Xb.shape[0]
    total = float(allreduce_sum(total, comm))
    check_collective(_floor_error(rules, total, m), comm)

    def times(W):
        Y = np.zeros((n_local, W.shape[1]))
        for cols, Xb in checked():
            Y += Xb @ W[cols]
        return Y

    def residual(Q, B):
        local = 0.0
        for cols, Xb in checked():
            E = Xb - Q @ B[:, cols]
            local += float(np.sum(E * apply_product(product, E)))
        return max(float(allreduce_sum(local, comm)), 0.0)

    ops = _Operators(
        times=times,
        adjoint=lambda Q: _streamed_adjoint(checked, Q, m, product, comm),
        residual=residual,
    )
    opts = {**opts, "block_size": block_size}
    Q, B, resid2 = _adaptive(
        ops, n_local, m, total, _target_energy(rules, total), opts, product, comm
    )
    return _finish_to_tolerance(Q, B, resid2, total, rules, rank, opts)
