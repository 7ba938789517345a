"""Distributed dense linear algebra on row-distributed tall matrices: one home for each kernel.

A tall matrix :math:`X` (:math:`n \\times m`, :math:`n \\gg m`) is held as the rows this rank
owns plus an optional ``comm`` (serial when ``None``); :math:`M` is an SPD inner product
applied to owned rows (``product=``, :func:`rom.parallel.apply_product`; Euclidean when
``None``). Tall products are plain BLAS calls on the owned rows, summed over ranks by one
reduction; every small (:math:`m \\times m`) factorization runs replicated on every rank, on
identical data, so all ranks take the same decisions. Used by :mod:`rom.compression` (POD,
incremental SVD, HAPOD, randomized SVD) and :mod:`rom.local.bounds`; :mod:`rom.sweeps` fuses
chains of these products for the incremental SVD's block update.

Kernels: :func:`gram_matrix` (:math:`X^TMY = \\sum_p X_p^T(MY)_p`); thin QR by :func:`tsqr`
(Householder), :func:`cholesky_qr` (rank-revealing shifted Cholesky-QR3) and
:func:`orthonormalize` (Cholesky-QR2); :func:`project_out` (CGS2, :math:`H = (I - UU^TM)^2C`);
:func:`range_basis` and :func:`eigen_split` (rank-revealing :math:`H \\approx JK`,
:math:`J^TMJ = I`); :func:`reorthonormalize` (the check :math:`\\max|U^TMU - I|` and its
repair); :func:`sign_flips` (the one sign convention of the package).

Energies of discarded directions are always sums of the discarded :math:`\\sigma^2` (or
eigenvalues), smallest first (:func:`tail_energies`), never
``total - kept``: that difference is rounding noise of size :math:`u\\,\\|X\\|^2`, a
:math:`\\sqrt{u}\\,\\|X\\|` floor under any error bound built on it (docs/theory.md §1).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
from mpi4py import MPI

from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_gram
from rom.parallel import get_comm

__all__ = [
    "RangeBasis",
    "Reorthonormalized",
    "cholesky_qr",
    "cholesky_qr_deferred",
    "eigen_split",
    "gram_matrix",
    "orthonormalize",
    "project_out",
    "range_basis",
    "reorthonormalize",
    "right_solve_upper",
    "sign_flips",
    "tail_energies",
    "tsqr",
]

logger = logging.getLogger(__name__)

_EPS = np.finfo(float).eps
#: Eigenvalues of a Gram matrix below this fraction of the largest are not resolved well
#: enough for a basis :math:`HW\\Lambda^{-1/2}` (its orthonormality error is about
#: :math:`u\\lambda_1/\\lambda_k`); :func:`range_basis` takes the accurate route for them.
WEAK_EIGENVALUE = 1e-8
#: Entries within this relative distance of a column's largest magnitude count as tied for
#: :func:`sign_flips` (the first of them decides), so that rounding does not pick the entry.
_SIGN_TIE = 1e-8


# --------------------------------------------------------------------------- products
def tail_energies(sv: np.ndarray) -> np.ndarray:
    """``t[N] = sum_{n >= N} sv[n]**2`` for ``N = 0..len(sv)`` (``t[len] = 0``).

    Summed from the smallest term, so that a tail far below the total is resolved to its own
    relative accuracy.
    """
    sq = np.asarray(sv, dtype=np.float64) ** 2
    t = np.zeros(len(sq) + 1)
    t[:-1] = np.cumsum(sq[::-1])[::-1]
    return t


def _sym(G: np.ndarray) -> np.ndarray:
    return 0.5 * (G + G.T)


def gram_matrix(
    X: np.ndarray,
    Y: np.ndarray | None = None,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    check: bool = False,
) -> np.ndarray:
    """Gram matrix :math:`X^T M Y = \\sum_p X_p^T (M Y)_p`, replicated on every rank (collective).

    Parameters
    ----------
    X : ndarray of shape (n_local, k)
    Y : ndarray of shape (n_local, l), optional
        Defaults to ``X``; the result is then exactly symmetric,
        :math:`\\frac12(G + G^T)` (BLAS ``syrk`` in the Euclidean case).
    product : operator, optional
        :math:`M` on owned rows.
    comm : mpi4py communicator, optional
    check : bool
        With ``Y=None`` and a ``product``: check that :math:`M` is symmetric positive
        semidefinite on the columns of ``X`` (:func:`rom.parallel.check_gram` on the
        unsymmetrized sum; a ``ValueError`` naming the product on every rank otherwise).

    Returns
    -------
    ndarray of shape (k, l)
    """
    if Y is None:
        if product is None:
            G = X.T @ X if X.size else np.zeros((X.shape[1], X.shape[1]))
            return _sym(allreduce_sum(G, comm))
        G = allreduce_sum(X.T @ apply_product(product, X), comm)
        if check:
            check_gram(G, comm)
        return _sym(G)
    MY = apply_product(product, Y)
    G = X.T @ MY if X.shape[0] else np.zeros((X.shape[1], Y.shape[1]))
    return allreduce_sum(G, comm)


def right_solve_upper(Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """:math:`QR^{-1}` for an upper triangular, well-conditioned :math:`R` (k x k); a new array.

    The small inverse :math:`R^{-1}` (LAPACK ``trtri``) is applied by one triangular matrix
    product (BLAS-3 ``trmm``) on a copy of the tall :math:`Q`: faster than a triangular solve
    with many right-hand sides in that layout, and as accurate for the
    :math:`\\kappa(R) \\lesssim u^{-1/2}` that Cholesky-QR passes meet (the next pass or the
    orthonormality check removes the :math:`u\\,\\kappa(R)` error).
    """
    n, k = Q.shape[0], R.shape[0]
    if n == 0 or k == 0:
        return np.zeros((n, k))
    Rinv, info = sla.lapack.dtrtri(np.asarray(R, dtype=np.float64), lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"right_solve_upper: singular triangular factor (info={info})")
    out = np.array(Q, dtype=np.float64, order="C")
    # (Q R^{-1})^T = R^{-T} Q^T: the C-ordered rows are a Fortran-ordered Q^T, updated in place
    sla.blas.dtrmm(1.0, np.triu(Rinv), out.T, side=0, lower=0, trans_a=1, overwrite_b=1)
    return out


# --------------------------------------------------------------------------- QR
def tsqr(X: np.ndarray, *, comm: MPI.Comm | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tall-skinny Householder QR of a row-distributed matrix (Euclidean).

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
    return Qp @ Qhat[offset : offset + Rp.shape[0]], R


def orthonormalize(
    U: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    passes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky-QR2 in the :math:`M` inner product: :math:`U = QR`, :math:`Q^T M Q = I`.

    Each pass factors :math:`Q^T M Q = R_i^T R_i` and sets :math:`Q \\leftarrow Q R_i^{-1}`;
    two passes give orthonormality to machine precision when :math:`\\kappa(U) \\lesssim
    u^{-1/2}` (Yamamoto, Nakatsukasa, Yanagisawa, Fukaya, ETNA 44, 2015).

    Raises
    ------
    numpy.linalg.LinAlgError
        If :math:`U` is numerically rank deficient (use :func:`cholesky_qr` instead).
    """
    R, Q = np.eye(U.shape[1]), U
    for _ in range(passes):
        G = gram_matrix(Q, product=product, comm=comm)
        try:
            Ri = np.linalg.cholesky(G).T
        except np.linalg.LinAlgError as e:
            raise np.linalg.LinAlgError(
                "orthonormalize: the columns are numerically linearly dependent "
                "(Cholesky of the Gram matrix failed); use cholesky_qr instead"
            ) from e
        Q = right_solve_upper(Q, Ri)
        R = Ri @ R
    return Q, R


