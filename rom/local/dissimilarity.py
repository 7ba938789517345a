r"""Sine dissimilarity between snapshots and principal-angle distances between subspaces.

Snapshots (docs/theory.md §3.1; Daniel, Casenave, Akkari, Ketata, Ryckelynck,
arXiv:2103.13683; Daniel, Casenave, Akkari, Ryckelynck, arXiv:2108.12291)::

    delta(u, v) = sin angle_M(u, v) = sqrt(max(0, 1 - <u,v>_M^2 / (||u||_M^2 ||v||_M^2)))

It ignores scale and sign, equals the relative error :math:`\|u - P_v u\|_M/\|u\|_M` of
projecting :math:`u` on :math:`\mathrm{span}\{v\}`, and equals :math:`\|P_u - P_v\|_2`, a metric on
lines (triangle inequality holds). All pairs come from one Gram matrix :math:`G = X^T M X` summed
over ranks and broadcast from rank 0 (so every rank holds bit-identical values), normalized as
:math:`\tilde G = D_g^{-1/2} G D_g^{-1/2}`, :math:`\delta_{ij} = \sqrt{(1-|\tilde G_{ij}|)
(1+|\tilde G_{ij}|)}`.

Near-parallel pairs: from the Gram, :math:`1-c^2` carries an absolute error of about the unit
roundoff, so :math:`\delta` has an absolute error of about :math:`u/\delta` and angles below
about :math:`10^{-8}` are not resolved (docs/theory.md §1). Pairs with
:math:`\delta <` ``refine_below`` (default ``1e-3``) are recomputed in the stable form
:math:`\delta = \|\hat u - c\,\hat v\|_M` with :math:`\hat u = u/\|u\|_M`, :math:`c = \langle
\hat u, \hat v\rangle_M` (one more reduction for all such pairs), which is accurate to a few
units of roundoff in absolute terms.

Subspaces (docs/theory.md §3.1): for :math:`M`-orthonormal bases :math:`U, V` the
principal angles satisfy :math:`\cos\theta_l = \sigma_l(U^T M V)`; the projection metric is
:math:`\sin\theta_{\max} = \|P_U - P_V\|_2`, the chordal metric
:math:`\sqrt{\sum_l \sin^2\theta_l} = \|P_U - P_V\|_F/\sqrt 2`, the geodesic (arc-length)
metric :math:`\sqrt{\sum_l\theta_l^2}`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

from rom.compression import pod
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.parallel import Product
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import replicated_sum
from rom.parallel import validate_local_rows

__all__ = [
    "sine_dissimilarity",
    "sine_dissimilarity_between",
    "principal_angles",
    "subspace_distance",
    "trajectory_dissimilarity",
]

logger = logging.getLogger(__name__)

_METRICS = ("projection", "chordal", "geodesic")
_REFINE_CHUNK = 512  # pairs refined per product application (bounds the extra memory)


def _zero_column_error(sq_norms: np.ndarray, name: str) -> str | None:
    zero = np.flatnonzero(~(sq_norms > 0.0))
    if zero.size:
        return (
            f"{name} has {zero.size} zero column(s) (first: column {zero[0]}); the sine "
            "dissimilarity is undefined for the zero vector"
        )
    return None


def _refine_tol_error(refine_below: float) -> str | None:
    try:
        r = float(refine_below)
    except (TypeError, ValueError):
        return f"refine_below must be a number, got {refine_below!r}"
    if not (np.isfinite(r) and 0.0 <= r <= 1.0):
        return f"refine_below must be in [0, 1], got {refine_below!r}"
    return None


def _sine_from_cos(C: np.ndarray) -> np.ndarray:
    a = np.minimum(np.abs(C), 1.0)
    return np.sqrt((1.0 - a) * (1.0 + a))


def _refine_pairs(
    Xn: np.ndarray,
    Yn: np.ndarray,
    C: np.ndarray,
    D: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    product: Product | None,
    comm: MPI.Comm,
) -> None:
    """Overwrite ``D[i, j]`` by :math:`\\|\\hat x_i - c_{ij}\\hat y_j\\|_M` for the given pairs.

    Collective: every rank passes the same ``pairs`` (they come from replicated data).
    """
    ii, jj = pairs
    for s in range(0, ii.size, _REFINE_CHUNK):
        i, j = ii[s : s + _REFINE_CHUNK], jj[s : s + _REFINE_CHUNK]
        R = Xn[:, i] - Yn[:, j] * C[i, j]
        sq = replicated_sum(np.einsum("ij,ij->j", R, apply_product(product, R)), comm)
        D[i, j] = np.sqrt(np.maximum(sq, 0.0))


def _normalized_gram(X, Y, product, comm, refine_below, names):
    """Validate, then return (normalized X, normalized Y or None, cosines)."""
    check_collective(_refine_tol_error(refine_below), comm)
    X, _ = validate_local_rows(X, names[0], comm)
    same = Y is None
    if not same:
        Y, _ = validate_local_rows(Y, names[1], comm)
        err = None
        if Y.shape[0] != X.shape[0]:
            err = f"{names[0]} and {names[1]} have {X.shape[0]} and {Y.shape[0]} local rows"
        check_collective(err, comm)
    Z = X if same else np.hstack([X, Y])
    MZ = apply_product(product, Z)
    sq = replicated_sum(np.einsum("ij,ij->j", Z, MZ), comm)
    nx = X.shape[1]
    err = _zero_column_error(sq[:nx], names[0])
    if err is None and not same:
        err = _zero_column_error(sq[nx:], names[1])
    if err is None and not np.all(np.isfinite(sq)):
        err = "the product gives non-finite norms (is it SPD and finite?)"
    check_collective(err, comm)
    scale = 1.0 / np.sqrt(sq)
    if same:
        Xn = X * scale
        C = replicated_sum(Xn.T @ (MZ * scale), comm)
        C = 0.5 * (C + C.T)
        return Xn, None, C
    Xn, Yn = X * scale[:nx], Y * scale[nx:]
    C = replicated_sum(Xn.T @ (MZ[:, nx:] * scale[nx:]), comm)
    return Xn, Yn, C


def sine_dissimilarity(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    refine_below: float = 1e-3,
) -> np.ndarray:
    r"""All-pairs sine dissimilarity of the columns of a row-distributed snapshot matrix.

    .. math::
        \delta_{ij} = \sqrt{1 - \frac{\langle x_i, x_j\rangle_M^2}{\|x_i\|_M^2\,\|x_j\|_M^2}}
        = \frac{\|x_i - P_{x_j} x_i\|_M}{\|x_i\|_M} \in [0, 1]

    (Daniel et al., arXiv:2103.13683, arXiv:2108.12291; docs/theory.md §3.1.)

    Parameters
    ----------
    X : ndarray of shape (n_local, n)
        This rank's rows of the snapshots (one column per snapshot). No zero columns.
    product : operator, optional
        Inner product :math:`M` on owned rows (:func:`rom.parallel.apply_product`).
    comm : mpi4py communicator, optional
        Serial when ``None``. Collective.
    refine_below : float
        Pairs whose Gram-based value is below this are recomputed in the stable form
        :math:`\|\hat x_i - c_{ij}\hat x_j\|_M` (module docstring); ``0`` disables it.

    Returns
    -------
    D : ndarray of shape (n, n)
        Symmetric, in [0, 1], exact zeros on the diagonal; identical on every rank.
    """
    comm = get_comm(comm)
    Xn, _, C = _normalized_gram(X, None, product, comm, refine_below, ("X", None))
    D = _sine_from_cos(C)
    iu = np.triu_indices(D.shape[0], k=1)
    small = D[iu] < refine_below
    if np.any(small):
        _refine_pairs(Xn, Xn, C, D, (iu[0][small], iu[1][small]), product, comm)
    D = np.clip(np.triu(D, k=1), 0.0, 1.0)
    return D + D.T


def sine_dissimilarity_between(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    refine_below: float = 1e-3,
) -> np.ndarray:
    r"""Sine dissimilarity :math:`\delta(x_i, y_j)` between the columns of two matrices.

    For online assignment: ``X`` holds new fields, ``Y`` the medoid snapshots; then
    :meth:`rom.local.clustering.KMedoids.predict` takes the result. Same math, validation and
    stable refinement as :func:`sine_dissimilarity`.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_x)
    Y : ndarray of shape (n_local, n_y)
        Owned rows of both (same row distribution). No zero columns.
    product, comm, refine_below
        As in :func:`sine_dissimilarity`.

    Returns
    -------
    D : ndarray of shape (n_x, n_y), values in [0, 1]; identical on every rank.
    """
    comm = get_comm(comm)
    Xn, Yn, C = _normalized_gram(X, Y, product, comm, refine_below, ("X", "Y"))
    D = _sine_from_cos(C)
    small = np.nonzero(D < refine_below)
    if small[0].size:
        _refine_pairs(Xn, Yn, C, D, small, product, comm)
    return np.clip(D, 0.0, 1.0)


def _metric_error(metric: str) -> str | None:
    if metric not in _METRICS:
        return f"metric must be one of {_METRICS}, got {metric!r}"
    return None


def _angles_from_cos(cos: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _distance_from_angles(theta: np.ndarray, p: int, q: int, metric: str) -> float:
    """Distance between subspaces of dimensions p, q with principal angles ``theta``."""
    s = np.sin(theta)
    if metric == "projection":
        # ||P_U - P_V||_2 = 1 when the dimensions differ
        return 1.0 if p != q else float(np.max(s, initial=0.0))
    if metric == "chordal":
        # ||P_U - P_V||_F^2 / 2 = |p - q| / 2 + sum_l sin^2 theta_l
        return float(np.sqrt(0.5 * abs(p - q) + np.sum(s**2)))
    return float(np.sqrt(np.sum(theta**2)))


def principal_angles(
    U: np.ndarray,
    V: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    orth_tol: float = 1e-8,
) -> np.ndarray:
    r"""Principal angles between the spans of two :math:`M`-orthonormal bases.

    With :math:`p = \dim U \ge q = \dim V` (else swapped), :math:`\cos\theta_l =
    \sigma_l(U^T M V)` and :math:`\sin\theta_l = \sigma_l(W)` with :math:`W = V - U U^T M V`
    (the :math:`M`-singular values, from the eigenvalues of :math:`W^T M W`, computed from
    :math:`W` itself, not from the Gram of :math:`[U\ V]`). Following Knyazev and Argentati
    (SIAM J. Sci. Comput. 23(6), 2002) the cosine is used for angles above
    :math:`\pi/4` and the sine below, so small angles keep their relative accuracy.

    Parameters
    ----------
    U : ndarray of shape (n_local, p)
    V : ndarray of shape (n_local, q)
        :math:`M`-orthonormal columns (checked: :math:`\max|U^TMU - I| \le` ``orth_tol``).
    product, comm
        Inner product and communicator (collective).
    orth_tol : float
        Tolerance of the orthonormality check.

    Returns
    -------
    theta : ndarray of shape (min(p, q),)
        Angles in :math:`[0, \pi/2]`, in descending order (as ``scipy.linalg.subspace_angles``).
    """
    comm = get_comm(comm)
    U, _ = validate_local_rows(U, "U", comm)
    V, _ = validate_local_rows(V, "V", comm)
    err = None
    if U.shape[0] != V.shape[0]:
        err = f"U and V have {U.shape[0]} and {V.shape[0]} local rows"
    check_collective(err, comm)
    if U.shape[1] < V.shape[1]:
        U, V = V, U
    p, q = U.shape[1], V.shape[1]
    MV = apply_product(product, V)
    MU = apply_product(product, U)
    G = replicated_sum(np.hstack([U, V]).T @ np.hstack([MU, MV]), comm)
    err = None
    if not np.all(np.isfinite(G)):
        err = "non-finite inner products (NaN/Inf in the product?)"
    else:
        for name, B in (("first basis", G[:p, :p]), ("second basis", G[p:, p:])):
            dev = np.max(np.abs(B - np.eye(B.shape[0])), initial=0.0)
            if dev > orth_tol:
                err = f"the {name} is not M-orthonormal (max |B^T M B - I| = {dev:.2e})"
                break
    check_collective(err, comm)
    if q == 0:
        return np.zeros(0)
    C = G[:p, p:]
    cos = np.linalg.svd(C, compute_uv=False)  # descending -> angles ascending
    W = V - U @ C
    WtMW = replicated_sum(W.T @ apply_product(product, W), comm)
    sin2 = np.linalg.eigvalsh(0.5 * (WtMW + WtMW.T))  # ascending -> angles ascending
    sin = np.sqrt(np.clip(sin2, 0.0, 1.0))
    theta = np.where(cos**2 < 0.5, _angles_from_cos(cos), np.arcsin(np.minimum(sin, 1.0)))
    return theta[::-1].copy()


def subspace_distance(
    U: np.ndarray,
    V: np.ndarray,
    *,
    metric: str = "projection",
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    orth_tol: float = 1e-8,
) -> float:
    r"""Distance between the spans of two :math:`M`-orthonormal bases.

    ``"projection"``: :math:`\|P_U - P_V\|_2 = \sin\theta_{\max}` (1 when the dimensions
    differ); ``"chordal"``: :math:`\|P_U - P_V\|_F/\sqrt2 = \sqrt{|p-q|/2 + \sum_l
    \sin^2\theta_l}`; ``"geodesic"``: :math:`\sqrt{\sum_l \theta_l^2}` (equal dimensions only).
    Principal angles from :func:`principal_angles` (docs/theory.md §3.1). The first two
    are metrics on the Grassmannian of a fixed dimension.

    Returns
    -------
    float, identical on every rank.
    """
    comm = get_comm(comm)
    err = _metric_error(metric)
    if err is None and metric == "geodesic" and np.shape(U)[-1] != np.shape(V)[-1]:
        err = (
            f"the geodesic metric needs bases of equal dimension, got {np.shape(U)[-1]} "
            f"and {np.shape(V)[-1]}"
        )
    check_collective(err, comm)
    theta = principal_angles(U, V, product=product, comm=comm, orth_tol=orth_tol)
    return _distance_from_angles(theta, np.shape(U)[1], np.shape(V)[1], metric)


def _common_dimension_bases(
    trajectories: Sequence[np.ndarray],
    rank: int | None,
    rel_l2_err: float | None,
    product: Product | None,
    comm: MPI.Comm,
) -> tuple[list[np.ndarray], int]:
    """POD bases of the trajectories cut to the common dimension ``k``; ``(bases, k)``."""
    bases, svs = [], []
    for i, S in enumerate(trajectories):
        S, _ = validate_local_rows(S, f"trajectory {i}", comm)
        r = pod(S, product=product, comm=comm)
        bases.append(r.modes)
        svs.append(r.singular_values)
    if rank is not None:
        k = int(rank)
    else:
        ranks = [truncation_rank(sv, rel_l2_err=rel_l2_err) for sv in svs]
        k = max(1, int(np.ceil(np.median(ranks))))
    short = [i for i, U in enumerate(bases) if U.shape[1] < k]
    if short:
        logger.warning(
            "%d trajectories have fewer than k=%d nonzero POD modes (first: %d); their "
            "projection distance to the others is 1",
            len(short),
            k,
            short[0],
        )
    return [U[:, :k] for U in bases], k


def trajectory_dissimilarity(
    trajectories: Sequence[np.ndarray],
    *,
    rank: int | None = None,
    rel_l2_err: float | None = None,
    metric: str = "projection",
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    return_bases: bool = False,
):
    r"""Pairwise principal-angle distances between the POD subspaces of trajectories.

    Each trajectory :math:`S_i` (snapshots of one simulation) gets an :math:`M`-orthonormal
    POD basis :math:`V_i` of a common dimension :math:`k` (:func:`rom.compression.pod`):
    ``rank=k`` directly, or with ``rel_l2_err=eps`` the median over trajectories of the smallest
    :math:`N_i` with :math:`\sum_{n>N_i}\sigma_n^2 \le \varepsilon^2\|S_i\|_M^2` (one :math:`k`
    per study, docs/theory.md §3.1), capped by each trajectory's number of nonzero modes.
    All pairs then come from one Gram :math:`B^T M B`, :math:`B = [V_1 \dots V_n]`:
    :math:`\cos\theta_l = \sigma_l(V_i^T M V_j)`. Since
    :math:`\|(I-P_m)S_i\|_F \le d_P(V_i, V_m)\|S_i\|_F + \|(I-P_i)S_i\|_F`, the projection
    distance to a medoid plus the truncation bounds the medoid basis's error on a member.
    Cosine-based, so angles below about :math:`10^{-8}` are not resolved.

    Parameters
    ----------
    trajectories : sequence of ndarray of shape (n_local, m_i)
        Owned rows of each trajectory's snapshots (same row distribution).
    rank, rel_l2_err : int or float
        Exactly one: the common basis size, or the energy tolerance that sets it.
    metric : {"projection", "chordal", "geodesic"}
        See :func:`subspace_distance`.
    product, comm
        Inner product and communicator (collective).
    return_bases : bool
        Also return the list of bases :math:`V_i` (owned rows).

    Returns
    -------
    D : ndarray of shape (n, n)
        Symmetric, zero diagonal; identical on every rank.
    bases : list of ndarray, only with ``return_bases=True``
    """
    comm = get_comm(comm)
    err = _metric_error(metric)
    if err is None and (rank is None) == (rel_l2_err is None):
        err = "give exactly one of rank= and rel_l2_err="
    if err is None:
        err = validate_truncation(rank=rank, rel_l2_err=rel_l2_err)
    if err is None and rank == 0:
        err = "rank must be >= 1"
    if err is None and len(trajectories) == 0:
        err = "no trajectories given"
    check_collective(err, comm)
    bases, k = _common_dimension_bases(trajectories, rank, rel_l2_err, product, comm)
    dims = [U.shape[1] for U in bases]
    offsets = np.concatenate([[0], np.cumsum(dims)])
    B = np.hstack(bases)
    G = replicated_sum(B.T @ apply_product(product, B), comm)
    n = len(bases)
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            C = G[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]]
            cos = np.linalg.svd(C, compute_uv=False) if C.size else np.zeros(0)
            D[i, j] = D[j, i] = _distance_from_angles(
                _angles_from_cos(cos), dims[i], dims[j], metric
            )
    logger.debug("trajectory dissimilarity: %d trajectories, k=%d, metric=%s", n, k, metric)
    return (D, bases) if return_bases else D
