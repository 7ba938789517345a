"""QDEIM / leverage points (rom.adaptive.points), the Gappy-POD indicator and its calibration
(rom.adaptive.indicator), against LAPACK least squares, the Drmač-Gugercin bound and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from rom.adaptive import GappyIndicator
from rom.adaptive import calibrate
from rom.adaptive import leverage_points
from rom.adaptive import qdeim
from rom.parallel import distribute_rows


def smooth_basis(rng, n_q, n_p):
    """Orthonormal basis of smooth fields (random combinations of cosines) at n_q points."""
    x = np.linspace(0.0, 1.0, n_q)
    k = np.arange(3 * n_p)
    F = np.cos(np.pi * np.outer(x, k)) @ rng.standard_normal((3 * n_p, n_p))
    Q, _ = np.linalg.qr(F)
    return Q


# --------------------------------------------------------------------------- QDEIM


@pytest.mark.mpi
@pytest.mark.partition
def test_qdeim_points_are_lapack_pivots_and_meet_drmac_gugercin_bound(comm, rng):
    n_q, n_p = 400, 8
    Phi = smooth_basis(rng, n_q, n_p)
    idx = qdeim(distribute_rows(Phi, comm), comm=comm)
    _, _, piv = scipy.linalg.qr(Phi.T, pivoting=True)
    np.testing.assert_array_equal(idx, piv[:n_p])
    assert np.unique(idx).size == n_p
    inv_norm = np.linalg.norm(np.linalg.inv(Phi[idx]), 2)
    # Drmac & Gugercin (2016), Theorem 2.1
    bound = np.sqrt(n_q - n_p + 1) * np.sqrt(4.0**n_p + 6 * n_p - 1) / 3
    assert inv_norm <= bound
    assert inv_norm <= np.sqrt(n_q * n_p)  # the "modest" factor observed in practice
    # DEIM error bound ||f - P f|| <= ||(Phi[I])^{-1}|| ||(I - Phi Phi^T) f|| on random f
    f = rng.standard_normal(n_q)
    Pf = Phi @ np.linalg.solve(Phi[idx], f[idx])
    assert np.linalg.norm(f - Pf) <= inv_norm * np.linalg.norm(f - Phi @ (Phi.T @ f)) * (1 + 1e-12)


@pytest.mark.mpi
@pytest.mark.partition
def test_qdeim_matches_lapack_on_a_wider_random_basis(comm, rng):
    """The distributed pivoted Gram-Schmidt picks the rows geqp3 picks on Phi^T."""
    Phi = np.linalg.qr(rng.standard_normal((3000, 30)))[0]
    idx = qdeim(distribute_rows(Phi, comm), comm=comm)
    _, _, piv = scipy.linalg.qr(Phi.T, pivoting=True, mode="economic")
    np.testing.assert_array_equal(idx, piv[:30])


@pytest.mark.mpi
@pytest.mark.partition
def test_leverage_points_match_brute_force(comm, rng):
    n_q, n_p = 300, 4
    Phi = smooth_basis(rng, n_q, n_p)
    exclude = np.array([3, 17, 150])
    got = leverage_points(distribute_rows(Phi, comm), 10, exclude=exclude, comm=comm)
    lev = np.sum(Phi**2, axis=1)
    lev[exclude] = -1.0
    expected = np.argsort(-lev, kind="stable")[:10]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.mpi
def test_qdeim_rejects_rank_deficient_basis(comm, rng):
    Phi = smooth_basis(rng, 100, 3)
    Phi = np.hstack([Phi, Phi[:, :1]])
    with pytest.raises(ValueError, match="rank deficient"):
        qdeim(distribute_rows(Phi, comm), comm=comm)


# --------------------------------------------------------------------------- indicator


def lstsq_indicator(Phi, mask, p_hat):
    """Reference: relative residual of the LAPACK least-squares fit on the mask."""
    c, *_ = np.linalg.lstsq(Phi[mask], p_hat, rcond=None)
    return np.linalg.norm(p_hat - Phi[mask] @ c) / np.linalg.norm(p_hat), c


@pytest.mark.mpi
@pytest.mark.partition
def test_indicator_vanishes_inside_span_and_reconstructs(comm, rng):
    n_q, n_p = 500, 5
    Phi = smooth_basis(rng, n_q, n_p)
    points = rng.choice(n_q, size=4, replace=False)
    ind = GappyIndicator(distribute_rows(Phi, comm), points, comm=comm)
    mask = ind.mask_
    assert mask.size >= 2 * n_p
    assert set(points) <= set(mask) and set(qdeim(Phi)) <= set(mask)
    c = rng.standard_normal(n_p)
    p = Phi @ c
    assert ind.evaluate(p[mask]) <= 1e-12
    np.testing.assert_allclose(ind.reconstruct(p[mask]), c, rtol=0, atol=1e-10)


@pytest.mark.mpi
@pytest.mark.partition
def test_indicator_matches_lstsq_and_grows_with_outside_component(comm, rng):
    n_q, n_p = 500, 5
    Phi = smooth_basis(rng, n_q, n_p)
    ind = GappyIndicator(distribute_rows(Phi, comm), rng.choice(n_q, 6, replace=False), comm=comm)
    mask = ind.mask_
    v = rng.standard_normal(n_q)
    v -= Phi @ (Phi.T @ v)  # outside span Phi
    p0 = Phi @ rng.standard_normal(n_p)
    E = []
    for a in np.logspace(-6, 0, 7):
        p_hat = (p0 + a * v)[mask]
        ref, c_ref = lstsq_indicator(Phi, mask, p_hat)
        Ek = ind.evaluate(p_hat)
        np.testing.assert_allclose(Ek, ref, rtol=1e-9)
        np.testing.assert_allclose(ind.reconstruct(p_hat), c_ref, rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            ind.group_indicator(p_hat), 0.5 * ind.residual_norm(p_hat) ** 2 / np.linalg.norm(p_hat)
        )
        E.append(Ek)
    assert np.all(np.diff(E) > 0)
    # a batch of steps gives the same values column by column
    P = np.column_stack([(p0 + a * v)[mask] for a in np.logspace(-6, 0, 7)])
    # r = p - Q Q^T p carries an absolute rounding error ~ eps ||p||
    np.testing.assert_allclose(ind.evaluate(P), E, rtol=0, atol=1e-14)


def test_no_margin_is_refused_and_gives_a_zero_indicator(rng):
    n_q, n_p = 200, 4
    Phi = smooth_basis(rng, n_q, n_p)
    with pytest.raises(ValueError, match="identically 0"):
        GappyIndicator(Phi, [], margin=0)
    ind = GappyIndicator(Phi, [], margin=0, allow_no_margin=True)
    assert ind.mask_.size == n_p  # QDEIM points only
    p_hat = rng.standard_normal(n_p)  # any values at all: the square fit is exact
    assert ind.residual_norm(p_hat) <= 1e-12 * np.linalg.norm(p_hat)


def test_elastic_phase_uses_p_ref(rng):
    Phi = smooth_basis(rng, 100, 3)
    ind = GappyIndicator(Phi, [1, 2, 3], p_ref=1e-6)
    assert ind.evaluate(np.zeros(ind.mask_.size)) == 0.0
    tiny = np.full(ind.mask_.size, 1e-9)
    np.testing.assert_allclose(ind.evaluate(tiny), ind.residual_norm(tiny) / 1e-6, rtol=1e-14)


def test_online_arrays_do_not_depend_on_n_q(rng):
    n_p = 4
    points = np.arange(0, 40, 5)
    shapes = []
    for n_q in (10**3, 10**5):
        Phi = smooth_basis(rng, n_q, n_p)
        ind = GappyIndicator(Phi, points)
        arrays = {k: v for k, v in vars(ind).items() if isinstance(v, np.ndarray)}
        n_mask = ind.mask_.size
        assert n_mask <= points.size + n_p  # points, QDEIM points, no leverage needed
        for name, a in arrays.items():
            assert max(a.shape) <= n_mask, (name, a.shape)
        assert ind.Q_.shape == (n_mask, n_p) and ind.R_.shape == (n_p, n_p)
        shapes.append({k: v.ndim for k, v in arrays.items()})
        p_hat = rng.standard_normal(n_mask)
        np.testing.assert_allclose(
            ind.evaluate(p_hat), lstsq_indicator(Phi, ind.mask_, p_hat)[0], rtol=1e-9
        )
    assert shapes[0] == shapes[1]


@pytest.mark.mpi
def test_indicator_input_errors_raise_on_every_rank(comm, rng):
    Phi = smooth_basis(rng, 100, 3)
    local = distribute_rows(Phi, comm)
    with pytest.raises(ValueError, match="points must lie in"):
        GappyIndicator(local, [0, 100], comm=comm)
    bad = local.copy()
    if comm.rank == 0:
        bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Phi_p contains NaN or Inf"):
        GappyIndicator(bad, [0], comm=comm)
    ind = GappyIndicator(local, [0, 1], comm=comm)
    with pytest.raises(ValueError, match="p_hat must have shape"):
        ind.evaluate(np.ones(ind.mask_.size + 1))


# --------------------------------------------------------------------------- calibration


def test_calibration_exact_monotone_relation():
    """One signal, e = 0.1 E^2: the threshold is the largest sample below the analytic inverse
    sqrt(target / 0.1), divided by the safety factor."""
    E = np.linspace(0.01, 1.0, 200)
    e = 0.1 * E**2
    target = 0.02
    res = calibrate(E, e, target=target, safety=2.0)
    expected = E[E <= np.sqrt(target / 0.1)].max() / 2.0
    assert res.thresholds[0] == expected
    assert res.tol == 1.0 and res.confirmed and res.n_above_target == np.sum(e > target)
    assert res.spearman == pytest.approx(1.0)
    np.testing.assert_allclose(res.evaluate(E[:, None]), E / expected, rtol=1e-15)


def test_calibration_box_accepts_no_step_above_target(rng):
    """Several noisy signals: no calibration step above the target is accepted (the
    conservative rule, checked on the data), the accepted steps are many, and every accepted
    step lies inside the box given by the thresholds."""
    n = 1500
    e = np.exp(rng.uniform(np.log(1e-4), 0.0, n))
    S = np.column_stack(
        [
            e * np.exp(0.5 * rng.standard_normal(n)),  # informative, noisy
            np.where(rng.random(n) < 0.8, e, 1e-3 * rng.random(n)),  # blind on 20 % of steps
            rng.random(n),  # uninformative
        ]
    )
    target = 1e-2
    res = calibrate(S, e, target=target, safety=1.0, names=("a", "b", "c"))
    eta = res.evaluate(S)
    accepted = eta <= 1.0
    assert not np.any(accepted & (e > target))
    assert accepted.sum() == res.n_accepted >= 0.2 * n
    assert np.all(S[accepted] <= res.thresholds)
    halved = calibrate(S, e, target=target, safety=2.0)
    np.testing.assert_array_equal(halved.thresholds, res.thresholds / 2.0)
    assert res.spearman_signals["a"] == pytest.approx(scipy.stats.spearmanr(S[:, 0], e).statistic)


def test_calibration_without_a_miss_rests_on_the_safety_factor(caplog):
    e = np.linspace(1e-4, 1e-3, 50)
    res = calibrate(np.column_stack([e, 2 * e]), e, target=1e-2, safety=4.0)
    assert not res.confirmed and "no step above the target" in caplog.text
    np.testing.assert_allclose(res.thresholds, [1e-3 / 4, 2e-3 / 4])
    assert np.isinf(res.evaluate(np.array([np.nan, 0.0])))


def test_calibration_input_errors():
    with pytest.raises(ValueError, match="n >= 2"):
        calibrate(np.ones(3), np.ones(4), target=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        calibrate(-np.ones(3), np.ones(3), target=0.1)
    with pytest.raises(ValueError, match="safety"):
        calibrate(np.ones(3), np.ones(3), target=0.1, safety=0.5)