def _chol_or_eig(G: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Upper Cholesky factor of G, or the rank-revealing :math:`D_k^{1/2}W_k^T` (k x m)
    keeping the eigenvalues :math:`d_i > m\\,u\\,d_1` if G is numerically singular.

    Returns ``(F, W_d)``: the eigenvectors of the dropped directions (``None`` if none)."""
    try:
        Rf = np.linalg.cholesky(G).T
        d = np.abs(np.diag(Rf))
        if d.size == 0 or d.min() > 1e-7 * d.max():
            return Rf, None
    except np.linalg.LinAlgError:
        pass
    dvals, W = np.linalg.eigh(G)
    dvals, W = dvals[::-1], W[:, ::-1]
    keep = dvals > G.shape[0] * _EPS * max(dvals[0], 0.0) if dvals.size else dvals > 0
    F = np.sqrt(dvals[keep])[:, None] * W[:, keep].T
    return F, (W[:, ~keep] if (~keep).any() else None)


def _lost_norm(Q, R, Wd, G, product, comm, negligible) -> float:
    """:math:`\\|QW_dW_d^TR\\|_M`, the part of :math:`X = QR` a rank-revealing step drops, or
    (:math:`M = I`, if at most ``negligible``) the bound :math:`(\\lambda_{max}(W_d^T\\hat GW_d)
    + (n + 10m)u\\,\\mathrm{tr}\\hat G)^{1/2}\\|W_d^TR\\|_F` from the computed Gram matrix
    :math:`\\hat G` of ``Q`` (:math:`|\\hat G - G| \\le \\gamma_n|Q|^T|Q|`, Higham 2002, §3.1).
    The norm itself comes from the explicit thin product :math:`QW_d`: its Gram matrix
    resolves energies far below :math:`u\\|X\\|^2`, which the dropped eigenvalues do not."""
    B = Wd.T @ R
    if product is None:
        n = allreduce_sum(float(Q.shape[0]), comm)
        eps = 1.01 * (n + 10 * G.shape[0]) * _EPS * max(float(np.trace(G)), 0.0)
        top = float(np.linalg.eigvalsh(_sym(Wd.T @ G @ Wd))[-1])
        bound = math.sqrt(max(top, 0.0) + eps) * float(np.linalg.norm(B))
        if bound <= negligible:
            return bound
    Gy = gram_matrix(Q @ Wd, product=product, comm=comm)
    return float(np.sqrt(max(float(np.sum(B * (Gy @ B))), 0.0)))


def _is_triangular(F: np.ndarray) -> bool:
    return F.shape[0] == F.shape[1] and bool(np.all(np.tril(F, -1) == 0))


def _factor_inverse(F: np.ndarray) -> np.ndarray:
    """:math:`F^{-1}` (upper triangular F) or :math:`F^+ = WD^{-1/2}` (:math:`F = D^{1/2}W^T`)."""
    if _is_triangular(F):
        Finv, info = sla.lapack.dtrtri(np.asarray(F, dtype=np.float64), lower=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"singular triangular factor (info={info})")
        return np.triu(Finv)
    d = np.linalg.norm(F, axis=1)
    return F.T / d**2


def _apply_factor(Q: np.ndarray, F: np.ndarray) -> np.ndarray:
    """:math:`QF^{-1}` (triangular F, by ``trmm``) or :math:`QF^+` (rank-revealing F)."""
    if _is_triangular(F):
        return right_solve_upper(Q, F)
    return Q @ _factor_inverse(F)


def _cholesky_qr_passes(X, product, comm, G=None, negligible=None):
    """The passes of :func:`cholesky_qr` but the last tall product: ``(Q_prev, R, F, lost)``
    with :math:`Q = Q_{prev}F^{-1}` and ``lost`` the summed norms of the dropped parts
    (:func:`_lost_norm`; not computed, 0, when ``negligible`` is ``None``)."""
    m = X.shape[1]
    if G is None:
        G = gram_matrix(X, product=product, comm=comm, check=True)
    if not np.all(np.isfinite(G)):  # replicated: every rank raises
        raise ValueError("cholesky_qr: the Gram matrix is not finite (NaN or Inf in the input)")
    n = int(allreduce_sum(float(X.shape[0]), comm))
    passes = 3
    try:  # well conditioned (kappa < 1e5): plain Cholesky-QR2
        F = np.linalg.cholesky(G).T
        d = np.abs(np.diag(F))
        if d.size and d.min() <= 1e-5 * d.max():
            raise np.linalg.LinAlgError("ill conditioned")
        passes = 2
    except np.linalg.LinAlgError:
        norm2 = float(np.linalg.eigvalsh(G)[-1]) if m else 0.0
        shift = 11.0 * (n * m + m * (m + 1)) * _EPS * norm2
        F, Wd = _chol_or_eig(G + shift * np.eye(m))
    else:
        Wd = None
    R, Q, lost = np.eye(m), X, 0.0
    for i in range(passes):
        if Wd is not None and negligible is not None:  # replicated decision: all ranks
            lost += _lost_norm(Q, R, Wd, G, product, comm, negligible)
        if i == passes - 1:
            break
        Q, R = _apply_factor(Q, F), F @ R
        G = gram_matrix(Q, product=product, comm=comm)
        F, Wd = _chol_or_eig(G)
    return Q, F @ R, F, lost


def cholesky_qr_deferred(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    gram: np.ndarray | None = None,
    negligible: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """:func:`cholesky_qr` without its last tall product: :math:`Q = Q_{prev}F^{-1}`.

    Returns ``(Q_prev, R, Finv, lost)``, :math:`X \\approx (Q_{prev}F^{-1})R`, ``Finv`` of
    shape (m, k): a caller needing :math:`QW` for a thin :math:`W` forms :math:`Q_{prev}
    (F^{-1}W)`. ``lost`` bounds :math:`\\|X - QR\\|_M` up to rounding: the summed norms of the
    parts the rank-revealing steps dropped (:func:`_lost_norm`; with :math:`M = I` a bound
    without tall product where it is at most ``negligible``, an absolute level the caller
    can add to its error bound). ``gram``: :math:`X^TMX` if known (computed with ``check``).
    """
    Q, R, F, lost = _cholesky_qr_passes(X, product, comm, gram, negligible)
    return Q, R, _factor_inverse(F), lost


def cholesky_qr(
    X: np.ndarray, *, product: Product | None = None, comm: MPI.Comm | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rank-revealing shifted Cholesky-QR3 in the :math:`M` inner product: :math:`X = QR`.

    Pass 1 factors :math:`X^T M X + sI = R_1^T R_1` with the shift
    :math:`s = 11\\,(n m + m(m+1))\\,u\\,\\|X\\|_2^2` of Fukaya, Kannan, Nakatsukasa, Yamamoto
    and Yanagisawa (SIAM J. Sci. Comput. 42(1), 2020), which keeps the factorization defined
    for condition numbers up to about :math:`u^{-1}`, and sets :math:`Q_1 = X R_1^{-1}`.
    Passes 2 and 3 are plain Cholesky-QR on :math:`Q_1`, :math:`Q_2`. A well-conditioned
    :math:`X` (:math:`\\kappa < 10^{5}`, seen from pass 1 without shift) takes two passes
    (Cholesky-QR2). Where a pass meets a numerically singular Gram matrix (exactly
    rank-deficient input: zero or duplicate columns), it uses the eigen-decomposition
    :math:`G = W D W^T` instead and keeps the :math:`k` directions with
    :math:`d_i > m\\,u\\,d_1`: :math:`Q \\leftarrow Q W_k D_k^{-1/2}`, :math:`R \\leftarrow
    D_k^{1/2} W_k^T R` (then :math:`R` is :math:`k \\times m`, not triangular).

    Every pass is a Gram product and a triangular product on owned rows. The first Gram
    matrix is checked by :func:`rom.parallel.gram_error` (a ``ValueError``
    on every rank if the product is not positive semidefinite on the columns of ``X``).

    Returns
    -------
    Q : ndarray of shape (n_local, k)
        :math:`Q^T M Q = I` to machine precision.
    R : ndarray of shape (k, m)
        Replicated, :math:`X = QR`.
    """
    Q, R, F, _ = _cholesky_qr_passes(X, product, comm)
    return _apply_factor(Q, F), R


# --------------------------------------------------------------------------- projections
def project_out(
    U: np.ndarray,
    C: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    passes: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Classical Gram-Schmidt against :math:`M`-orthonormal :math:`U`, with reorthogonalization.

    Pass :math:`i` computes :math:`L_i = U^T M H_{i-1}` and :math:`H_i = H_{i-1} - UL_i`
    (:math:`H_0 = C`): ``passes=2`` is CGS2, whose :math:`H` is orthogonal to :math:`U` to
    working precision ("twice is enough", Giraud, Langou, Rozloznik, Comput. Math. Appl. 50,
    2005), while one pass leaves a :math:`u\\,\\kappa` component.

    Returns
    -------
    H : ndarray of shape (n_local, c)
        :math:`(I - UU^TM)^{\\text{passes}}\\,C`, a new array.
    L : ndarray of shape (k, c)
        The coefficients :math:`\\sum_i L_i`, replicated: :math:`C = UL + H`.
    """
    k, c = U.shape[1], C.shape[1]
    L = np.zeros((k, c))
    H = np.array(C, dtype=np.float64, copy=True)
    if k == 0:
        return H, L
    for _ in range(passes):
        Li = gram_matrix(U, H, product=product, comm=comm)
        H -= U @ Li
        L += Li
    return H, L


@dataclass(frozen=True)
class RangeBasis:
    """Outcome of :func:`range_basis`: :math:`H \\approx JK`.

    Attributes
    ----------
    basis : ndarray of shape (n_local, r)
        :math:`J`, :math:`J^TMJ = I`.
    coefficients : ndarray of shape (r, c)
        :math:`K = J^TMH`, replicated.
    dropped : float
        Energy of the directions left out, :math:`\\|H - JK\\|_M^2` up to rounding, summed from
        the small end.
    accurate : bool
        Whether the accurate route (shifted Cholesky-QR and an SVD) was taken.
    """

    basis: np.ndarray
    coefficients: np.ndarray
    dropped: float
    accurate: bool = False


def range_basis(
    H: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    drop_below: float = 0.0,
    budget: float = -1.0,
    gram: np.ndarray | None = None,
) -> RangeBasis:
    """Rank-revealing orthonormal basis of the range of :math:`H`: :math:`H \\approx JK`.

    Directions of energy (squared singular value) :math:`\\le` ``drop_below`` are dropped.

    Eigen route: :math:`H^TMH = W\\Lambda W^T`, :math:`J = HW_k\\Lambda_k^{-1/2}`,
    :math:`K = \\Lambda_k^{1/2}W_k^T` (kept: :math:`\\lambda >` ``drop_below``); the dropped
    energy is :math:`\\|HW_d\\|_M^2` of the other eigenvectors, formed explicitly (the small
    eigenvalues themselves carry an absolute error of about :math:`u\\lambda_1`); then one
    Cholesky-QR pass on :math:`J` (:math:`J \\leftarrow JR^{-1}`, :math:`K \\leftarrow RK`)
    to remove its orthonormality error of about :math:`u\\lambda_1/\\lambda_k`. It needs every
    kept eigenvalue resolved, :math:`\\lambda \\ge 10^{-8}\\lambda_1` (far above the round-off
    :math:`u\\lambda_1`). Weaker kept directions are dropped as well when their total energy
    fits in ``budget`` (a caller that may discard that much anyway); otherwise the accurate
    route runs: :math:`H = QR` by :func:`cholesky_qr`, :math:`R = U_R\\Sigma V^T`,
    :math:`J = QU_{R,k}`, :math:`K = \\Sigma_kV_k^T`. Its dropped energy counts the values of
    :math:`R` below ``drop_below`` and the factorization's own residual :math:`E = H - QR`
    (formed explicitly): :math:`(\\|E\\|_M + (\\sum_{dropped}\\sigma^2)^{1/2})^2`.

    Parameters
    ----------
    H : ndarray of shape (n_local, c)
    product, comm : optional
    drop_below : float
        Energy threshold :math:`\\tau^2` (absolute).
    budget : float
        Energy the caller allows to drop in weak directions; negative: none.
    gram : ndarray of shape (c, c), optional
        :math:`H^TMH` when the caller has it already.
    """
    c = H.shape[1]
    if c == 0:
        return RangeBasis(np.zeros((H.shape[0], 0)), np.zeros((0, 0)), 0.0)
    G = gram_matrix(H, product=product, comm=comm) if gram is None else _sym(gram)
    split = eigen_split(G, drop_below=drop_below, budget=budget)
    if split is None:
        return _accurate_range_basis(H, product=product, comm=comm, drop_below=drop_below)
    sk, Wk, Wd, _ = split
    dropped = _residual_energy(H @ Wd, product, comm)
    J = H @ (Wk / sk)
    K = sk[:, None] * Wk.T
    if J.shape[1]:
        Rj = np.linalg.cholesky(gram_matrix(J, product=product, comm=comm)).T
        J, K = right_solve_upper(J, Rj), Rj @ K
    return RangeBasis(J, K, dropped)


def eigen_split(
    G: np.ndarray, *, drop_below: float = 0.0, budget: float = -1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The eigen route's directions of :math:`G = H^TMH = W\\Lambda W^T` (replicated): kept
    :math:`\\lambda >` ``drop_below`` if resolved, :math:`\\lambda \\ge 10^{-8}\\lambda_1`
    (weaker ones are dropped when their energy fits in ``budget``). Returns :math:`(\\lambda_k^{
    1/2}, W_k, W_d, \\lambda_d)`, or ``None`` when a weak direction must be kept (then only the
    accurate route of :func:`range_basis` resolves it)."""
    lam, W = np.linalg.eigh(G)
    lam, W = lam[::-1], W[:, ::-1]
    keep = lam > drop_below
    weak = keep & (lam < WEAK_EIGENVALUE * max(lam[0], 0.0))
    if weak.any():
        if float(tail_energies(np.sqrt(lam[weak]))[0]) > budget:
            return None
        keep &= ~weak
    return np.sqrt(lam[keep]), W[:, keep], W[:, ~keep], lam[~keep]


def _residual_energy(E: np.ndarray, product, comm) -> float:
    """:math:`\\|E\\|_M^2` of a formed residual (collective)."""
    local = float(np.sum(E * apply_product(product, E))) if E.size else 0.0
    return max(float(allreduce_sum(local, comm)), 0.0)


def _accurate_range_basis(H, *, product, comm, drop_below) -> RangeBasis:
    """The accurate route of :func:`range_basis`."""
    Q, Rq = cholesky_qr(H, product=product, comm=comm)
    Ur, sr, Vrt = np.linalg.svd(Rq, full_matrices=False)
    keep = sr**2 > drop_below
    J = Q @ Ur[:, keep]
    K = sr[keep, None] * Vrt[keep]
    unresolved = _residual_energy(H - Q @ Rq, product, comm)
    small = float(tail_energies(sr[~keep])[0])
    dropped = (np.sqrt(unresolved) + np.sqrt(small)) ** 2
    return RangeBasis(J, K, float(dropped), accurate=True)


# --------------------------------------------------------------------------- repair, signs
def sign_flips(V: np.ndarray) -> np.ndarray:
    """The sign convention: :math:`\\pm 1` per column of a replicated ``V``.

    Column :math:`j` gets the sign of its largest-magnitude entry, the first one (lowest row)
    among entries within a relative :math:`10^{-8}` of that magnitude, so that ties in exact
    arithmetic are not broken by rounding. Applied to replicated small data (right singular
    vectors, core singular vectors), it makes results identical, to round-off, at any rank
    count. Multiply ``V`` (and the matching tall factor) by the result.
    """
    if V.ndim != 2 or V.shape[1] == 0:
        return np.ones(V.shape[1] if V.ndim == 2 else 0)
    A = np.abs(V)
    idx = np.argmax(A >= A.max(axis=0) * (1 - _SIGN_TIE), axis=0)
    s = np.sign(V[idx, np.arange(V.shape[1])])
    s[s == 0] = 1.0
    return s


@dataclass(frozen=True)
class Reorthonormalized:
    """Outcome of :func:`reorthonormalize`: :math:`U\\Sigma = U'\\Sigma'Z^T`.

    Attributes
    ----------
    modes : ndarray of shape (n_local, k)
        :math:`U'`, :math:`M`-orthonormal to ``orth_tol``.
    singular_values : ndarray of shape (k,)
        :math:`\\Sigma'`.
    left : ndarray of shape (k, k)
        :math:`T`: coefficients map as :math:`\\Gamma' = T\\Gamma`, so that
        :math:`U\\Gamma = U'\\Gamma'`.
    right : ndarray of shape (k, k)
        :math:`Z` (orthogonal): right singular vectors :math:`V' = VZ`.
    error : float
        :math:`\\max|U^TMU - I|` measured first.
    """

    modes: np.ndarray
    singular_values: np.ndarray
    left: np.ndarray
    right: np.ndarray
    error: float


def reorthonormalize(
    U: np.ndarray,
    sv: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    orth_tol: float = 1e-12,
    gram: np.ndarray | None = None,
) -> Reorthonormalized:
    """Check :math:`\\max|U^TMU - I| \\le` ``orth_tol``; if not, repair keeping :math:`U\\Sigma`.

    A round: :math:`U^TMU = R^TR` (Cholesky; Cholesky-QR2 by :func:`orthonormalize` if that
    fails), :math:`R\\Sigma = U_r\\Sigma_rZ_r^T` (small SVD, columns of :math:`U_r` signed by
    :func:`sign_flips`: :math:`U_r` is near a permutation, so each mode keeps its orientation),
    :math:`U \\leftarrow UR^{-1}U_r` (one tall product), :math:`\\Sigma \\leftarrow \\Sigma_r`.
    Then :math:`U\\Sigma = U'\\Sigma'Z^T` with :math:`Z = \\prod Z_r`, and coefficients
    :math:`\\Gamma` of :math:`U\\Gamma` map to :math:`T\\Gamma`, :math:`T = \\prod U_r^TR`.
    Rounds repeat (at most three) until the check passes. ``U`` is not modified.

    Parameters
    ----------
    U : ndarray of shape (n_local, k)
    sv : ndarray of shape (k,)
    product, comm : optional
    orth_tol : float
    gram : ndarray of shape (k, k), optional
        :math:`U^TMU` when the caller has it already.
    """
    k = U.shape[1]
    T, Z, first = np.eye(k), np.eye(k), None
    for _ in range(3):
        if k == 0:
            break
        G = gram_matrix(U, product=product, comm=comm) if gram is None else _sym(gram)
        gram, err = None, float(np.max(np.abs(G - np.eye(k))))
        first = err if first is None else first
        if err <= orth_tol:
            break
        logger.debug("orthonormality error %.2e > %.1e: re-orthonormalizing", err, orth_tol)
        try:
            R, Q = np.linalg.cholesky(G).T, None
        except np.linalg.LinAlgError:
            Q, R = orthonormalize(U, product=product, comm=comm)
        Ur, sv, Zrt = np.linalg.svd(R * sv, full_matrices=False)
        sg = sign_flips(Ur)
        Ur, Zrt = Ur * sg, Zrt * sg[:, None]
        U = (Q if Q is not None else U @ _factor_inverse(R)) @ Ur
        T, Z = Ur.T @ R @ T, Z @ Zrt.T
    return Reorthonormalized(U, np.asarray(sv), T, Z, 0.0 if first is None else first)
