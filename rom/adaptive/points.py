"""Interpolation points for a POD basis: QDEIM and leverage scores (docs/theory.md §5.2).

For a basis :math:`\\Phi \\in \\mathbb{R}^{n_q \\times n_p}` (rows = quadrature points or dofs,
distributed over ranks as owned rows), QDEIM (Drmač & Gugercin, SIAM J. Sci. Comput. 38(2),
2016) takes the column-pivoted QR factorization

.. math:: \\Phi^T \\Pi = Q R

(Businger-Golub pivoting, LAPACK ``geqp3``) and selects the rows :math:`I` given by the first
:math:`n_p` pivots. For an orthonormal :math:`\\Phi` the DEIM projection
:math:`\\Phi (S^T\\Phi)^{-1} S^T` then satisfies (their Theorem 2.1)

.. math::

    \\|(\\Phi[I,:])^{-1}\\|_2 \\le \\sqrt{n_q - n_p + 1}\\,\\frac{\\sqrt{4^{n_p} + 6 n_p - 1}}{3},

and in practice the factor is a small multiple of :math:`\\sqrt{n_q}`.

Global row index of a point = (number of rows owned by lower ranks) + local row index, so the
selected points do not depend on the number of ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from mpi4py import MPI

from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import validate_local_rows

__all__ = [
    "best_over_ranks",
    "gather_at_points",
    "global_offset",
    "leverage_points",
    "qdeim",
    "validate_global_indices",
]

logger = logging.getLogger(__name__)


def global_offset(n_local: int, comm: MPI.Comm | None = None) -> tuple[int, int]:
    """``(offset, n_global)``: the global index of this rank's first item and the total count.

    ``offset`` is the exclusive prefix sum of ``n_local`` over ranks (rank order). Collective.
    """
    comm = get_comm(comm)
    if comm.size == 1:
        return 0, int(n_local)
    counts = comm.allgather(int(n_local))
    return int(sum(counts[: comm.rank])), int(sum(counts))


def gather_at_points(
    A: np.ndarray,
    points: np.ndarray,
    comm: MPI.Comm | None = None,
    *,
    offset: int | None = None,
) -> np.ndarray:
    """Rows of a point-distributed array at global point indices, replicated on all ranks.

    Parameters
    ----------
    A : ndarray of shape (n_local, ...)
        This rank's rows (one per local quadrature point).
    points : ndarray of int, shape (m,)
        Global indices (replicated; any order, no duplicates needed).
    comm : mpi4py communicator, optional
    offset : int, optional
        Global index of this rank's first row when the caller knows it
        (:func:`global_offset`, one collective less).

    Returns
    -------
    ndarray of shape (m, ...)
        ``A_global[points]``. Collective; one allgather of the selected rows only.
    """
    comm = get_comm(comm)
    A = np.asarray(A)
    points = np.asarray(points, dtype=np.int64)
    if offset is None:
        offset, _ = global_offset(A.shape[0], comm)
    loc = points - offset
    mine = np.flatnonzero((loc >= 0) & (loc < A.shape[0]))
    block = (mine, A[loc[mine]])
    parts = comm.allgather(block) if comm.size > 1 else [block]
    out = np.empty((points.size,) + A.shape[1:], dtype=A.dtype)
    for pos, rows in parts:
        out[pos] = rows
    return out


def best_over_ranks(candidate: tuple, comm: MPI.Comm | None = None) -> tuple:
    """The best of every rank's ``(score, global index, ...)`` candidate (collective).

    Largest score first, ties to the smaller global index: the choice is the one a single rank
    holding all rows would make, whatever the rank count.
    """
    comm = get_comm(comm)
    cands = comm.allgather(candidate) if comm.size > 1 else [candidate]
    return min(cands, key=lambda c: (-c[0], c[1]))


def validate_global_indices(
    idx: Iterable[int] | np.ndarray | None, n_global: int, name: str
) -> tuple[np.ndarray | None, str | None]:
    """Check a replicated array of global indices; returns ``(unique sorted indices, error)``."""
    if idx is None:
        return np.empty(0, dtype=np.int64), None
    try:
        a = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx)
    except (TypeError, ValueError) as e:
        return None, f"{name} is not an array of indices: {e}"
    if a.size == 0:
        return np.empty(0, dtype=np.int64), None
    if a.ndim != 1:
        return None, f"{name} must be 1-D, got shape {a.shape}"
    integral = np.issubdtype(a.dtype, np.integer) or (
        np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))
    )
    if not integral:
        return None, f"{name} must hold integers, got dtype {a.dtype}"
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= n_global:
        return None, f"{name} must lie in [0, {n_global}), got range [{a.min()}, {a.max()}]"
    return np.unique(a), None


def qdeim(Phi: np.ndarray, *, comm: MPI.Comm | None = None) -> np.ndarray:
    """QDEIM interpolation points of a basis with distributed rows.

    Parameters
    ----------
    Phi : ndarray of shape (n_q_local, n_p)
        This rank's rows of the basis :math:`\\Phi` (full column rank, ``n_q >= n_p``).
    comm : mpi4py communicator, optional
        Serial when ``None``.

    Returns
    -------
    ndarray of shape (n_p,), int64
        Global row indices :math:`I` in pivot order: the first :math:`n_p` column pivots of
        :math:`\\Phi^T\\Pi = QR` (Drmač & Gugercin 2016, Algorithm 1). Identical on all ranks.

    Notes
    -----
    Businger-Golub pivoting acts on the rows of :math:`\\Phi` one by one (the columns of
    :math:`\\Phi^T`), so it runs distributed without gathering the basis: with residual rows
    :math:`\\rho_q` (initially :math:`\\Phi[q,:]`), each step picks
    :math:`q^* = \\arg\\max_q \\|\\rho_q\\|` (one allgather of every rank's best row; ties go to
    the smaller global index; the winner's row :math:`\\rho_{q^*} = (I - VV^T)\\Phi[q^*,:]` is
    formed with two projections, as in CGS2), :math:`v = \\rho_{q^*}/\\|\\rho_{q^*}\\|` is
    appended to :math:`V`, and every squared norm is downdated, :math:`\\|\\rho_q\\|^2
    \\leftarrow \\|\\rho_q\\|^2 - (\\Phi[q,:]\\cdot v)^2` (:math:`v \\perp V`), and recomputed
    once it has dropped by :math:`\\sqrt u` (LAPACK's rule). The pivots are those of
    ``geqp3`` on :math:`\\Phi^T` (same choices in exact arithmetic), and
    :math:`\\|\\rho_{q^*}\\|` at step :math:`j` is :math:`|R_{jj}|`. Cost
    :math:`O(n_{q,local}\\,n_p^2)` per rank (one matrix-vector product per step) and
    :math:`n_p` small allgathers; the result does not depend on the rank count (each row's
    arithmetic is the same on any partition).
    """
    comm = get_comm(comm)
    Phi, n_q = validate_local_rows(Phi, "Phi", comm)
    n_p = Phi.shape[1]
    err = None
    if n_p == 0:
        err = "Phi has no columns"
    elif n_q < n_p:
        err = f"Phi has {n_q} rows in total, fewer than its {n_p} columns"
    check_collective(err, comm)
    offset, _ = global_offset(Phi.shape[0], comm)
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    V = np.zeros((n_p, 0))
    score = np.einsum("ij,ij->i", Phi, Phi)  # squared residual norms, downdated
    exact = score.copy()  # their values at the last exact computation
    taken = np.zeros(Phi.shape[0], dtype=bool)
    piv = np.empty(n_p, dtype=np.int64)
    diag = np.zeros(n_p)
    tol3z = np.sqrt(np.finfo(float).eps)
    for j in range(n_p):
        cand = np.where(taken, -1.0, score)
        if cand.size:
            i = int(np.argmax(cand))  # first maximum: smallest local (hence global) index
            rho = Phi[i] - V @ (V.T @ Phi[i])
            rho -= V @ (V.T @ rho)
            best = (float(rho @ rho), offset + i, rho)
        else:
            best = (-1.0, n_q, None)
        s_best, q_best, rho = best_over_ranks(best, comm)
        diag[j] = np.sqrt(max(s_best, 0.0))
        piv[j] = q_best
        if 0 <= q_best - offset < Phi.shape[0]:
            taken[q_best - offset] = True
        if not diag[j] > 0 or j == n_p - 1:
            break
        v = rho / diag[j]
        V = np.column_stack([V, v])
        c = Phi @ v  # = rho_q . v for every row, since v is orthogonal to the earlier v
        score -= c * c
        # downdating loses accuracy once a norm has dropped by sqrt(u) (LAPACK geqp3's rule):
        # recompute those exactly
        redo = score <= tol3z * exact
        if redo.any():
            R = Phi[redo] - (Phi[redo] @ V) @ V.T
            R -= (R @ V) @ V.T
            score[redo] = exact[redo] = np.einsum("ij,ij->i", R, R)
    if not diag[-1] > n_q * np.finfo(float).eps * diag[0]:
        ratio = diag[-1] / diag[0] if diag[0] > 0 else 0.0
        check_collective(f"Phi is numerically rank deficient (|R_pp|/|R_11| = {ratio:.2e})", comm)
    return piv


def leverage_points(
    Phi: np.ndarray,
    n: int,
    *,
    exclude: Iterable[int] | np.ndarray | None = None,
    comm: MPI.Comm | None = None,
) -> np.ndarray:
    """The ``n`` rows of largest leverage :math:`\\|\\Phi[q,:]\\|_2^2` outside ``exclude``.

    Parameters
    ----------
    Phi : ndarray of shape (n_q_local, n_p)
        This rank's rows of the basis.
    n : int
        Number of points to select (``0 <= n <= n_q - |exclude|``).
    exclude : array of int, optional
        Global row indices that may not be selected (replicated on all ranks).
    comm : mpi4py communicator, optional

    Returns
    -------
    ndarray of shape (n,), int64
        Global indices by decreasing leverage; ties go to the smaller global index, so the
        result does not depend on the rank count.
    """
    comm = get_comm(comm)
    Phi, n_q = validate_local_rows(Phi, "Phi", comm)
    excl, err = validate_global_indices(exclude, n_q, "exclude")
    if err is None and (not isinstance(n, (int, np.integer)) or n < 0):
        err = f"n must be a non-negative integer, got {n!r}"
    elif err is None and n > n_q - excl.size:
        err = f"cannot select {n} points: only {n_q - excl.size} rows are not excluded"
    check_collective(err, comm)
    offset, _ = global_offset(Phi.shape[0], comm)
    gidx = offset + np.arange(Phi.shape[0], dtype=np.int64)
    score = np.einsum("ij,ij->i", Phi, Phi)
    keep = ~np.isin(gidx, excl)
    gidx, score = gidx[keep], score[keep]
    # local candidates: sort by (-score, global index) and keep the n best
    order = np.lexsort((gidx, -score))[:n]
    cand_s, cand_i = score[order], gidx[order]
    if comm.size > 1:
        cand_s = np.concatenate(comm.allgather(cand_s))
        cand_i = np.concatenate(comm.allgather(cand_i))
        order = np.lexsort((cand_i, -cand_s))[:n]
        cand_i = cand_i[order]
    return np.asarray(cand_i, dtype=np.int64)
