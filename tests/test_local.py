"""Local reduced bases (rom.local.bases) on synthetic translating pulses (numpy only).

References are independent: weighted SVDs and least squares from numpy.linalg on the full
data, the sine formula evaluated directly, brute-force nearest neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rom.local import LocalBases, OnlineCost, fit_online_cost
from rom.parallel import distribute_rows, row_range

N_X = 300
X_GRID = np.linspace(0.0, 1.0, N_X)
WEIGHTS = np.full(N_X, X_GRID[1] - X_GRID[0])
WEIGHTS[[0, -1]] *= 0.5  # trapezoid rule: the mass matrix of the grid
EPS = 1e-2


def _pulses(centres, amps, width=0.03):
    return amps * np.exp(-((X_GRID[:, None] - centres[None, :]) ** 2) / (2 * width**2))


@pytest.fixture
def data(rng):
    # jittered positions: equally spaced pulses put some snapshots at exactly equal sine
    # distance from two medoids, a tie that round-off breaks differently at each rank count
    centres = np.sort(0.15 + 0.7 * rng.random(48))
    amps = 1.0 + 0.5 * rng.random(48)
    return _pulses(centres, amps), centres


def _local_product(comm):
    """This rank's diagonal block of the (diagonal) mass matrix."""
    start, stop = row_range(N_X, comm)
    return sp.diags(WEIGHTS[start:stop])


def _ref_sv(X):
    return np.linalg.svd(np.sqrt(WEIGHTS)[:, None] * X, compute_uv=False)


def _ref_size(X, eps):
    """Smallest N with sum_{n>N} s_n^2 <= eps^2 ||X||_M^2 (numpy SVD)."""
    s2 = _ref_sv(X) ** 2
    tails = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
    return int(np.flatnonzero(tails <= eps**2 * s2.sum())[0])


def _ref_projection_error(B, x):
    """min_c ||x - B c||_M / ||x||_M by weighted least squares (numpy lstsq)."""
    w = np.sqrt(WEIGHTS)
    c = np.linalg.lstsq(w[:, None] * B, w * x, rcond=None)[0]
    return np.linalg.norm(w * (x - B @ c)) / np.linalg.norm(w * x)


def test_sine_local_bases_need_fewer_modes_than_one_global_basis(data):
    """The claim of docs/theory.md §3: on translating pulses, K = 4 sine k-medoids clusters
    need at most half the modes of one global basis for the same relative error; each size is
    the one a numpy SVD of the cluster gives, and each cluster meets the tolerance."""
    X, centres = data
    M = sp.diags(WEIGHTS)
    lb = LocalBases(clustering="sine-kmedoids", n_clusters=4, rel_l2_err=EPS, product=M).fit(X)
    assert lb.n_clusters_ == 4 and lb.cluster_sizes_.sum() == X.shape[1]
    assert lb.global_basis_size_ == _ref_size(X, EPS)
    for k in range(4):
        Xk = X[:, lb.labels_ == k]
        assert lb.basis_sizes_[k] == _ref_size(Xk, EPS)
        B = lb.bases_[k]
        np.testing.assert_allclose(B.T @ (WEIGHTS[:, None] * B), np.eye(B.shape[1]), atol=1e-10)
        # relative Frobenius projection error of the cluster (numpy reference) <= eps
        w = np.sqrt(WEIGHTS)[:, None]
        R = Xk - B @ (B.T @ (WEIGHTS[:, None] * Xk))
        assert np.linalg.norm(w * R) <= EPS * np.linalg.norm(w * Xk) * (1 + 1e-10)
    assert 2 * lb.basis_sizes_.max() <= lb.global_basis_size_
    # sine clusters are contiguous in the pulse position (the data's only shape parameter)
    order = lb.labels_[np.argsort(centres)]
    assert np.count_nonzero(np.diff(order)) == 3


def test_online_cost_fit_recovers_the_model_and_sets_the_estimate(data):
    """c(N) = c0 + c3 N^3 is recovered from exact timings (relative 1e-8); with a pure
    overhead c(N) = c0 local bases gain nothing (eta = 1), with N^3 they gain the formula."""
    sizes = [1, 2, 4, 8, 16, 32, 64]
    truth = [3e-4 + 2e-9 * n**3 for n in sizes]
    c = fit_online_cost(sizes, truth)
    assert np.all(c.coefficients >= 0)
    np.testing.assert_allclose(
        [c(n) for n in (3, 20, 50)], [3e-4 + 2e-9 * n**3 for n in (3, 20, 50)], rtol=1e-8
    )
    # noisy timings: still non-negative coefficients, non-decreasing, within the noise
    noisy = np.array(truth) * (1 + 0.05 * np.random.default_rng(1).standard_normal(len(sizes)))
    cn = fit_online_cost(sizes, noisy)
    assert np.all(cn.coefficients >= 0) and np.all(np.diff([cn(n) for n in range(1, 70)]) >= 0)
    np.testing.assert_allclose([cn(n) for n in sizes], truth, rtol=0.2)
    X, _ = data
    lb = LocalBases(
        clustering="sine-kcenter", n_clusters=4, rel_l2_err=EPS, product=sp.diags(WEIGHTS)
    ).fit(X)
    overhead = OnlineCost(coefficients=np.array([1e-3, 0.0, 0.0, 0.0]))
    assert lb.efficiency_estimate(cost=overhead) == pytest.approx(1.0, rel=1e-12)
    cubic = OnlineCost(coefficients=np.array([0.0, 0.0, 0.0, 1.0]))
    assert lb.efficiency_estimate(cost=cubic) == pytest.approx(lb.efficiency_estimate(), rel=1e-12)
    with pytest.raises(ValueError, match="two or more sizes"):
        fit_online_cost([4, 4], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="positive"):
        fit_online_cost([1, 2], [1e-3, float("nan")])


