"""What an adaptive run hands back: the full-order state it exchanges with the full-order
model, and the history of a run (docs/theory.md §5.4-§5.5)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from rom.adaptive.hyperreduced import ReducedState

__all__ = ["AdaptiveRun", "FullState", "RunRecorder"]


@dataclass
class FullState:
    """Full-order state at time ``t``, as ``fom.step`` takes and returns it.

    ``solvers.mechanics.State`` is this class.

    Attributes
    ----------
    t : float
    u : ndarray (n_owned,)
        Displacement, owned rows.
    eps_vp : ndarray (n_qp_local, n_comp)
        Viscoplastic strain at the local quadrature points (Mandel).
    p : ndarray (n_qp_local,)
        Cumulated plastic strain.
    sigma : ndarray (n_qp_local, n_comp)
        Stress (Mandel).
    """

    t: float
    u: np.ndarray
    eps_vp: np.ndarray
    p: np.ndarray
    sigma: np.ndarray


@dataclass
class AdaptiveRun:
    """History of :meth:`AdaptiveROM.run`.

    Attributes
    ----------
    times : ndarray (n_t,)
    indicator : ndarray (n_t,)
        The quantity the decision compares with the threshold, for the reduced step (before
        any enrichment; ``inf`` if the reduced Newton failed): the calibrated error estimate
        :math:`\\hat e_k` when the model has a calibration, else the Gappy-POD indicator
        :math:`E_k`.
    signals : ndarray (n_t, n_signals)
        The raw signals of the reduced step, columns named by ``signal_names``.
    signal_names : tuple of str
    threshold : float
        The threshold the indicator was compared with.
    enriched : ndarray of bool (n_t,)
        Steps replaced by a full-order step.
    n_modes, n_points : ndarray of int (n_t,)
        Basis size and reduced points (mask) after step k.
    newton_iterations : ndarray of int (n_t,)
        Reduced Newton iterations.
    fom_steps : int
        Full-order steps taken (replay steps included).
    coefficients : list of ndarray
        :math:`c_k` (length ``n_modes[k]``).
    p_coefficients : list of ndarray
        Gappy-POD coefficients of :math:`p_k` on the then-current :math:`\\Phi_p`.
    version : ndarray of int (n_t,)
        Index into ``bases`` / ``p_bases`` valid at step k.
    bases, p_bases : list of ndarray
        :math:`\\Psi_u` (n_owned, N) and :math:`\\Phi_p` (n_qp_local, n_p), one per enrichment
        plus the initial ones (owned rows).
    budget_reached : bool
        The budget of full-order steps (``max_enrichments``) ran out while a step still
        asked for one (a warning was logged).
    untrusted : ndarray of bool (n_t,)
        Reduced steps accepted although the indicator exceeded the threshold (budget spent).
    predictions : dict
        For each enriched step k whose reduced Newton converged: ``(u, p)``, the reduced
        prediction that the full-order step replaced (owned displacement rows, :math:`p` by
        Gappy-POD at the local quadrature points), to measure false alarms.
    wall_time : dict
        ``reduced`` (reduced Newton + indicator, summed), ``enrichment`` (full-order step,
        basis update, cubature, indicator rebuild, summed); seconds on this rank.
    """

    times: np.ndarray
    indicator: np.ndarray
    signals: np.ndarray
    signal_names: tuple
    threshold: float
    enriched: np.ndarray
    n_modes: np.ndarray
    n_points: np.ndarray
    newton_iterations: np.ndarray
    fom_steps: int
    coefficients: list[np.ndarray]
    p_coefficients: list[np.ndarray]
    version: np.ndarray
    bases: list[np.ndarray]
    p_bases: list[np.ndarray]
    budget_reached: bool = False
    untrusted: np.ndarray | None = None
    predictions: dict = field(default_factory=dict)
    wall_time: dict[str, float] = field(default_factory=dict)

    def displacement(self) -> np.ndarray:
        """Owned rows of :math:`u_k = \\Psi_u c_k`, shape (n_owned, n_t)."""
        return np.column_stack([self.bases[v] @ c for v, c in zip(self.version, self.coefficients)])

    def plastic_strain(self) -> np.ndarray:
        """Gappy-POD reconstruction :math:`p_k \\approx \\Phi_p c_{p,k}` at the local quadrature
        points, shape (n_qp_local, n_t)."""
        return np.column_stack(
            [self.p_bases[v] @ c for v, c in zip(self.version, self.p_coefficients)]
        )


class RunRecorder:
    """Per-step bookkeeping of :meth:`AdaptiveROM.run`, turned into an :class:`AdaptiveRun`."""

    def __init__(self, n_t: int, n_signals: int, rom: Any) -> None:
        self.indicator = np.zeros(n_t)
        self.signals = np.zeros((n_t, n_signals))
        self.enriched = np.zeros(n_t, dtype=bool)
        self.untrusted = np.zeros(n_t, dtype=bool)
        self.n_modes = np.zeros(n_t, dtype=np.int64)
        self.n_points = np.zeros(n_t, dtype=np.int64)
        self.iters = np.zeros(n_t, dtype=np.int64)
        self.version = np.zeros(n_t, dtype=np.int64)
        self.coefs: list[np.ndarray] = []
        self.pcoefs: list[np.ndarray] = []
        self.bases = [rom.svd_u_.modes_.copy()]
        self.p_bases = [rom.svd_p_.modes_.copy()]
        self.predictions: dict = {}
        self.wall = {"reduced": 0.0, "enrichment": 0.0}
        self.fom_steps = 0
        self.budget_reached = False
        self.names = tuple(rom.signal_names_)
        self.threshold = float(rom.threshold_)

    def new_version(self, rom: Any) -> None:
        self.bases.append(rom.svd_u_.modes_.copy())
        self.p_bases.append(rom.svd_p_.modes_.copy())

    def step(
        self, k: int, state: ReducedState, est: float, sig: np.ndarray, iters: int, rom: Any
    ) -> None:
        self.indicator[k], self.signals[k], self.iters[k] = est, sig, iters
        self.coefs.append(state.c.copy())
        self.pcoefs.append(rom.indicator_.reconstruct(state.p))
        self.version[k] = len(self.bases) - 1
        self.n_modes[k] = state.c.size
        self.n_points[k] = state.p.size

    def result(self, times: np.ndarray) -> AdaptiveRun:
        return AdaptiveRun(
            times=times,
            indicator=self.indicator,
            signals=self.signals,
            signal_names=self.names,
            threshold=self.threshold,
            enriched=self.enriched,
            n_modes=self.n_modes,
            n_points=self.n_points,
            newton_iterations=self.iters,
            fom_steps=self.fom_steps,
            coefficients=self.coefs,
            p_coefficients=self.pcoefs,
            version=self.version,
            bases=self.bases,
            p_bases=self.p_bases,
            budget_reached=self.budget_reached,
            untrusted=self.untrusted,
            predictions=self.predictions,
            wall_time=self.wall,
        )
