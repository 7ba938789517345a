"""Batch proper orthogonal decomposition (POD) of row-distributed snapshot matrices.

Given snapshots :math:`S = [s_1, \\dots, s_m]` (rows distributed over ranks) and an SPD inner
product :math:`M` (``product=``; Euclidean by default), the POD modes are the left
:math:`M`-singular vectors of :math:`S`: :math:`S = U \\Sigma V^T` with :math:`U^T M U = I`,
:math:`V^T V = I`. The rank-:math:`N` POD space minimizes
:math:`\\sum_i \\|s_i - P_N s_i\\|_M^2 = \\sum_{n>N} \\sigma_n^2` (Schmidt-Eckart-Young).

Two methods (``pod_method``; docs/theory.md §1 and docs/concepts.md):

``pod_method="snapshots"`` (fast)
    Method of snapshots: :math:`G = S^T M S = \\sum_p S_p^T (MS)_p` (one reduction of an
    :math:`m\\times m` matrix), :math:`G = V \\Lambda V^T`, :math:`\\sigma_n = \\sqrt{\\lambda_n}`,
    :math:`U = S V_N \\Sigma_N^{-1}`. The eigenvalues carry an absolute error of about
    :math:`u\\,\\sigma_1^2`, so singular values below :math:`\\sqrt{u}\\,\\sigma_1 \\approx 10^{-8}
    \\sigma_1` are noise: modes below ``1e-7 * sigma_1`` are never returned by this method.
``pod_method="qr"`` (accurate)
    :math:`M`-orthonormal QR :math:`S = QR` by rank-revealing shifted Cholesky-QR3
    (:func:`cholesky_qr`: three Gram products and triangular solves, one reduction each), then
    the SVD of the small :math:`R = U_R \\Sigma V^T` gives :math:`U = Q U_R`. Singular values are
    resolved down to about :math:`u\\sqrt{11\\,m\\,(nm + m(m+1))}\\,\\sigma_1 \\approx
    u\\,m\\sqrt{11 n}\\,\\sigma_1` (:math:`5 \\cdot 10^{-13}` for 500 x 30, :math:`1.3 \\cdot
    10^{-10}` for 200,000 x 400): the shift :math:`s` of the first pass scales a value
    :math:`\\sigma` to :math:`\\sigma/\\sqrt{s}`, and the second pass drops directions below its
    rank-revealing threshold :math:`m u`. That is far below the :math:`\\sqrt{u}` floor of the
    method of snapshots. Householder :func:`tsqr` (Euclidean case) resolves values down to
    about :math:`m\\,u\\,\\sigma_1`.

In both methods the modes are checked: if :math:`\\max|U^T M U - I| >` ``orth_tol`` they are
re-orthonormalized by Cholesky-QR2 and the small SVD is redone, so returned modes are
:math:`M`-orthonormal to ``orth_tol``. Signs are fixed so that the largest-magnitude entry of each
right singular vector is positive, making results identical (to round-off) at any rank count.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.linalg as sla
from mpi4py import MPI

from rom.compression._result import CompressionResult
from rom.compression.truncation import tail_energies, truncation_rank, validate_truncation
from rom.parallel import (
    Product,
    allreduce_sum,
    apply_product,
    blas_threads,
    check_collective,
    get_comm,
    split_rows,
    thread_block,
    validate_finite,
    validate_local_rows,
    worth_splitting,
)
from rom.triangular import trmm_rows

__all__ = [
    "pod",
    "POD",
    "tsqr",
    "cholesky_qr",
    "orthonormalize",
    "right_solve_upper",
    "gram_matrix",
    "orthonormality_error",
    "rows_product",
]

logger = logging.getLogger(__name__)

_SNAPSHOTS_FLOOR = 1e-7  # sqrt(u) floor of the method of snapshots, with a safety factor


def gram_matrix(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Gram matrix :math:`X^T M X` of row-distributed columns, replicated on every rank.

    Without a product, ``X.T @ X`` per row range (:func:`rom.parallel.split_rows`, one range
    per BLAS thread): numpy recognizes the transposed pair and calls the symmetric rank-k
    update (BLAS ``syrk``, half the flops of a general product) of its own BLAS, faster here
    than scipy's bundled one; the partial Gram matrices are summed in row order. ``threads``:
    the count from an enclosing :func:`rom.parallel.row_threads` block.
    """
    if product is None:
        n, m = X.shape
        if n == 0 or m == 0:
            G = np.zeros((m, m))
        else:
            Xc = np.ascontiguousarray(X)

            def part(i0, i1):
                Xp = Xc[i0:i1]
                return Xp.T @ Xp

            G = _ordered_sum(split_rows(part, n, work=float(n) * m * m, threads=threads))
    else:
        G = X.T @ apply_product(product, X)
    return _sym(allreduce_sum(G, comm))


