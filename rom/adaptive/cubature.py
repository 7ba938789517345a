"""Empirical cubature by non-negative orthogonal matching pursuit (docs/theory.md §5.1).

Hernández, Caicedo, Ferrer, "Dimensional hyper-reduction of nonlinear finite element models
via empirical cubature", CMAME 313 (2017): given integrands sampled at the quadrature points of
the full model, :math:`G \\in \\mathbb{R}^{n_g \\times n_q}` with
:math:`G_{(i,k),q} = \\sigma_k(x_q) : \\varepsilon(\\psi_i)(x_q)` (one row per pair of a
displacement mode :math:`\\psi_i` and a stress snapshot :math:`\\sigma_k`, one column per
quadrature point; the mechanics model assembles it) and the full weights :math:`w`, find a
small set :math:`Z` and weights :math:`\\hat w \\ge 0` with

.. math:: \\|G_{:,Z}\\hat w - b\\|_2 \\le \\mathrm{tol}\\,\\|b\\|_2, \\qquad b = G w.

Quadrature points are distributed over ranks by *columns*: rank :math:`r` holds
``G[:, offset_r : offset_r + n_q_local]`` and the matching weights, and a point's global index
is ``offset_r`` + local index (``offset_r`` = points held by lower ranks), so the selection
does not depend on the rank count.

:func:`internal_force_cubature` builds :math:`G` for the internal forces of a mechanics model
(strains of the displacement modes, stress snapshots) and runs :func:`empirical_cubature`
on a basis of its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

import numpy as np
import scipy.linalg
import scipy.optimize
from mpi4py import MPI

from rom.adaptive.points import best_over_ranks
from rom.adaptive.points import gather_at_points
from rom.adaptive.points import global_offset
from rom.adaptive.points import validate_global_indices
from rom.compression import pod
from rom.compression.truncation import truncation_rank
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import gather_rows
from rom.parallel import get_comm

__all__ = ["CubatureResult", "empirical_cubature", "internal_force_cubature", "work_array"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CubatureResult:
    """Reduced quadrature rule.

    Attributes
    ----------
    points : ndarray of shape (n_z,), int64
        Global quadrature indices, sorted ascending.
    weights : ndarray of shape (n_z,)
        Positive weights matching ``points``.
    residual : float
        Relative integration error :math:`\\|G_{:,Z}\\hat w - Gw\\| / \\|Gw\\|` of the system
        that was solved (with the volume row when ``include_volume``).
    history : list of (int, float)
        ``(number of points, relative residual)`` after the warm start and each iteration.
    """

    points: np.ndarray
    weights: np.ndarray
    residual: float
    history: list[tuple[int, float]] = field(default_factory=list)


def _local_error(G, w, tol, max_points):
    """``(G, w, message or None)``: this rank's arrays and options checked."""
    try:
        G = np.asarray(G, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return G, w, f"G and w must be numeric arrays: {e}"
    if G.ndim != 2:
        return G, w, f"G must be 2-D (integrands x local quadrature points), got shape {G.shape}"
    if w.ndim != 1 or w.shape[0] != G.shape[1]:
        return G, w, f"w must have shape ({G.shape[1]},) like the columns of G, got {w.shape}"
    if not np.all(np.isfinite(G)):
        return G, w, "G contains NaN or Inf"
    if not np.all(np.isfinite(w)):
        return G, w, "w contains NaN or Inf"
    if np.any(w < 0):
        return G, w, "w must be non-negative (quadrature weights)"
    if not (isinstance(tol, (float, int, np.floating)) and 0 < tol < 1):
        return G, w, f"tol must lie in (0, 1), got {tol!r}"
    if max_points is not None and (not isinstance(max_points, (int, np.integer)) or max_points < 1):
        return G, w, f"max_points must be a positive integer, got {max_points!r}"
    return G, w, None


def _validate(G, w, tol, max_points, comm):
    """Collective checks; returns ``(G, w, number of points on each rank)``."""
    G, w, err = _local_error(G, w, tol, max_points)
    check_collective(err, comm)
    shapes = comm.allgather(G.shape) if comm.size > 1 else [G.shape]
    n_gs = sorted({n_g for n_g, _ in shapes})
    err = None
    if len(n_gs) > 1:
        err = f"G has {G.shape[0]} rows on this rank but not on all ranks ({n_gs})"
    check_collective(err, comm)
    return G, w, [n_q for _, n_q in shapes]


def empirical_cubature(
    G: np.ndarray,
    w: np.ndarray,
    *,
    tol: float = 1e-6,
    initial_points: Iterable[int] | np.ndarray | None = None,
    include_volume: bool = True,
    max_points: int | None = None,
    seed: int = 0,
    comm: MPI.Comm | None = None,
) -> CubatureResult:
    """Reduced quadrature by non-negative OMP (Hernández et al. 2017; docs/theory.md §5.1).

    Greedy loop, from :math:`Z_0` = ``initial_points``::

        w_Z <- NNLS(G[:, Z], b);  r <- b - G[:, Z] w_Z
        while ||r|| > tol ||G w||:
            Z <- Z + argmax_{q not in Z} G[:, q]^T r / ||G[:, q]||
            w_Z <- NNLS(G[:, Z], b);  Z <- {q in Z : w_q > 0}
            if the residual did not decrease: add one seeded random point, solve again

    Parameters
    ----------
    G : ndarray of shape (n_g, n_q_local)
        Integrand values at this rank's quadrature points (columns). For the mechanics
        model, row :math:`(i,k)` is :math:`\\sigma_k : \\varepsilon(\\psi_i)`.
    w : ndarray of shape (n_q_local,)
        Full-order quadrature weights of this rank's points (non-negative).
    tol : float
        Relative tolerance on the integrals, :math:`\\|G_{:,Z}\\hat w - Gw\\| \\le
        \\mathrm{tol}\\,\\|Gw\\|`.
    initial_points : array of int, optional
        Warm start: global indices of a previous point set (replicated on all ranks).
    include_volume : bool
        Append the constant integrand, scaled to weight :math:`\\|Gw\\|`, so that the volume
        :math:`\\sum_q w_q` is also integrated: the stopping test
        :math:`\\|r\\| \\le \\mathrm{tol}\\|Gw\\|` then bounds both the integrand error and the
        relative volume error by ``tol``.
    max_points : int, optional
        Cap on the number of points; on reaching it the current rule is returned (``residual``
        then exceeds ``tol``, logged as a warning). Default: number of rows of the system.
    seed : int
        Seed of the random points added when the residual stalls.
    comm : mpi4py communicator, optional
        Points distributed over its ranks; serial when ``None``.

    Returns
    -------
    CubatureResult
        Identical on all ranks, and independent of the rank count.

    Notes
    -----
    Each iteration costs one pass over the local columns (:math:`O(n_g n_{q,local})`), one
    allgather of every rank's best candidate (ties go to the smaller global index) and an
    NNLS on the few selected columns, which are replicated on all ranks.
    """
    comm = get_comm(comm)
    G, w, counts = _validate(G, w, tol, max_points, comm)
    offset = int(sum(counts[: comm.rank]))
    n_q = int(sum(counts))
    Z0, err = validate_global_indices(initial_points, n_q, "initial_points")
    check_collective(err, comm)

    G, b, ref = _integration_system(G, w, include_volume, comm)
    if max_points is None:
        max_points = max(G.shape[0], Z0.size)
    if ref == 0.0:
        logger.info("all integrals vanish: empty rule")
        return CubatureResult(np.empty(0, np.int64), np.empty(0), 0.0, [(0, 0.0)])

    pursuit = _Pursuit(G, b, offset, n_q, comm)
    rng = np.random.default_rng(seed)
    Z, GZ, wz, rnorm = pursuit.solve(Z0, pursuit.columns(Z0))
    history = [(int(Z.size), rnorm / ref)]
    max_iter = 2 * max_points + Z0.size + 10
    it = 0
    while rnorm > tol * ref and it < max_iter and Z.size < max_points:
        it += 1
        s_best, q_best = pursuit.best_candidate(Z, b - GZ @ wz)
        if not np.isfinite(s_best):
            logger.warning("no admissible column left; stopping at residual %.3e", rnorm / ref)
            break
        Zn, GZn, wzn, rn = pursuit.solve(*pursuit.add(Z, GZ, q_best))
        if rn >= rnorm:
            Zn, GZn, wzn, rn = pursuit.add_random(Zn, GZn, wzn, rn, rng)
        Z, GZ, wz, rnorm = Zn, GZn, wzn, rn
        history.append((int(Z.size), rnorm / ref))
    if rnorm > tol * ref:
        logger.warning(
            "empirical cubature stopped at %d points with relative residual %.3e > tol %.1e",
            Z.size,
            rnorm / ref,
            tol,
        )
    order = np.argsort(Z)
    return CubatureResult(Z[order].astype(np.int64), wz[order], rnorm / ref, history)


def _integration_system(
    G: np.ndarray, w: np.ndarray, include_volume: bool, comm: MPI.Comm
) -> tuple[np.ndarray, np.ndarray, float]:
    """The system :math:`(G, b = Gw)` to match, with the volume row, and the reference norm.

    The constant row is scaled so that its exact integral equals :math:`\\|Gw\\|` (or 1 when
    :math:`Gw = 0`): the volume then weighs like the integrands in the stopping test. The
    reference is :math:`\\|Gw\\|`, or :math:`\\|b\\|` when the integrands all vanish.
    """
    b = allreduce_sum(G @ w, comm)
    bnorm = float(np.linalg.norm(b))
    if include_volume:
        volume = float(allreduce_sum(w.sum(), comm))
        scale = (bnorm if bnorm > 0 else 1.0) / volume if volume > 0 else 0.0
        G = np.vstack([G, np.full((1, G.shape[1]), scale)])
        b = np.append(b, scale * volume)
    ref = bnorm if bnorm > 0 else float(np.linalg.norm(b))
    return G, b, ref


class _Pursuit:
    """The steps of non-negative OMP on a column-distributed system :math:`G_{:,Z} w_Z = b`.

    ``G`` holds this rank's columns, global indices ``offset`` to ``offset + G.shape[1]``;
    ``b`` is replicated. Selected columns are gathered on every rank, so the NNLS solves are
    replicated and identical everywhere.
    """

    def __init__(self, G: np.ndarray, b: np.ndarray, offset: int, n_q: int, comm: MPI.Comm):
        self.G, self.b, self.offset, self.n_q, self.comm = G, b, offset, n_q, comm
        self.colnorm = np.sqrt(np.einsum("ij,ij->j", G, G))  # no temporary G**2

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """Columns ``idx`` (global) gathered on all ranks, shape ``(n_rows, len(idx))``."""
        cols = gather_at_points(self.G.T, idx, self.comm, offset=self.offset)
        return np.ascontiguousarray(cols.T)

    def solve(
        self, Z: np.ndarray, GZ: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """NNLS weights on ``Z``; points with zero weight are dropped. Returns the residual norm."""
        if Z.size == 0:
            return Z, GZ, np.empty(0), float(np.linalg.norm(self.b))
        wz, _ = scipy.optimize.nnls(GZ, self.b)
        keep = wz > 0
        Z, GZ, wz = Z[keep], GZ[:, keep], wz[keep]
        return Z, GZ, wz, float(np.linalg.norm(self.b - GZ @ wz))

    def best_candidate(self, Z: np.ndarray, r: np.ndarray) -> tuple[float, int]:
        """``(score, q)`` maximizing :math:`G_{:,q}^T r / \\|G_{:,q}\\|` over :math:`q \\notin Z`.

        Ties go to the smaller global index; the score is ``-inf`` when no column is left.
        """
        G = self.G
        with np.errstate(divide="ignore", invalid="ignore"):
            score = (G.T @ r) / self.colnorm
        score[~(self.colnorm > 0)] = -np.inf
        loc = Z - self.offset
        loc = loc[(loc >= 0) & (loc < G.shape[1])]
        score[loc] = -np.inf
        if score.size and np.isfinite(score).any():
            j = int(np.argmax(score))  # first maximum: smallest local (hence global) index
            best = (float(score[j]), self.offset + j)
        else:
            best = (-np.inf, self.n_q)
        return best_over_ranks(best, self.comm)

    def add(self, Z: np.ndarray, GZ: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
        """``Z`` and its columns with point ``q`` appended."""
        return np.append(Z, q), np.hstack([GZ, self.columns(np.array([q], dtype=np.int64))])

    def add_random(self, Z, GZ, wz, rnorm, rng):
        """Stalled residual: add one seeded random point outside ``Z`` and solve again."""
        free = np.setdiff1d(np.arange(self.n_q, dtype=np.int64), Z)
        if free.size == 0:
            return Z, GZ, wz, rnorm
        q_rand = int(free[rng.integers(free.size)])
        logger.debug("stalled: added random point %d", q_rand)
        return self.solve(*self.add(Z, GZ, q_rand))


# ---------------------------------------------------------------- internal forces
def work_array(workspace: dict | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A C-ordered array of ``shape`` (contents undefined): a view of ``workspace[name]``,
    reallocated with 50 % headroom when too small, or a fresh array without a workspace.

    Callers that rebuild tall arrays of slowly growing size (one per enrichment) keep the
    workspace between calls, so that the memory is touched once, not on every rebuild."""
    size = int(np.prod(shape))
    if workspace is None:
        return np.empty(shape)
    buf = workspace.get(name)
    if buf is None or buf.size < size:
        buf = workspace[name] = np.empty(size + size // 2)
    return buf[:size].reshape(shape)


def _leading_eigenpairs(G: np.ndarray, rel_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the SPD ``G`` (descending) that a truncation at relative
    :math:`\\ell^2` tail ``rel_tol`` can keep: every eigenvalue above
    :math:`\\tau = \\mathrm{rel\\_tol}^2\\,\\mathrm{tr}\\,G / n` (the at most :math:`n`
    smaller ones sum to at most :math:`\\mathrm{rel\\_tol}^2\\,\\mathrm{tr}\\,G`, so they
    all fall in the tail). LAPACK ``syevr`` on that value range skips the other eigenvectors."""
    n = G.shape[0]
    tau = rel_tol**2 * float(np.trace(G)) / max(n, 1)
    try:
        lam, V = scipy.linalg.eigh(G, subset_by_value=(tau, np.inf), driver="evr")
    except (np.linalg.LinAlgError, ValueError):
        lam, V = np.linalg.eigh(G)
    return lam[::-1], V[:, ::-1]


def internal_force_cubature(
    strains: np.ndarray,
    stresses: np.ndarray,
    qp_weights: np.ndarray,
    *,
    tol: float = 1e-6,
    svd_tol: float | None = None,
    initial_points: np.ndarray | None = None,
    max_points: int | None = None,
    seed: int = 0,
    comm: MPI.Comm | None = None,
    workspace: dict | None = None,
) -> CubatureResult:
    r"""Empirical cubature of the reduced internal forces (docs/theory.md §5.1).

    Integrands :math:`g_{(i,k)} = \sigma_k : \varepsilon(\psi_i)` at the quadrature points.
    At equilibrium without external load their exact integrals vanish
    (:math:`\int g_{(i,k)} = \Psi_u^T f_{ext} = 0`), so a tolerance relative to
    :math:`\|Gw\|` is meaningless. As in Hernández et al. (CMAME 313, 2017, section 5) the
    rule is asked instead to integrate an :math:`L^2(\Omega)`-orthonormal basis of the
    integrand space plus the constant:

    1. :math:`\tilde G^T = \mathrm{diag}(\sqrt w)\, G^T` (one column per integrand), POD
       :math:`\tilde G^T \approx U \Sigma V^T` truncated at ``svd_tol`` (relative
       :math:`\ell^2` tail); :math:`\phi_j(x_q) = U_{qj}/\sqrt{w_q}` satisfy
       :math:`\sum_q w_q \phi_i\phi_j = \delta_{ij}`;
    2. the rows :math:`\phi_1..\phi_r` and :math:`1/\sqrt{|\Omega|}` go to
       :func:`rom.adaptive.cubature.empirical_cubature` (``include_volume=False``), whose
       right-hand side then has norm :math:`\approx\sqrt{|\Omega|}`.

    The stopping test then reads: every :math:`L^2`-normalized integrand of the span, and the
    volume, is integrated with absolute error :math:`\le \mathrm{tol}\sqrt{|\Omega|}`;
    by Cauchy-Schwarz :math:`|\int_\Omega g| \le \sqrt{|\Omega|}\|g\|_{L^2}`, so this is
    a relative accuracy ``tol`` on the scale of the integrand.

    Parameters
    ----------
    strains : ndarray (n_qp_local, n_comp, N)
        Strains of the modes at this rank's quadrature points (``fom.strain_at_qp(Psi_u)``).
    stresses : ndarray (n_qp_local, n_comp, n_s)
        Stress snapshots (or singular-value-scaled stress modes).
    qp_weights : ndarray (n_qp_local,)
        Full quadrature weights (positive).
    tol : float
        Cubature tolerance (above).
    svd_tol : float, optional
        Relative truncation of the integrand basis; default ``tol``.
    initial_points : array of int, optional
        Warm start (global indices), e.g. the previous rule after an enrichment.
    max_points, seed, comm
        As in :func:`rom.adaptive.cubature.empirical_cubature`.
    workspace : dict, optional
        Kept by the caller between calls (e.g. one rebuild per enrichment): the tall work
        arrays (integrands, basis rows, about ``n_q (N n_s + r)`` doubles) are reused from it
        when large enough instead of being allocated again (fresh memory is paid for on first
        touch, and can cost more than the products that fill it).
    """
    comm = get_comm(comm)
    B = np.asarray(strains, dtype=np.float64)
    S = np.asarray(stresses, dtype=np.float64)
    w = np.asarray(qp_weights, dtype=np.float64)
    check_collective(_cubature_input_error(B, S, w), comm)
    n_q = w.shape[0]
    svd_tol = tol if svd_tol is None else svd_tol
    S = _leading_stress_directions(S, svd_tol, comm)
    logger.debug("cubature: %d modes x %d stress directions", B.shape[2], S.shape[2])
    sw = np.sqrt(w)
    # Gt[q, (n, k)] = sqrt(w_q) sum_c B[q, c, n] S[q, c, k]: one batched (N x c)(c x n_s)
    # product per point
    Bw = np.multiply(B, sw[:, None, None], out=work_array(workspace, "strains", B.shape))
    Gt = np.matmul(
        Bw.transpose(0, 2, 1),
        S,
        out=work_array(workspace, "integrands", (n_q, B.shape[2], S.shape[2])),
    ).reshape(n_q, -1)
    return empirical_cubature(
        _integrand_basis_rows(Gt, w, svd_tol, comm, workspace),
        w,
        tol=tol,
        initial_points=initial_points,
        include_volume=False,
        max_points=max_points,
        seed=seed,
        comm=comm,
    )


def _cubature_input_error(B: np.ndarray, S: np.ndarray, w: np.ndarray) -> str | None:
    if B.ndim != 3 or S.ndim != 3 or B.shape[:2] != S.shape[:2] or w.shape != B.shape[:1]:
        return (
            f"need strains (n_qp, n_comp, N), stresses (n_qp, n_comp, n_s) and weights "
            f"(n_qp,) on the same points, got {B.shape}, {S.shape}, {w.shape}"
        )
    if not (np.all(np.isfinite(B)) and np.all(np.isfinite(S)) and np.all(np.isfinite(w))):
        return "strains, stresses or qp_weights contain NaN or Inf"
    if np.any(w <= 0):
        return "qp_weights must be positive"
    return None


def _leading_stress_directions(S: np.ndarray, svd_tol: float, comm: MPI.Comm) -> np.ndarray:
    """``S`` without the stress directions whose weight is below the integrand tolerance.

    They cannot matter, and dropping them before forming the :math:`N n_s` integrands saves
    most of the Gram matrix of those columns. A view when the kept ones lead (singular-value
    order).
    """
    s_norm = np.sqrt(allreduce_sum(np.einsum("qck,qck->k", S, S), comm))
    order = np.argsort(-s_norm, kind="stable")
    tail = np.sqrt(np.maximum(np.cumsum((s_norm[order] ** 2)[::-1])[::-1], 0.0))
    keep = order[tail >= svd_tol * max(tail[0] if tail.size else 0.0, 1e-300)]
    keep = np.sort(keep)
    if keep.size < S.shape[2]:
        leading = keep.size == 0 or keep[-1] == keep.size - 1
        S = S[:, :, : keep.size] if leading else S[:, :, keep]
    return S


def _integrand_basis_rows(
    Gt: np.ndarray, w: np.ndarray, svd_tol: float, comm: MPI.Comm, workspace: dict | None
) -> np.ndarray:
    """Rows :math:`\\phi_1..\\phi_r` and :math:`1/\\sqrt{|\\Omega|}` at this rank's points.

    :math:`\\phi_j = U_{:,j}/\\sqrt w` from the POD :math:`U` of ``Gt`` (the weighted
    integrands, one column each) truncated at relative :math:`\\ell^2` tail ``svd_tol``
    (steps 1-2 of :func:`internal_force_cubature`). Shape ``(r + 1, n_q_local)``.
    """
    n_q = w.shape[0]
    sw = np.sqrt(w)
    offset, n_q_global = global_offset(n_q, comm)
    if Gt.shape[1] >= n_q_global:
        # more integrands than points (small meshes): one SVD of the gathered n_q x n_g matrix,
        # identical on every rank, is cheaper than the n_g x n_g Gram matrix
        full = gather_rows(Gt, comm)
        Uf, sv, _ = np.linalg.svd(full, full_matrices=False)
        r = truncation_rank(sv, rel_l2_err=svd_tol)
        U = Uf[offset : offset + n_q, :r]
    elif svd_tol >= 1e-6:
        # method of snapshots, one Gram matrix (one reduction): it resolves singular values down
        # to ~1e-8 sigma_1, enough here; the cubature needs a basis, not orthonormality to 1e-15
        Gram = allreduce_sum(Gt.T @ Gt, comm)
        lam, V = _leading_eigenpairs(Gram, svd_tol)
        sv = np.sqrt(np.maximum(lam, 0.0))
        total = float(np.trace(Gram))
        r = truncation_rank(
            sv,
            rel_l2_err=svd_tol,
            total_energy=total,
            extra_tail=max(total - float(np.sum(sv**2)), 0.0),
        )
        r = min(r, int(np.count_nonzero(sv > 1e-8 * sv[0]))) if sv.size and sv[0] > 0 else 0
        # rows phi_j = U_j / sqrt(w) formed transposed by one product, U^T = (V / sv)^T Gt^T
        volume = float(allreduce_sum(w.sum(), comm))
        rows = work_array(workspace, "rows", (r + 1, n_q))
        np.matmul((V[:, :r] / sv[:r]).T, Gt.T, out=rows[:r])
        rows[:r] /= sw
        rows[r] = 1.0 / np.sqrt(volume)
        return rows
    else:
        U = pod(Gt, comm=comm, pod_method="qr", rel_l2_err=svd_tol).modes
    volume = float(allreduce_sum(w.sum(), comm))
    return np.vstack([(U / sw[:, None]).T, np.full((1, n_q), 1.0 / np.sqrt(volume))])
