"""Gappy-POD error indicator (docs/theory.md §5.3) and the calibration of indicator signals (§5.5).

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
    """Outcome of :func:`calibrate`: one threshold per signal.

    Attributes
    ----------
    thresholds : ndarray (n_signals,)
        :math:`\\tau_s`; the combined indicator of a step is
        :math:`\\eta = \\max_s s / \\tau_s` (:meth:`evaluate`) and a step with :math:`\\eta > 1`
        (= ``tol``) triggers a full-order step.
    tol : float
        1.0, the threshold on :math:`\\eta`.
    names : tuple of str
    target, safety : float
    spearman : float
        Spearman rank correlation of :math:`(\\eta, e)` over the calibration steps.
    spearman_signals : dict
        The same for each raw signal.
    n_steps, n_above_target, n_accepted : int
        Calibration steps, those with :math:`e > \\mathrm{target}`, and those the thresholds
        accept (:math:`\\eta \\le 1`).
    confirmed : bool
        Whether some calibration step exceeded the target (otherwise the thresholds rest on the
        accurate steps and the safety factor alone, and a warning was logged).
    """

    thresholds: np.ndarray
    names: tuple
    target: float
    safety: float
    spearman: float
    spearman_signals: dict
    n_steps: int
    n_above_target: int
    n_accepted: int
    confirmed: bool
    tol: float = 1.0

    def evaluate(self, S: np.ndarray) -> float | np.ndarray:
        """:math:`\\eta = \\max_s S_{:,s} / \\tau_s` for signals of shape (n, n_signals) or
        (n_signals,) (NaN or Inf signals give ``inf``)."""
        S = np.asarray(S, dtype=np.float64)
        if S.shape[-1] != self.thresholds.size:
            raise ValueError(f"signals must have {self.thresholds.size} columns, got {S.shape}")
        eta = np.max(S / self.thresholds, axis=-1)
        return np.where(np.all(np.isfinite(S), axis=-1), eta, np.inf)


def calibrate(
    signals: np.ndarray,
    e: np.ndarray,
    *,
    target: float,
    safety: float = 2.0,
    names: tuple[str, ...] | None = None,
) -> CalibrationResult:
    """Per-signal thresholds from calibration steps (docs/theory.md §5.5, our choice).

    The accepted region is a box :math:`\\{s : s \\le \\tau\\}` in signal space:

    1. Start from the smallest box that holds every accurate step (:math:`e \\le` target):
       :math:`\\tau_s = \\max` of signal :math:`s` over them. A value beyond what was seen on an
       accurate step is not trusted.
    2. While a step with :math:`e >` target lies in the box, cut one coordinate just below that
       step's value, choosing the step and the signal that lose the fewest accurate steps
       (greedy). No calibration step above the target is then accepted.
    3. :math:`\\tau \\leftarrow \\tau / \\mathrm{safety}`: the stated margin for loads unlike the
       calibration ones.

    A step triggers when any signal leaves the box, :math:`\\eta = \\max_s s/\\tau_s > 1`.

    Parameters
    ----------
    signals : ndarray of shape (n,) or (n, n_signals)
        Non-negative signals of the calibration steps (e.g. ``AdaptiveRun.signals`` of
        unenriched runs on calibration loads, which must be disjoint from every test load).
    e : ndarray of shape (n,)
        True errors of the same steps.
    target : float
        Admissible true error.
    safety : float
        Safety factor >= 1.
    names : tuple of str, optional
        Signal names (for reports).
    """
    S = np.asarray(signals, dtype=np.float64)
    S = S[:, None] if S.ndim == 1 else S
    e = np.asarray(e, dtype=np.float64)
    if S.ndim != 2 or e.ndim != 1 or S.shape[0] != e.size or e.size < 2:
        raise ValueError(
            f"signals (n,) or (n, k) and e (n,) with n >= 2 expected, got {S.shape}, {e.shape}"
        )
    if not (np.all(np.isfinite(S)) and np.all(np.isfinite(e))) or np.any(S < 0):
        raise ValueError("signals must be finite and >= 0, e finite")
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be positive, got {target!r}")
    if not (np.isfinite(safety) and safety >= 1):
        raise ValueError(f"safety must be >= 1, got {safety!r}")
    names = tuple(names) if names is not None else tuple(f"s{j}" for j in range(S.shape[1]))
    if len(names) != S.shape[1]:
        raise ValueError(f"{len(names)} names for {S.shape[1]} signals")
    bad = e > target
    tau = _box(S, bad)
    if not bad.any():
        logger.warning(
            "calibration: no step above the target %.3g; the thresholds rest on the accurate "
            "steps and the safety factor alone",
            target,
        )
    tau = np.maximum(tau, np.finfo(float).tiny) / safety
    eta = np.max(S / tau, axis=1)
    return CalibrationResult(
        thresholds=tau,
        names=names,
        target=float(target),
        safety=float(safety),
        spearman=_spearman(eta, e),
        spearman_signals={n: _spearman(S[:, j], e) for j, n in enumerate(names)},
        n_steps=int(e.size),
        n_above_target=int(bad.sum()),
        n_accepted=int(np.sum(eta <= 1.0)),
        confirmed=bool(bad.any()),
    )


def _box(S: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Steps 1-2 of :func:`calibrate`: the greedy box that holds no ``bad`` step."""
    good = ~bad
    if not good.any():
        return np.nextafter(S.min(axis=0), -np.inf)
    tau = S[good].max(axis=0)
    while True:
        inside = bad & np.all(S <= tau, axis=1)
        if not inside.any():
            return tau
        kept = good & np.all(S <= tau, axis=1)
        best = None
        for b in np.flatnonzero(inside):
            for j in range(S.shape[1]):
                loss = int(np.count_nonzero(kept & (S[:, j] >= S[b, j])))
                if best is None or loss < best[0]:
                    best = (loss, j, S[b, j])
        _, j, v = best
        tau[j] = np.nextafter(v, -np.inf)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (nan when either input is constant)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x, y).statistic)