_ROW_CHUNK = 8192  # rows per chunk of the fused products: 8192 x 40 doubles stay in cache


def rows_product(
    A: np.ndarray,
    B: np.ndarray,
    *,
    out: np.ndarray | None = None,
    gram: bool = False,
    chunk: int = _ROW_CHUNK,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    r""":math:`Y = AB` on owned rows, by row chunks, with the local Gram :math:`Y^T Y` fused.

    Each chunk :math:`Y_c = A_c B` is formed and, while it is still in cache, added to
    :math:`\sum_c Y_c^T Y_c` (``gram=True``): the Gram matrix of the result costs no second
    pass over the tall :math:`Y`. ``out`` may be ``A`` itself (square ``B``): the product is then
    formed in place through one chunk-sized buffer, so the tall result is not allocated again.
    ``threads``: as in :func:`gram_matrix`.

    Returns ``(Y, G_local)``; ``G_local`` (not reduced over ranks) is ``None`` without ``gram``.
    """
    n, k = A.shape[0], B.shape[1]
    inplace = out is not None and np.shares_memory(out, A)
    if out is None:
        out = np.empty((n, k))

    def part(lo, hi):
        G = np.zeros((k, k)) if gram else None
        buf = np.empty((min(chunk, hi - lo), k)) if inplace else None
        for i in range(lo, hi, chunk):
            j = min(i + chunk, hi)
            Yc = out[i:j]
            if inplace:
                tmp = buf[: j - i]
                np.matmul(A[i:j], B, out=tmp)
                Yc[...] = tmp
            else:
                np.matmul(A[i:j], B, out=Yc)
            if gram:
                G += Yc.T @ Yc
        return G

    parts = split_rows(
        part, n, work=2.0 * n * A.shape[1] * k + (n * k * k if gram else 0), threads=threads
    )
    return out, (_ordered_sum(parts) if gram else None)


def _ordered_sum(parts: list):
    """Sum of per-thread partial results in row order (deterministic); the parts may be
    arrays, tuples of arrays (summed elementwise) or ``None``."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(_ordered_sum([p[i] for p in parts]) for i in range(len(first)))
    if first is None or len(parts) == 1:
        return first
    total = first.copy()
    for p in parts[1:]:
        total += p
    return total


def orthonormality_error(
    U: np.ndarray, *, product: Product | None = None, comm: MPI.Comm | None = None
) -> float:
    """:math:`\\max_{ij} |(U^T M U - I)_{ij}|` (collective)."""
    k = U.shape[1]
    if k == 0:
        return 0.0
    G = gram_matrix(U, product=product, comm=comm)
    return float(np.max(np.abs(G - np.eye(k))))


def tsqr(X: np.ndarray, *, comm: MPI.Comm | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tall-skinny Householder QR of a row-distributed matrix.

    Each rank factors its rows :math:`X_p = Q_p R_p`; the stacked :math:`R_p` (gathered on every
    rank, at most :math:`m \\times m` each) are factored again, :math:`[R_0; R_1; \\dots] =
    \\hat Q R`, and :math:`Q_p \\leftarrow Q_p \\hat Q_p`. Stable for rank-deficient input.

    Returns
    -------
    Q : ndarray of shape (n_local, k)
        This rank's rows of the orthonormal factor (:math:`Q^T Q = I`), ``k = min(n, m)``.
    R : ndarray of shape (k, m)
        Upper triangular factor, replicated.
    """
    comm = get_comm(comm)
    m = X.shape[1]
    Qp, Rp = np.linalg.qr(X, mode="reduced")
    if comm.size == 1:
        return Qp, Rp
    Rs = comm.allgather(Rp)
    Qhat, R = np.linalg.qr(np.vstack(Rs) if Rs else np.zeros((0, m)), mode="reduced")
    offset = sum(r.shape[0] for r in Rs[: comm.rank])
    Q = Qp @ Qhat[offset : offset + Rp.shape[0]]
    return Q, R


def orthonormalize(
    U: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    passes: int = 2,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky-QR2 in the :math:`M` inner product: :math:`U = QR`, :math:`Q^T M Q = I`.

    Each pass factors :math:`Q^T M Q = R_i^T R_i` and sets :math:`Q \\leftarrow Q R_i^{-1}`;
    two passes give orthonormality to machine precision when :math:`\\kappa(U) \\lesssim
    u^{-1/2}` (Yamamoto et al., 2015).
    ``threads``: as in :func:`gram_matrix`.

    Raises
    ------
    numpy.linalg.LinAlgError
        If :math:`U` is numerically rank deficient (use :func:`tsqr` or :func:`pod` instead).
    """
    k = U.shape[1]
    R = np.eye(k)
    Q = U
    for _ in range(passes):
        G = gram_matrix(Q, product=product, comm=comm, threads=threads)
        try:
            Ri = np.linalg.cholesky(G).T
        except np.linalg.LinAlgError as e:
            raise np.linalg.LinAlgError(
                "orthonormalize: the columns are numerically linearly dependent "
                "(Cholesky of the Gram matrix failed); use tsqr or pod instead"
            ) from e
        Q = right_solve_upper(Q, Ri, threads=threads)
        R = Ri @ R
    return Q, R


def right_solve_upper(Q: np.ndarray, R: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    r""":math:`Q R^{-1}` for an upper triangular, well-conditioned :math:`R` (k x k).

    The small inverse :math:`R^{-1}` (LAPACK ``trtri``) is applied by a triangular matrix
    product (BLAS-3 ``trmm``, :func:`rom.triangular.trmm_rows`) on the tall :math:`Q`: several
    times faster than a triangular solve with many right-hand sides in that layout, and as
    accurate for the :math:`\kappa(R) \lesssim u^{-1/2}` that Cholesky-QR passes meet (the next
    pass or the orthonormality check removes the :math:`u\,\kappa(R)` error). Row ranges run
    in parallel threads, one per BLAS thread (:func:`rom.parallel.split_rows`; ``threads``:
    the count from an enclosing :func:`rom.parallel.row_threads` block): each copies its rows
    of :math:`Q` into the result and multiplies them in place.
    """
    k = R.shape[0]
    if Q.shape[0] == 0 or k == 0:
        return np.zeros((Q.shape[0], k))
    Rinv, info = sla.lapack.dtrtri(np.asarray(R, dtype=np.float64), lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"right_solve_upper: singular triangular factor (info={info})")
    Rinv = np.ascontiguousarray(np.triu(Rinv))
    n = Q.shape[0]
    out = np.empty((n, k))

    def part(lo, hi):
        # the copy is also the first touch of these rows of the fresh result: on a VM that
        # hands freed memory back to its host, faulting 640 MB in took 0.05 s to over 1 s
        out[lo:hi] = Q[lo:hi]
        trmm_rows(out[lo:hi], Rinv)

    split_rows(part, n, work=float(n) * k * k, threads=threads)
    return out


def cholesky_qr(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Rank-revealing shifted Cholesky-QR3 in the :math:`M` inner product: :math:`X = QR`.

    Pass 1 factors :math:`X^T M X + sI = R_1^T R_1` with the shift
    :math:`s = 11\,(n m + m(m+1))\,u\,\|X\|_2^2` of Fukaya, Kannan, Nakatsukasa, Yamamoto
    and Yanagisawa (SIAM J. Sci. Comput. 42(1), 2020), which keeps the factorization defined
    for condition numbers up to about :math:`u^{-1}`, and sets :math:`Q_1 = X R_1^{-1}`.
    Passes 2 and 3 are plain Cholesky-QR on :math:`Q_1`, :math:`Q_2`. A well-conditioned
    :math:`X` (:math:`\kappa < 10^{5}`, seen from pass 1 without shift) takes two passes
    (Cholesky-QR2). Where a pass meets a numerically singular Gram matrix (exactly
    rank-deficient input: zero or duplicate columns), it uses the eigen-decomposition
    :math:`G = W D W^T` instead and keeps the :math:`k` directions with
    :math:`d_i > m\,u\,d_1`: :math:`Q \leftarrow Q W_k D_k^{-1/2}`, :math:`R \leftarrow
    D_k^{1/2} W_k^T R` (then :math:`R` is :math:`k \times m`, not triangular).

    Every pass is a Gram product (BLAS-3, one reduction) and a triangular solve on owned rows,
    so the cost is about three Gram products: a fraction of Householder QR on tall matrices.
    ``threads``: as in :func:`gram_matrix` (all tall products, triangular ones included).

    Returns
    -------
    Q : ndarray of shape (n_local, k)
        :math:`Q^T M Q = I` to machine precision.
    R : ndarray of shape (k, m)
        Replicated, :math:`X = QR`.
    """
    Q, R, _ = _cholesky_qr(X, product=product, comm=comm, defer_last=False, threads=threads)
    return Q, R


def _cholesky_qr(X, *, product, comm, defer_last, threads=None):
    """:func:`cholesky_qr`; with ``defer_last`` the last pass is not applied to the tall
    ``Q``: returns ``(Q_prev, R, Finv)`` with :math:`Q = Q_{prev} F^{-1}` (``Finv``, m x k),
    so that a caller needing only :math:`QW` for a thin :math:`W` forms
    :math:`Q_{prev}(F^{-1}W)`: one thin product instead of a triangular one on all columns."""
    m = X.shape[1]
    G = gram_matrix(X, product=product, comm=comm, threads=threads)
    n = int(allreduce_sum(float(X.shape[0]), comm))
    R = np.eye(m)
    Q = X
    passes = 3
    try:  # well conditioned: plain Cholesky-QR2
        R1 = np.linalg.cholesky(G).T
        d = np.abs(np.diag(R1))
        if d.min() <= 1e-5 * d.max():
            raise np.linalg.LinAlgError("ill conditioned")
        passes = 2
    except np.linalg.LinAlgError:
        norm2 = float(np.linalg.eigvalsh(G)[-1]) if m else 0.0
        shift = 11.0 * (n * m + m * (m + 1)) * np.finfo(float).eps * norm2
        R1 = _chol_or_eig(G + shift * np.eye(m))
    factors = [R1]
    for _ in range(passes - 1):
        Q, R, G = _apply_factor(Q, factors[-1], R, gram=product is None, threads=threads)
        G = (
            gram_matrix(Q, product=product, comm=comm, threads=threads)
            if G is None
            else _sym(allreduce_sum(G, comm))
        )
        factors.append(_chol_or_eig(G))
    F = factors[-1]
    if defer_last:
        return Q, F @ R, _factor_inverse(F)
    Q, R, _ = _apply_factor(Q, F, R, threads=threads)
    return Q, R, None


def _factor_inverse(F: np.ndarray) -> np.ndarray:
    """:math:`F^{-1}` (upper triangular F) or :math:`F^+ = WD^{-1/2}` (F = D^{1/2}W^T)."""
    if F.shape[0] == F.shape[1] and np.allclose(F, np.triu(F)):
        Finv, info = sla.lapack.dtrtri(np.asarray(F, dtype=np.float64), lower=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"singular triangular factor (info={info})")
        return np.triu(Finv)
    d = np.linalg.norm(F, axis=1)
    return F.T / d**2


def _chol_or_eig(G: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of G, or the rank-revealing D^{1/2} W^T (k x m) if G is singular."""
    try:
        Rf = np.linalg.cholesky(G).T
        d = np.abs(np.diag(Rf))
        if d.size == 0 or d.min() > 1e-7 * d.max():
            return Rf
    except np.linalg.LinAlgError:
        pass
    dvals, W = np.linalg.eigh(G)
    dvals, W = dvals[::-1], W[:, ::-1]
    keep = (
        dvals > G.shape[0] * np.finfo(float).eps * max(dvals[0], 0.0) if dvals.size else dvals > 0
    )
    return np.sqrt(dvals[keep])[:, None] * W[:, keep].T


def _apply_factor(Q, F, R, *, gram=False, threads=None):
    """Q <- Q F^{-1} (triangular F) or Q F^+ (rank-revealing F = D^{1/2} W^T); R <- F R.

    Returns ``(Q, R, G)``; with ``gram`` the thin product of the rank-revealing case also
    returns the local Gram of the new ``Q`` (fused, :func:`rows_product`), else ``G`` is None.
    """
    if F.shape[0] == F.shape[1] and np.allclose(F, np.triu(F)):
        return right_solve_upper(Q, F, threads=threads), F @ R, None
    # F = D^{1/2} W^T with orthonormal rows of W^T: F^+ = W D^{-1/2}
    d = np.linalg.norm(F, axis=1)
    Qn, G = rows_product(Q, F.T / d**2, gram=gram, threads=threads)
    return Qn, F @ R, G


def _sym(G: np.ndarray) -> np.ndarray:
    """The symmetric part :math:`(G + G^T)/2` (a reduced Gram matrix, exactly symmetric)."""
    return 0.5 * (G + G.T)


def _signs(V: np.ndarray) -> np.ndarray:
    r""":math:`\pm 1` per column of V: the sign of its largest-magnitude entry (ties: first)."""
    if V.shape[1] == 0:
        return np.ones(0)
    idx = np.argmax(np.abs(V), axis=0)
    s = np.sign(V[idx, np.arange(V.shape[1])])
    s[s == 0] = 1.0
    return s


def _fix_signs(U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make the largest-magnitude entry of each column of V positive (ties: first index).

    ``U`` is flipped in place. The callers fold the signs into the small matrix of the last
    tall product beforehand, so this normally finds nothing to flip and leaves ``U`` alone.
    """
    s = _signs(V)
    if np.all(s > 0):
        return U, V
    U *= s  # U is the caller's fresh array: no copy of the tall modes
    return U, V * s


def _validate(X, comm, product, pod_method, rank, rtol, l2_err, rel_l2_err, orth_tol):
    # NaN/Inf are detected on the replicated Gram/R factor (free), see _check_finite_result
    X, n_rows = validate_local_rows(X, "snapshot matrix", comm, check_finite=False)
    err = validate_truncation(rank=rank, rtol=rtol, l2_err=l2_err, rel_l2_err=rel_l2_err)
    if err is None and pod_method not in ("snapshots", "qr"):
        err = f"pod_method must be 'snapshots' or 'qr', got {pod_method!r}"
    if err is None and not (orth_tol > 0):
        err = f"orth_tol must be > 0, got {orth_tol!r}"
    if err is None and product is not None and hasattr(product, "shape") and not callable(product):
        if tuple(product.shape) != (X.shape[0], X.shape[0]):
            err = f"product has shape {tuple(product.shape)}, expected ({X.shape[0]}, {X.shape[0]})"
    check_collective(err, comm)
    return X, n_rows


def pod(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    pod_method: str = "snapshots",
    rank: int | None = None,
    rtol: float | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    orth_tol: float = 1e-12,
) -> CompressionResult:
    """POD of a row-distributed snapshot matrix.

    Parameters
    ----------
    X : ndarray of shape (n_local, m)
        This rank's rows of the snapshot matrix (one column per snapshot).
    product : operator, optional
        Inner product :math:`M` (mass or energy matrix) applied to owned rows, see
        :func:`rom.parallel.apply_product`. Euclidean when ``None``.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    pod_method : {"snapshots", "qr"}
        Fast method of snapshots, or accurate Cholesky-QR + SVD of R (module docstring).
    rank, rtol, l2_err, rel_l2_err : optional
        Truncation rules of :mod:`rom.compression.truncation` (e.g. ``rel_l2_err=eps`` keeps the smallest
        :math:`N` with :math:`\\sum_{n>N}\\sigma_n^2 \\le \\varepsilon^2 \\|X\\|_M^2`). Without
        any rule all numerically nonzero modes are kept.
    orth_tol : float
        Modes satisfy :math:`\\max|U^T M U - I| \\le` ``orth_tol`` (checked, re-orthonormalized).

    Returns
    -------
    CompressionResult
        ``method="batch"``; ``error_bound`` is the tail :math:`\\sqrt{\\sum_{n>N}
        \\sigma_n^2}` (including values the method could not resolve); ``details`` holds
        ``"right_singular_vectors"`` (shape (m, N)), ``"n_rows"`` (global) and
        ``"pod_method"``.
    """
    comm = get_comm(comm)
    X, n_rows = _validate(X, comm, product, pod_method, rank, rtol, l2_err, rel_l2_err, orth_tol)
    method = pod_method
    m = X.shape[1]
    if m == 0:
        return _pod_result(
            np.zeros((X.shape[0], 0)), np.zeros(0), np.zeros((0, 0)), 0.0, 0.0, n_rows, method
        )
    # Euclidean case, both methods: every tall product (Gram, triangular, thin) is row-split
    # over the BLAS threads and everything else runs on one (``row_threads``: no busy-waiting
    # BLAS workers between the split products; measured on the accurate method, 200,000 x
    # 400: 1.39 s against 1.76 s with BLAS-threaded triangular products between split Grams).
    # (only where the Gram product is worth splitting: a thread-pool query costs about 2 ms)
    split = product is None and worth_splitting(float(X.shape[0]) * m * m)
    with blas_threads(comm) as nt, thread_block(nt, split) as T:
        if method == "snapshots":
            G = gram_matrix(X, product=product, comm=comm, threads=T)
            _check_finite_result(G, X, comm)
            total = float(np.trace(G))
            lam, V = np.linalg.eigh(G)
            lam, V = lam[::-1], V[:, ::-1]
            sv_all = np.sqrt(np.maximum(lam, 0.0))
            floor = _SNAPSHOTS_FLOOR * (sv_all[0] if m else 0.0)
            n_reliable = int(np.count_nonzero(sv_all > floor)) if m else 0
            # Values below the floor are noise: they are not returned, but their energy counts
            # (summed from the smallest term, never as total minus kept).
            sv = sv_all[:n_reliable]
            extra = float(tail_energies(sv_all)[n_reliable])
            N = truncation_rank(
                sv,
                rank=rank,
                rtol=rtol,
                l2_err=l2_err,
                rel_l2_err=rel_l2_err,
                total_energy=total,
                extra_tail=extra,
            )
            unmet = (l2_err is not None and extra > float(l2_err) ** 2) or (
                rel_l2_err is not None and extra > float(rel_l2_err) ** 2 * total
            )
            if (rtol is not None and rtol < _SNAPSHOTS_FLOOR) or unmet:
                warnings.warn(
                    "pod_method='snapshots' cannot resolve singular values below 1e-7*sigma_1; "
                    "use pod_method='qr' for tighter tolerances",
                    stacklevel=2,
                )
            Vn = V[:, :N] * _signs(V[:, :N])  # signs fixed here, not on the tall modes
            # U = X V_N / sigma, with the Gram of the check fused into the same sweep
            U, Gu = rows_product(X, Vn / sv[:N], gram=product is None, threads=T)
            tail = float(tail_energies(sv_all)[N])
            sv = sv[:N]
        else:
            Q, R, Finv = _cholesky_qr(X, product=product, comm=comm, defer_last=True, threads=T)
            _check_finite_result(R, X, comm)
            Uc, sv_all, Vt = np.linalg.svd(R, full_matrices=False)
            total = float(np.sum(R * R))
            floor = max(R.shape) * np.finfo(float).eps * (sv_all[0] if sv_all.size else 0.0)
            n_reliable = int(np.count_nonzero(sv_all > floor))
            sv = sv_all[:n_reliable]
            N = truncation_rank(
                sv,
                rank=rank,
                rtol=rtol,
                l2_err=l2_err,
                rel_l2_err=rel_l2_err,
                total_energy=total,
                extra_tail=float(tail_energies(sv_all)[n_reliable]),
            )
            # the last Cholesky-QR pass, applied to N columns only
            sg = _signs(Vt[:N].T)
            U, Gu = rows_product(Q, Finv @ (Uc[:, :N] * sg), gram=product is None, threads=T)
            Vn = Vt[:N].T * sg
            tail = float(tail_energies(sv_all)[N])
            sv = sv[:N]
        Gu = None if Gu is None else allreduce_sum(Gu, comm)
        U, sv, Vn = _ensure_orthonormal(
            U, sv, Vn, product=product, comm=comm, orth_tol=orth_tol, gram=Gu, threads=T
        )
        U, Vn = _fix_signs(U, Vn)
    logger.debug("pod(%s): kept %d of %d, tail %.3e of %.3e", method, len(sv), m, tail, total)
    return _pod_result(U, sv, Vn, total, tail, n_rows, method)


def _pod_result(U, sv, V, total, tail, n_rows, pod_method) -> CompressionResult:
    return CompressionResult(
        modes=U,
        singular_values=sv,
        error_bound=float(np.sqrt(max(tail, 0.0))),
        total_energy=float(total),
        n_snapshots=V.shape[0],
        method="batch",
        details={"right_singular_vectors": V, "n_rows": n_rows, "pod_method": pod_method},
    )


def _check_finite_result(G: np.ndarray, X: np.ndarray, comm) -> None:
    """NaN/Inf in any rank's rows propagate into the replicated ``G``: every rank sees it and
    runs the (collective) scan that names the first bad entry."""
    if not np.all(np.isfinite(G)):
        validate_finite(X, "snapshot matrix", comm)
        check_collective("snapshot matrix gives a non-finite Gram matrix (overflow?)", comm)


def _ensure_orthonormal(U, sv, V, *, product, comm, orth_tol, gram=None, threads=None):
    r"""Re-orthonormalize modes that drifted and redo the small SVD so that U Σ Vᵀ is kept.

    One Cholesky-QR pass per round, reusing the Gram matrix of the check:
    :math:`U^T M U = R^T R`, :math:`U R^{-1}` is orthonormal to :math:`u\,\kappa(U)^2`, and
    :math:`U \Sigma V^T = (U R^{-1})(R \Sigma) V^T` with :math:`R\Sigma = U_r\Sigma_r V_r^T`
    gives modes :math:`U R^{-1} U_r` (one tall product, in place), values :math:`\Sigma_r`,
    right vectors :math:`V V_r`. The next round's check confirms the result (at most three
    rounds). ``gram``: the replicated :math:`U^T U` when the caller already has it (Euclidean
    case); the Euclidean rounds then form the next Gram inside the product that updates ``U``.
    ``threads``: as in :func:`gram_matrix`.
    """
    k = U.shape[1]
    for _ in range(3):
        if k == 0:
            break
        G = (
            gram_matrix(U, product=product, comm=comm, threads=threads)
            if gram is None
            else _sym(gram)
        )
        err = float(np.max(np.abs(G - np.eye(k))))
        if err <= orth_tol:
            break
        logger.debug("pod: orthonormality error %.2e > %.1e, re-orthonormalizing", err, orth_tol)
        R = np.linalg.cholesky(G).T
        Ur, sr, Vrt = np.linalg.svd(R * sv, full_matrices=False)
        Rinv = sla.lapack.dtrtri(R, lower=0)[0]
        V = V @ Vrt.T
        sg = _signs(V)  # folded into the small factor: the tall modes are not flipped later
        U, gram = rows_product(
            U, np.triu(Rinv) @ (Ur * sg), out=U, gram=product is None, threads=threads
        )
        gram = None if gram is None else allreduce_sum(gram, comm)
        sv, V = sr, V * sg
    return U, sv, V


class POD:
    """POD estimator (scikit-learn style) on row-distributed snapshots.

    Parameters
    ----------
    pod_method : {"snapshots", "qr"}
        See :func:`pod`.
    rank, rtol, l2_err, rel_l2_err : optional
        Truncation rules (:mod:`rom.compression.truncation`).
    product : operator, optional
        Inner product :math:`M` on owned rows (Euclidean when ``None``).
    comm : mpi4py communicator, optional
        Serial when ``None``.
    orth_tol : float
        Required :math:`M`-orthonormality of the modes.

    Attributes
    ----------
    modes_ : ndarray of shape (n_local, n_components_)
        This rank's rows of the :math:`M`-orthonormal POD modes.
    singular_values_ : ndarray of shape (n_components_,)
    n_components_ : int
    total_energy_ : float
        :math:`\\|X\\|_M^2 = \\sum_n \\sigma_n^2` over all singular values.
    error_bound_ : float
        :math:`\\sqrt{\\sum_{n>N}\\sigma_n^2}`, the Frobenius projection error of the fitted data.
    right_singular_vectors_ : ndarray of shape (n_samples, n_components_)
    n_samples_seen_ : int
    n_features_ : int
        Global number of rows (dofs).

    Examples
    --------
    >>> import numpy as np
    >>> from rom import POD
    >>> X = np.outer(np.linspace(0, 1, 50), [1.0, 2.0, 3.0])
    >>> est = POD(rtol=1e-10).fit(X)
    >>> est.n_components_
    1
    >>> bool(np.allclose(est.inverse_transform(est.transform(X)), X))
    True
    """

    def __init__(
        self,
        *,
        pod_method: str = "snapshots",
        rank: int | None = None,
        rtol: float | None = None,
        l2_err: float | None = None,
        rel_l2_err: float | None = None,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
        orth_tol: float = 1e-12,
    ) -> None:
        self.pod_method = pod_method
        self.rank = rank
        self.rtol = rtol
        self.l2_err = l2_err
        self.rel_l2_err = rel_l2_err
        self.product = product
        self.comm = comm
        self.orth_tol = orth_tol

    def fit(self, X: np.ndarray) -> POD:
        """Compute the POD of the snapshots ``X`` (n_local, n_samples); returns ``self``."""
        res = pod(
            X,
            product=self.product,
            comm=self.comm,
            pod_method=self.pod_method,
            rank=self.rank,
            rtol=self.rtol,
            l2_err=self.l2_err,
            rel_l2_err=self.rel_l2_err,
            orth_tol=self.orth_tol,
        )
        self.modes_ = res.modes
        self.singular_values_ = res.singular_values
        self.n_components_ = res.n_modes
        self.total_energy_ = res.total_energy
        self.error_bound_ = res.error_bound
        self.right_singular_vectors_ = res.details["right_singular_vectors"]
        self.n_samples_seen_ = res.n_snapshots
        self.n_features_ = res.details["n_rows"]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "modes_"):
            raise RuntimeError("this POD instance is not fitted yet; call fit(X) first")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Reduced coordinates :math:`U^T M X`, shape (n_components, n_columns) (collective)."""
        self._check_fitted()
        X, _ = validate_local_rows(X, "X", self.comm)
        check_collective(
            None
            if X.shape[0] == self.modes_.shape[0]
            else f"X has {X.shape[0]} local rows, the modes have {self.modes_.shape[0]}",
            self.comm,
        )
        return allreduce_sum(self.modes_.T @ apply_product(self.product, X), self.comm)

    def inverse_transform(self, C: np.ndarray) -> np.ndarray:
        """Owned rows of the reconstruction :math:`U C`, shape (n_local, n_columns)."""
        self._check_fitted()
        C = np.asarray(C, dtype=np.float64)
        if C.ndim == 1:
            C = C[:, None]
        if C.shape[0] != self.n_components_:
            raise ValueError(f"C has {C.shape[0]} rows, expected n_components={self.n_components_}")
        return self.modes_ @ C

    def projection_error(self, X: np.ndarray, *, relative: bool = True) -> float:
        """:math:`\\|X - U U^T M X\\|_M` (Frobenius), divided by :math:`\\|X\\|_M` if relative."""
        R = X - self.inverse_transform(self.transform(X))
        num = float(allreduce_sum(np.sum(R * apply_product(self.product, R)), self.comm))
        if not relative:
            return float(np.sqrt(max(num, 0.0)))
        den = float(allreduce_sum(np.sum(X * apply_product(self.product, X)), self.comm))
        return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0
