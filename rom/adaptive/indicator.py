"""Gappy-POD error indicator and its calibration (docs/theory.md §5.3).

Casenave & Akkari, "An error indicator-based adaptive reduced order model for nonlinear
structural mechanics", Math. Comput. Appl. 24(2):41 (2019), arXiv:1904.09123. A dual quantity
(the cumulated plastic strain :math:`p`) has its own POD basis
:math:`\\Phi_p \\in \\mathbb{R}^{n_q \\times n_p}` over all quadrature points. The reduced model
evaluates :math:`p` only on a mask :math:`\\hat Z` (reduced integration points, QDEIM points of
:math:`\\Phi_p`, extra leverage points), giving :math:`\\hat p_k \\in \\mathbb{R}^{|\\hat Z|}`.
With the offline thin QR :math:`\\Phi_p[\\hat Z,:] = Q R`,

.. math::

    c_k = R^{-1} Q^T \\hat p_k, \\qquad r_k = \\hat p_k - Q Q^T \\hat p_k, \\qquad
    E_k = \\frac{\\|r_k\\|_2}{\\max(\\|\\hat p_k\\|_2, p_\\mathrm{ref})}.

:math:`r_k` lies in the :math:`(|\\hat Z| - n_p)`-dimensional complement of
:math:`\\mathrm{range}\\,\\Phi_p[\\hat Z,:]`: with :math:`|\\hat Z| = n_p` it is identically zero,
hence the margin of extra points. :math:`E_k` is a heuristic, not a bound; the tolerance on it
is calibrated against true errors (:func:`calibrate`). The normalization by
:math:`\\max(\\|\\hat p_k\\|, p_\\mathrm{ref})` is our choice (not confirmed in the paper).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats
from mpi4py import MPI

from rom.adaptive.points import gather_at_points
from rom.adaptive.points import leverage_points
from rom.adaptive.points import qdeim
from rom.adaptive.points import validate_global_indices
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import validate_local_rows

__all__ = ["CalibrationResult", "GappyIndicator", "calibrate"]

logger = logging.getLogger(__name__)


class GappyIndicator:
    """Gappy-POD reconstruction of a dual field from a mask, and its residual indicator.

    Parameters
    ----------
    Phi_p : ndarray of shape (n_q_local, n_p)
        This rank's rows of the POD basis of :math:`p` (full column rank).
    points : array of int
        Global indices of the reduced integration points (replicated on all ranks).
    margin : int, optional
        Extra points beyond :math:`n_p`: leverage points are added until
        :math:`|\\hat Z| \\ge n_p + \\mathrm{margin}`. Default :math:`n_p`, i.e.
        :math:`|\\hat Z| \\ge 2 n_p`. ``margin=0`` makes the indicator identically zero when the
        mask has exactly :math:`n_p` points and is refused unless ``allow_no_margin=True``.
    p_ref : float
        Floor of the normalization, guarding the elastic phase where :math:`p \\approx 0`.
        :class:`rom.adaptive.enrichment.AdaptiveROM` sets it to the scale of the training
        trajectories' plastic strain on the mask, the scale the error is measured on.
    allow_no_margin : bool
        Accept ``margin=0`` (for tests of that failure mode).
    comm : mpi4py communicator, optional

    Attributes
    ----------
    mask_ : ndarray of shape (n_mask,), int64
        Global indices of :math:`\\hat Z`, sorted; ``p_hat`` is given in this order.
    qdeim_points_ : ndarray of shape (n_p,), int64
        The QDEIM points of :math:`\\Phi_p`.
    Q_ : ndarray of shape (n_mask, n_p)
    R_ : ndarray of shape (n_p, n_p)
        Thin QR of :math:`\\Phi_p[\\hat Z,:]`, replicated on all ranks. The online methods touch
        only these arrays: cost :math:`O(|\\hat Z| n_p)` per evaluation, whatever :math:`n_q`.
    n_modes_ : int
    """

    def __init__(
        self,
        Phi_p: np.ndarray,
        points: Any,
        *,
        margin: int | None = None,
        p_ref: float = 1e-10,
        allow_no_margin: bool = False,
        comm: MPI.Comm | None = None,
    ) -> None:
        self.margin = margin
        self.p_ref = p_ref
        self.allow_no_margin = allow_no_margin
        comm = get_comm(comm)
        Phi_p, n_q = validate_local_rows(Phi_p, "Phi_p", comm)
        n_p = Phi_p.shape[1]
        pts, err = validate_global_indices(points, n_q, "points")
        m = n_p if margin is None else margin
        if err is None:
            if n_p == 0:
                err = "Phi_p has no columns"
            elif not isinstance(m, (int, np.integer)) or m < 0:
                err = f"margin must be a non-negative integer, got {margin!r}"
            elif m == 0 and not allow_no_margin:
                err = (
                    "margin=0 gives |Z_hat| = n_p and an indicator that is identically 0; "
                    "pass allow_no_margin=True to accept it"
                )
            elif n_q < n_p + m:
                err = f"n_p + margin = {n_p + m} exceeds the {n_q} available points"
            elif not (np.isfinite(p_ref) and p_ref > 0):
                err = f"p_ref must be positive and finite, got {p_ref!r}"
        check_collective(err, comm)

        self.qdeim_points_ = qdeim(Phi_p, comm=comm)
        mask = np.union1d(pts, self.qdeim_points_)
        n_extra = max(0, n_p + m - mask.size)
        if n_extra:
            mask = np.union1d(mask, leverage_points(Phi_p, n_extra, exclude=mask, comm=comm))
        self.mask_ = mask.astype(np.int64)

        rows = gather_at_points(Phi_p, self.mask_, comm)
        self.Q_, self.R_ = np.linalg.qr(rows)
        d = np.abs(np.diag(self.R_))
        if d.min() <= rows.shape[0] * np.finfo(float).eps * d.max():
            raise ValueError("Phi_p restricted to the mask is rank deficient")
        self.n_modes_ = n_p
        logger.info("Gappy indicator: %d modes, %d mask points", n_p, self.mask_.size)

    def _check(self, p_hat: np.ndarray) -> np.ndarray:
        p = np.asarray(p_hat, dtype=np.float64)
        if p.ndim not in (1, 2) or p.shape[0] != self.mask_.size:
            raise ValueError(
                f"p_hat must have shape ({self.mask_.size},) or ({self.mask_.size}, n_steps) "
                f"(values at mask_), got {p.shape}"
            )
        if not np.all(np.isfinite(p)):
            raise ValueError("p_hat contains NaN or Inf")
        return p

    def residual(self, p_hat: np.ndarray) -> np.ndarray:
        """Gappy-POD residual :math:`r = \\hat p - Q Q^T \\hat p`, same shape as ``p_hat``."""
        p = self._check(p_hat)
        return p - self.Q_ @ (self.Q_.T @ p)

    def residual_norm(self, p_hat: np.ndarray) -> float | np.ndarray:
        """:math:`\\|r\\|_2` (per column for a 2-D ``p_hat``)."""
        return np.linalg.norm(self.residual(p_hat), axis=0)

    def _pnorm(self, p_hat: np.ndarray) -> float | np.ndarray:
        return np.maximum(np.linalg.norm(np.asarray(p_hat, dtype=np.float64), axis=0), self.p_ref)

    def evaluate(self, p_hat: np.ndarray) -> float | np.ndarray:
        """The indicator :math:`E_k = \\|r\\| / \\max(\\|\\hat p\\|, p_\\mathrm{ref})`.

        ``p_hat`` has shape (n_mask,) (a float is returned) or (n_mask, n_steps).
        """
        return self.residual_norm(p_hat) / self._pnorm(p_hat)

    def group_indicator(self, p_hat: np.ndarray) -> float | np.ndarray:
        """Group's variant :math:`\\tfrac12 \\|r\\|^2 / \\max(\\|\\hat p\\|, p_\\mathrm{ref})`.

        Shape as :meth:`evaluate`.
        """
        return 0.5 * self.residual_norm(p_hat) ** 2 / self._pnorm(p_hat)

    def reconstruct(self, p_hat: np.ndarray) -> np.ndarray:
        """Gappy-POD coefficients :math:`c = R^{-1} Q^T \\hat p`; :math:`p \\approx \\Phi_p c`.

        :math:`c` minimizes :math:`\\|\\Phi_p[\\hat Z,:] c - \\hat p\\|_2`.
        """
        p = self._check(p_hat)
        return scipy.linalg.solve_triangular(self.R_, self.Q_.T @ p)


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate`.

    Attributes
    ----------
    tol_E : float
        Indicator threshold: a step with :math:`E_k > \\mathrm{tol}_E` triggers enrichment.
    spearman : float
        Spearman rank correlation of (E, e) (``scipy.stats.spearmanr``).
    fit : object
        The monotone model :math:`e \\approx f(E)`: a fitted
        ``sklearn.isotonic.IsotonicRegression`` or the log-log coefficients ``(slope,
        intercept)`` of :math:`\\log e = a \\log E + c`.
    miss_rate : float
        Fraction of steps with :math:`E \\le \\mathrm{tol}_E` whose error exceeds the target.
    n_accepted : int
        Number of steps with :math:`E \\le \\mathrm{tol}_E`.
    """

    tol_E: float
    spearman: float
    fit: Any
    miss_rate: float
    n_accepted: int


