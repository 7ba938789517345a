"""Local reduced bases (rom.local.bases) on synthetic translating pulses (numpy only).

References are independent: weighted SVDs and least squares from numpy.linalg on the full
data, the sine formula evaluated directly, brute-force nearest neighbours.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rom.local import LocalBases
from rom.local import OnlineCost
from rom.local import TimeWindowBases
from rom.local import fit_online_cost
from rom.parallel import distribute_rows
from rom.parallel import row_range

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
    # route() from the first two fields of a trajectory: the medoids' first two fields, and
    # the space-time projection errors of numpy least squares (stacked weighted fields)
    U = X[:, groups == 3][:, :2]
    s = lb.route(U, n_candidates=3)
    w = np.sqrt(WEIGHTS)
    ref = []
    for B in lb.bases_:
        c = np.linalg.lstsq(w[:, None] * B, w[:, None] * U, rcond=None)[0]
        ref.append(np.linalg.norm(w[:, None] * (U - B @ c)) / np.linalg.norm(w[:, None] * U))
    np.testing.assert_allclose(s.errors, ref, rtol=1e-8, atol=1e-12)
    assert s.rule == "candidates" and s.cluster == int(np.argmin(ref))


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


# ------------------------------------------------------------------ checked selection (route)
# Three families of pulses of width 0.05, clustered by their family label (k-means on the
# parameters): family A has a dense core at 0.15-0.19 (its medoid) and a sparse tail reaching
# 0.56, family B sits at 0.62-0.80. A held-out pulse at 0.555 lies in A's tail, but its
# nearest medoid is B's: nearest-medoid selection misroutes it.
_TAIL = np.r_[np.linspace(0.15, 0.19, 8), np.arange(0.22, 0.57, 0.02)]
_ROUTE_CENTRES = np.r_[_TAIL, np.linspace(0.62, 0.80, 10), np.linspace(0.86, 0.92, 6)]
_ROUTE_FAMILY = np.repeat([0.0, 1.0, 2.0], [len(_TAIL), 10, 6])


def _wide(centres):
    return _pulses(np.asarray(centres, dtype=float), np.ones(len(centres)), width=0.05)


def _route_fit(comm=None, distribute=False, **kw):
    X = _wide(_ROUTE_CENTRES)
    M = sp.diags(WEIGHTS) if comm is None else _local_product(comm)
    lb = LocalBases(
        clustering="kmeans-parameters", n_clusters=3, rel_l2_err=EPS, product=M, comm=comm, **kw
    )
    return lb.fit(distribute_rows(X, comm) if distribute else X, params=_ROUTE_FAMILY), X


def _ref_basis(X, eps=EPS):
    """M-orthonormal POD basis of X truncated by the energy rule (numpy SVD)."""
    w = np.sqrt(WEIGHTS)[:, None]
    U = np.linalg.svd(w * X, full_matrices=False)[0]
    return U[:, : _ref_size(X, eps)] / w


def _ref_sine(u, V):
    cos = (V.T @ (WEIGHTS * u)) / np.sqrt((V.T**2 @ WEIGHTS) * (u**2 @ WEIGHTS))
    return np.sqrt(np.clip(1 - cos**2, 0.0, 1.0))


def test_route_recovers_a_field_that_the_nearest_medoid_misroutes():
    """Precondition: the nearest medoid (sine formula evaluated directly) sends the held-out
    pulse to a basis with >= 10x the best local projection error (numpy least squares over
    every basis). route() then picks a basis within 1.5x of the best, by widening beyond
    the two nearest medoids, and scores what it reports."""
    lb, X = _route_fit(fallback=True)
    u = _wide([0.555])[:, 0]
    errs = np.array([_ref_projection_error(B, u) for B in lb.bases_])
    nearest = int(np.argmin(_ref_sine(u, X[:, lb.medoid_indices_])))
    assert lb.select(u) == nearest
    assert errs[nearest] >= 0.3 and errs[nearest] >= 10 * errs.min()
    s = lb.route(u, n_candidates=2)
    assert s.cluster >= 0 and errs[s.cluster] <= 1.5 * errs.min()
    assert s.rule == "widened" and s.candidates[0] == nearest and len(s.candidates) == 2
    np.testing.assert_allclose(s.errors, errs, rtol=1e-8)
    assert s.error <= s.threshold
    # with every medoid a candidate the same basis wins at the first stage
    s3 = lb.route(u, n_candidates=3)
    assert (s3.cluster, s3.rule) == (s.cluster, "candidates")
    # without fallback there is no threshold: the best of the candidates, as scored
    plain, _ = _route_fit()
    p = plain.route(u, n_candidates=2)
    assert p.threshold is None and p.rule == "candidates" and plain.global_basis_ is None
    cand = list(p.candidates)
    assert p.cluster == cand[int(np.argmin(errs[cand]))]


def test_route_falls_back_to_the_global_basis_when_no_local_basis_is_trusted():
    """A field made of two pulses in different families: no local basis reaches the trust
    threshold, the global POD basis (numpy SVD of all the data) represents it, and route()
    returns it. The threshold is the largest leave-one-out error of the training items
    (each refitted by numpy SVD without it) times trust_factor."""
    lb, X = _route_fit(fallback=True, trust_factor=1.5)
    loo = np.full(len(_ROUTE_CENTRES), np.nan)
    for i in range(len(_ROUTE_CENTRES)):
        rest = np.flatnonzero((lb.labels_ == lb.labels_[i]) & (np.arange(X.shape[1]) != i))
        loo[i] = _ref_projection_error(_ref_basis(X[:, rest]), X[:, i])
    np.testing.assert_allclose(lb.loo_errors_, loo, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lb.threshold_, 1.5 * loo.max(), rtol=1e-6)
    u = (_wide([0.17]) + _wide([0.7]))[:, 0]
    errs = np.array([_ref_projection_error(B, u) for B in lb.bases_])
    g = _ref_projection_error(_ref_basis(X), u)
    assert errs.min() > lb.threshold_ and g < 0.1 * errs.min()
    s = lb.route(u)
    assert (s.cluster, s.rule) == (-1, "global")
    np.testing.assert_allclose(s.error, g, rtol=1e-6, atol=1e-10)
    assert lb.basis(-1).shape[1] == _ref_size(X, EPS)
    # a field of the training family stays local
    s = lb.route(_wide([0.7])[:, 0])
    assert s.rule == "candidates" and s.cluster == lb.labels_[np.argmin(abs(_ROUTE_CENTRES - 0.7))]


def test_overlapping_clusters_train_on_the_boundary_items(data):
    """overlap=omega: item i joins cluster k when delta(i, m_k) <= (1 + omega) delta(i, m_own)
    (sine formula evaluated directly); each basis has the numpy POD size of its members plus
    those items."""
    X, _ = data
    M = sp.diags(WEIGHTS)
    lb = LocalBases(
        clustering="sine-kmedoids", n_clusters=4, rel_l2_err=EPS, product=M, overlap=0.02
    ).fit(X)
    D = np.stack([_ref_sine(X[:, m], X) for m in lb.medoid_indices_], axis=1)
    own = D[np.arange(X.shape[1]), lb.labels_]
    n_extra = 0
    for k in range(4):
        extra = np.flatnonzero((lb.labels_ != k) & (D[:, k] <= 1.02 * own))
        np.testing.assert_array_equal(lb.overlap_items_[k], extra)
        cols = np.flatnonzero(lb.labels_ == k)
        assert lb.basis_sizes_[k] == _ref_size(X[:, np.union1d(cols, extra)], EPS)
        n_extra += len(extra)
    assert n_extra > 0  # the test exercises the overlap
    plain = LocalBases(clustering="sine-kmedoids", n_clusters=4, rel_l2_err=EPS, product=M)
    assert all(len(e) == 0 for e in plain.fit(X).overlap_items_)


@pytest.mark.mpi
@pytest.mark.partition
def test_route_gives_the_same_selection_at_any_rank_count(comm):
    """Row-distributed route() = serial route(): cluster, rule, candidates; errors and the
    threshold to round-off."""
    ref, X = _route_fit(fallback=True)
    lb, _ = _route_fit(comm, distribute=True, fallback=True)
    np.testing.assert_allclose(lb.threshold_, ref.threshold_, rtol=1e-8)
    for u in (_wide([0.555]), _wide([0.17]) + _wide([0.7]), _wide([0.3])):
        a, b = lb.route(distribute_rows(u, comm), n_candidates=2), ref.route(u, n_candidates=2)
        assert (a.cluster, a.rule, a.candidates) == (b.cluster, b.rule, b.candidates)
        np.testing.assert_allclose(a.errors, b.errors, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="n_candidates"):
        lb.route(distribute_rows(_wide([0.3]), comm), n_candidates=0)


# ------------------------------------------------------------------ time-local bases
# Pulses moving right at speeds 0.2..0.8 over T = 24 steps of dt = 1/24 from x = 0.1: early
# steps of all trajectories sit near the start, late ones spread over [0.3, 0.9].
_T = 24
_SPEEDS = np.linspace(0.2, 0.8, 10)


def _moving():
    t = np.arange(1, _T + 1) / _T
    centres = (0.1 + _SPEEDS[:, None] * t[None, :]).ravel()  # trajectory-major
    return _pulses(centres, np.ones(centres.size)), np.repeat(np.arange(len(_SPEEDS)), _T)


def test_time_windows_are_pod_bases_of_their_steps_and_need_fewer_modes():
    """Each window's basis has the numpy-SVD size of its steps of every trajectory (plus one
    step before), spans them to the tolerance, and the largest window basis is smaller than
    one global basis (numpy SVD) at the same tolerance."""
    X, groups = _moving()
    tw = TimeWindowBases(n_windows=4, rel_l2_err=EPS, product=sp.diags(WEIGHTS)).fit(X, groups)
    np.testing.assert_array_equal(tw.windows_, [[0, 6], [6, 12], [12, 18], [18, 24]])
    step = np.tile(np.arange(_T), len(_SPEEDS))
    for w, (a, b) in enumerate(tw.windows_):
        S = X[:, (step >= max(a - 1, 0)) & (step < b)]
        assert tw.basis_sizes_[w] == _ref_size(S, EPS)
        B = tw.bases_[w]
        np.testing.assert_allclose(B.T @ (WEIGHTS[:, None] * B), np.eye(B.shape[1]), atol=1e-10)
        err = np.sqrt(sum(_ref_projection_error(B, x) ** 2 * (x**2 @ WEIGHTS) for x in S.T))
        assert err <= EPS * np.sqrt(np.sum(S**2 * WEIGHTS[:, None])) * (1 + 1e-8)
        assert [tw.window_of(t) for t in range(a, b)] == [w] * (b - a)
    assert tw.basis_sizes_.max() < _ref_size(X, EPS)
    with pytest.raises(ValueError, match="t must be in"):
        tw.window_of(_T)
    with pytest.raises(ValueError, match="exceeds the number of steps"):
        TimeWindowBases(n_windows=_T + 1, rank=2).fit(X, groups)


class _LinearMap:
    """A stand-in reduced model: c^{k+1} = A c^k (records its calls)."""

    def __init__(self, A):
        self.A, self.calls = A, []

    def solve(self, mu, *, dt, n_steps, c0, t0):
        self.calls.append((n_steps, t0))
        C = np.empty((len(c0), n_steps + 1))
        C[:, 0] = c0
        for k in range(n_steps):
            C[:, k + 1] = self.A @ C[:, k]
        return C


def test_time_windows_switch_bases_by_the_m_orthogonal_projection():
    """transfer() is Psi_{w+1}^T M Psi_w (numpy); solve() runs each window from the previous
    window's last state projected onto the new basis, which reproduces the projection of a
    field in the span of both bases exactly."""
    X, groups = _moving()
    M = sp.diags(WEIGHTS)
    tw = TimeWindowBases(n_windows=3, rel_l2_err=EPS, product=M).fit(X, groups)
    sizes = [5, 6, 7]
    T = tw.transfer(sizes)
    for w in range(2):
        A, B = tw.basis(w, sizes[w]), tw.basis(w + 1, sizes[w + 1])
        np.testing.assert_allclose(T[w], B.T @ (WEIGHTS[:, None] * A), atol=1e-12)
    rng = np.random.default_rng(3)
    maps = [_LinearMap(0.1 * rng.standard_normal((n, n))) for n in sizes]
    c0 = rng.standard_normal(sizes[0])
    states = tw.solve(maps, None, dt=0.5, c0=c0, transfers=T)
    assert [m.calls for m in maps] == [[(8, 0.0)], [(8, 4.0)], [(8, 8.0)]]
    c = c0
    for w, A in enumerate(m.A for m in maps):
        ref = []
        for _ in range(8):
            c = A @ c
            ref.append(c)
        np.testing.assert_allclose(states[w], np.column_stack(ref), rtol=1e-12, atol=1e-14)
        if w < 2:
            B = tw.basis(w + 1, sizes[w + 1])
            u = tw.basis(w, sizes[w]) @ c  # reconstructed field, projected by least squares
            c = np.linalg.lstsq(np.sqrt(WEIGHTS)[:, None] * B, np.sqrt(WEIGHTS) * u, rcond=None)[0]
    with pytest.raises(ValueError, match="sizes must give"):
        tw.transfer([5, 6])


@pytest.mark.mpi
@pytest.mark.partition
def test_time_windows_identical_at_any_rank_count(comm):
    """Row-distributed fit = serial fit: windows, sizes, spectra, and the projection error
    of a new field on each window's basis (independent of the modes' signs)."""
    X, groups = _moving()
    ref = TimeWindowBases(n_windows=3, rel_l2_err=EPS, product=sp.diags(WEIGHTS)).fit(X, groups)
    tw = TimeWindowBases(n_windows=3, rel_l2_err=EPS, product=_local_product(comm), comm=comm)
    tw.fit(distribute_rows(X, comm), groups)
    np.testing.assert_array_equal(tw.windows_, ref.windows_)
    np.testing.assert_array_equal(tw.basis_sizes_, ref.basis_sizes_)
    for a, b in zip(tw.singular_values_, ref.singular_values_, strict=True):
        # from the Gram matrix, sigma_n carries an absolute error ~ u sigma_1^2 / sigma_n
        # (the sqrt(u) floor, docs/theory.md §1): 1e-12 sigma_1 is too tight at 1e-6 sigma_1
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9 * b[0])
    u = _pulses(np.array([0.5]), np.ones(1))[:, 0]
    ul = distribute_rows(u[:, None], comm)
    M = _local_product(comm)
    for w in range(3):
        B = tw.bases_[w]
        c = comm.allreduce(B.T @ (M @ ul[:, 0]))
        r = ul[:, 0] - B @ c
        e = np.sqrt(comm.allreduce(r @ (M @ r)) / comm.allreduce(ul[:, 0] @ (M @ ul[:, 0])))
        np.testing.assert_allclose(e, _ref_projection_error(ref.bases_[w], u), rtol=1e-8)
    T, Tref = tw.transfer(), ref.transfer()
    for a, b in zip(T, Tref, strict=True):  # equal up to the signs of the modes
        np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-10)
    with pytest.raises(ValueError, match="n_windows must"):
        TimeWindowBases(n_windows=0, rank=2, comm=comm).fit(distribute_rows(X, comm), groups)


def test_route_threshold_compares_the_first_fields_with_the_first_fields():
    """Trajectory items routed from their first m fields: tau(m) = largest relative error of
    the first m fields of a training item on its cluster's basis refitted without it (numpy
    SVD), tau(T) = threshold_, and tau(1) < tau(T) here (first fields are easier)."""
    speeds = np.array([0.1, 0.12, 0.5, 0.55, 0.3, 0.11, 0.52, 0.31])
    t = np.linspace(0.0, 0.5, 6)
    X = np.column_stack([_pulses(0.2 + s * t, np.ones(6)) for s in speeds])
    groups = np.repeat(np.arange(8), 6)
    lb = LocalBases(
        clustering="sine-kcenter",
        n_clusters=3,
        rel_l2_err=EPS,
        product=sp.diags(WEIGHTS),
        fallback=True,
    ).fit(X, params=np.repeat(speeds, 6), groups=groups)
    w = np.sqrt(WEIGHTS)[:, None]
    ref = np.zeros((8, 6))  # squared error and energy of each field, left out
    energy = np.zeros((8, 6))
    for i in range(8):
        rest = [g for g in range(8) if g != i and lb.labels_[g] == lb.labels_[i]]
        if not rest:
            ref[i] = np.nan
            continue
        B = _ref_basis(np.column_stack([X[:, groups == g] for g in rest]))
        U = X[:, groups == i]
        c = np.linalg.lstsq(w * B, w * U, rcond=None)[0]
        ref[i] = np.sum((w * (U - B @ c)) ** 2, axis=0)
        energy[i] = np.sum((w * U) ** 2, axis=0)
    fitted = np.isfinite(ref[:, 0])
    tau = [np.max(np.sqrt(ref[fitted, :m].sum(1) / energy[fitted, :m].sum(1))) for m in range(1, 7)]
    np.testing.assert_allclose([lb.threshold_for(m) for m in range(1, 7)], tau, rtol=1e-6)
    np.testing.assert_allclose(lb.threshold_, tau[-1], rtol=1e-12)
    assert tau[0] < tau[-1]
    s = lb.route(X[:, groups == 3][:, :2])
    np.testing.assert_allclose(s.threshold, tau[1], rtol=1e-6)
    with pytest.raises(ValueError, match="m must be in"):
        lb.threshold_for(7)


@pytest.mark.mpi
@pytest.mark.partition
def test_route_of_trajectories_identical_at_any_rank_count(comm):
    """Trajectory items, routed from their first fields: tau(m), cluster, rule and errors of
    the row-distributed fit equal the serial fit's."""
    speeds = np.array([0.1, 0.12, 0.5, 0.55, 0.3, 0.11, 0.52, 0.31])
    t = np.linspace(0.0, 0.5, 6)
    X = np.column_stack([_pulses(0.2 + s * t, np.ones(6)) for s in speeds])
    groups = np.repeat(np.arange(8), 6)
    kw = {"clustering": "sine-kcenter", "n_clusters": 3, "rel_l2_err": EPS, "fallback": True}
    ref = LocalBases(product=sp.diags(WEIGHTS), **kw).fit(X, groups=groups)
    lb = LocalBases(product=_local_product(comm), comm=comm, **kw)
    lb.fit(distribute_rows(X, comm), groups=groups)
    np.testing.assert_array_equal(lb.labels_, ref.labels_)
    np.testing.assert_allclose(
        [lb.threshold_for(m) for m in range(1, 7)],
        [ref.threshold_for(m) for m in range(1, 7)],
        rtol=1e-8,
    )
    U = _pulses(0.2 + 0.4 * t, np.ones(6))
    for m in (1, 3, 6):
        a, b = lb.route(distribute_rows(U[:, :m], comm)), ref.route(U[:, :m])
        assert (a.cluster, a.rule, a.candidates) == (b.cluster, b.rule, b.candidates)
        np.testing.assert_allclose(a.errors, b.errors, rtol=1e-8, atol=1e-12)
