"""Incremental (streaming) SVD by Brand's block update, with a running error bound.

State after :math:`t` blocks: :math:`M`-orthonormal modes :math:`U` (rows distributed),
singular values :math:`\\Sigma`, the discarded energy :math:`D` (a running sum, never
``total - kept``) and, optionally, the coefficients :math:`\\Gamma = U^T M \\tilde S` of all
columns seen, so that :math:`\\tilde S = U\\Gamma` is the approximate data matrix whose exact
SVD is :math:`(U, \\Sigma)`. One update by a block :math:`C` (``METHODS.md`` section 2.1,
Brand, Linear Algebra Appl. 415, 2006)::

    L = U^T M C                                          (sweep 1)
    H = C - U L;  P = U^T M H;  G = H^T M H              (sweep 2: H, P and G together)
    nothing novel (tr G <= (novelty_tol ||C||)^2):  K empty, D += tr G
    else  G - P^T P = W Lam W^T                          (Gram of H - U P, U^T M U = I)
          F = W_k Lam_k^{-1/2};  J = (H - U P) F        (never formed; kept: lam > thresh)
          K = Lam_k^{1/2} W_k^T;  L += P;  D += sum of dropped lam
    [[Sigma, L], [0, K]] = U' S' V'^T                   (small SVD, replicated)
    N from the allowance (or rank / rtol);  D += sum_{i>N} S'_i^2
    T = F U'_J;  U <- U (U'_U - P T) + H T              (sweep 3, = [U J] U'[:, :N])
    Sigma <- S'[:N];  Gamma <- U'[:, :N]^T [[Gamma, L], [0, K]]
    if max|U^T M U - I| > orth_tol:  U^T U = R^T R, R Sigma = U'' S'' V''^T,
                                      U <- U R^{-1} U'' (one product), ...

Both Gram-Schmidt passes are applied: the first explicitly (:math:`H`), the second
(:math:`-UP`) inside the mode update, so the tall arrays are swept three times per block.
In the Euclidean case :math:`H` is never stored: the second sweep forms it one cache-sized
row block at a time for :math:`U^TH` and :math:`H^TH`, and the mode update uses
:math:`HT = CT - U(LT)`, reading the block :math:`C` again instead of a stored residual;
in the Euclidean case the third sweep also accumulates :math:`U^TU` for the check, which runs
after every block that adds directions (the eigen route leaves :math:`J` orthonormal only to
about :math:`u\\lambda_1/\\lambda_k`, which one Cholesky pass on the new modes removes) and
at least every few blocks otherwise. The eigen route needs every kept eigenvalue resolved
(:math:`\\lambda \\ge 10^{-8}\\lambda_1`); weaker novel directions are either dropped
into :math:`D` when the truncation allowance covers them, or the update falls back to the
rank-revealing shifted Cholesky-QR of :func:`rom.compression._pod.cholesky_qr` with an SVD of its
:math:`R` (accurate to round-off). :meth:`IncrementalSVD.check_orthonormality` forces the
check. :meth:`IncrementalSVD.fit` (Euclidean) fuses sweep 1 of each block into sweep 3 of
the one before: while a row block of the new modes is in cache, its part of
:math:`U_{new}^TC_{next}` is accumulated; a Cholesky-QR pass on the new modes,
:math:`U \\leftarrow UM`, maps it to :math:`M^T(U_{new}^TC_{next})`. So a block costs two
sweeps after the first. In the Euclidean case each update runs inside one
:func:`rom.parallel.row_threads` block (for :meth:`IncrementalSVD.fit`, one for all of
them): the three sweeps run as contiguous row ranges, one per BLAS thread with one-thread
BLAS each, and the small core factorizations on one thread (the rarely taken accurate route
and the re-orthonormalization run their Gram and triangular products as the same row
ranges). Memory:
:math:`U`, the block, and, when the rank grows, the new modes, i.e.
:math:`O(n_{local}(k + c))` (plus one :math:`n_{local}\\times c` residual with a
product :math:`M`, or on the accurate route); :math:`U` is updated in place when its rank
is unchanged.

Each update is one node of an incremental HAPOD: truncation acts on the core alone, so in
exact arithmetic the discarded parts :math:`F_t` have mutually orthogonal row spaces and

.. math:: \\|S - \\tilde S\\|_F^2 = \\sum_t \\|F_t\\|_F^2 = D, \\qquad
          \\|S - UU^TMS\\|_F \\le \\|S - \\tilde S\\|_F = \\sqrt{D}

(Fareed & Singler, arXiv:1803.06313, for the bound on :math:`\\tilde S`; block form of
``METHODS.md`` section 2.2). :attr:`IncrementalSVD.error_bound_` is :math:`\\sqrt{D}`.

Truncation policies (``METHODS.md`` section 2.3, allowance carried forward: the energy a
block may discard is its allowance plus what earlier blocks left unused):

``l2_err`` with ``n_total``
    allowance :math:`a_t = \\mathrm{l2\\_err}^2\\, c_t / n_{total}` per block of :math:`c_t`
    columns, so :math:`D \\le \\mathrm{l2\\_err}^2` after ``n_total`` columns.
    :meth:`IncrementalSVD.fit` sets ``n_total`` to the number of columns it is given.
``l2_err`` alone (stream of unknown length)
    :math:`a_t = \\mathrm{l2\\_err}^2 - D` (the whole remaining budget, spent greedily).
``rel_l2_err``
    :math:`a_t = \\mathrm{rel\\_l2\\_err}^2 \\|C_t\\|_M^2`, so
    :math:`D \\le \\mathrm{rel\\_l2\\_err}^2 \\|S\\|_M^2` for any stream length.
``column_allowance``
    :math:`a_t = \\text{column\\_allowance}\\cdot c_t` (the incremental HAPOD policy with
    ``column_allowance`` :math:`= (1-\\omega^2)\\varepsilon^{*2}`).
``rank``, ``rtol``
    at most ``rank`` modes; drop :math:`\\sigma'_i < \\mathrm{rtol}\\,\\sigma'_1` (of the core).

Directions below ``novelty_tol`` (relative to the block, or to :math:`\\sigma'_1` in the core)
are dropped as numerical noise; their energy is added to :math:`D` and charged to the
allowance, so the bound stays rigorous up to rounding.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression._pod import (
    _factor_inverse,
    _ordered_sum,
    _signs,
    cholesky_qr,
    gram_matrix,
    orthonormalize,
)
from rom.compression.truncation import truncation_rank, validate_truncation
from rom.parallel import (
    Product,
    allreduce_sum,
    apply_product,
    blas_threads,
    check_collective,
    get_comm,
    local_inner,
    split_rows,
    thread_block,
    worth_splitting,
)

__all__ = ["IncrementalSVD"]

logger = logging.getLogger(__name__)


def _collective_block_check(err: str | None, cols: int, comm: MPI.Comm) -> None:
    """One collective: every rank raises the same error, or all agree on the column count."""
    if comm.size == 1:
        if err is not None:
            raise ValueError(err)
        return
    verdicts = comm.allgather((err, cols))
    for r, (msg, _) in enumerate(verdicts):
        if msg is not None:
            raise ValueError(f"{msg} (reported by rank {r} of {comm.size})")
    all_cols = [v[1] for v in verdicts]
    if len(set(all_cols)) > 1:
        raise ValueError(f"block has different numbers of columns on the ranks: {all_cols}")


_CHECK_EVERY = 4  # exact orthonormality check at least every this many blocks
_ROW_BLOCK_ELEMENTS = 2**19  # 4 MiB of float64 per row-block temporary (fewer, larger BLAS calls)


def _row_blocks(n: int, width: int, lo: int = 0):
    """Row ranges of ``[lo, n)`` whose temporaries of ``width`` columns stay under 4 MiB."""
    step = max(256, _ROW_BLOCK_ELEMENTS // max(width, 1))
    for i0 in range(lo, n, step):
        yield i0, min(n, i0 + step)


def _split_worth(n: int, c: int, k: int) -> bool:
    """Whether an update of ``c`` columns against ``k`` modes on ``n`` rows is worth running
    as row ranges: about a millisecond of work per sweep (a thread-pool query costs about
    2 ms)."""
    return worth_splitting(2.0 * n * c * (k + c))


def _first_inner(U: np.ndarray, C: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """The local part of :math:`U^TC` (Euclidean), as row ranges (:func:`split_rows`)."""
    k, c = U.shape[1], C.shape[1]
    parts = split_rows(
        lambda lo, hi: local_inner(U[lo:hi], C[lo:hi]),
        U.shape[0],
        work=2.0 * U.shape[0] * k * c,
        threads=threads,
    )
    return _ordered_sum(parts)


def _residual_sweep(
    C: np.ndarray,
    U: np.ndarray,
    L: np.ndarray,
    H: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The local parts of :math:`U^TH` and :math:`H^TH` for ``H = C - U L``, one
    cache-sized row block at a time (a single sweep over ``C`` and ``U``). ``H`` is stored
    only when an array is given; otherwise each block lives in one cache-sized buffer.
    The sweep runs as row ranges, one per thread (:func:`rom.parallel.split_rows`)."""
    k, c = L.shape

    def part(lo, hi):
        P = np.zeros((k, c))
        G = np.zeros((c, c))
        buf = None
        for i0, i1 in _row_blocks(hi, k + c, lo):
            Ub = U[i0:i1]
            if H is None:
                if buf is None:
                    buf = np.empty((i1 - i0, c))
                Hb = buf[: i1 - i0]
            else:
                Hb = H[i0:i1]
            np.matmul(Ub, L, out=Hb)
            np.subtract(C[i0:i1], Hb, out=Hb)
            P += local_inner(Ub, Hb)
            G += Hb.T @ Hb
        return P, G

    n = C.shape[0]
    return _ordered_sum(split_rows(part, n, work=2.0 * n * c * (2 * k + c), threads=threads))


