"""Empirical cubature (rom.adaptive.cubature): integration accuracy, exactness on polynomials, warm start,
independence of the rank count (quadrature points distributed by columns)."""

from __future__ import annotations

import numpy as np
import pytest

from rom.adaptive import empirical_cubature
from rom.parallel import row_range


def local_columns(G, w, comm):
    """This rank's contiguous block of quadrature points (columns of G, entries of w)."""
    start, stop = row_range(G.shape[1], comm)
    return np.array(G[:, start:stop]), np.array(w[start:stop])


def legendre_integrands(rng, x, n_g, degree):
    """Random combinations of Legendre polynomials on [0, 1]: rank degree + 1."""
    basis = np.polynomial.legendre.legvander(2 * x - 1, degree).T  # (degree+1, n_q)
    return rng.standard_normal((n_g, degree + 1)) @ basis


def smooth_integrands(rng, n_g=30, n_q=1500, degree=9, return_x=False):
    """Integrands at random points with random positive weights."""
    x = np.sort(rng.uniform(0.0, 1.0, n_q))
    w = rng.uniform(0.5, 1.5, n_q)
    w /= w.sum()
    G = legendre_integrands(rng, x, n_g, degree)
    return (G, w, x) if return_x else (G, w)


@pytest.mark.mpi
@pytest.mark.partition
def test_reduced_rule_integrates_every_training_integrand(comm, rng):
    G, w = smooth_integrands(rng)
    tol = 1e-6
    res = empirical_cubature(*local_columns(G, w, comm), tol=tol, comm=comm)
    b = G @ w
    err = np.linalg.norm(G[:, res.points] @ res.weights - b)
    assert err <= tol * np.linalg.norm(b)
    assert res.residual <= tol
    # the volume row is integrated too (include_volume): relative volume error <= tol
    assert abs(res.weights.sum() - w.sum()) <= tol * w.sum()
    assert np.all(res.weights > 0)
    assert np.all(np.diff(res.points) > 0)  # sorted, unique
    assert res.points.size <= 10 + 1  # at most rank(G) + volume row points (NNLS basic solution)


def composite_gauss(n_el, n_gp):
    xg, wg = np.polynomial.legendre.leggauss(n_gp)
    h = 1.0 / n_el
    left = np.arange(n_el) * h
    x = (left[:, None] + h * (xg[None, :] + 1) / 2).ravel()
    w = np.tile(wg * h / 2, n_el)
    return x, w


def test_polynomials_integrated_exactly_on_gauss_grid():
    x, w = composite_gauss(40, 4)  # exact up to degree 7
    degree = 7
    G = np.vander(x, degree + 1, increasing=True).T  # rows x^k
    res = empirical_cubature(G, w, tol=1e-13, include_volume=False)
    exact = 1.0 / np.arange(1, degree + 2)  # analytic integrals of x^k on [0, 1]
    approx = (x[res.points][None, :] ** np.arange(degree + 1)[:, None]) @ res.weights
    np.testing.assert_allclose(approx, exact, rtol=0, atol=1e-10)
    assert np.all(res.weights > 0)
    assert res.points.size <= degree + 1


def test_warm_start_keeps_most_points_and_meets_tol(rng):
    G, w, x = smooth_integrands(rng, n_g=20, degree=7, return_x=True)
    tol = 1e-6
    first = empirical_cubature(G, w, tol=tol)
    # enrichment: a few new integrands of higher degree join the training set
    G2 = np.vstack([G, legendre_integrands(rng, x, 3, 9)])
    second = empirical_cubature(G2, w, tol=tol, initial_points=first.points)
    b = G2 @ w
    assert np.linalg.norm(G2[:, second.points] @ second.weights - b) <= tol * np.linalg.norm(b)
    kept = np.intersect1d(first.points, second.points).size
    assert kept >= 0.5 * first.points.size
    assert second.history[0][0] > 0  # started from the previous points, not from scratch


@pytest.mark.mpi
@pytest.mark.partition
def test_same_points_and_weights_at_any_rank_count(comm, rng):
    G, w = smooth_integrands(rng, n_g=25, n_q=900)
    serial = empirical_cubature(G, w, tol=1e-8)
    dist = empirical_cubature(*local_columns(G, w, comm), tol=1e-8, comm=comm)
    np.testing.assert_array_equal(dist.points, serial.points)
    np.testing.assert_allclose(dist.weights, serial.weights, rtol=1e-12, atol=0)


@pytest.mark.mpi
def test_invalid_inputs_raise_on_every_rank(comm, rng):
    G, w = smooth_integrands(rng, n_g=5, n_q=60)
    Gl, wl = local_columns(G, w, comm)
    bad = Gl.copy()
    if comm.rank == comm.size - 1:
        bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="G contains NaN"):
        empirical_cubature(bad, wl, comm=comm)
    with pytest.raises(ValueError, match="tol must lie in"):
        empirical_cubature(Gl, wl, tol=0.0, comm=comm)
    with pytest.raises(ValueError, match="initial_points must lie in"):
        empirical_cubature(Gl, wl, initial_points=[0, 60], comm=comm)
    with pytest.raises(ValueError, match="w must have shape"):
        empirical_cubature(Gl, wl[:-1], comm=comm)


def test_max_points_caps_the_rule_and_reports_its_residual(rng, caplog):
    G, w = smooth_integrands(rng, n_g=15, n_q=400)
    with caplog.at_level("WARNING", logger="rom.adaptive.cubature"):
        res = empirical_cubature(G, w, tol=1e-10, max_points=3, include_volume=False)
    assert res.points.size <= 3
    b = G @ w
    # reported residual = independent recomputation from the returned rule
    expected = np.linalg.norm(G[:, res.points] @ res.weights - b) / np.linalg.norm(b)
    assert res.residual == pytest.approx(expected, rel=1e-10)
    assert res.residual > 1e-10
    assert "stopped at" in caplog.text