def calibrate(
    E: np.ndarray,
    e: np.ndarray,
    *,
    target: float,
    max_miss: float = 0.05,
    method: str = "isotonic",
) -> CalibrationResult:
    """Indicator threshold from pairs (indicator, true error) (docs/theory.md §5.3, our choice).

    1. Fit a non-decreasing :math:`e \\approx f(E)`: isotonic regression, or linear in
       log-log (``method="loglog"``, positive pairs only, slope must be positive).
    2. :math:`\\mathrm{tol}_E` = the largest observed :math:`E` with :math:`f(E) \\le`
       ``target``.
    3. Lower it through the observed values until
       :math:`\\#\\{k: E_k \\le \\mathrm{tol}_E,\\ e_k > \\mathrm{target}\\} \\le
       \\mathrm{max\\_miss}\\cdot\\#\\{k: E_k \\le \\mathrm{tol}_E\\}`.

    If no observed value qualifies, :math:`\\mathrm{tol}_E` is just below the smallest
    :math:`E` (every step enriches) and a warning is logged.

    Parameters
    ----------
    E, e : ndarray of shape (n,)
        Indicator values and true relative errors of the unenriched ROM on held-out loads.
    target : float
        Admissible true error.
    max_miss : float
        Admissible fraction of accepted steps (:math:`E \\le \\mathrm{tol}_E`) above target.
    method : {"isotonic", "loglog"}
    """
    E = np.asarray(E, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    if E.ndim != 1 or E.shape != e.shape or E.size < 2:
        raise ValueError(f"E and e must be 1-D of the same length >= 2, got {E.shape}, {e.shape}")
    if not (np.all(np.isfinite(E)) and np.all(np.isfinite(e))):
        raise ValueError("E or e contains NaN or Inf")
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be positive, got {target!r}")
    if not 0 <= max_miss < 1:
        raise ValueError(f"max_miss must lie in [0, 1), got {max_miss!r}")
    spearman = float(scipy.stats.spearmanr(E, e).statistic)
    fit, pred = _monotone_fit(E, e, method)
    tol_E, miss, n_acc = _threshold(E, e, pred, target, max_miss)
    return CalibrationResult(tol_E, spearman, fit, miss, n_acc)


def _monotone_fit(E: np.ndarray, e: np.ndarray, method: str) -> tuple[Any, np.ndarray]:
    """Step 1 of :func:`calibrate`: the model of ``e`` from ``E`` and its values at ``E``."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fit = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(E, e)
        pred = fit.predict(E)
    elif method == "loglog":
        pos = (E > 0) & (e > 0)
        if pos.sum() < 2:
            raise ValueError("the log-log fit needs at least two pairs with E > 0 and e > 0")
        a, c = np.polyfit(np.log(E[pos]), np.log(e[pos]), 1)
        if not a > 0:
            raise ValueError(f"log-log fit is not increasing (slope {a:.3g}): E does not track e")
        fit = (float(a), float(c))
        pred = np.full(E.shape, np.inf)
        pred[E > 0] = np.exp(c) * E[E > 0] ** a
        pred[E <= 0] = 0.0
    else:
        raise ValueError(f"method must be 'isotonic' or 'loglog', got {method!r}")
    return fit, pred


def _threshold(
    E: np.ndarray, e: np.ndarray, pred: np.ndarray, target: float, max_miss: float
) -> tuple[float, float, int]:
    """Steps 2-3 of :func:`calibrate`: ``(tol_E, miss rate, accepted steps)``."""
    ok = pred <= target
    candidates = np.unique(E[ok])[::-1]  # decreasing
    tol_E, miss, n_acc = None, 0.0, 0
    for t in candidates:
        acc = E <= t
        n_acc = int(acc.sum())
        miss = float(np.count_nonzero(e[acc] > target)) / n_acc
        if miss <= max_miss:
            tol_E = float(t)
            break
    if tol_E is None:
        tol_E = float(np.nextafter(E.min(), -np.inf))
        miss, n_acc = 0.0, 0
        logger.warning("no threshold meets the miss rate %.2f: every step will enrich", max_miss)
    return tol_E, miss, n_acc
