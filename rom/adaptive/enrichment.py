"""Adaptive hyper-reduced model: indicator-triggered full-order steps (docs/theory.md §5.4).

Casenave & Akkari, "An error indicator-based adaptive reduced order model for nonlinear
structural mechanics", MCA 24(2):41, 2019 (arXiv:1904.09123). Online, per time step::

    (c_k, xi_k|Z^) <- reduced Newton t_{k-1} -> t_k            (rom.adaptive.hyperreduced)
    E_k <- Gappy-POD indicator of p^_k                        (rom.adaptive.indicator)
    if E_k > tol_E (and fewer than max_enrichments so far):
        x <- full state at t_{k-1}: u = Psi_u c_{k-1}; eps_vp, p at all points by Gappy-POD
             from their values at Z^ (one POD basis per internal variable)
             [fallback "replay": the full-order model re-run from its last state]
        (u_k, sigma_k, p_k, eps_vp_k) <- ONE full-order step from x (Newton from the
             reduced prediction at t_k, to the tolerance fom_rtol)
        Psi_u, Phi_p, Phi_vp, Phi_sigma <- incremental SVD update by one column (product M
             for u; Brand 2006, docs/theory.md §2.1)
        (Z, w^) <- empirical cubature of sigma : eps(Psi_u), warm-started from the previous Z
        Z^ <- Z u QDEIM(Phi_p) u extra;  new indicator; reduced data re-gathered
        c_k <- Psi_u^T M u_k;  xi_k|Z^ <- full-order values      (restart from the FOM state)

The reconstruction of the internal variables at :math:`t_{k-1}` by Gappy-POD is our choice (not
confirmed in the paper): it keeps "one full-order step" literal. The full-order model is an
object with the interface of ``solvers.mechanics.ViscoplasticModel`` (``comm``, ``n_owned``,
``n_qp_local``, ``n_comp``, ``qp_weights``, ``qp_coordinates``, ``mass``, ``initial_time``,
``initial_state()``, ``step(state, t)`` (optionally ``step(state, t, u_guess=u, rtol=r)``:
Newton's first iterate and tolerance), ``strain_at_qp(U)``, ``constitutive(...)``,
``set_temperature(T)``); :class:`FullState` is what it is handed. This module never imports
dolfinx.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from rom.adaptive.hyperreduced import ReducedState
from rom.adaptive.hyperreduced import Temperature
from rom.adaptive.hyperreduced import build_hyperreduced
from rom.adaptive.hyperreduced import internal_force_cubature
from rom.adaptive.hyperreduced import work_array
from rom.adaptive.indicator import GappyIndicator
from rom.adaptive.points import gather_at_points
from rom.compression.incremental_svd import IncrementalSVD
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = ["AdaptiveROM", "AdaptiveRun", "FullState"]

logger = logging.getLogger(__name__)


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
        :math:`E_k` of the reduced step (before any enrichment; ``inf`` if the reduced Newton
        failed).
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
    wall_time : dict
        ``reduced`` (reduced Newton + indicator, summed), ``enrichment`` (full-order step,
        basis update, cubature, indicator rebuild, summed); seconds on this rank.
    """

    times: np.ndarray
    indicator: np.ndarray
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


