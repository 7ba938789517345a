"""Fused row-block sweeps: chains of tall products that share operands, in one pass.

Two tall products formed one after the other read their shared operand from memory twice, and
an intermediate tall result (such as a residual :math:`H = C - UL`) is written out and read
back. The kernels here run such a chain one block of rows at a time, small enough to stay in
cache, so that every tall operand is read once and the intermediate is never stored. They
compute the same sums as :func:`rom.linalg.gram_matrix` and :func:`rom.linalg.project_out`
(in another order of summation). Used by the block update of
:class:`rom.compression.IncrementalSVD` (docs/theory.md §2.1).

With an inner product :math:`M`, the callers pass :math:`MU` and :math:`MC` beside :math:`U`
and :math:`C` (``None`` for :math:`M = I`): every :math:`M`-product below is then a plain
product, and :math:`M` itself is never applied inside a sweep.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from rom.parallel import allreduce_sum

__all__ = ["combine", "residual_gram", "row_blocks"]

#: Doubles per row-block temporary: 4 MiB, a few times a core's L2 cache and far below its
#: share of L3, large enough that each BLAS call is long compared with its call overhead.
_BLOCK_ELEMENTS = 2**19


def row_blocks(n: int, width: int) -> Iterator[tuple[int, int]]:
    """Row ranges ``(i0, i1)`` covering ``[0, n)`` whose temporaries of ``width`` columns hold
    at most 4 MiB (and at least 256 rows)."""
    step = max(256, _BLOCK_ELEMENTS // max(width, 1))
    for i0 in range(0, n, step):
        yield i0, min(n, i0 + step)


def residual_gram(
    C: np.ndarray,
    U: np.ndarray,
    L: np.ndarray,
    *,
    MC: np.ndarray | None = None,
    MU: np.ndarray | None = None,
    comm: MPI.Comm | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:math:`P = U^TMH` and :math:`G = H^TMH` of the residual :math:`H = C - UL`, never stored.

    With :math:`M`: :math:`G = H^TMC - P^TL` (as :math:`H^TMUL = P^TL`), so that :math:`MH`
    is not formed either.

    Parameters
    ----------
    C : ndarray of shape (n_local, c)
    U : ndarray of shape (n_local, k)
    L : ndarray of shape (k, c)
    MC, MU : ndarray, optional
        :math:`MC` and :math:`MU` (both or neither; ``None``: :math:`M = I`).
    comm : mpi4py communicator, optional

    Returns
    -------
    P : ndarray of shape (k, c)
        Replicated; with :math:`U^TMU = I` and :math:`L = U^TMC` it is the second
        Gram-Schmidt pass's coefficient, :math:`(I - UU^TM)H = H - UP`.
    G : ndarray of shape (c, c)
        Replicated, not symmetrized.
    """
    n, c = C.shape
    k = U.shape[1]
    PT = np.zeros((c, k))
    G = np.zeros((c, c))
    width = k + c if MU is None else k + 2 * c
    step = next(row_blocks(n, width), (0, 0))[1]
    Hbuf = np.empty((step, c))
    for i0, i1 in row_blocks(n, width):
        Hb = Hbuf[: i1 - i0]
        np.matmul(U[i0:i1], L, out=Hb)
        np.subtract(C[i0:i1], Hb, out=Hb)
        if MU is None:
            PT += Hb.T @ U[i0:i1]
            G += Hb.T @ Hb
        else:
            PT += Hb.T @ MU[i0:i1]
            G += Hb.T @ MC[i0:i1]
    both = allreduce_sum(np.concatenate([PT.ravel(), G.ravel()]), comm)
    P = both[: k * c].reshape(c, k).T
    G = both[k * c :].reshape(c, c)
    return P, (G if MU is None else G - P.T @ L)


def combine(
    U: np.ndarray,
    A: np.ndarray,
    C: np.ndarray | None,
    T: np.ndarray | None,
    *,
    n_out: int,
    out: np.ndarray,
    MU: np.ndarray | None = None,
    MC: np.ndarray | None = None,
    comm: MPI.Comm | None = None,
) -> tuple[np.ndarray | None, float]:
    """:math:`Y = UA + CT` by row blocks: its first ``n_out`` columns stored, the rest measured.

    The stored part :math:`Y_1` goes to ``out``, which may be ``U`` itself (each block is
    formed in a temporary before it is written). Of the trailing columns :math:`Y_2` only the
    energy :math:`\\|Y_2\\|_M^2` is kept (a discarded residual, formed explicitly;
    :math:`MY_2 = (MU)A_2 + (MC)T_2`).

    Parameters
    ----------
    U : ndarray of shape (n_local, k)
    A : ndarray of shape (k, n_out + d)
    C : ndarray of shape (n_local, c), optional
    T : ndarray of shape (c, n_out + d), optional
    n_out : int
    out : ndarray of shape (n_local, n_out)
    MU, MC : ndarray, optional
        :math:`M` applied to ``U`` and ``C`` (``None``: :math:`M = I`).
    comm : mpi4py communicator, optional

    Returns
    -------
    G : ndarray of shape (n_out, n_out) or None
        :math:`Y_1^TY_1`, replicated and symmetrized (the orthonormality check of new modes),
        when :math:`M = I`; ``None`` otherwise.
    energy : float
        :math:`\\|Y_2\\|_M^2`, replicated.
    """
    n, k = U.shape
    w = A.shape[1] if k else T.shape[1]
    G = np.zeros((n_out, n_out)) if MU is None else None
    e = 0.0
    width = w + k + (0 if C is None else C.shape[1])
    step = next(row_blocks(n, width), (0, 0))[1]
    buf = np.empty((step, w))
    for i0, i1 in row_blocks(n, width):
        Cb = None if C is None else C[i0:i1]
        Yb = _rows_combined(buf[: i1 - i0], U[i0:i1], A, Cb, T)
        out[i0:i1] = Yb[:, :n_out]
        if MU is None:
            G += Yb[:, :n_out].T @ Yb[:, :n_out]
            if w > n_out:
                e += float(np.sum(Yb[:, n_out:] ** 2))
        elif w > n_out:
            MCb = None if C is None else MC[i0:i1]
            MYb = _rows_combined(
                np.empty((i1 - i0, w - n_out)), MU[i0:i1], A[:, n_out:], MCb, T[:, n_out:]
            )
            e += float(np.sum(Yb[:, n_out:] * MYb))
    if G is None:
        return None, max(float(allreduce_sum(e, comm)), 0.0) if w > n_out else 0.0
    both = allreduce_sum(np.concatenate([G.ravel(), [e]]), comm)
    G = both[:-1].reshape(n_out, n_out)
    return 0.5 * (G + G.T), max(float(both[-1]), 0.0)


def _rows_combined(buf, Ub, A, Cb, T) -> np.ndarray:
    """``buf = Ub A + Cb T`` (either term may be absent)."""
    if Ub.shape[1]:
        np.matmul(Ub, A, out=buf)
        if Cb is not None and Cb.shape[1]:
            buf += Cb @ T
    elif Cb is not None:
        np.matmul(Cb, T, out=buf)
    else:
        buf[:] = 0.0
    return buf
