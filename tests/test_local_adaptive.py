"""Dictionary of local adaptive ROMs (rom.adaptive.dictionary) on the viscoplastic block.

References: full-order trajectories of solvers.mechanics on the same loads (true errors), a
single AdaptiveROM (a one-cluster dictionary must reproduce it), the members of each cluster
(their temperature increments lie in their ROM's temperature basis), and a serial run
(MPI.COMM_SELF) for the 2-rank agreement.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from mpi4py import MPI

from rom.adaptive import AdaptiveROM
from rom.adaptive import LocalAdaptiveROMs

pytestmark = pytest.mark.fem

TIMES = np.linspace(0.0, 1.0, 13)[1:]
TARGET = 1e-2


def _loads():
    """Two flat and two steep training loads, two calibration loads (one inside the family,
    one with a strong second spot and a hold), and a new load with a spot elsewhere."""
    from solvers.blade_loads import SPOT_A
    from solvers.blade_loads import SPOT_B
    from solvers.blade_loads import ThermalLoad
    from solvers.blade_loads import ramp

    def load(name, A, g, S1, S2, hold=1.0, c2=SPOT_B):
        spots = ((S1, 0.04, SPOT_A, None), (S2, 0.03, c2, None))
        return ThermalLoad(name, A, g, ramp(hold), spots)

    train = [
        load("flat-0", 300, 0.0, 150, 20),
        load("flat-1", 250, 0.05, 100, 50),
        load("steep-0", 300, 0.6, 150, 20),
        load("steep-1", 250, 0.55, 100, 50),
    ]
    cal = [load("cal-0", 280, 0.3, 120, 30), load("cal-1", 300, 0.1, 140, 200, 0.5, (0.5, 0.8))]
    new = load("new", 260, 0.2, 100, 220, 1.0, (0.5, 0.15))
    return train, cal, new


def _problem(comm):
    import dolfinx_solver  # noqa: F401

    from solvers.mechanics import Load
    from solvers.mechanics import ViscoplasticModel

    fom = ViscoplasticModel(comm, dim=2, size=10, load=Load(), times=TIMES)
    train, cal, new = _loads()

    def solve(load):
        fom.set_temperature(load.temperature)
        return fom.solve(times=TIMES)

    return {
        "fom": fom,
        "train": train,
        "trajs": [solve(ld) for ld in train],
        "cal": cal,
        "cal_refs": [solve(ld) for ld in cal],
        "new": new,
        "new_ref": solve(new),
    }


def _error(fom, run, ref):
    from solvers.blade_loads import relative_errors

    return np.maximum(*relative_errors(fom, run.displacement(), run.plastic_strain(), ref))


def _dictionary(pb, n_clusters=2, **kw):
    fom = pb["fom"]
    d = LocalAdaptiveROMs(n_clusters, **kw).fit(
        fom, pb["trajs"], temperatures=[ld.temperature for ld in pb["train"]]
    )
    d.calibrate(
        [ld.temperature for ld in pb["cal"]],
        TIMES,
        lambda run, i: _error(fom, run, pb["cal_refs"][i]),
        target=TARGET,
    )
    return d


def _copy(d, **options):
    """A copy of a fitted dictionary sharing its full-order model, with options changed."""
    fom = d.fom_
    out = copy.deepcopy(d, {id(fom): fom, id(fom.comm): fom.comm, id(fom.mass): fom.mass})
    for name, value in options.items():
        setattr(out, name, value)
    return out


@pytest.fixture(scope="module")
def problem():
    return _problem(MPI.COMM_WORLD)


@pytest.fixture(scope="module")
def dictionary(problem):
    return _dictionary(problem)


def test_clusters_separate_the_thermal_gradients_and_assignment_finds_them(problem, dictionary):
    """The flat and the steep loads form the two clusters; each ROM reproduces its members
    (unenriched error <= 1e-4 against the full-order model, the other ROM worse); a member's
    temperature increments lie in its ROM's temperature basis (projection score ~ 0), and both
    assignment rules send every training load to its own cluster."""
    d, fom = dictionary, problem["fom"]
    lab = d.labels_
    assert lab[0] == lab[1] != lab[2] == lab[3]
    assert len(d.roms_) == 2
    medoid = _copy(d, assign="medoid")
    for i, (load, ref) in enumerate(zip(problem["train"], problem["trajs"], strict=True)):
        own = _error(fom, d.roms_[lab[i]].run(load.temperature, TIMES, enrich=False), ref)
        other = _error(fom, d.roms_[1 - lab[i]].run(load.temperature, TIMES, enrich=False), ref)
        assert own.max() <= 1e-4 < other.max()
        scores = d.assignment_scores(load.temperature, TIMES)
        assert scores[lab[i]] <= 1e-6 < scores[1 - lab[i]]
        assert d.assign_rom(load.temperature, TIMES) == lab[i]
        assert medoid.assign_rom(load.temperature, TIMES) == lab[i]


_SERIAL: dict = {}


def _serial():
    """The problem and the calibrated dictionary on MPI.COMM_SELF (the reference of the
    2-rank runs), built once."""
    if not _SERIAL:
        pb = _problem(MPI.COMM_SELF)
        _SERIAL.update(pb=pb, d=_dictionary(pb))
    return _SERIAL["pb"], _SERIAL["d"]


def _misrouted(pb, d):
    """A flat training load started on the steep ROM, with and without re-selection."""
    load, ref = pb["train"][0], pb["trajs"][0]
    wrong = 1 - int(d.labels_[0])
    run = _copy(d).run(load.temperature, TIMES, start=wrong)
    return pb, d, run, _error(pb["fom"], run, ref)


@pytest.mark.mpi
def test_a_misrouted_load_is_reselected_without_full_order_steps(problem, dictionary, comm):
    """Started on the wrong ROM, the run switches to the right one when the indicator fires,
    takes no full-order step and stays under the target; without re-selection the same start
    needs full-order steps. 1 and 2 ranks give the same switches and errors."""
    pb, d, run, e = _misrouted(problem, dictionary)
    right = int(d.labels_[0])
    assert run.n_reselections >= 1 and run.fom_steps == 0 and not run.enriched.any()
    assert run.rom_index[-1] == right and run.assigned == 1 - right
    first = int(np.flatnonzero(run.reselected)[0])
    assert np.all(run.rom_index[first:] == right) and np.all(run.rom_index[:first] != right)
    assert e.max() <= TARGET and not run.budget_reached
    alone = _copy(d, reselect=False)
    r2 = alone.run(pb["train"][0].temperature, TIMES, start=1 - right)
    assert r2.fom_steps >= 1 and r2.n_reselections == 0
    if comm.size > 1:  # reference: the serial run on each rank
        _, _, ser, e_s = _misrouted(*_serial())
        np.testing.assert_array_equal(run.rom_index, ser.rom_index)
        np.testing.assert_array_equal(run.reselected, ser.reselected)
        np.testing.assert_allclose(run.indicator, ser.indicator, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(e, e_s, rtol=1e-4, atol=1e-9)


def test_a_one_rom_dictionary_is_the_adaptive_rom(problem):
    """K = 1: the dictionary's run is AdaptiveROM.run on the same training and calibration
    (same full-order steps, enriched and untrusted steps, indicator and displacements), on a
    load that needs more full-order steps than the budget of 1 both are given."""
    fom, new = problem["fom"], problem["new"]
    d = _dictionary(problem, n_clusters=1, max_enrichments=1)
    single = AdaptiveROM(max_enrichments=1).fit(
        fom, problem["trajs"], temperatures=[ld.temperature for ld in problem["train"]]
    )
    single.calibration = d.roms_[0].calibration
    ref_run = single.run(new.temperature, TIMES)
    run = d.run(new.temperature, TIMES)
    assert ref_run.fom_steps == 1 and ref_run.budget_reached
    assert run.fom_steps == 1 and run.budget_reached and run.n_reselections == 0
    np.testing.assert_array_equal(run.enriched, ref_run.enriched)
    np.testing.assert_array_equal(run.untrusted, ref_run.untrusted)
    np.testing.assert_allclose(run.indicator, ref_run.indicator, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(run.displacement(), ref_run.displacement(), rtol=1e-8, atol=1e-14)


def _new_load(pb, d):
    d = _copy(d)
    run = d.run(pb["new"].temperature, TIMES)
    return d, run, _error(pb["fom"], run, pb["new_ref"])


@pytest.mark.mpi
def test_enrichment_when_no_rom_is_trusted_meets_the_target(problem, dictionary, comm):
    """A spot where no training load heated: no local ROM is trusted, full-order steps enrich
    the ROM with the smallest estimate, and the run ends under the target; the unenriched
    assigned ROM misses it. 1 and 2 ranks take the same steps with the same ROMs."""
    fom, new, ref = problem["fom"], problem["new"], problem["new_ref"]
    plain = _copy(dictionary).run(new.temperature, TIMES, enrich=False)
    assert plain.fom_steps == 0 and np.all(plain.rom_index == plain.assigned)
    assert _error(fom, plain, ref).max() > TARGET
    d, run, e = _new_load(problem, dictionary)
    assert run.fom_steps >= 1 and set(run.enriched_rom) == set(np.flatnonzero(run.enriched))
    assert e.max() <= TARGET
    assert sum(r.n_enrichments_ for r in d.roms_) == run.fom_steps
    if comm.size > 1:  # reference: the serial run on each rank
        _, ser, e_s = _new_load(*_serial())
        np.testing.assert_array_equal(run.enriched, ser.enriched)
        np.testing.assert_array_equal(run.rom_index, ser.rom_index)
        np.testing.assert_array_equal(run.reselected, ser.reselected)
        np.testing.assert_allclose(e, e_s, rtol=1e-4, atol=1e-9)


def test_a_spent_budget_is_reported(problem, dictionary, caplog):
    """max_enrichments=0 on a load that needs full-order steps: the run warns, flags the
    budget and marks the steps it accepted against the indicator."""
    new = problem["new"]
    d = _copy(dictionary, max_enrichments=0)
    run = d.run(new.temperature, TIMES)
    assert run.fom_steps == 0 and run.budget_reached
    assert run.untrusted.any() and np.all(run.indicator[run.untrusted] > 1.0)
    assert "budget" in caplog.text


def test_invalid_options_and_unfitted_use_raise(problem):
    fom, trajs = problem["fom"], problem["trajs"]
    temps = [ld.temperature for ld in problem["train"]]
    with pytest.raises(ValueError, match="n_clusters"):
        LocalAdaptiveROMs(3).fit(fom, trajs, temperatures=temps)
    with pytest.raises(ValueError, match="assign"):
        LocalAdaptiveROMs(2, assign="nearest").fit(fom, trajs, temperatures=temps)
    with pytest.raises(ValueError, match="at least 4"):
        LocalAdaptiveROMs(1).fit(fom, trajs[:3], temperatures=temps[:3])
    with pytest.raises(RuntimeError, match="not fitted"):
        LocalAdaptiveROMs().run(temps[0], TIMES)
    d = LocalAdaptiveROMs(2).fit(fom, trajs, temperatures=temps)
    with pytest.raises(ValueError, match="calibrate"):
        d.run(temps[0], TIMES)
