"""A dictionary of local adaptive reduced models (docs/theory.md §5.6).

Daniel, Casenave, Akkari and Ryckelynck (ROM-nets) cluster training simulations and build one
reduced model per cluster; the adaptive model of docs/theory.md §5.4 enriches a single one.
Here the two meet::

    offline:  D_ij <- principal-angle distance of the POD subspaces of the displacement
                      trajectories u_i, u_j (product M)                (rom.local, §3.1)
              clusters <- k-medoids on D, at least two members each    (rom.local, §3.3)
              ROM_c <- AdaptiveROM fitted on cluster c alone: own bases, cubature, mask,
                       residual sample and indicator                   (§5.1-§5.5)
              tau_c <- box calibration of ROM_c on every calibration load   (§5.5)
    online:   c <- assignment from the load's temperature field (before any solve)
              per step: ROM_c's reduced step and eta_c = max_s s / tau_{c,s}
              if eta_c > 1:
                  x <- full state at t_{k-1} (internal variables along the reduced path)
                  for every other ROM_j: restart from x, reduced step, eta_j
                  if some eta_j <= 1: c <- the one with the smallest eta_j   (re-selection)
                  else: one full-order step enriches the ROM with the smallest eta
                        (ties: the active one) and the run goes on with it       (§5.4)

Every ROM of the dictionary is an :class:`rom.adaptive.enrichment.AdaptiveROM`; the dictionary
drives their steps through its methods and never imports dolfinx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np

from rom.adaptive.enrichment import AdaptiveROM
from rom.adaptive.history import AdaptiveRun
from rom.adaptive.history import FullState
from rom.adaptive.hyperreduced import ReducedState
from rom.adaptive.indicator import calibrate as calibrate_box
from rom.adaptive.points import gather_at_points
from rom.adaptive.signals import temperature_increments
from rom.local.clustering import KMedoids
from rom.local.dissimilarity import trajectory_dissimilarity
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = ["DictionaryRun", "LocalAdaptiveROMs"]

logger = logging.getLogger(__name__)


@dataclass
class DictionaryRun(AdaptiveRun):
    """History of :meth:`LocalAdaptiveROMs.run`: an :class:`AdaptiveRun` whose ``indicator``
    is the normalized :math:`\\eta_k = \\hat e_k / \\tau` of the ROM active at step k
    (``threshold`` is 1), whose ``bases`` / ``p_bases`` hold the bases of every ROM version
    used, plus:

    Attributes
    ----------
    rom_index : ndarray of int (n_t,)
        The ROM whose state step k ends with.
    reselected : ndarray of bool (n_t,)
        Steps at which another local ROM was trusted and taken instead of a full-order step.
    enriched_rom : dict
        Step -> the ROM a full-order step enriched.
    assigned : int
        The ROM the load was assigned to.
    scores : ndarray (n_roms,)
        The assignment scores (smallest wins).
    """

    rom_index: np.ndarray | None = None
    reselected: np.ndarray | None = None
    enriched_rom: dict = field(default_factory=dict)
    assigned: int = 0
    scores: np.ndarray | None = None

    @property
    def n_reselections(self) -> int:
        return int(np.sum(self.reselected))


@dataclass
class _Candidate:
    """A reduced step to :math:`t_k` of one ROM: state (``None`` if Newton failed), signals,
    normalized estimate :math:`\\eta` and Newton iterations."""

    new: ReducedState | None
    sig: np.ndarray
    eta: float
    iters: int


class LocalAdaptiveROMs:
    """One adaptive hyper-reduced model per cluster of training loads, re-selected online
    before any enrichment (module docstring; docs/theory.md §5.6).

    Parameters
    ----------
    n_clusters : int
        Number of local ROMs :math:`K` asked for (clusters with fewer than two members are
        dissolved: the composite indicator needs two trajectories per ROM).
    objective : {"sum", "max"}
        k-medoids or k-center (:class:`rom.local.clustering.KMedoids`).
    rel_l2_err : float
        Energy tolerance that sets the common POD dimension of the trajectory subspaces
        (:func:`rom.local.dissimilarity.trajectory_dissimilarity`).
    assign : {"projection", "medoid"}
        Online assignment from the temperature increments :math:`\\Delta T = T(t_k) - T(t_0)`
        at the quadrature points over the run's times, before any solve. ``"projection"``:
        the ROM whose temperature basis :math:`\\Phi_T^c` leaves the smallest relative
        residual :math:`\\|\\Delta T - \\Phi_T^c \\Phi_T^{cT} \\Delta T\\|_F / \\|\\Delta T\\|_F`
        (rule 2 of docs/theory.md §3.5 applied to the input). ``"medoid"``: the nearest medoid
        in the principal-angle distance between the temperature-increment trajectories (rule 1).
    reselect : bool
        Re-select among the local ROMs when the active one's indicator fires (``False``: every
        trigger is a full-order step on the active ROM, as one :class:`AdaptiveROM` does).
    max_enrichments : int, optional
        Budget of full-order steps per run over all ROMs (``None``: none); a reached budget is
        reported as in :class:`AdaptiveROM`.
    rom_options : dict, optional
        Keyword arguments of every local :class:`AdaptiveROM` (``max_enrichments`` excepted).
    seed : int
        Seed of the k-medoids restarts.

    Attributes
    ----------
    roms_ : list of AdaptiveROM
    labels_ : ndarray of int (n_train,)
        Cluster of each training trajectory.
    medoid_indices_ : ndarray of int
    dissimilarity_ : ndarray (n_train, n_train)
    fom_ : the full-order model
    """

    def __init__(
        self,
        n_clusters: int = 2,
        *,
        objective: str = "sum",
        rel_l2_err: float = 1e-2,
        assign: str = "projection",
        reselect: bool = True,
        max_enrichments: int | None = None,
        rom_options: dict | None = None,
        seed: int = 0,
    ) -> None:
        keep_options(self, locals())

    _OPTIONS = {
        "n_clusters": Interval(1, None, integer=True),
        "objective": Choice("sum", "max"),
        "rel_l2_err": Interval(0, 1, closed="neither"),
        "assign": Choice("projection", "medoid"),
        "max_enrichments": Interval(0, None, integer=True, optional=True),
    }

    # ------------------------------------------------------------------ offline
    def fit(
        self,
        fom: Any,
        trajectories: Sequence[Any],
        *,
        temperatures: Sequence[Any],
    ) -> LocalAdaptiveROMs:
        """Cluster the training trajectories and fit one :class:`AdaptiveROM` per cluster
        (collective).

        Parameters
        ----------
        fom : full-order model (``rom.adaptive.enrichment``)
        trajectories : sequence of trajectories (``AdaptiveROM.fit``), at least 4
        temperatures : sequence of temperature callables, one per trajectory

        Returns ``self``.
        """
        comm = get_comm(fom.comm)
        n = len(trajectories)
        err = option_error(self, self._OPTIONS)
        if err is None and (n < 4 or len(temperatures) != n):
            err = "need at least 4 training trajectories and one temperature per trajectory"
        if err is None and self.n_clusters > n // 2:
            err = f"n_clusters={self.n_clusters} leaves fewer than 2 of {n} trajectories per ROM"
        check_collective(err, comm)
        self.fom_, self._comm = fom, comm
        D = trajectory_dissimilarity(
            [tr.u for tr in trajectories], rel_l2_err=self.rel_l2_err, product=fom.mass, comm=comm
        )
        km = KMedoids(
            int(self.n_clusters), objective=self.objective, min_cluster_size=2, seed=self.seed
        ).fit(D)
        self.dissimilarity_, self.labels_ = D, km.labels_
        self.medoid_indices_ = km.medoid_indices_
        self._medoid_temperatures = [temperatures[m] for m in km.medoid_indices_]
        opts = dict(self.rom_options or {})
        opts["max_enrichments"] = None  # the dictionary holds the budget
        self.roms_ = []
        for c in range(km.n_clusters_):
            members = np.flatnonzero(km.labels_ == c)
            rom = AdaptiveROM(**opts).fit(
                fom,
                [trajectories[i] for i in members],
                temperatures=[temperatures[i] for i in members],
            )
            self.roms_.append(rom)
        logger.info(
            "local adaptive ROMs: K=%d, cluster sizes %s, modes %s",
            len(self.roms_),
            np.bincount(km.labels_).tolist(),
            [r.svd_u_.n_components_ for r in self.roms_],
        )
        return self

    def calibrate(
        self,
        temperatures: Sequence[Any],
        times: np.ndarray,
        error: Callable[[AdaptiveRun, int], np.ndarray],
        *,
        target: float,
        safety: float = 2.0,
    ) -> list[AdaptiveRun]:
        """Calibrate every local ROM on every calibration load (docs/theory.md §5.5).

        Each ROM's indicator is calibrated on unenriched runs of *all* calibration loads, not
        only those of its cluster: re-selection asks a ROM whether it is trusted on states
        outside its cluster, so its thresholds must have seen such states.

        Parameters
        ----------
        temperatures : sequence of temperature callables (calibration loads, disjoint from
            every test load)
        times : ndarray (n_t,)
        error : callable ``error(run, i)`` -> ndarray (n_t,)
            The true error of each step of an unenriched run on calibration load ``i``
            (collective; e.g. the larger of the relative errors in :math:`u` and :math:`p`).
        target, safety : float
            As in :func:`rom.adaptive.indicator.calibrate`.

        Returns
        -------
        runs : list of AdaptiveRun
            ``runs[c * n_loads + i]``: ROM ``c`` on load ``i`` (e.g. to compare assignment
            rules with the ROM that was most accurate). They ran before the calibration: their
            ``indicator`` is the Gappy residual; ``roms_[c].calibration.evaluate(run.signals)``
            is the calibrated :math:`\\eta`.
        """
        self._check_fitted()
        runs = []
        for rom in self.roms_:
            S, e = [], []
            for i, T in enumerate(temperatures):
                run = rom.run(T, times, enrich=False)
                runs.append(run)
                S.append(run.signals)
                e.append(np.asarray(error(run, i), dtype=np.float64))
            rom.calibration = calibrate_box(
                np.vstack(S),
                np.concatenate(e),
                target=target,
                safety=safety,
                names=rom.signal_names_,
            )
        return runs

    # ------------------------------------------------------------------ assignment
    def assignment_scores(self, temperature: Any, times: np.ndarray) -> np.ndarray:
        """Scores of the ROMs for a load (collective; smallest wins; parameter ``assign``).

        Cost: the temperature at every quadrature point at every time, and
        :math:`O(n_q n_t \\sum_c n_{T,c})` flops for ``"projection"``; no solve.
        """
        self._check_fitted()
        fom, comm = self.fom_, self._comm
        times = np.asarray(times, dtype=np.float64).ravel()
        X = temperature_increments(fom, temperature, times)
        if self.assign == "medoid":
            meds = [temperature_increments(fom, T, times) for T in self._medoid_temperatures]
            D = trajectory_dissimilarity([X, *meds], rel_l2_err=self.rel_l2_err, comm=comm)
            return D[0, 1:].copy()
        nX = np.sqrt(allreduce_sum(float(np.sum(X * X)), comm))
        scores = []
        for rom in self.roms_:
            Phi = rom.svd_T_.modes_
            R = X - Phi @ allreduce_sum(Phi.T @ X, comm)
            scores.append(np.sqrt(allreduce_sum(float(np.sum(R * R)), comm)) / max(nX, 1e-300))
        return np.asarray(scores)

    def assign_rom(self, temperature: Any, times: np.ndarray) -> int:
        """The ROM a load starts with: the smallest score (ties: the first; collective)."""
        return int(np.argmin(self.assignment_scores(temperature, times)))

    # ------------------------------------------------------------------ online
    def run(
        self,
        temperature: Any,
        times: np.ndarray,
        *,
        enrich: bool = True,
        start: int | None = None,
    ) -> DictionaryRun:
        """Run the dictionary from the initial state through ``times`` (collective).

        ``start``: the ROM to start with (default :meth:`assign_rom`). With ``enrich=False``
        the assigned ROM runs alone, neither re-selected nor enriched (its silent misses are
        measured on such runs). The ROMs keep what full-order steps taught them.
        """
        self._check_fitted()
        fom = self.fom_
        t0 = float(fom.initial_time)
        times = np.asarray(times, dtype=np.float64).ravel()
        ok = times.size > 0 and bool(np.all(np.isfinite(times))) and times[0] > t0
        ok = ok and bool(np.all(np.diff(times) > 0))
        err = None if ok else f"times must increase strictly from above initial_time={t0}"
        if err is None and start is not None and not 0 <= start < len(self.roms_):
            err = f"start must index one of the {len(self.roms_)} ROMs, got {start}"
        if err is None and any(r.calibration is None for r in self.roms_):
            err = "calibrate the dictionary first (LocalAdaptiveROMs.calibrate)"
        check_collective(err, self._comm)
        scores = self.assignment_scores(temperature, times)
        j = int(np.argmin(scores)) if start is None else int(start)
        fom.set_temperature(temperature)
        for rom in self.roms_:
            rom.model_.temperature = temperature
        walk = _Walk(self, times, j, scores, temperature)
        for k, t in enumerate(times):
            walk.advance(k, float(t), enrich)
        return walk.result()

    def _check_fitted(self) -> None:
        if not hasattr(self, "roms_"):
            raise RuntimeError("this LocalAdaptiveROMs is not fitted yet; call fit first")


def _history(rom: AdaptiveROM, sig: np.ndarray) -> float:
    """The history signal after a step (0 for the Gappy indicator alone)."""
    return float(sig[-1]) if rom.residual_ is not None else 0.0


def restart_from(rom: AdaptiveROM, x: FullState) -> ReducedState:
    """The reduced state of ``rom`` for a full state ``x``: :math:`c = \\Psi_u^T M u`, the
    internal variables at its mask (collective)."""
    mask, comm = rom.indicator_.mask_, get_comm(rom.fom_.comm)
    return ReducedState(
        float(x.t),
        rom.svd_u_.transform(np.asarray(x.u)[:, None])[:, 0],
        gather_at_points(x.eps_vp, mask, comm),
        gather_at_points(x.p, mask, comm),
        gather_at_points(x.sigma, mask, comm),
    )


class _Walk:
    """The state of one run: active ROM, reduced state, the full state the current reduced
    path starts from (``anchor``: the last full-order state, or the state a re-selection
    restarted from), the path since, the history signal, and the record."""

    def __init__(self, dic: LocalAdaptiveROMs, times, j: int, scores, temperature) -> None:
        self.dic, self.roms, self.j = dic, dic.roms_, j
        self.temperature = temperature
        fom = dic.fom_
        self.state = self.roms[j].model_.initial_state(float(fom.initial_time))
        self.anchor: FullState = fom.initial_state()
        self.path: list[tuple[float, np.ndarray]] = []
        self.history = 0.0
        self.budget = np.inf if dic.max_enrichments is None else dic.max_enrichments
        n_t, n_s = times.size, len(self.roms[j].signal_names_)
        self.times, self.scores, self.assigned = times, scores, j
        self.rec = {
            "indicator": np.zeros(n_t),
            "signals": np.zeros((n_t, n_s)),
            "enriched": np.zeros(n_t, dtype=bool),
            "untrusted": np.zeros(n_t, dtype=bool),
            "reselected": np.zeros(n_t, dtype=bool),
            "rom_index": np.zeros(n_t, dtype=np.int64),
            "n_modes": np.zeros(n_t, dtype=np.int64),
            "n_points": np.zeros(n_t, dtype=np.int64),
            "iters": np.zeros(n_t, dtype=np.int64),
            "version": np.zeros(n_t, dtype=np.int64),
        }
        self.coefs: list[np.ndarray] = []
        self.pcoefs: list[np.ndarray] = []
        self.bases: list[np.ndarray] = []
        self.p_bases: list[np.ndarray] = []
        self.versions: dict[tuple[int, int], int] = {}
        self.predictions: dict = {}
        self.enriched_rom: dict = {}
        self.fom_steps = 0
        self.budget_reached = False

    def _step_of(self, i: int, state: ReducedState, t: float, enrich: bool) -> _Candidate:
        rom = self.roms[i]
        new, sig, iters = rom.reduced_step(state, t, enrich, self.history)
        return _Candidate(new, sig, rom.estimate(sig) / rom.threshold_, iters)

    def advance(self, k: int, t: float, enrich: bool) -> None:
        """Step k to ``t``: the active ROM's reduced step, then on a trigger re-selection or
        a full-order step."""
        comm = self.dic._comm
        cand = {self.j: self._step_of(self.j, self.state, t, enrich)}
        fires = self.roms[self.j].decide(bool(enrich and cand[self.j].eta > 1.0))
        if not fires:
            self._accept(k, t, cand[self.j], restart=None)
            return
        x = self.roms[self.j].path_state(self.anchor, self.path)
        if self.dic.reselect:
            for i in range(len(self.roms)):
                if i != self.j:
                    cand[i] = self._step_of(i, restart_from(self.roms[i], x), t, True)
        # rank 0's choice, broadcast (the reduced data are replicated; the ranks stay in step)
        best = min(cand, key=lambda i: (cand[i].eta, i != self.j, i))
        trusted = best != self.j and cand[best].eta <= 1.0
        if comm.size > 1:
            best, trusted = comm.bcast((best, trusted), root=0)
        if trusted:
            logger.info(
                "step %d (t=%g): ROM %d -> ROM %d (eta %.3g)", k, t, self.j, best, cand[best].eta
            )
            self.j = best
            self.rec["reselected"][k] = True
            self._accept(k, t, cand[best], restart=x)
        elif self.fom_steps < self.budget:
            self._enrich(k, t, best, cand[best], x)
        else:
            self._untrusted(k, t, cand[self.j])

    def _accept(self, k: int, t: float, c: _Candidate, restart: FullState | None) -> None:
        if c.new is None:
            raise RuntimeError(f"reduced step to t={t} failed and no enrichment is left")
        if restart is not None:  # a re-selection: the new path starts from x
            self.anchor, self.path = restart, []
        self.path.append((t, c.new.c))
        self.history = _history(self.roms[self.j], c.sig)
        self.state = c.new
        self._record(k, c)

    def _untrusted(self, k: int, t: float, c: _Candidate) -> None:
        if not self.budget_reached:
            logger.warning(
                "step %d (t=%g): eta %.3e > 1 but the budget of %s full-order steps is spent: "
                "the run goes on untrusted",
                k,
                t,
                c.eta,
                self.dic.max_enrichments,
            )
        self.budget_reached = True
        self.rec["untrusted"][k] = True
        self._accept(k, t, c, restart=None)

    def _enrich(self, k: int, t: float, e: int, c: _Candidate, x: FullState) -> None:
        """A full-order step from ``x`` enriches ROM ``e``, which becomes the active one."""
        rom = self.roms[e]
        if c.new is not None:
            self.predictions[k] = rom.prediction(c.new)
        state, full, taken = rom.enrichment_step(c.new, t, x, [], self.temperature)
        rom.n_enrichments_ += 1
        self.fom_steps += taken
        self.j, self.state, self.anchor, self.path, self.history = e, state, full, [], 0.0
        self.rec["enriched"][k] = True
        self.enriched_rom[k] = e
        logger.info("step %d (t=%g): full-order step %d enriches ROM %d", k, t, self.fom_steps, e)
        self._record(k, _Candidate(state, c.sig, c.eta, c.iters))

    def _record(self, k: int, c: _Candidate) -> None:
        rom, rec = self.roms[self.j], self.rec
        key = (self.j, int(rom.n_enrichments_))
        if key not in self.versions:
            self.versions[key] = len(self.bases)
            self.bases.append(rom.svd_u_.modes_.copy())
            self.p_bases.append(rom.svd_p_.modes_.copy())
        rec["indicator"][k], rec["signals"][k], rec["iters"][k] = c.eta, c.sig, c.iters
        rec["version"][k], rec["rom_index"][k] = self.versions[key], self.j
        rec["n_modes"][k], rec["n_points"][k] = self.state.c.size, self.state.p.size
        self.coefs.append(self.state.c.copy())
        self.pcoefs.append(rom.indicator_.reconstruct(self.state.p))

    def result(self) -> DictionaryRun:
        rec = self.rec
        return DictionaryRun(
            times=self.times,
            indicator=rec["indicator"],
            signals=rec["signals"],
            signal_names=tuple(self.roms[self.assigned].signal_names_),
            threshold=1.0,
            enriched=rec["enriched"],
            n_modes=rec["n_modes"],
            n_points=rec["n_points"],
            newton_iterations=rec["iters"],
            fom_steps=self.fom_steps,
            coefficients=self.coefs,
            p_coefficients=self.pcoefs,
            version=rec["version"],
            bases=self.bases,
            p_bases=self.p_bases,
            budget_reached=self.budget_reached,
            untrusted=rec["untrusted"],
            predictions=self.predictions,
            rom_index=rec["rom_index"],
            reselected=rec["reselected"],
            enriched_rom=self.enriched_rom,
            assigned=self.assigned,
            scores=self.scores,
        )