class AdaptiveROM:
    """POD-ECM reduced model that enriches itself with single full-order steps.

    Parameters
    ----------
    svd_rtol : float
        Truncation of the incremental SVDs of :math:`u` (product :math:`M`), :math:`p`,
        :math:`\\varepsilon^{vp}` and :math:`\\sigma` after every block (a training
        trajectory, or one enrichment snapshot): drop :math:`\\sigma'_i <
        \\mathrm{svd\\_rtol}\\,\\sigma'_1` (:class:`rom.compression.incremental_svd.IncrementalSVD`).
        A relative threshold, not an energy allowance: an allowance left over from the
        training would be carried forward and could swallow an enrichment snapshot.
    cubature_tol : float
        Tolerance of :func:`rom.adaptive.hyperreduced.internal_force_cubature`.
    tol_E : float
        Indicator threshold (e.g. from :func:`rom.adaptive.indicator.calibrate`).
    max_enrichments : int
        Cap on full-order steps per :meth:`run`.
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
        (relative to the trajectory's largest norm): a smaller floor spends the capped
        enrichments on the first plastic steps, where the relative fit is poor but the error
        negligible (``docs/performance.md`` compares the two on the blade case).
    reconstruction : {"gappy", "replay"}
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
    svd_u_, svd_p_, svd_vp_, svd_sigma_ : IncrementalSVD
        Bases of :math:`u` (product :math:`M`), :math:`p`, :math:`\\varepsilon^{vp}` and
        :math:`\\sigma` (flattened Mandel components, Euclidean).
    cubature_ : CubatureResult
    indicator_ : GappyIndicator
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
        max_enrichments: int = 5,
        margin: int | None = None,
        p_ref: float | None = None,
        p_ref_rel: float = 1.0,
        reconstruction: str = "gappy",
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
        "max_enrichments": Interval(0, None, integer=True),
        "fom_rtol": Interval(0, 1, closed="left", optional=True),
        "reconstruction": Choice("gappy", "replay"),
    }

    def _option_error(self) -> str | None:
        return option_error(self, self._OPTIONS)

    def fit(self, fom: Any, trajectories: Sequence[Any]) -> AdaptiveROM:
        """Bases, cubature and indicator from training trajectories (collective).

        Parameters
        ----------
        fom : full-order model (module docstring)
        trajectories : sequence of objects with ``u`` (n_owned, n_t), ``p`` (n_qp_local, n_t),
            ``eps_vp`` and ``stresses`` (n_qp_local, n_comp, n_t), e.g.
            ``solvers.mechanics.Trajectory``. At least one must be plastic (:math:`p \\ne 0`).

        Returns ``self``.
        """
        comm = get_comm(fom.comm)
        err = self._option_error()
        if err is None and len(trajectories) == 0:
            err = "need at least one training trajectory"
        if err is None:
            for j, tr in enumerate(trajectories):
                if np.shape(tr.u)[0] != fom.n_owned or np.shape(tr.p)[0] != fom.n_qp_local:
                    err = f"trajectory {j} does not match the full-order model's rows"
                    break
        check_collective(err, comm)
        self.fom_ = fom
        self._comm = comm
        self._cubature_work = {}  # the cubature's tall work arrays, reused by every rebuild
        try:
            params = inspect.signature(fom.step).parameters
        except (TypeError, ValueError):
            params = {}
        # Newton's first iterate and tolerance for the enrichment steps, if the model takes them
        self._step_options = {}
        self._fom_takes_guess = "u_guess" in params
        own = getattr(fom, "rtol", None)
        if "rtol" in params and self.fom_rtol is not None:
            self._step_options["rtol"] = (
                float(self.fom_rtol) if own is None else max(float(self.fom_rtol), float(own))
            )
        opts = dict(rtol=self.svd_rtol, comm=comm)
        self.svd_u_ = IncrementalSVD(product=fom.mass, **opts)
        self.svd_p_ = IncrementalSVD(**opts)
        self.svd_vp_ = IncrementalSVD(**opts)
        self.svd_sigma_ = IncrementalSVD(**opts)
        for tr in trajectories:
            n_t = np.shape(tr.u)[1]
            self.svd_u_.partial_fit(tr.u)
            self.svd_p_.partial_fit(tr.p)
            self.svd_vp_.partial_fit(np.reshape(tr.eps_vp, (-1, n_t)))
            self.svd_sigma_.partial_fit(np.reshape(tr.stresses, (-1, n_t)))
        check_collective(
            None
            if self.svd_p_.n_components_ > 0
            else "the training trajectories have no plastic strain: the indicator needs p != 0",
            comm,
        )
        n_q = int(allreduce_sum(float(fom.n_qp_local), comm))
        p_max = max(
            float(np.sqrt(np.max(allreduce_sum(np.sum(np.square(tr.p), axis=0), comm))))
            for tr in trajectories
        )
        self._p_scale = p_max / np.sqrt(n_q)  # times sqrt(|mask|) in _rebuild
        self.n_enrichments_ = 0
        self._rebuild(initial_points=None, temperature=0.0)
        return self

    def _rebuild(self, *, initial_points: np.ndarray | None, temperature: Temperature) -> None:
        """Cubature, indicator and reduced data for the current bases (collective)."""
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
        self.indicator_ = GappyIndicator(
            self.svd_p_.modes_,
            self.cubature_.points,
            margin=self.margin,
            p_ref=1.0,
            comm=comm,
        )
        mask = self.indicator_.mask_
        self.indicator_.p_ref = (
            self.p_ref
            if self.p_ref is not None
            else max(self.p_ref_rel * self._p_scale * np.sqrt(mask.size), 1e-300)
        )
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
        r_vp = self.svd_vp_.n_components_
        self._vp_rows = gather_at_points(
            self.svd_vp_.modes_.reshape(nq, nc, r_vp), mask, comm
        ).reshape(-1, r_vp)
        logger.info(
            "adaptive ROM: N=%d modes, n_p=%d, %d cubature points, %d mask points",
            Psi.shape[1],
            self.svd_p_.n_components_,
            self.cubature_.points.size,
            mask.size,
        )

    # ------------------------------------------------------------------ online
    def _full_state(self, state: ReducedState) -> FullState:
        """Full state from a reduced one: :math:`u = \\Psi_u c`, :math:`p` and
        :math:`\\varepsilon^{vp}` by Gappy-POD from the mask values (owned rows, no
        communication)."""
        fom = self.fom_
        u = self.model_.reconstruct(state.c)
        p = np.maximum(self.svd_p_.modes_ @ self.indicator_.reconstruct(state.p), 0.0)
        if self._vp_rows.shape[1]:
            a = np.linalg.lstsq(self._vp_rows, state.eps_vp.ravel(), rcond=None)[0]
            eps_vp = (self.svd_vp_.modes_ @ a).reshape(fom.n_qp_local, fom.n_comp)
        else:
            eps_vp = np.zeros((fom.n_qp_local, fom.n_comp))
        return FullState(state.t, u, eps_vp, p, np.zeros((fom.n_qp_local, fom.n_comp)))

    def run(
        self,
        temperature: Temperature,
        times: np.ndarray,
        *,
        enrich: bool = True,
    ) -> AdaptiveRun:
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
        check_collective(err, self._comm)
        fom.set_temperature(temperature)
        self.model_.temperature = temperature
        n_t = times.size
        E = np.zeros(n_t)
        enriched = np.zeros(n_t, dtype=bool)
        n_modes = np.zeros(n_t, dtype=np.int64)
        n_points = np.zeros(n_t, dtype=np.int64)
        iters = np.zeros(n_t, dtype=np.int64)
        version = np.zeros(n_t, dtype=np.int64)
        coefs: list[np.ndarray] = []
        pcoefs: list[np.ndarray] = []
        bases = [self.svd_u_.modes_.copy()]
        p_bases = [self.svd_p_.modes_.copy()]
        wall = {"reduced": 0.0, "enrichment": 0.0}
        state = self.model_.initial_state(t0)
        fom_steps = 0
        last_fom = None  # (FOM state, index of its time) for the replay fallback
        n_enr, cap = 0, self.max_enrichments
        for k, t in enumerate(times):
            tic = time.perf_counter()
            new, E[k], iters[k], flag = self._reduced_step(state, t, enrich, n_enr < cap)
            wall["reduced"] += time.perf_counter() - tic
            if flag:
                tic = time.perf_counter()
                new, full, taken = self._enrich(state, new, times, k, last_fom, temperature)
                fom_steps += taken
                last_fom = (full, k + 1)
                bases.append(self.svd_u_.modes_.copy())
                p_bases.append(self.svd_p_.modes_.copy())
                n_enr += 1
                self.n_enrichments_ += 1
                enriched[k] = True
                wall["enrichment"] += time.perf_counter() - tic
                logger.info(
                    "step %d (t=%g): E=%.3e > tol_E=%.3e, enrichment %d: N=%d, n_p=%d, "
                    "|Z|=%d, |Z^|=%d",
                    k,
                    t,
                    E[k],
                    self.tol_E,
                    n_enr,
                    self.svd_u_.n_components_,
                    self.svd_p_.n_components_,
                    self.cubature_.points.size,
                    self.indicator_.mask_.size,
                )
            else:
                logger.debug("step %d (t=%g): E=%.3e", k, t, E[k])
            state = new
            coefs.append(state.c.copy())
            pcoefs.append(self.indicator_.reconstruct(state.p))
            version[k] = len(bases) - 1
            n_modes[k] = state.c.size
            n_points[k] = state.p.size
        return AdaptiveRun(
            times=times,
            indicator=E,
            enriched=enriched,
            n_modes=n_modes,
            n_points=n_points,
            newton_iterations=iters,
            fom_steps=fom_steps,
            coefficients=coefs,
            p_coefficients=pcoefs,
            version=version,
            bases=bases,
            p_bases=p_bases,
            wall_time=wall,
        )

    def _reduced_step(
        self, state: ReducedState, t: float, enrich: bool, left: bool
    ) -> tuple[ReducedState | None, float, int, bool]:
        """Reduced step to ``t``: ``(state or None if Newton failed, E_k, iterations, enrich?)``.

        ``enrich``: enrichment is on for this run; ``left``: the cap is not reached yet. The
        decision is rank 0's, broadcast: the data are replicated, but the ranks must stay in
        step regardless.
        """
        try:
            new, info = self.model_.step(state, t)
            E, iterations = float(self.indicator_.evaluate(new.p)), info.iterations
        except (RuntimeError, np.linalg.LinAlgError) as exc:
            if not enrich:
                raise
            logger.warning("reduced step to t=%g failed (%s): enriching", t, exc)
            new, E, iterations = None, np.inf, 0
        flag = bool(enrich and E > self.tol_E and left)
        if self._comm.size > 1:
            flag = bool(self._comm.bcast(flag, root=0))
        if new is None and not flag:
            raise RuntimeError(f"reduced step to t={t} failed and no enrichment is left")
        return new, E, iterations, flag

    def _enrich(
        self,
        state: ReducedState,
        new: ReducedState | None,
        times: np.ndarray,
        k: int,
        last_fom: tuple[Any, int] | None,
        temperature: Temperature,
    ) -> tuple[ReducedState, Any, int]:
        """One full-order step to ``times[k]`` and the update of bases, cubature and indicator.

        ``state`` is the reduced state at :math:`t_{k-1}`, ``new`` the reduced prediction at
        :math:`t_k` (``None`` when the reduced Newton failed) and ``last_fom`` the last
        full-order state with the index of the next time (for the replay fallback). Returns the
        reduced state restarted from the full-order one, the full-order state and the number
        of full-order steps taken. Collective.
        """
        fom, comm, t = self.fom_, self._comm, times[k]
        fom_steps = 0
        if self.reconstruction == "replay" or k == 0:
            x, j0 = (fom.initial_state(), 0) if last_fom is None else last_fom
            for j in range(j0, k):
                x, _ = fom.step(x, times[j])
                fom_steps += 1
        else:
            x = self._full_state(state)
        # the reduced prediction at t (when the reduced step succeeded) as Newton's first
        # iterate: the same converged step in fewer iterations
        opts = dict(self._step_options)
        if new is not None and self._fom_takes_guess:
            opts["u_guess"] = self.svd_u_.modes_ @ new.c
        full, _ = fom.step(x, t, **opts)
        fom_steps += 1
        self.svd_u_.partial_fit(full.u[:, None])
        self.svd_p_.partial_fit(full.p[:, None])
        self.svd_vp_.partial_fit(np.reshape(full.eps_vp, (-1, 1)))
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

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("this AdaptiveROM is not fitted yet; call fit(fom, trajectories)")