def _combine(
    U: np.ndarray,
    A: np.ndarray,
    B: np.ndarray | None,
    T: np.ndarray | None,
    out: np.ndarray,
    *,
    gram: bool,
    threads: int | None = None,
    ahead: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``out = U A + B T`` by row blocks (``out`` may be ``U``: each block is formed in a
    temporary first); as row ranges, one per thread. From the same sweep, while each block
    of ``out`` is in cache: with ``gram`` the local part of ``out^T out``, and with ``ahead``
    (the next block of columns, Euclidean) the local part of ``out^T ahead``, the next
    update's first sweep. Returns ``(G, L_ahead)`` (``None`` where not asked)."""
    N = A.shape[1]
    width = U.shape[1] + (0 if B is None else B.shape[1]) + N
    ca = 0 if ahead is None else ahead.shape[1]

    def part(lo, hi):
        G = np.zeros((N, N)) if gram else None
        La = np.zeros((N, ca)) if ca else None
        for i0, i1 in _row_blocks(hi, width + ca, lo):
            Ob = U[i0:i1] @ A
            if B is not None and B.shape[1]:
                Ob += B[i0:i1] @ T
            out[i0:i1] = Ob
            if gram:
                G += Ob.T @ Ob
            if ca:
                La += local_inner(Ob, ahead[i0:i1])
        return G, La

    n = U.shape[0]
    G, La = _ordered_sum(split_rows(part, n, work=2.0 * n * (width + ca) * N, threads=threads))
    return G, (La if ca else None)


def _residual_basis(
    H: np.ndarray | None,
    G: np.ndarray,
    P0: np.ndarray,
    thresh2: float,
    budget: float,
    U: np.ndarray,
    *,
    product,
    comm,
    C: np.ndarray | None = None,
    L: np.ndarray | None = None,
    threads: int | None = None,
) -> dict:
    """Rank-revealing :math:`H \\approx UP + JK` with :math:`J^TMJ = I`, :math:`J \\perp_M U`.

    ``G`` is :math:`H^TMH` and ``P0`` is :math:`U^TMH` (replicated, from the same sweep as
    ``H``). Directions of energy :math:`\\le` ``thresh2`` are dropped. Returns a dict:
    ``K`` (r x c); ``Ladd`` (k x c, the part of :math:`H` along :math:`U` found by the second
    Gram-Schmidt pass, added to :math:`L`); ``dropped`` (energy not added); and
    ``B``, ``Pb``, ``Bmap`` with :math:`J = (B - U\\,\\mathrm{Pb})\\,\\mathrm{Bmap}`
    (``None`` for ``Pb``/``Bmap``: zero / identity), so that the caller forms the new modes
    in one sweep.

    Eigen route (``METHODS.md`` section 2.1): the second pass :math:`H_2 = H - UP_0` is
    applied implicitly (``B`` is ``H``, ``Pb`` is ``P0``), with Gram matrix
    :math:`H_2^TMH_2 = G - P_0^TP_0 = W\\Lambda W^T` (:math:`U^TMU = I`),
    ``Bmap`` :math:`= F = W_k\\Lambda_k^{-1/2}`, :math:`K = \\Lambda_k^{1/2}W_k^T`. It needs
    every kept eigenvalue resolved (:math:`\\lambda \\ge 10^{-8}\\lambda_1`, far above the
    round-off :math:`u\\lambda_1`), so that the orthonormality error of :math:`J`,
    about :math:`u\\lambda_1/\\lambda_k \\le 10^{-7}`, is one that a Cholesky pass on the new
    modes removes. Weaker directions above ``thresh2`` are dropped when their total energy fits
    in ``budget`` (the truncation could discard them anyway; the energy is charged to it);
    otherwise the accurate rank-revealing shifted Cholesky-QR of :func:`rom.compression._pod.cholesky_qr`
    and an SVD of its :math:`R` are used (``B`` is an explicit, orthonormal :math:`J`; two
    more passes and two more :math:`n\\times c` arrays). Its dropped energy is that of the
    values of :math:`R` below ``thresh2`` and of the factorization's own residual
    :math:`E = H - QR` (what its rank-revealing passes left out), formed explicitly:
    :math:`(\\|E\\|_M + (\\sum_{dropped}\\sigma^2)^{1/2})^2`, never as
    :math:`\\|H\\|_M^2 - \\sum\\sigma^2`, whose rounding (about :math:`u\\|H\\|_M^2`) would
    put a :math:`\\sqrt{u}\\,\\|H\\|_M` floor under the error bound (``METHODS.md`` section 1).

    ``H=None`` (Euclidean streaming): the residual was never stored. The eigen route then
    returns ``B=None``: the caller forms :math:`HT = CT - U(LT)` from the block itself; the
    accurate route forms :math:`H = C - UL` from ``C`` and ``L`` first. ``threads``: as in
    :func:`rom.compression._pod.gram_matrix`, for the accurate route's products.
    """
    k = U.shape[1]
    c = G.shape[0]
    G2 = G - P0.T @ P0 if k else G
    G2 = 0.5 * (G2 + G2.T)
    lam, W = np.linalg.eigh(G2)
    lam, W = lam[::-1], W[:, ::-1]
    keep = lam > thresh2
    weak = keep & (lam < 1e-8 * lam[0])
    if weak.any() and float(np.sum(lam[weak])) <= budget:
        keep &= ~weak
        weak[:] = False
    if not weak.any():
        sk = np.sqrt(lam[keep])
        Wk = W[:, keep]
        dropped = float(np.sum(np.maximum(lam[~keep], 0.0)[::-1]))
        return {
            "B": H,
            "Pb": P0,
            "Bmap": Wk / sk,
            "K": sk[:, None] * Wk.T,
            "Ladd": P0,
            "dropped": dropped,
        }
    if H is None:
        H = C - U @ L if k else np.array(C)
    Q, Rq = cholesky_qr(H, product=product, comm=comm, threads=threads)
    Ur, sr, Vrt = np.linalg.svd(Rq, full_matrices=False)
    keep = sr**2 > thresh2
    J = Q @ Ur[:, keep]
    K = sr[keep, None] * Vrt[keep]
    E = H - Q @ Rq
    unresolved = float(np.trace(gram_matrix(E, product=product, comm=comm, threads=threads)))
    del E
    small = float(np.sum(sr[~keep][::-1] ** 2))
    dropped = (np.sqrt(max(unresolved, 0.0)) + np.sqrt(small)) ** 2
    if k and J.shape[1]:  # second Gram-Schmidt pass against U
        P1 = allreduce_sum(local_inner(U, apply_product(product, J)), comm)
        J -= U @ P1
        Jq, Rj = orthonormalize(J, product=product, comm=comm, threads=threads)
        return {"B": Jq, "Pb": None, "Bmap": None, "K": Rj @ K, "Ladd": P1 @ K, "dropped": dropped}
    return {"B": J, "Pb": None, "Bmap": None, "K": K, "Ladd": np.zeros((k, c)), "dropped": dropped}


class IncrementalSVD:
    """Streaming thin SVD of row-distributed snapshots (Brand's block update, CGS2).

    Parameters
    ----------
    rank : int, optional
        Keep at most ``rank`` modes after every block.
    rtol : float, optional
        After every block, drop core singular values :math:`\\sigma'_i < \\mathrm{rtol}\\,
        \\sigma'_1`.
    l2_err : float, optional
        Absolute bound on the total error: :math:`\\|S-\\tilde S\\|_F \\le` ``l2_err``
        (allowances in the module docstring; give ``n_total`` to spread them evenly).
    rel_l2_err : float, optional
        Relative bound: :math:`\\|S - \\tilde S\\|_F \\le \\mathrm{rel\\_l2\\_err}\\,\\|S\\|_M`.
    column_allowance : float, optional
        Energy each column may discard (carried forward). At most one of ``l2_err``,
        ``rel_l2_err``, ``column_allowance``.
    n_total : int, optional
        Expected number of columns, for the ``l2_err`` allowance.
    novelty_tol : float
        Relative novelty threshold :math:`\\tau_{rel}`: residual directions with singular value
        :math:`\\le \\tau_{rel}\\|C\\|_F` (and core values :math:`\\le \\tau_{rel}\\sigma'_1`) are
        numerical noise and not added.
    orth_tol : float
        Re-orthonormalize when :math:`\\max|U^TMU - I| >` ``orth_tol``.
    product : operator, optional
        Inner product :math:`M` on owned rows (:func:`rom.parallel.apply_product`).
    comm : mpi4py communicator, optional
        Serial when ``None``. Every call is collective.
    keep_coefficients : bool
        Keep :math:`\\Gamma` (``coefficients_``), :math:`O(k\\,n_{seen})` memory.

    Attributes
    ----------
    modes_ : ndarray of shape (n_local, k)
        This rank's rows of the :math:`M`-orthonormal modes :math:`U`.
    singular_values_ : ndarray of shape (k,)
    n_components_ : int
    n_samples_seen_ : int
    n_features_ : int
        Global number of rows.
    discarded_energy_ : float
        :math:`D = \\|S - \\tilde S\\|_F^2` (exact arithmetic), a running sum.
    error_bound_ : float
        :math:`\\sqrt{D}`: bounds :math:`\\|S - \\tilde S\\|_F` and
        :math:`\\|S - UU^TMS\\|_F`.
    total_energy_ : float
        :math:`\\|S\\|_M^2` of the columns seen.
    coefficients_ : ndarray of shape (k, n_samples_seen_) or None
        :math:`\\Gamma`, with :math:`\\tilde S = U\\Gamma`.
    block_discarded_energy_ : list of float
        Energy discarded by each update (the local errors of the incremental HAPOD nodes).
    block_allowance_ : list of float
        Energy each update was allowed to discard (its allowance plus the carry-over; ``inf``
        under ``rank``/``rtol`` alone).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((100, 3)) @ np.ones((3, 12))
    >>> est = IncrementalSVD(rtol=1e-12).fit(X, chunk=5)
    >>> est.n_components_
    1
    >>> bool(np.allclose(est.modes_ @ est.coefficients_, X))
    True
    """

    def __init__(
        self,
        *,
        rank: int | None = None,
        rtol: float | None = None,
        l2_err: float | None = None,
        rel_l2_err: float | None = None,
        column_allowance: float | None = None,
        n_total: int | None = None,
        novelty_tol: float = 1e-10,
        orth_tol: float = 1e-12,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
        keep_coefficients: bool = True,
    ) -> None:
        self.rank = rank
        self.rtol = rtol
        self.l2_err = l2_err
        self.rel_l2_err = rel_l2_err
        self.column_allowance = column_allowance
        self.n_total = n_total
        self.novelty_tol = novelty_tol
        self.orth_tol = orth_tol
        self.product = product
        self.comm = comm
        self.keep_coefficients = keep_coefficients

    # ------------------------------------------------------------------ validation
    def _option_error(self) -> str | None:
        err = validate_truncation(
            rank=self.rank, rtol=self.rtol, l2_err=self.l2_err, rel_l2_err=self.rel_l2_err
        )
        if err:
            return err
        given = [
            n for n in ("l2_err", "rel_l2_err", "column_allowance") if getattr(self, n) is not None
        ]
        if len(given) > 1:
            return f"give at most one of l2_err, rel_l2_err, column_allowance (got {given})"
        ca = self.column_allowance
        if ca is not None and not (
            isinstance(ca, (int, float, np.floating)) and math.isfinite(ca) and ca >= 0
        ):
            return f"column_allowance must be finite and >= 0, got {ca!r}"
        nt = self.n_total
        if nt is not None and (not isinstance(nt, (int, np.integer)) or nt < 1):
            return f"n_total must be a positive integer, got {nt!r}"
        for name in ("novelty_tol", "orth_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and 0 <= v < 1):
                return f"{name} must be in [0, 1), got {v!r}"
        return None

    def _block_error(
        self, block: Any, *, check_finite: bool = False
    ) -> tuple[np.ndarray | None, str | None]:
        try:
            C = np.asarray(block)
        except (TypeError, ValueError) as e:
            return None, f"block is not a numeric array: {e}"
        if C.ndim == 1:
            C = C[:, None]
        if C.ndim != 2:
            return None, f"block must be 2-D (rows x columns), got shape {C.shape}"
        if np.iscomplexobj(C) or not np.issubdtype(C.dtype, np.number):
            return None, f"block must be real and numeric, got dtype {C.dtype}"
        C = np.asarray(C, dtype=np.float64)
        if hasattr(self, "modes_") and C.shape[0] != self.modes_.shape[0]:
            return None, (
                f"block has {C.shape[0]} local rows, expected {self.modes_.shape[0]} "
                "(the rows of the first block on this rank)"
            )
        if check_finite and not np.all(np.isfinite(C)):
            j = int(np.flatnonzero(~np.all(np.isfinite(C), axis=0))[0])
            return None, (
                f"block contains NaN or Inf (local column {j}, snapshot "
                f"{getattr(self, 'n_samples_seen_', 0) + j}); state left unchanged"
            )
        return C, None

    # ------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, *, chunk: int = 64) -> IncrementalSVD:
        """Reset, then stream the columns of ``X`` (n_local, m) in blocks of ``chunk`` columns.

        With ``l2_err`` and no ``n_total``, the allowance is spread over the ``m`` columns.
        Returns ``self``.
        """
        comm = get_comm(self.comm)
        err = None
        if not isinstance(chunk, (int, np.integer)) or chunk < 1:
            err = f"chunk must be a positive integer, got {chunk!r}"
        X = np.asarray(X)
        if err is None and X.ndim != 2:
            err = f"X must be 2-D (rows x columns), got shape {X.shape}"
        check_collective(err, comm)
        self._reset()
        self._fit_n_total = X.shape[1]
        b = int(chunk)
        # one thread block for all updates (one thread-pool query, not one per block)
        split = self.product is None and _split_worth(X.shape[0], min(b, X.shape[1]), 0)
        # lookahead (Euclidean, float64): each update's last sweep also forms U^T C of the
        # next block, which then skips its first sweep
        look = self.product is None and X.dtype == np.float64
        L_next = None
        with blas_threads(comm) as nt, thread_block(nt, split) as T:
            for j in range(0, X.shape[1], b):
                ahead = X[:, j + b : j + 2 * b] if look and j + b < X.shape[1] else None
                L_next = self._partial_fit(
                    X[:, j : j + b], threads=T, own_block=not split, ahead=ahead, L_local=L_next
                )
        if X.shape[1]:
            self.check_orthonormality()
        return self

    def _reset(self) -> None:
        for name in (
            "modes_",
            "singular_values_",
            "coefficients_",
            "n_samples_seen_",
            "discarded_energy_",
            "error_bound_",
            "total_energy_",
            "n_features_",
            "n_components_",
            "block_discarded_energy_",
            "block_allowance_",
            "_carry",
            "_fit_n_total",
            "_since_check",
        ):
            if hasattr(self, name):
                delattr(self, name)

    def partial_fit(self, block: np.ndarray) -> IncrementalSVD:
        """Add a block of columns, shape (n_local, c), and update the SVD (collective).

        A block with NaN/Inf or the wrong number of rows raises ``ValueError`` on every rank
        and leaves the state unchanged. Returns ``self``.
        """
        self._partial_fit(block, threads=None, own_block=True)
        return self

    def _partial_fit(
        self, block, *, threads: int | None, own_block: bool, ahead=None, L_local=None
    ) -> np.ndarray | None:
        """:meth:`partial_fit`; ``own_block``: enter this update's own thread block, else run
        with ``threads`` from the caller's (:meth:`fit`). ``ahead``, ``L_local``: the
        lookahead of :meth:`_update`, whose result for the next block is returned."""
        comm = get_comm(self.comm)
        first = not hasattr(self, "modes_")
        err = self._option_error() if first else None
        C = None
        if err is None:
            C, err = self._block_error(block)
        _collective_block_check(err, -1 if C is None else C.shape[1], comm)
        if first:
            self._init_state(C.shape[0], comm)
        if C.shape[1] == 0:
            return None
        if not own_block:
            return self._update(C, comm, threads=threads, ahead=ahead, L_local=L_local)
        split = self.product is None and _split_worth(C.shape[0], C.shape[1], self.modes_.shape[1])
        with blas_threads(comm) as nt, thread_block(nt, split) as T:
            return self._update(C, comm, threads=T, ahead=ahead, L_local=L_local)

    def _init_state(self, n_local: int, comm: MPI.Comm) -> None:
        self.modes_ = np.zeros((n_local, 0))
        self.singular_values_ = np.zeros(0)
        self.coefficients_ = np.zeros((0, 0)) if self.keep_coefficients else None
        self.n_samples_seen_ = 0
        self.n_components_ = 0
        self.discarded_energy_ = 0.0
        self.error_bound_ = 0.0
        self.total_energy_ = 0.0
        self.block_discarded_energy_ = []
        self.block_allowance_ = []
        self.n_features_ = int(allreduce_sum(float(n_local), comm))
        self._carry = 0.0

    def _orth_guard(self, U, sv, Gam, threads=None):
        """Re-orthonormalization guard: if :math:`\\max|U^TMU - I| >` ``orth_tol``,
        :math:`U = QR` (Cholesky-QR2), :math:`R\\Sigma = U''\\Sigma''V''^T`, :math:`U \\leftarrow
        QU''`, :math:`\\Gamma \\leftarrow U''^TR\\Gamma` (collective)."""
        self._since_check = 0
        N = U.shape[1]
        if N == 0:
            return U, sv, Gam
        G = gram_matrix(U, product=self.product, comm=self.comm, threads=threads)
        orth = float(np.max(np.abs(G - np.eye(N))))
        if orth > self.orth_tol:
            logger.debug(
                "incremental SVD: orthonormality %.2e > %.1e, re-orthonormalizing",
                orth,
                self.orth_tol,
            )
            Qo, Ro = orthonormalize(U, product=self.product, comm=self.comm, threads=threads)
            U2, s2, _ = np.linalg.svd(Ro * sv, full_matrices=False)
            U2 = U2 * _signs(U2)  # keep each mode's orientation (U2 is near a permutation)
            U, sv = Qo @ U2, s2
            if Gam is not None:
                Gam = U2.T @ (Ro @ Gam)
        return U, sv, Gam

    def _orth_fix(self, U, sv, Gam, G, threads=None, La=None):
        """Orthonormality check with the Gram matrix :math:`G = U^TU` measured by the update's
        last sweep; if :math:`\\max|G - I| >` ``orth_tol``, one Cholesky-QR pass with it:
        :math:`G = R^TR`, :math:`R\\Sigma = U''\\Sigma''V''^T`, :math:`U \\leftarrow
        U R^{-1}U''` (one product, in place), :math:`\\Gamma \\leftarrow U''^TR\\Gamma`.
        The lean update keeps :math:`\\kappa(U) - 1` far below :math:`u^{-1/2}`, so one pass
        restores orthonormality to round-off; the next update's sweep (or
        :meth:`check_orthonormality`) measures it again.

        ``La``: the local :math:`U^TC_{next}` of :meth:`fit`'s lookahead; returned as
        :math:`(UM)^TC_{next} = M^T(U^TC_{next})` for the map :math:`M = R^{-1}U''` applied to
        :math:`U`, or ``None`` (to be recomputed) after the full guard. Returns
        ``(U, sv, Gam, La)``."""
        N = U.shape[1]
        orth = float(np.max(np.abs(G - np.eye(N))))
        if orth <= self.orth_tol:
            self._since_check = 0
            return U, sv, Gam, La
        logger.debug(
            "incremental SVD: orthonormality %.2e > %.1e, one Cholesky-QR pass", orth, self.orth_tol
        )
        try:
            R = np.linalg.cholesky(0.5 * (G + G.T)).T
        except np.linalg.LinAlgError:
            return (*self._orth_guard(U, sv, Gam, threads), None)
        U2, s2, _ = np.linalg.svd(R * sv, full_matrices=False)
        # LAPACK's signs for the nearly diagonal R Sigma are not stable under round-off: keep
        # each mode's orientation (largest entry of each column of U2 positive), so that the
        # modes do not depend on the rounding of the sweeps (rank count, thread split)
        U2 = U2 * _signs(U2)
        M = _factor_inverse(R) @ U2
        _combine(U, M, None, None, U, gram=False, threads=1 if threads is None else threads)
        if Gam is not None:
            Gam = U2.T @ (R @ Gam)
        self._since_check = 1
        return U, s2, Gam, (None if La is None else M.T @ La)

    def check_orthonormality(self) -> IncrementalSVD:
        """Run the re-orthonormalization guard now (collective); returns ``self``.

        :meth:`partial_fit` checks :math:`\\max|U^TMU - I|` exactly every
        few blocks (and after every accurate-path update); between checks the drift is
        round-off of the small updates, :math:`O(u(k+c))` per block. :meth:`fit` and
        :func:`rom.compression._compress.compress` call this at the end.
        """
        self._check_fitted()
        if getattr(self, "_since_check", 0):
            self.modes_, self.singular_values_, self.coefficients_ = self._orth_guard(
                self.modes_, self.singular_values_, self.coefficients_
            )
        return self

    def _raise_nonfinite(self, C: np.ndarray, comm: MPI.Comm) -> None:
        """A reduced quantity is not finite: find the culprit collectively and raise."""
        err = None
        bad = ~np.all(np.isfinite(C), axis=0)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            err = (
                f"block contains NaN or Inf (local column {j}, snapshot "
                f"{self.n_samples_seen_ + j}); state left unchanged"
            )
        check_collective(err, comm)
        check_collective(
            "block overflows (its inner products are not finite); rescale the "
            "snapshots; state left unchanged",
            comm,
        )

    def _allowance(self, c: int, normC2: float) -> float:
        """Energy this block may discard (before the carry-over)."""
        if self.l2_err is not None:
            n_total = self.n_total
            if n_total is None:
                n_total = getattr(self, "_fit_n_total", None)
            if n_total is None:
                return max(float(self.l2_err) ** 2 - self.discarded_energy_, 0.0)
            return float(self.l2_err) ** 2 * c / n_total
        if self.rel_l2_err is not None:
            return float(self.rel_l2_err) ** 2 * normC2
        if self.column_allowance is not None:
            return float(self.column_allowance) * c
        return 0.0

    def _update(
        self,
        C: np.ndarray,
        comm: MPI.Comm,
        *,
        threads: int | None = None,
        ahead: np.ndarray | None = None,
        L_local: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """One block update. ``L_local``: this rank's :math:`U^TC`, formed by the previous
        update's last sweep (:meth:`fit`'s lookahead); ``ahead``: the next block, whose
        :math:`U_{new}^TC_{next}` this update's last sweep forms and returns (Euclidean
        only; ``None`` otherwise)."""
        # ``threads``: from the update's thread block; outside one (None) the sweeps run as one
        # range with the BLAS threads as they are, as before (splitting each sweep on its own
        # measured slower)
        sweep = 1 if threads is None else threads
        P = self.product
        U, sv = self.modes_, self.singular_values_
        n_loc, k, c = U.shape[0], U.shape[1], C.shape[1]
        # CGS2 (METHODS.md section 2.1), three sweeps over the tall arrays: L = U^T M C;
        # H = C - U L with the second-pass coefficients P0 = U^T M H and G = H^T M H (one
        # fused sweep when Euclidean); the second pass H - U P0 is applied implicitly in the
        # mode update, whose sweep also measures the orthonormality of the new modes.
        if k == 0:
            H = C
            G = (
                gram_matrix(C, comm=comm, threads=threads)
                if P is None
                else allreduce_sum(C.T @ apply_product(P, C), comm)
            )
            L = P0 = np.zeros((0, c))
        else:
            if P is not None:
                L_local = local_inner(U, apply_product(P, C))
            elif L_local is None or L_local.shape != (k, c):
                L_local = _first_inner(U, C, threads=sweep)
            L = allreduce_sum(L_local, comm)
            if not np.all(np.isfinite(L)):
                self._raise_nonfinite(C, comm)
            if P is None:  # H is not stored: the mode update forms H T from C (below)
                H = None
                P0, G = _residual_sweep(C, U, L, threads=sweep)
                P0, G = allreduce_sum(P0, comm), allreduce_sum(G, comm)
            else:
                H = C - U @ L
                MH = apply_product(P, H)
                P0 = allreduce_sum(local_inner(U, MH), comm)
                G = allreduce_sum(H.T @ MH, comm)
                del MH
        if not (np.all(np.isfinite(G)) and np.all(np.isfinite(P0))):
            self._raise_nonfinite(C, comm)
        G = 0.5 * (G + G.T)
        normH2 = float(np.trace(G))
        normC2 = float(np.sum(L * L)) + normH2  # ||U L||^2 + ||H||^2, U^T M U = I
        thresh2 = (self.novelty_tol**2) * max(normC2, 0.0)
        any_err_rule = any(
            v is not None for v in (self.l2_err, self.rel_l2_err, self.column_allowance)
        )
        allowance = self._allowance(c, normC2) + self._carry
        res = None
        if normH2 <= thresh2:  # nothing novel
            K, dropped = np.zeros((0, c)), max(normH2, 0.0)
        else:
            # rank-revealing factorization of the residual, H ~ U (L add) + J K
            res = _residual_basis(
                H,
                G,
                P0,
                thresh2,
                allowance if any_err_rule else -1.0,
                U,
                product=P,
                comm=comm,
                C=C,
                L=L,
                threads=threads,
            )
            K, dropped = res["K"], res["dropped"]
            L1, L = L, L + res["Ladd"]
        r = K.shape[0]
        core = np.zeros((k + r, k + c))
        core[:k, :k] = np.diag(sv)
        core[:k, k:] = L
        core[k:, k:] = K
        Uc, sc, _ = np.linalg.svd(core, full_matrices=False)
        # numerically zero core directions
        nz = int(np.count_nonzero(sc > self.novelty_tol * sc[0])) if sc.size and sc[0] > 0 else 0
        dropped += float(np.sum(sc[nz:][::-1] ** 2))
        # truncation by the allowance (carried forward) and rank / rtol
        avail = allowance - dropped
        N = truncation_rank(
            sc[:nz],
            rank=self.rank,
            rtol=self.rtol,
            l2_err=math.sqrt(max(avail, 0.0)) if any_err_rule else None,
        )
        tail = float(np.sum(sc[N:nz][::-1] ** 2))
        carry = max(avail - tail, 0.0) if any_err_rule else 0.0
        if self.l2_err is not None and self.n_total is None and not hasattr(self, "_fit_n_total"):
            carry = 0.0  # the greedy allowance already holds the whole remaining budget
        Uk = Uc[:, :N]
        # deterministic signs: largest-magnitude entry of each core vector positive
        if N:
            idx = np.argmax(np.abs(Uk), axis=0)
            s = np.sign(Uk[idx, np.arange(N)])
            s[s == 0] = 1.0
            Uk = Uk * s
        Gnew = None
        if self.keep_coefficients:
            LK = np.vstack([L, K])
            Gnew = np.hstack([Uk[:k].T @ self.coefficients_, Uk.T @ LK])
        # U <- [U J] Uk in one sweep, with J = (B - U Pb) Bmap (Bmap = I, Pb = 0 when J is
        # explicit): [U J] Uk = U (Uk_U - Pb T) + B T, T = Bmap Uk_J; in place when the rank
        # is unchanged
        A, B, T = Uk[:k], None, None
        if res is not None:
            B = res["B"]
            T = Uk[k:] if res["Bmap"] is None else res["Bmap"] @ Uk[k:]
            if k and res["Pb"] is not None:
                A = A - res["Pb"] @ T
            if B is None:  # implicit residual: H T = C T - U (L1 T)
                B = C
                if k:
                    A = A - L1 @ T
        out = U if N == k and k else np.empty((n_loc, N))
        # new directions are orthonormal only to about u lambda_1 / lambda_k: check now
        self._since_check = getattr(self, "_since_check", 0) + 1
        check = r > 0 or self._since_check >= _CHECK_EVERY
        fused = P is None and check and N > 0  # the check's Gram from the same sweep
        ahead = ahead if P is None and N > 0 else None
        G_U, La = _combine(U, A, B, T, out, gram=fused, threads=sweep, ahead=ahead)
        del H, B, res
        Unew, svnew = out, sc[:N].copy()
        if fused:
            Unew, svnew, Gnew, La = self._orth_fix(
                Unew, svnew, Gnew, allreduce_sum(G_U, comm), threads, La
            )
        elif check:
            Unew, svnew, Gnew = self._orth_guard(Unew, svnew, Gnew, threads)
            La = None  # U may have been replaced: the next update forms U^T C itself
        block_D = dropped + tail
        # commit the new state (nothing above modified self, except U's rows in place)
        self.modes_ = Unew
        self.singular_values_ = svnew
        self.coefficients_ = Gnew
        self.n_components_ = N
        self.n_samples_seen_ += c
        self.total_energy_ += normC2
        self.discarded_energy_ += block_D
        self.error_bound_ = math.sqrt(self.discarded_energy_)
        self.block_discarded_energy_.append(block_D)
        self.block_allowance_.append(allowance if any_err_rule else math.inf)
        self._carry = carry
        logger.debug(
            "incremental SVD: block of %d, novelty %d, kept %d, discarded %.3e", c, r, N, block_D
        )
        return La

    def truncate(
        self, *, rank: int | None = None, rtol: float | None = None, l2_err: float | None = None
    ) -> IncrementalSVD:
        """Truncate the current SVD; the discarded tail is added to :math:`D` (collective).

        ``l2_err`` bounds the *total* error: the smallest :math:`N` with
        :math:`D + \\sum_{i>N}\\sigma_i^2 \\le \\mathrm{l2\\_err}^2` (all kept if even
        :math:`D` exceeds it). Since :math:`\\tilde S_N = U_N\\Gamma_N` is the best rank-:math:`N`
        approximation of :math:`\\tilde S`, the bound :math:`\\sqrt{D}` stays valid. Returns
        ``self``.
        """
        self._check_fitted()
        check_collective(validate_truncation(rank=rank, rtol=rtol, l2_err=l2_err), self.comm)
        sv = self.singular_values_
        N = truncation_rank(
            sv, rank=rank, rtol=rtol, l2_err=l2_err, extra_tail=self.discarded_energy_
        )
        if rank is None and rtol is None and l2_err is None:
            N = len(sv)
        tail = float(np.sum(sv[N:][::-1] ** 2))
        self.modes_ = self.modes_[:, :N].copy()
        self.singular_values_ = sv[:N].copy()
        if self.coefficients_ is not None:
            self.coefficients_ = self.coefficients_[:N].copy()
        self.n_components_ = N
        self.discarded_energy_ += tail
        self.error_bound_ = math.sqrt(self.discarded_energy_)
        return self

    # ------------------------------------------------------------------ using the basis
    def _check_fitted(self) -> None:
        if not hasattr(self, "modes_"):
            raise RuntimeError(
                "this IncrementalSVD is not fitted yet; call partial_fit or fit first"
            )

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Reduced coordinates :math:`U^T M X`, shape (k, n_columns) (collective)."""
        self._check_fitted()
        comm = get_comm(self.comm)
        X, err = self._block_error(X, check_finite=True)
        _collective_block_check(err, -1 if X is None else X.shape[1], comm)
        return allreduce_sum(local_inner(self.modes_, apply_product(self.product, X)), comm)

    def inverse_transform(self, coefficients: np.ndarray) -> np.ndarray:
        """Owned rows of :math:`U\\,\\text{coefficients}`, shape (n_local, n_columns)."""
        self._check_fitted()
        Cf = np.asarray(coefficients, dtype=np.float64)
        if Cf.ndim == 1:
            Cf = Cf[:, None]
        if Cf.shape[0] != self.n_components_:
            raise ValueError(
                f"coefficients have {Cf.shape[0]} rows, expected n_components_={self.n_components_}"
            )
        return self.modes_ @ Cf