def test_efficiency_estimate_below_one_and_exactly_one_for_a_single_cluster(data):
    """eta(K=1) = 1 exactly; for K = 4 it equals the formula with numpy-SVD sizes and is < 1."""
    X, _ = data
    M = sp.diags(WEIGHTS)
    one = LocalBases(clustering="sine-kmedoids", n_clusters=1, rel_l2_err=EPS, product=M).fit(X)
    assert one.efficiency_estimate() == 1.0
    lb = LocalBases(clustering="sine-kcenter", n_clusters=4, rel_l2_err=EPS, product=M).fit(X)
    n1 = _ref_size(X, EPS)
    ref = (
        sum(
            np.count_nonzero(lb.labels_ == k)
            / X.shape[1]
            * _ref_size(X[:, lb.labels_ == k], EPS) ** 3
            for k in range(4)
        )
        / n1**3
    )
    assert lb.efficiency_estimate() == pytest.approx(ref, rel=1e-12)
    assert lb.efficiency_estimate() < 0.5
    # a selection cost is charged on top (in units of c(N))
    assert lb.efficiency_estimate(selection_cost=n1**3) == pytest.approx(ref + 1.0, rel=1e-12)
    # a looser tolerance: sizes from the stored spectra, checked against numpy
    local, glob = lb.sizes_for(1e-1)
    assert glob == _ref_size(X, 1e-1)
    assert [int(v) for v in local] == [_ref_size(X[:, lb.labels_ == k], 1e-1) for k in range(4)]


