"""Adaptive ROM (rom.adaptive.enrichment): indicator behaviour and enrichment against the full-order model.

References: full-order trajectories of solvers.mechanics on the same loads (true errors), and a
serial run (MPI.COMM_SELF) for the 2-rank agreement.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from rom.adaptive import AdaptiveROM
from rom.parallel import allreduce_sum

pytestmark = pytest.mark.fem

TIMES = np.linspace(0.0, 1.0, 21)[1:]
TRAIN = [
    (300, 0.3, 150, 20, 1.0),
    (350, 0, 100, 40, 1.0),
    (250, 0.6, 200, 0, 1.0),
    (200, 0.2, 50, 60, 1.0),
]
NEW = (330, 0.4, 80, 250, 0.5)  # a strong second hot spot, then a hold: creep outside training
TARGET = 4e-3


def _temperature(A, g, S1, S2, hold):
    def T(x, t):
        th = min(t / hold, 1.0)
        r1 = (x[0] - 0.7) ** 2 + (x[1] - 0.5) ** 2
        r2 = (x[0] - 0.25) ** 2 + (x[1] - 0.75) ** 2
        return 20.0 + th * (
            A * (1 + g * (x[0] - 0.5)) + S1 * np.exp(-r1 / 0.04) + S2 * np.exp(-r2 / 0.03)
        )

    return T


def _problem(comm):
    import dolfinx_solver  # noqa: F401

    from solvers.mechanics import Load
    from solvers.mechanics import ViscoplasticModel

    fom = ViscoplasticModel(comm, dim=2, size=8, load=Load(), times=TIMES)
    trajs = []
    for load in TRAIN + [NEW]:
        fom.set_temperature(_temperature(*load))
        trajs.append(fom.solve())
    return fom, trajs[:-1], trajs[-1]


def _errors(fom, run, ref):
    """max over steps of ||u - u_h||_M / max_j ||u_h,j||_M and the same for p in L2."""
    comm = fom.comm
    U, P = run.displacement(), run.plastic_strain()

    def mn(X):
        return np.sqrt(allreduce_sum(np.einsum("ij,ij->j", X, fom.mass(X)), comm))

    def wn(X):
        return np.sqrt(allreduce_sum((X**2).T @ fom.qp_weights, comm))

    return (mn(U - ref.u) / mn(ref.u).max(), wn(P - ref.p) / wn(ref.p).max())


@pytest.fixture(scope="module")
def problem():
    return _problem(MPI.COMM_WORLD)


def _fit(fom, trajs, **kw):
    return AdaptiveROM(svd_rtol=1e-6, cubature_tol=1e-5, **kw).fit(fom, trajs)


def test_indicator_stays_low_on_a_training_load_and_rises_outside(problem):
    """Training load: E_k <= 1e-3 and true errors <= 1e-4; new load: max E_k at least 10x the
    training maximum, and the unenriched ROM misses the target there."""
    fom, trajs, ref_new = problem
    rom = _fit(fom, trajs)
    run_train = rom.run(_temperature(*TRAIN[1]), TIMES, enrich=False)
    eu, ep = _errors(fom, run_train, trajs[1])
    assert run_train.indicator.max() <= 1e-3
    assert max(eu.max(), ep.max()) <= 1e-4
    run_new = rom.run(_temperature(*NEW), TIMES, enrich=False)
    eu, ep = _errors(fom, run_new, ref_new)
    assert run_new.indicator.max() >= 10 * run_train.indicator.max()
    assert max(eu.max(), ep.max()) > TARGET
    assert run_new.fom_steps == 0 and not run_new.enriched.any()


def _adaptive(comm, problem=None):
    fom, trajs, ref = _problem(comm) if problem is None else problem
    rom = _fit(fom, trajs, tol_E=3e-3, max_enrichments=5)
    run = rom.run(_temperature(*NEW), TIMES)
    return run, _errors(fom, run, ref)


@pytest.mark.mpi
def test_enrichment_meets_the_target_and_ranks_agree(problem, comm):
    """Enrichment brings max(e_u, e_p) under the target (the unenriched ROM misses it, previous
    test); the indicator fires before the error reaches the target (errors before the first
    enrichment are under it, and that enrichment comes after the elastic first step); 1 and
    2 ranks give the same enrichment history and errors."""
    run, (eu, ep) = _adaptive(comm, problem)
    assert 1 <= run.fom_steps <= 5 and run.enriched.sum() == run.fom_steps
    assert max(eu.max(), ep.max()) <= TARGET
    first = int(np.flatnonzero(run.enriched)[0])
    assert first >= 1
    assert max(eu[: first + 1].max(), ep[: first + 1].max()) < TARGET
    assert np.all(np.diff(run.n_modes) >= 0) and run.n_modes[-1] > run.n_modes[0] - 1
    if comm.size > 1:  # reference: the serial run on each rank
        ser, (eu_s, ep_s) = _adaptive(MPI.COMM_SELF)
        np.testing.assert_array_equal(run.enriched, ser.enriched)
        np.testing.assert_allclose(run.indicator, ser.indicator, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(eu, eu_s, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(ep, ep_s, rtol=1e-4, atol=1e-9)


def test_replay_fallback_uses_more_full_order_steps_and_meets_the_target(problem):
    """reconstruction="replay": the full-order model re-runs from its last state, so it takes
    more steps than enrichments (the first one is after step 0), with the same accuracy."""
    fom, trajs, ref = problem
    rom = _fit(fom, trajs, tol_E=3e-3, max_enrichments=5, reconstruction="replay")
    run = rom.run(_temperature(*NEW), TIMES)
    eu, ep = _errors(fom, run, ref)
    first = int(np.flatnonzero(run.enriched)[0])
    assert first > 0 and run.fom_steps >= run.enriched.sum() + first
    assert max(eu.max(), ep.max()) <= TARGET


class _RecordingModel:
    """The full-order model, recording the options of every ``step`` call."""

    def __init__(self, fom):
        self._fom, self.calls = fom, []

    def __getattr__(self, name):
        return getattr(self._fom, name)

    def step(self, state, t, *, u_guess=None, rtol=None):
        self.calls.append({"u_guess": u_guess, "rtol": rtol})
        return self._fom.step(state, t, u_guess=u_guess, rtol=rtol)


def test_enrichment_steps_start_from_the_prediction_at_their_tolerance(problem):
    """Each enrichment's full-order step gets the reduced prediction as Newton's first iterate
    (close to the step's result) and ``fom_rtol`` (never tighter than the model's own)."""
    fom, trajs, ref = problem
    rec = _RecordingModel(fom)
    rom = AdaptiveROM(
        svd_rtol=1e-6, cubature_tol=1e-5, tol_E=3e-3, max_enrichments=5, fom_rtol=1e-7
    ).fit(rec, trajs)
    run = rom.run(_temperature(*NEW), TIMES)
    assert len(rec.calls) == run.fom_steps >= 1
    assert all(c["rtol"] == max(1e-7, fom.rtol) for c in rec.calls)
    assert all(c["u_guess"] is not None for c in rec.calls[1:])  # step 0 may fail instead
    for k, call in zip(np.flatnonzero(run.enriched), rec.calls):
        if call["u_guess"] is not None:
            u_k = run.bases[int(run.version[k])] @ run.coefficients[k]  # restarted from FOM
            err = np.linalg.norm(call["u_guess"] - u_k) / np.linalg.norm(u_k)
            assert err < 0.1
    eu, ep = _errors(fom, run, ref)
    assert max(eu.max(), ep.max()) <= TARGET


def test_invalid_options_and_unfitted_use_raise(problem):
    fom, trajs, _ = problem
    with pytest.raises(ValueError, match="fom_rtol must be None or lie in"):
        AdaptiveROM(fom_rtol=-1.0).fit(fom, trajs)
    with pytest.raises(ValueError, match="reconstruction must be"):
        AdaptiveROM(reconstruction="guess").fit(fom, trajs)
    with pytest.raises(ValueError, match="cubature_tol must lie in"):
        AdaptiveROM(cubature_tol=0.0).fit(fom, trajs)
    with pytest.raises(RuntimeError, match="not fitted"):
        AdaptiveROM().run(_temperature(*NEW), TIMES)
    elastic = [type(trajs[0])(**{**trajs[0].__dict__, "p": np.zeros_like(trajs[0].p)})]
    with pytest.raises(ValueError, match="no plastic strain"):
        AdaptiveROM().fit(fom, elastic)
