"""Incremental (streaming) SVD by Brand's block update, with a running error bound.

State after :math:`t` blocks: :math:`M`-orthonormal modes :math:`U` (rows distributed),
singular values :math:`\\Sigma`, the discarded energy :math:`D` (a running sum, never
``total - kept``) and, optionally, the coefficients :math:`\\Gamma = U^T M \\tilde S` of all
columns seen, so that :math:`\\tilde S = U\\Gamma` is the approximate data matrix whose exact
SVD is :math:`(U, \\Sigma)`. One update by a block :math:`C` (docs/theory.md §2.1; Brand,
Linear Algebra Appl. 415, 2006), in three sweeps over the tall arrays (:mod:`rom.sweeps`)::

    L = U^T M C;  H = C - U L (never stored):  P = U^T M H,  G = H^T M H
    H2 = H - U P (CGS2, implicit):  H2^T M H2 = G - P^T P,  L <- L + P
    nothing novel (trace <= (novelty_tol ||C||)^2):     K empty, D += trace
    else  G - P^T P = W Lambda W^T,  J = H2 W_k Lambda_k^{-1/2},  K = Lambda_k^{1/2} W_k^T
    [[Sigma, L], [0, K]] = U' S' V'^T                    (small SVD, replicated)
    N from the allowance (or rank / rtol);  D += sum_{i>N} S'_i^2 (smallest first)
    U <- [U J] U'[:, :N] = U (U'_U - L T) + C T,  T = W_k Lambda_k^{-1/2} U'_J
    Gamma <- U'[:, :N]^T [[Gamma, L], [0, K]]
    if max|U^T M U - I| > orth_tol: one Cholesky-QR pass     (U^T M U from the last sweep)

Why each step, the explicit path for weak directions that must be kept, and the cost:
docs/theory.md §2.1. With an inner product, :math:`MU` is kept beside :math:`U`. Memory:
:math:`O(n_{local}(k + c))`.

Each update is one node of an incremental HAPOD: truncation acts on the core alone, so in
exact arithmetic the discarded parts :math:`F_t` have mutually orthogonal row spaces and

.. math:: \\|S - \\tilde S\\|_F^2 = \\sum_t \\|F_t\\|_F^2 = D, \\qquad
          \\|S - UU^TMS\\|_F \\le \\|S - \\tilde S\\|_F = \\sqrt{D}

(Fareed & Singler, arXiv:1803.06313, for the bound on :math:`\\tilde S`; block form of
docs/theory.md §2.2). :attr:`IncrementalSVD.error_bound_` is :math:`\\sqrt{D}`.

Truncation policies (``l2_err``, ``rel_l2_err``, ``column_allowance``, ``rank``, ``rtol``):
the allowance each block may discard, carried forward, is tabulated in docs/theory.md §2.1.
Directions below ``novelty_tol`` are dropped as numerical noise; their energy is added to
:math:`D` and charged to the allowance, so the bound stays rigorous up to rounding.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression._result import FittedModes
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.interop import from_pymor
from rom.linalg import eigen_split
from rom.linalg import gram_matrix
from rom.linalg import project_out
from rom.linalg import range_basis
from rom.linalg import reorthonormalize
from rom.linalg import sign_flips
from rom.linalg import tail_energies
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import check_gram
from rom.parallel import get_comm
from rom.parallel import local_inner
from rom.parallel import product_error
from rom.sweeps import combine
from rom.sweeps import residual_gram

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


#: Allowed values of the options :func:`validate_truncation` does not cover.
_OPTIONS = {
    "column_allowance": Interval(0, None, optional=True),
    "n_total": Interval(1, None, integer=True, optional=True),
    "novelty_tol": Interval(0, 1, closed="left"),
    "orth_tol": Interval(0, 1, closed="left"),
    "keep_coefficients": Choice(True, False),
}


@dataclass
class _Step:
    """Intermediate quantities of one block update (replicated unless noted)."""

    L: np.ndarray  # U^T M C, (k, c)
    normC2: float  # ||C||_M^2
    K: np.ndarray | None = None  # J^T M H, (r, c)
    dropped: float = 0.0  # energy dropped before the core truncation
    allowance: float = 0.0
    any_err_rule: bool = False


class IncrementalSVD(FittedModes):
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
        (allowances in docs/theory.md §2.1; give ``n_total`` to spread them evenly).
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

    _FIT_HINT = "partial_fit or fit"

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
        keep_options(self, locals())

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
        err = option_error(self, _OPTIONS)
        if err is None and self.column_allowance is not None and math.isinf(self.column_allowance):
            err = f"column_allowance must be finite, got {self.column_allowance!r}"
        return err

    def _block_error(
        self, block: Any, *, check_finite: bool = False
    ) -> tuple[np.ndarray | None, str | None]:
        try:
            C = np.asarray(from_pymor(block))  # a pyMOR VectorArray becomes its array
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
        if not hasattr(self, "modes_"):  # the product is checked once, with the first block
            err = product_error(self.product, C.shape[0])
            if err:
                return None, err
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
        X = np.asarray(from_pymor(X))  # a pyMOR VectorArray becomes its (n, m) array
        if err is None and X.ndim != 2:
            err = f"X must be 2-D (rows x columns), got shape {X.shape}"
        if err is None and X.shape[1] == 0:
            err = "X has no columns"
        if err is None and self.rank is not None:  # the number of snapshots is known here
            err = validate_truncation(rank=self.rank, n_columns=X.shape[1])
        check_collective(err, comm)
        self._reset()
        self._fit_n_total = X.shape[1]
        for j in range(0, X.shape[1], int(chunk)):
            self.partial_fit(X[:, j : j + int(chunk)])
        if X.shape[1]:
            self.check_orthonormality()
        return self

    def _reset(self) -> None:
        """Forget the fitted state (attributes ending in ``_``, private ones); options stay."""
        for name in [n for n in vars(self) if n.endswith("_") or n.startswith("_")]:
            delattr(self, name)

    def partial_fit(self, block: np.ndarray) -> IncrementalSVD:
        """Add a block of columns, shape (n_local, c), and update the SVD (collective).

        A block with NaN/Inf or the wrong number of rows raises ``ValueError`` on every rank
        and leaves the state unchanged. Returns ``self``.
        """
        comm = get_comm(self.comm)
        first = not hasattr(self, "modes_")
        err = self._option_error() if first else None
        C = None
        if err is None:
            C, err = self._block_error(block)
        _collective_block_check(err, -1 if C is None else C.shape[1], comm)
        if first:
            self._init_state(C.shape[0], comm)
        if C.shape[1]:
            self._update(C, comm)
        return self

    def _init_state(self, n_local: int, comm: MPI.Comm) -> None:
        n_features = int(allreduce_sum(float(n_local), comm))
        if n_features == 0:  # replicated: every rank raises
            raise ValueError("the snapshots have no rows (on any rank)")
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
        self.n_features_ = n_features
        self._carry = 0.0
        self._MU = None if self.product is None else np.zeros((n_local, 0))

    def _repair(self, U, sv, Gam):
        """Orthonormality check and repair (:func:`rom.linalg.reorthonormalize`); the
        coefficients follow, :math:`\\Gamma \\leftarrow T\\Gamma` (collective)."""
        self._since_check = 0
        rep = reorthonormalize(U, sv, product=self.product, comm=self.comm, orth_tol=self.orth_tol)
        if Gam is not None and U.shape[1]:
            Gam = rep.left @ Gam
        return rep.modes, rep.singular_values, Gam

    def check_orthonormality(self) -> IncrementalSVD:
        """Run the re-orthonormalization guard now (collective); returns ``self``.

        :meth:`partial_fit` measures :math:`\\max|U^TMU - I|` in every update's last sweep
        and repairs above ``orth_tol``; only the modes of a repair are not measured yet (the
        next update does). :meth:`fit` and :func:`rom.compression.compress` call this at the
        end, so that their modes are checked with :math:`M` itself applied.
        """
        self._check_fitted()
        if getattr(self, "_since_check", 0):
            self.modes_, self.singular_values_, self.coefficients_ = self._repair(
                self.modes_, self.singular_values_, self.coefficients_
            )
            if self.product is not None:
                self._MU = apply_product(self.product, self.modes_)
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

    def _step(self, L: np.ndarray, normH2: float, c: int) -> _Step:
        """The step record: coefficients, :math:`\\|C\\|_M^2 = \\|L\\|^2 + \\|H\\|_M^2`
        (:math:`U^TMU = I`, :math:`H \\perp_M U`) and this block's allowance."""
        step = _Step(L=L, normC2=float(np.sum(L * L)) + normH2)
        step.any_err_rule = any(
            v is not None for v in (self.l2_err, self.rel_l2_err, self.column_allowance)
        )
        step.allowance = self._allowance(c, step.normC2) + self._carry
        return step

    def _coefficients(self, Uk: np.ndarray, step: _Step) -> np.ndarray | None:
        """:math:`\\Gamma \\leftarrow U'^T_N[[\\Gamma, L], [0, K]]` (``None`` if not kept)."""
        if not self.keep_coefficients:
            return None
        k = len(self.singular_values_)
        LK = np.vstack([step.L, step.K])
        return np.hstack([Uk[:k].T @ self.coefficients_, Uk.T @ LK])

    def _core(self, step: _Step) -> tuple[np.ndarray, np.ndarray, float]:
        """SVD of the core :math:`[[\\Sigma, L], [0, K]] = U'S'V'^T` and its truncation.

        Returns the signed kept core vectors :math:`U'_N`, the kept :math:`S'` and the energy
        the block discards in all (``step.dropped`` plus the core's dropped values, summed from
        the smallest)."""
        sv, L, K = self.singular_values_, step.L, step.K
        k, r, c = len(sv), K.shape[0], L.shape[1]
        core = np.zeros((k + r, k + c))
        core[:k, :k] = np.diag(sv)
        core[:k, k:] = L
        core[k:, k:] = K
        Uc, sc, _ = np.linalg.svd(core, full_matrices=False)
        # numerically zero core directions
        nz = int(np.count_nonzero(sc > self.novelty_tol * sc[0])) if sc.size and sc[0] > 0 else 0
        tails = tail_energies(sc)
        dropped = step.dropped + float(tails[nz])
        avail = step.allowance - dropped
        N = truncation_rank(
            sc[:nz],
            rank=self.rank,
            rtol=self.rtol,
            l2_err=math.sqrt(max(avail, 0.0)) if step.any_err_rule else None,
        )
        block_D = step.dropped + float(tails[N])  # tails[N] >= tails[nz]: one sum, no difference
        Uk = Uc[:, :N] * sign_flips(Uc[:, :N])
        return Uk, sc[:N].copy(), block_D

    def _update(self, C: np.ndarray, comm: MPI.Comm) -> None:
        """One block update (module docstring) in three sweeps over the tall arrays; the
        state changes only at the end. A weak direction that must be kept takes the explicit
        path instead (:meth:`_update_explicit`)."""
        P, U, MU = self.product, self.modes_, self._MU
        k, c = U.shape[1], C.shape[1]
        MC = None if P is None else apply_product(P, C)
        L, G = self._residual(C, MC, comm)
        step = self._step(L, float(np.trace(G)), c)
        thresh2 = (self.novelty_tol**2) * max(step.normC2, 0.0)
        sk, Wk, Wd = np.zeros(0), np.zeros((c, 0)), np.zeros((c, 0))
        if float(np.trace(G)) <= thresh2:  # nothing novel
            step.dropped = max(float(np.trace(G)), 0.0)
        else:
            split = eigen_split(
                G, drop_below=thresh2, budget=step.allowance if step.any_err_rule else -1.0
            )
            if split is None:
                self._update_explicit(C, comm)
                return
            sk, Wk, Wd, lam_d = split
            # the truncation decides on the eigenvalues; the account takes the formed energy
            step.dropped = float(tail_energies(np.sqrt(np.clip(lam_d, 0.0, None)))[0])
        step.K = sk[:, None] * Wk.T
        Uk, sv, block_D = self._core(step)
        N, d = Uk.shape[1], Wd.shape[1]
        T = np.hstack([(Wk / sk) @ Uk[k:], Wd])  # J U'_J and the dropped H2 W_d
        A = np.hstack([Uk[:k], np.zeros((k, d))]) - L @ T
        out = np.empty((U.shape[0], N))
        C_used = C if len(sk) or d else None
        G_U, e_d = combine(U, A, C_used, T, n_out=N, out=out, MU=MU, MC=MC, comm=comm)
        if d:
            block_D += e_d - step.dropped
        MU = None
        if P is not None:  # M U for the next update, and the check's U^T M U
            MU = apply_product(P, out)
            G_U = gram_matrix(out, MU, comm=comm)
            G_U = 0.5 * (G_U + G_U.T)
        out, MU, sv, Gam = self._fix(out, MU, sv, self._coefficients(Uk, step), G_U)
        self._MU = MU
        self._commit(c, out, sv, Gam, step, block_D)

    def _residual(self, C, MC, comm) -> tuple[np.ndarray, np.ndarray]:
        """Sweeps 1 and 2: :math:`L = U^TMC + P` and :math:`H_2^TMH_2 = G - P^TP`, with
        :math:`P = U^TMH`, :math:`G = H^TMH` of :math:`H = C - U(U^TMC)` (never stored);
        non-finite values and a product that is not SPD on the block raise on every rank."""
        U, MU = self.modes_, self._MU
        if U.shape[1]:
            L = allreduce_sum(local_inner(U if MU is None else MU, C), comm)
            if not np.all(np.isfinite(L)):
                self._raise_nonfinite(C, comm)
            P0, G = residual_gram(C, U, L, MC=MC, MU=MU, comm=comm)
        else:
            L = P0 = np.zeros((0, C.shape[1]))
            G = allreduce_sum(local_inner(C, C if MC is None else MC), comm)
        if not (np.all(np.isfinite(G)) and np.all(np.isfinite(P0))):
            self._raise_nonfinite(C, comm)
        if MC is not None:  # M on the block: C^T M C = L^T L + L^T P + P^T L + G (U^T M U = I)
            check_gram(L.T @ L + L.T @ P0 + P0.T @ L + G, comm)
        return L + P0, 0.5 * (G + G.T) - P0.T @ P0

    def _fix(self, U, MU, sv, Gam, G):
        """Orthonormality check with :math:`G = U^TMU` measured by the update; above
        ``orth_tol``, one Cholesky-QR pass with it: :math:`G = R^TR`, :math:`R\\Sigma =
        U_r\\Sigma_rZ^T`, :math:`U \\leftarrow UR^{-1}U_r` (in place, by one sweep; :math:`MU`
        alike), :math:`\\Gamma \\leftarrow U_r^TR\\Gamma`. A Cholesky failure takes the full
        repair."""
        N = U.shape[1]
        if N == 0 or float(np.max(np.abs(G - np.eye(N)))) <= self.orth_tol:
            self._since_check = 0
            return U, MU, sv, Gam
        try:
            R = np.linalg.cholesky(G).T
        except np.linalg.LinAlgError:
            U, sv, Gam = self._repair(U, sv, Gam)
            return U, (None if MU is None else apply_product(self.product, U)), sv, Gam
        Ur, sv, _ = np.linalg.svd(R * sv, full_matrices=False)
        Ur = Ur * sign_flips(Ur)
        Map = np.linalg.solve(R, Ur)
        for V in (U,) if MU is None else (U, MU):  # both new in this update: in place
            combine(V, Map, None, None, n_out=N, out=V, comm=self.comm)
        if Gam is not None:
            Gam = Ur.T @ (R @ Gam)
        self._since_check = 1  # the repaired modes are measured by the next update
        return U, MU, sv, Gam

    def _update_explicit(self, C: np.ndarray, comm: MPI.Comm) -> None:
        """The block update with the residual formed: CGS2 (:func:`rom.linalg.project_out`),
        :math:`H \\approx JK` by :func:`rom.linalg.range_basis` (its accurate route for weak
        directions), the new modes :math:`[U\\;J]U'_N`, the full repair."""
        U, P = self.modes_, self.product
        H, L = project_out(U, C, product=P, comm=comm)
        G = gram_matrix(H, product=P, comm=comm, check=True)
        if not (np.all(np.isfinite(L)) and np.all(np.isfinite(G))):
            self._raise_nonfinite(C, comm)
        step = self._step(L, float(np.trace(G)), C.shape[1])
        rb = range_basis(
            H,
            product=P,
            comm=comm,
            drop_below=(self.novelty_tol**2) * max(step.normC2, 0.0),
            budget=step.allowance if step.any_err_rule else -1.0,
            gram=G,
        )
        del H
        step.K, step.dropped = rb.coefficients, rb.dropped
        Uk, sv, block_D = self._core(step)
        k = U.shape[1]
        Unew = U @ Uk[:k] + rb.basis @ Uk[k:]
        Unew, sv, Gam = self._repair(Unew, sv, self._coefficients(Uk, step))
        self._MU = None if P is None else apply_product(P, Unew)
        self._commit(C.shape[1], Unew, sv, Gam, step, block_D)

    def _commit(self, c, U, sv, Gam, step: _Step, block_D: float) -> None:
        carry = max(step.allowance - block_D, 0.0) if step.any_err_rule else 0.0
        if self.l2_err is not None and self.n_total is None and not hasattr(self, "_fit_n_total"):
            carry = 0.0  # the greedy allowance already holds the whole remaining budget
        self.modes_ = U
        self.singular_values_ = sv
        self.coefficients_ = Gam
        self.n_components_ = len(sv)
        self.n_samples_seen_ += c
        self.total_energy_ += step.normC2
        self.discarded_energy_ += block_D
        self.error_bound_ = math.sqrt(self.discarded_energy_)
        self.block_discarded_energy_.append(block_D)
        self.block_allowance_.append(step.allowance if step.any_err_rule else math.inf)
        self._carry = carry
        logger.debug(
            "incremental SVD: block of %d, novelty %d, kept %d, discarded %.3e",
            c,
            step.K.shape[0],
            len(sv),
            block_D,
        )

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
        tail = float(tail_energies(sv)[N])
        self.modes_ = self.modes_[:, :N].copy()
        if self._MU is not None:
            self._MU = self._MU[:, :N].copy()
        self.singular_values_ = sv[:N].copy()
        if self.coefficients_ is not None:
            self.coefficients_ = self.coefficients_[:N].copy()
        self.n_components_ = N
        self.discarded_energy_ += tail
        self.error_bound_ = math.sqrt(self.discarded_energy_)
        return self

    # ------------------------------------------------------------------ using the basis
    def transform(self, X: np.ndarray) -> np.ndarray:
        """Reduced coordinates :math:`U^T M X`, shape (k, n_columns) (collective)."""
        self._check_fitted()
        comm = get_comm(self.comm)
        X, err = self._block_error(X, check_finite=True)
        _collective_block_check(err, -1 if X is None else X.shape[1], comm)
        MU = self.modes_ if self._MU is None else self._MU  # M U, as the updates keep it
        return allreduce_sum(local_inner(MU, X), comm)