def test_selection_by_snapshot_picks_the_lowest_projection_error(data):
    """select(u, method='projection') = argmin of numpy least-squares errors; 'medoid' = the
    nearest medoid by the sine formula evaluated directly; projection_error agrees."""
    X, _ = data
    M = sp.diags(WEIGHTS)
    lb = LocalBases(clustering="sine-kmedoids", n_clusters=4, rank=5, product=M).fit(X)
    new = _pulses(np.array([0.2, 0.37, 0.52, 0.66, 0.81]), np.array([1.0, 0.7, 1.3, 2.0, 0.9]))
    errs = np.array([[_ref_projection_error(B, u) for u in new.T] for B in lb.bases_])
    np.testing.assert_allclose(lb.projection_errors(new), errs, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(lb.projection_error(new), errs.min(axis=0), rtol=1e-8)
    med = X[:, lb.medoid_indices_]
    for j, u in enumerate(new.T):
        assert lb.select(u, method="projection") == int(np.argmin(errs[:, j]))
        cos = (med.T @ (WEIGHTS * u)) / np.sqrt((med.T**2 @ WEIGHTS) * (u**2 @ WEIGHTS))
        assert lb.select(u) == int(np.argmin(np.sqrt(1 - cos**2)))
    np.testing.assert_array_equal(
        np.argmin(errs, axis=0)[[0, 4]], [lb.select(new[:, 0]), lb.select(new[:, 4])]
    )


def test_selection_by_parameter_is_the_nearest_training_parameter_cluster(data):
    X, centres = data
    lb = LocalBases(clustering="sine-kmedoids", n_clusters=3, rank=4).fit(X, params=centres)
    for mu in (0.1, 0.33, 0.5001, 0.9):
        nearest = int(np.argmin(np.abs(centres - mu)))
        assert lb.select(mu=np.array([mu])) == lb.labels_[nearest]


def test_trajectories_are_clustered_whole(rng):
    """With groups, whole trajectories go to one cluster, and each trajectory's projection
    error on its cluster's basis matches a numpy least-squares reference."""
    speeds = np.array([0.1, 0.12, 0.5, 0.55, 0.3, 0.11, 0.52, 0.31])
    t = np.linspace(0.0, 0.5, 6)
    X = np.column_stack([_pulses(0.2 + s * t, np.ones(6)) for s in speeds])
    groups = np.repeat(np.arange(8), 6)
    M = sp.diags(WEIGHTS)
    lb = LocalBases(clustering="sine-kcenter", n_clusters=3, rank=6, product=M)
    lb.fit(X, params=np.repeat(speeds, 6), groups=groups)
    assert lb.labels_.shape == (8,)
    # the space-time sine dissimilarity, from the flattened weighted trajectories directly
    Z = np.stack([(np.sqrt(WEIGHTS)[:, None] * X[:, groups == g]).ravel() for g in range(8)])
    Z /= np.linalg.norm(Z, axis=1)[:, None]
    ref = np.sqrt(np.clip(1.0 - (Z @ Z.T) ** 2, 0.0, 1.0))
    np.testing.assert_allclose(lb.dissimilarity_, ref, atol=1e-7)
    np.testing.assert_array_equal(lb.column_labels_, np.repeat(lb.labels_, 6))
    # slow, medium and fast trajectories form the three clusters
    assert len({lb.labels_[i] for i in (0, 1, 5)}) == 1
    assert len({lb.labels_[i] for i in (2, 3, 6)}) == 1
    assert len(set(lb.labels_.tolist())) == 3 and lb.medoids_[0].shape == (N_X, 6)
    e = lb.projection_error(X, labels=lb.column_labels_)
    ref = [_ref_projection_error(lb.bases_[lb.column_labels_[j]], X[:, j]) for j in range(48)]
    np.testing.assert_allclose(e, ref, rtol=1e-8, atol=1e-12)
    # medoid selection of a whole trajectory goes to its own cluster
    assert lb.select(X[:, groups == 3]) == lb.labels_[3]
    with pytest.raises(ValueError, match="T=6 columns"):
        lb.select(X[:, 0])


def test_merge_clusters_meet_the_certified_error():
    """clustering='merge': each cluster's best rank-r relative error (numpy SVD) is <= eps."""
    speeds = np.array([0.1, 0.12, 0.5, 0.55, 0.3, 0.11, 0.52, 0.31])
    t = np.linspace(0.0, 0.5, 6)
    X = np.column_stack([_pulses(0.2 + s * t, np.ones(6)) for s in speeds])
    groups = np.repeat(np.arange(8), 6)
    r, eps = 6, 0.07
    lb = LocalBases(clustering="merge", rank=r, rel_l2_err=eps, product=sp.diags(WEIGHTS))
    lb.fit(X, groups=groups)
    assert 1 <= lb.n_clusters_ < 8
    for k in range(lb.n_clusters_):
        s2 = _ref_sv(X[:, lb.column_labels_ == k]) ** 2
        assert np.sqrt(s2[r:].sum() / s2.sum()) <= eps * (1 + 1e-8)


@pytest.mark.mpi
@pytest.mark.partition
@pytest.mark.parametrize("clustering", ["sine-kmedoids", "sine-kcenter"])
def test_same_clusters_and_bases_at_any_rank_count(comm, data, clustering):
    """Row-distributed fit = serial fit on the full data: labels, medoids, sizes, spectra."""
    X, centres = data
    ref = LocalBases(
        clustering=clustering, n_clusters=4, rel_l2_err=EPS, product=sp.diags(WEIGHTS)
    ).fit(X, params=centres)
    lb = LocalBases(
        clustering=clustering, n_clusters=4, rel_l2_err=EPS, product=_local_product(comm), comm=comm
    )
    lb.fit(distribute_rows(X, comm), params=centres)
    np.testing.assert_array_equal(lb.labels_, ref.labels_)
    np.testing.assert_array_equal(lb.medoid_indices_, ref.medoid_indices_)
    np.testing.assert_array_equal(lb.basis_sizes_, ref.basis_sizes_)
    for a, b in zip(lb.singular_values_, ref.singular_values_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * b[0])
    new = distribute_rows(_pulses(np.array([0.3, 0.7]), np.ones(2)), comm)
    np.testing.assert_allclose(
        lb.projection_errors(new),
        ref.projection_errors(_pulses(np.array([0.3, 0.7]), np.ones(2))),
        rtol=1e-8,
        atol=1e-12,
    )
    for j in range(2):
        full = _pulses(np.array([[0.3, 0.7][j]]), np.ones(1))[:, 0]
        assert lb.select(new[:, j]) == ref.select(full)
        assert lb.select(new[:, j], method="projection") == ref.select(full, method="projection")


@pytest.mark.mpi
def test_invalid_input_raises_on_every_rank(comm, data):
    X, _ = data
    Xl = distribute_rows(X, comm)
    with pytest.raises(ValueError, match="clustering must be one of"):
        LocalBases(clustering="spectral", rank=3, comm=comm).fit(Xl)
    with pytest.raises(ValueError, match="give rank= or rel_l2_err="):
        LocalBases(comm=comm).fit(Xl)
    with pytest.raises(ValueError, match="exceeds the number of items"):
        LocalBases(n_clusters=100, rank=3, comm=comm).fit(Xl)
    with pytest.raises(ValueError, match="needs params"):
        LocalBases(clustering="kmeans-parameters", rank=3, comm=comm).fit(Xl)
    with pytest.raises(ValueError, match="same number of columns"):
        LocalBases(rank=3, comm=comm).fit(Xl, groups=np.r_[np.zeros(40), np.ones(8)])
    bad = Xl.copy()
    if comm.rank == comm.size - 1:
        bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        LocalBases(rank=3, comm=comm).fit(bad)
    with pytest.raises(RuntimeError, match="not fitted"):
        LocalBases(rank=3).select(mu=np.zeros(1))
