"""Adaptive hyper-reduced model: indicator-triggered full-order steps (docs/theory.md §5.4).

Casenave & Akkari, "An error indicator-based adaptive reduced order model for nonlinear
structural mechanics", MCA 24(2):41, 2019 (arXiv:1904.09123). Online, per time step::

    (c_k, xi_k|Z^) <- reduced Newton t_{k-1} -> t_k            (rom.adaptive.hyperreduced)
    s_k <- signals: Gappy-POD residual of p^_k, input novelty, sampled equilibrium
           residual and its history since the last full-order state (rom.adaptive.signals)
    eta_k <- max_s s_k / tau_s, thresholds calibrated per signal  (rom.adaptive.indicator)
    if eta_k > 1 (while the budget of full-order steps lasts; reported when it runs out):
        x <- full state at t_{k-1}: u = Psi_u c_{k-1}; eps_vp, p at all points by the
             constitutive law integrated along the reduced displacements since the last
             full-order state [fallback "replay": the full-order model re-run along them]
        (u_k, sigma_k, p_k, eps_vp_k) <- ONE full-order step from x (Newton from the
             reduced prediction at t_k, to the tolerance fom_rtol)
        Psi_u, Phi_p, Phi_sigma <- incremental SVD update by one column (product M
             for u; Brand 2006, docs/theory.md §2.1)
        Phi_T, Phi_r <- the temperature increment and the residual of the prediction
        (Z, w^) <- empirical cubature of sigma : eps(Psi_u), warm-started from the previous Z
        Z^ <- Z u QDEIM(Phi_p) u QDEIM(Phi_T) u cells around the residual sample; signals
              and reduced data rebuilt
        c_k <- Psi_u^T M u_k;  xi_k|Z^ <- full-order values      (restart from the FOM state)

A trigger is followed by reduced steps with the enriched model; while they still trigger, each
is again replaced by a full-order step, so the model recovers before it goes on alone.

The internal variables at :math:`t_{k-1}` along the reduced path are our choice (not confirmed
in the paper): it keeps "one full-order step" literal, and unlike a Gappy-POD reconstruction
from the mask it adds no error where the plastic pattern is new; its cost (the local law at
every point for each reduced step since the last full-order state) is paid at enrichments
only. The full-order model is an
object with the interface of ``solvers.mechanics.ViscoplasticModel`` (``comm``, ``n_owned``,
``n_qp_local``, ``n_comp``, ``qp_weights``, ``qp_coordinates``, ``mass``, ``initial_time``,
``initial_state()``, ``initial_time``, ``step(state, t)`` (optionally ``step(state, t, u_guess=u, rtol=r)``:
Newton's first iterate and tolerance), ``strain_at_qp(U)``, ``constitutive(...)``,
``set_temperature(T)``, ``temperature_at_qp(t)`` and, for the composite indicator,
``residual(sigma, t)``); :class:`FullState` is what it is handed. This module never imports
dolfinx.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.adaptive.cubature import internal_force_cubature
from rom.adaptive.cubature import work_array
from rom.adaptive.history import FullState
from rom.adaptive.history import RunRecorder
from rom.adaptive.hyperreduced import ReducedState
from rom.adaptive.hyperreduced import Temperature
from rom.adaptive.hyperreduced import build_hyperreduced
from rom.adaptive.indicator import CalibrationResult
from rom.adaptive.points import gather_at_points
from rom.adaptive.signals import SIGNALS
from rom.adaptive.signals import SampledResidual
from rom.adaptive.signals import common_mask
from rom.adaptive.signals import leave_one_out_residuals
from rom.adaptive.signals import mask_norm_scale
from rom.adaptive.signals import temperature_increments
from rom.compression.incremental_svd import IncrementalSVD
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = ["AdaptiveROM"]

logger = logging.getLogger(__name__)


class AdaptiveROM:
    """POD-ECM reduced model that enriches itself with single full-order steps.

    Parameters
    ----------
    svd_rtol : float
        Truncation of the incremental SVDs of :math:`u` (product :math:`M`), :math:`p` and
        :math:`\\sigma` after every block (a training
        trajectory, or one enrichment snapshot): drop :math:`\\sigma'_i <
        \\mathrm{svd\\_rtol}\\,\\sigma'_1` (:class:`rom.compression.incremental_svd.IncrementalSVD`).
        A relative threshold, not an energy allowance: an allowance left over from the
        training would be carried forward and could swallow an enrichment snapshot.
    cubature_tol : float
        Tolerance of :func:`rom.adaptive.cubature.internal_force_cubature`.
    tol_E : float
        Threshold on the Gappy-POD indicator :math:`E_k` alone, used while the model has no
        ``calibration``.
    calibration : CalibrationResult, optional
        Error model and threshold from :func:`rom.adaptive.indicator.calibrate` on the signals
        of calibration loads (:meth:`run` with ``enrich=False``); when set, a step triggers when
        the estimate exceeds ``calibration.tol``.
    indicator : {"composite", "gappy"}
        ``"composite"``: the signals of :mod:`rom.adaptive.signals` (Gappy-POD residual, input
        novelty, sampled equilibrium residual, its history); needs the training temperatures
        in :meth:`fit` and ``fom.residual``. ``"gappy"``: the Gappy-POD residual alone
        (Casenave & Akkari).
    residual_rank : int
        Modes of the residual basis :math:`\\Phi_r` (its sample has twice as many dofs).
    max_enrichments : int, optional
        Budget of full-order steps per :meth:`run` (``None``: none). When it runs out while a
        step still asks for one, a warning is logged and the run says so
        (``AdaptiveRun.budget_reached``, ``AdaptiveRun.untrusted``).
    margin : int, optional
        Extra indicator points (:class:`rom.adaptive.indicator.GappyIndicator`; default :math:`n_p`).
    p_ref : float, optional
        Floor of the indicator normalization :math:`E_k = \\|r_k\\| / \\max(\\|\\hat p_k\\|,
        p_{ref})`. Default ``p_ref_rel`` times the largest training :math:`\\|p_k\\|_2`
        scaled to the mask, :math:`\\max_k \\|p_k\\|_2 \\sqrt{|\\hat Z| / n_q}`: at the
        onset of plasticity :math:`\\hat p_k` is tiny and its relative fit error meaningless.
    p_ref_rel : float
        See ``p_ref``. The default 1 measures the residual on the scale of the training
        trajectories' largest plastic strain, as the error it stands for is measured
        (relative to the trajectory's largest norm): a smaller floor makes the Gappy
        signal large at the first plastic steps, where the relative fit is poor but the error
        negligible.
    reconstruction : {"path", "replay"}
        How the full state at :math:`t_{k-1}` is formed before a full-order step (module
        docstring).
    fom_rtol : float, optional
        Relative Newton tolerance of the enrichment's full-order steps (passed as
        ``fom.step(..., rtol=)`` when the model accepts it; the model's own tolerance when
        ``None`` or looser). The step feeds a reduced model accurate to about ``tol_E``
        (1e-3 to 1e-2): a residual of 1e-8 of the force scale leaves an error some five orders
        below that, and a tighter tolerance costs further Newton iterations (sparse LU
        factorizations) per enrichment.
    rtol, max_newton : float, int
        Reduced Newton options (:class:`rom.adaptive.hyperreduced.HyperReducedModel`).
    seed : int
        Seed of the cubature's random restarts.

    Attributes
    ----------
    fom_ : the full-order model given to :meth:`fit`
    svd_u_, svd_p_, svd_sigma_ : IncrementalSVD
        Bases of :math:`u` (product :math:`M`), :math:`p` and :math:`\\sigma` (flattened Mandel components, Euclidean).
    cubature_ : CubatureResult
    indicator_ : GappyIndicator
    novelty_ : GappyIndicator or None
        Gappy-POD fit of the temperature increments on the same mask (composite indicator).
    residual_ : SampledResidual or None
    svd_T_, svd_r_ : IncrementalSVD or None
        Bases of the temperature increments at the quadrature points and of the residual
        snapshots (composite indicator).
    signal_names_ : tuple of str
    model_ : HyperReducedModel
        Its ``points`` equal ``indicator_.mask_``.
    n_enrichments_ : int
        Enrichments over all runs.
    """

    def __init__(
        self,
        *,
        svd_rtol: float = 1e-6,
        cubature_tol: float = 1e-5,
        tol_E: float = 1e-2,
        calibration: CalibrationResult | None = None,
        indicator: str = "composite",
        residual_rank: int = 10,
        max_enrichments: int | None = None,
        margin: int | None = None,
        p_ref: float | None = None,
        p_ref_rel: float = 1.0,
        reconstruction: str = "path",
        fom_rtol: float | None = 1e-8,
        rtol: float = 1e-10,
        max_newton: int = 25,
        seed: int = 0,
    ) -> None:
        keep_options(self, locals())

    # ------------------------------------------------------------------ offline
    _OPTIONS = {
        "svd_rtol": Interval(0, 1, closed="neither"),
        "cubature_tol": Interval(0, 1, closed="neither"),
        "p_ref": Interval(0, None, closed="neither", optional=True),
        "tol_E": Interval(0, None),
        "max_enrichments": Interval(0, None, integer=True, optional=True),
        "residual_rank": Interval(1, None, integer=True),
        "indicator": Choice("composite", "gappy"),
        "fom_rtol": Interval(0, 1, closed="left", optional=True),
        "reconstruction": Choice("path", "replay"),
    }

    def _option_error(self) -> str | None:
        return option_error(self, self._OPTIONS)

    def fit(
        self,
        fom: Any,
        trajectories: Sequence[Any],
        *,
        temperatures: Sequence[Temperature] | None = None,
    ) -> AdaptiveROM:
        """Bases, cubature and indicator from training trajectories (collective).

        Parameters
        ----------
        fom : full-order model (module docstring)
        trajectories : sequence of objects with ``times`` (n_t,), ``u`` (n_owned, n_t), ``p``
            (n_qp_local, n_t), ``eps_vp`` and ``stresses`` (n_qp_local, n_comp, n_t), e.g.
            ``solvers.mechanics.Trajectory``. At least one must be plastic (:math:`p \\ne 0`).
        temperatures : sequence of temperature callables, optional
            The thermal load of each trajectory; required by the composite indicator (input
            novelty, and the leave-one-out residual snapshots of
            :func:`rom.adaptive.signals.leave_one_out_residuals`, which need two trajectories).

        Returns ``self``.
        """
        comm = get_comm(fom.comm)
        err = self._option_error() or self._training_error(fom, trajectories, temperatures)
        check_collective(err, comm)
        self.fom_ = fom
        self._comm = comm
        self._cubature_work = {}  # the cubature's tall work arrays, reused by every rebuild
        self._set_step_options(fom)
        opts = dict(rtol=self.svd_rtol, comm=comm)
        self.svd_u_ = IncrementalSVD(product=fom.mass, **opts)
        self.svd_p_ = IncrementalSVD(**opts)
        self.svd_sigma_ = IncrementalSVD(**opts)
        for tr in trajectories:
            n_t = np.shape(tr.u)[1]
            self.svd_u_.partial_fit(tr.u)
            self.svd_p_.partial_fit(tr.p)
            self.svd_sigma_.partial_fit(np.reshape(tr.stresses, (-1, n_t)))
        check_collective(
            None
            if self.svd_p_.n_components_ > 0
            else "the training trajectories have no plastic strain: the indicator needs p != 0",
            comm,
        )
        self._scale = {"p": mask_norm_scale(np.hstack([tr.p for tr in trajectories]), 1, comm)}
        self._dt_ref = float(
            np.mean(np.diff(np.concatenate([[fom.initial_time], trajectories[0].times])))
        )
        self.svd_T_ = self.svd_r_ = None
        if self.indicator == "composite":
            self._fit_signals(fom, trajectories, temperatures)
        self.signal_names_ = SIGNALS if self.indicator == "composite" else SIGNALS[:1]
        self.n_enrichments_ = 0
        self._rebuild(initial_points=None, temperature=0.0)
        return self

    def _training_error(
        self, fom: Any, trajectories: Sequence[Any], temperatures: Any
    ) -> str | None:
        if len(trajectories) == 0:
            return "need at least one training trajectory"
        for j, tr in enumerate(trajectories):
            if np.shape(tr.u)[0] != fom.n_owned or np.shape(tr.p)[0] != fom.n_qp_local:
                return f"trajectory {j} does not match the full-order model's rows"
        if self.indicator == "composite":
            if temperatures is None or len(temperatures) != len(trajectories):
                return (
                    'indicator="composite" needs temperatures=, one thermal load per training '
                    'trajectory (or pass indicator="gappy")'
                )
            if len(trajectories) < 2:
                return 'indicator="composite" needs at least two training trajectories'
            if not callable(getattr(fom, "residual", None)):
                return 'indicator="composite" needs fom.residual(sigma, t)'
        return None

    def _set_step_options(self, fom: Any) -> None:
        """Newton's first iterate and tolerance for the enrichment steps, if the model takes
        them."""
        try:
            params = inspect.signature(fom.step).parameters
        except (TypeError, ValueError):
            params = {}
        self._step_options = {}
        self._fom_takes_guess = "u_guess" in params
        own = getattr(fom, "rtol", None)
        if "rtol" in params and self.fom_rtol is not None:
            self._step_options["rtol"] = (
                float(self.fom_rtol) if own is None else max(float(self.fom_rtol), float(own))
            )

    def _fit_signals(self, fom: Any, trajectories: Sequence[Any], temperatures: Any) -> None:
        """Bases of the temperature increments and of leave-one-out residuals (collective)."""
        comm = self._comm
        self.svd_T_ = IncrementalSVD(rtol=self.svd_rtol, comm=comm)
        dT = [temperature_increments(fom, T, tr.times) for tr, T in zip(trajectories, temperatures)]
        for X in dT:
            self.svd_T_.partial_fit(X)
        self._scale["T"] = mask_norm_scale(np.hstack(dT), 1, comm)
        R, self._f_ref = leave_one_out_residuals(
            fom, list(trajectories), list(temperatures), svd_rtol=self.svd_rtol
        )
        self.svd_r_ = IncrementalSVD(rank=self.residual_rank, comm=comm)
        self.svd_r_.partial_fit(R)

    def _rebuild(self, *, initial_points: np.ndarray | None, temperature: Temperature) -> None:
        """Cubature, indicator signals and reduced data for the current bases (collective)."""
        fom, comm = self.fom_, self._comm
        nq, nc = fom.n_qp_local, fom.n_comp
        Psi = self.svd_u_.modes_
        strains = fom.strain_at_qp(Psi).reshape(nq, nc, Psi.shape[1])
        Us, sv = self.svd_sigma_.modes_, self.svd_sigma_.singular_values_
        S = np.multiply(Us, sv, out=work_array(self._cubature_work, "stresses", Us.shape))
        S = S.reshape(nq, nc, -1)
        self.cubature_ = internal_force_cubature(
            strains,
            S,
            fom.qp_weights,
            tol=self.cubature_tol,
            initial_points=initial_points,
            seed=self.seed,
            comm=comm,
            workspace=self._cubature_work,
        )
        self._build_signals()
        mask = self.indicator_.mask_
        self.model_ = build_hyperreduced(
            fom,
            Psi,
            self.cubature_.points,
            self.cubature_.weights,
            temperature=temperature,
            imposed_points=mask,
            strains=strains,
            rtol=self.rtol,
            max_newton=self.max_newton,
        )
        self._strains = strains  # for the internal variables along a reduced path
        logger.info(
            "adaptive ROM: N=%d modes, n_p=%d, %d cubature points, %d mask points",
            Psi.shape[1],
            self.svd_p_.n_components_,
            self.cubature_.points.size,
            mask.size,
        )

    def _build_signals(self) -> None:
        """The Gappy fits of p (and of the temperature increments) on one mask, and the
        residual sample whose quadrature points join it (collective)."""
        comm, points = self._comm, self.cubature_.points
        self.novelty_ = self.residual_ = None
        bases = [self.svd_p_.modes_]
        if self.indicator == "composite":
            self.residual_ = SampledResidual(self.svd_r_.modes_, self.fom_, f_ref=self._f_ref)
            points = np.union1d(points, self.residual_.points_)
            bases.append(self.svd_T_.modes_)
        fits = common_mask(bases, points, comm, margin=self.margin, p_ref=1.0)
        self.indicator_ = fits[0]
        n_mask = self.indicator_.mask_.size
        self.indicator_.p_ref = (
            self.p_ref
            if self.p_ref is not None
            else max(self.p_ref_rel * self._scale["p"] * np.sqrt(n_mask), 1e-300)
        )
        if self.residual_ is not None:
            self.novelty_ = fits[1]
            self.novelty_.p_ref = max(self.p_ref_rel * self._scale["T"] * np.sqrt(n_mask), 1e-300)
            self._res_pos = np.searchsorted(self.indicator_.mask_, self.residual_.points_)

    # ------------------ online: run() and rom.adaptive.LocalAdaptiveROMs step through these
    def path_state(self, exact: FullState, path: list[tuple[float, np.ndarray]]) -> FullState:
        """The full state at the end of a reduced path: from the last full-order state
        ``exact``, the constitutive law integrated at every local quadrature point along the
        reduced displacements ``path`` = [(t_j, c_j)] (no communication).

        At the mask these are the reduced model's own values; elsewhere they are what its
        displacements imply, so the full-order step that follows inherits no reconstruction
        error of the internal variables.
        """
        fom = self.fom_
        state = exact
        for t, c in path:
            eps = self._strains @ c
            T = fom.temperature_at_qp(t)
            sigma, eps_vp, p, _ = fom.constitutive(eps, state.eps_vp, state.p, T, t - state.t)
            state = FullState(t, self.model_.reconstruct(c), eps_vp, p, sigma)
        return state

    @property
    def threshold_(self) -> float:
        """The threshold of the decision: ``calibration.tol``, else ``tol_E``."""
        return self.tol_E if self.calibration is None else float(self.calibration.tol)

    def run(
        self,
        temperature: Temperature,
        times: np.ndarray,
        *,
        enrich: bool = True,
    ) -> Any:
        """Run the (adaptive) reduced model from the initial state through ``times``.

        Collective when an enrichment happens (and for one broadcast of the decision per
        step); the reduced steps themselves are rank-local. ``temperature`` is the thermal
        load :math:`T(x, t)` (the callable form of ``solvers.mechanics``); it is also set on
        the full-order model. With ``enrich=True`` the learned bases, cubature and indicator
        are updated in place (the model keeps what it learned).
        """
        self._check_fitted()
        fom = self.fom_
        t0 = float(fom.initial_time)
        times = np.asarray(times, dtype=np.float64).ravel()
        ok = times.size > 0 and np.all(np.isfinite(times)) and times[0] > t0
        ok = ok and np.all(np.diff(times) > 0)
        err = None if ok else f"times must increase strictly from above initial_time={t0}"
        if err is None and self.calibration is not None:
            if tuple(self.calibration.names) != tuple(self.signal_names_):
                err = (
                    f"the calibration is for signals {self.calibration.names}, this model "
                    f"has {self.signal_names_}"
                )
        check_collective(err, self._comm)
        fom.set_temperature(temperature)
        self.model_.temperature = temperature
        rec = RunRecorder(times.size, len(self.signal_names_), self)
        state = self.model_.initial_state(t0)
        exact, path = fom.initial_state(), []  # last full-order state, reduced steps since
        history = 0.0  # accumulated residual since the last exact state
        budget = np.inf if self.max_enrichments is None else self.max_enrichments
        for k, t in enumerate(times):
            tic = time.perf_counter()
            new, sig, iters = self.reduced_step(state, t, enrich, history)
            history = sig[-1] if self.residual_ is not None else 0.0
            est = self.estimate(sig)
            wants = bool(enrich and est > self.threshold_)
            flag = self.decide(wants and rec.fom_steps < budget)
            rec.wall["reduced"] += time.perf_counter() - tic
            if new is None and not flag:
                raise RuntimeError(f"reduced step to t={t} failed and no enrichment is left")
            if wants and not flag:
                rec.untrusted[k] = True
                if not rec.budget_reached:
                    logger.warning(
                        "step %d (t=%g): estimate %.3e > %.3e but the budget of %s full-order "
                        "steps is spent: the run goes on untrusted",
                        k,
                        t,
                        est,
                        self.threshold_,
                        self.max_enrichments,
                    )
                rec.budget_reached = True
            if flag:
                tic = time.perf_counter()
                if new is not None:
                    rec.predictions[k] = self.prediction(new)
                new, exact, taken = self.enrichment_step(new, t, exact, path, temperature)
                rec.fom_steps += taken
                path, history = [], 0.0
                rec.new_version(self)
                self.n_enrichments_ += 1
                rec.enriched[k] = True
                rec.wall["enrichment"] += time.perf_counter() - tic
                logger.info(
                    "step %d (t=%g): estimate %.3e > %.3e, full-order step %d: N=%d, n_p=%d, "
                    "|Z|=%d, |Z^|=%d",
                    k,
                    t,
                    est,
                    self.threshold_,
                    rec.fom_steps,
                    self.svd_u_.n_components_,
                    self.svd_p_.n_components_,
                    self.cubature_.points.size,
                    self.indicator_.mask_.size,
                )
            else:
                path.append((float(t), new.c))
            state = new
            rec.step(k, state, est, sig, iters, self)
        return rec.result(times)

    def estimate(self, sig: np.ndarray) -> float:
        """The error estimate of a step's signals (``inf`` if one is not finite)."""
        if not np.all(np.isfinite(sig)):
            return np.inf
        if self.calibration is None:
            return float(sig[0])
        return float(self.calibration.evaluate(sig))

    def decide(self, flag: bool) -> bool:
        """Rank 0's decision, broadcast: the data are replicated, but the ranks must stay in
        step regardless."""
        return bool(self._comm.bcast(flag, root=0)) if self._comm.size > 1 else flag

    def reduced_step(
        self, state: ReducedState, t: float, enrich: bool, history: float
    ) -> tuple[ReducedState | None, np.ndarray, int]:
        """Reduced step to ``t``: ``(state or None if Newton failed, signals, iterations)``.

        Signals in the order of ``signal_names_``; all ``inf`` when the reduced Newton failed.
        """
        n_s = len(self.signal_names_)
        try:
            new, info = self.model_.step(state, t)
        except (RuntimeError, np.linalg.LinAlgError) as exc:
            if not enrich:
                raise
            logger.warning("reduced step to t=%g failed (%s): enriching", t, exc)
            return None, np.full(n_s, np.inf), 0
        sig = self.signals(state, new, history)
        return new, sig, info.iterations

    def signals(self, state: ReducedState, new: ReducedState, history: float = 0.0) -> np.ndarray:
        """The signals of the reduced step ``state`` -> ``new``, in the order of
        ``signal_names_`` (rank-local; cost independent of the mesh size).

        ``history``: the accumulated residual before this step (0 after a full-order state).
        """
        sig = np.empty(len(self.signal_names_))
        sig[0] = float(self.indicator_.evaluate(new.p))
        if self.residual_ is not None:
            T = self.model_.temperature_at_points
            sig[1] = float(self.novelty_.evaluate(T(new.t) - T(self.fom_.initial_time)))
            sig[2] = self.residual_.evaluate(new.sigma[self._res_pos])
            sig[3] = history + sig[2] * (new.t - state.t) / self._dt_ref
        return sig

    def prediction(self, new: ReducedState) -> tuple[np.ndarray, np.ndarray]:
        """The reduced prediction a full-order step replaces: ``(u, p)`` at full size."""
        p = self.svd_p_.modes_ @ self.indicator_.reconstruct(new.p)
        return self.model_.reconstruct(new.c), p

    def enrichment_step(
        self,
        new: ReducedState | None,
        t: float,
        exact: FullState,
        path: list[tuple[float, np.ndarray]],
        temperature: Temperature,
    ) -> tuple[ReducedState, FullState, int]:
        """One full-order step to ``t`` and the update of bases, cubature and indicator.

        ``new`` is the reduced prediction at ``t`` (``None`` when the reduced Newton failed),
        ``exact`` the last full-order state and ``path`` the reduced steps since. The start of
        the step is the state at the end of ``path`` (:meth:`path_state`), or with
        ``reconstruction="replay"`` the full-order model re-run along ``path``'s times. Returns
        the reduced state restarted from the full-order one, the full-order state and the
        number of full-order steps taken. Collective.
        """
        fom, comm = self.fom_, self._comm
        fom_steps = 0
        if self.reconstruction == "replay":
            x = exact
            for tj, _ in path:
                x, _ = fom.step(x, tj, **self._step_options)
                fom_steps += 1
        else:
            x = self.path_state(exact, path)
        # the reduced prediction at t (when the reduced step succeeded) as Newton's first
        # iterate: the same converged step in fewer iterations
        opts = dict(self._step_options)
        guess = None if new is None else self.svd_u_.modes_ @ new.c
        if guess is not None and self._fom_takes_guess:
            opts["u_guess"] = guess
        if self.residual_ is not None:
            self._learn_signals(x, guess, t)
        full, _ = fom.step(x, t, **opts)
        fom_steps += 1
        self.svd_u_.partial_fit(full.u[:, None])
        self.svd_p_.partial_fit(full.p[:, None])
        self.svd_sigma_.partial_fit(np.reshape(full.sigma, (-1, 1)))
        self._rebuild(initial_points=self.cubature_.points, temperature=temperature)
        mask = self.indicator_.mask_
        restarted = ReducedState(
            float(t),
            self.svd_u_.transform(full.u[:, None])[:, 0],
            gather_at_points(full.eps_vp, mask, comm),
            gather_at_points(full.p, mask, comm),
            gather_at_points(full.sigma, mask, comm),
        )
        return restarted, full, fom_steps

    def _learn_signals(self, x: Any, guess: np.ndarray | None, t: float) -> None:
        """Before a full-order step from ``x``: the temperature increment at ``t`` joins
        :math:`\\Phi_T`, and the full-order residual of the reduced prediction ``guess`` (its
        stresses integrated from ``x``) joins :math:`\\Phi_r` (collective)."""
        fom = self.fom_
        T = fom.temperature_at_qp(t)
        self.svd_T_.partial_fit((T - fom.temperature_at_qp(fom.initial_time))[:, None])
        g = (
            guess
            if self._comm.allreduce(guess is not None, op=MPI.LAND)
            else np.asarray(x.u, dtype=np.float64)
        )
        eps = fom.strain_at_qp(g)
        sigma, _, _, _ = fom.constitutive(eps, x.eps_vp, x.p, T, float(t) - float(x.t))
        r, _ = fom.residual(sigma, t)
        self.svd_r_.partial_fit(r[:, None])

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this AdaptiveROM is not fitted yet; call fit(fom, trajectories)")
