"""k-medoids / k-center on precomputed dissimilarities vs brute force and constructed cases.

References: exhaustive search over all medoid subsets (and over all single swaps) on small
sets, an independent farthest-first traversal, hand-built separated groups, and SVD-based
per-cluster POD errors (numpy.linalg.svd) for the translating-pulse comparison.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rom.local import KMedoids
from rom.local import choose_n_clusters
from rom.local import kmeans_parameters
from rom.local import kmeans_snapshots
from rom.local import sine_dissimilarity
from rom.parallel import distribute_rows


def _cost(D, med, objective):
    d = D[:, list(med)].min(axis=1)
    return float(d.sum() if objective == "sum" else d.max())


def _brute_force(D, k, objective):
    return min(_cost(D, med, objective) for med in itertools.combinations(range(len(D)), k))


def _random_instances(rng, count):
    for _ in range(count):
        n = int(rng.integers(4, 13))
        k = int(rng.integers(1, 4))
        yield sine_dissimilarity(rng.standard_normal((5, n))), k


def _groups_of_directions(rng, n_groups, per_group, dim=20, spread=0.05):
    centres = rng.standard_normal((dim, n_groups))
    cols, truth = [], []
    for g in range(n_groups):
        cols.append(centres[:, [g]] + spread * rng.standard_normal((dim, per_group)))
        truth += [g] * per_group
    return np.hstack(cols) * rng.uniform(0.5, 3.0, n_groups * per_group), np.array(truth)


def _same_partition(a, b):
    """True when two labelings define the same partition (labels up to permutation)."""
    return len(set(zip(a, b))) == len(set(a)) == len(set(b))


def test_sum_objective_is_swap_local_optimum_and_usually_global(rng):
    hits = total = 0
    for D, k in _random_instances(rng, 120):
        n = len(D)
        model = KMedoids(k, n_init=10, seed=1).fit(D)
        med = list(model.medoid_indices_)
        cost = _cost(D, med, "sum")
        assert abs(model.objective_value_ - cost) < 1e-12
        best = _brute_force(D, k, "sum")
        assert cost >= best - 1e-12
        # no single swap improves (exhaustive over all K (n - K) swaps)
        for j, x in itertools.product(range(k), range(n)):
            if x not in med:
                swapped = med[:j] + [x] + med[j + 1 :]
                assert _cost(D, swapped, "sum") >= cost - 1e-12
        hits += cost <= best + 1e-12
        total += 1
    # swap search is a local method: measured 299/300 global optima with 10 starts
    assert hits >= 0.97 * total


def test_sum_objective_finds_brute_force_optimum_on_grouped_data(rng):
    for trial in range(40):
        k = int(rng.integers(2, 4))
        X, _ = _groups_of_directions(rng, k, int(rng.integers(2, 5)), dim=6, spread=0.3)
        D = sine_dissimilarity(X)
        model = KMedoids(k).fit(D)
        assert abs(model.objective_value_ - _brute_force(D, k, "sum")) < 1e-12, trial


def _plain_farthest_first_radius(D, k):
    med = [int(np.argmin(D.max(axis=0)))]
    for _ in range(1, k):
        med.append(int(np.argmax(D[:, med].min(axis=1))))
    return _cost(D, med, "max")


def test_k_center_within_twice_optimum_and_never_worse_than_farthest_first(rng):
    for D, k in _random_instances(rng, 120):
        model = KMedoids(k, objective="max").fit(D)
        radius = _cost(D, model.medoid_indices_, "max")
        assert abs(model.objective_value_ - radius) < 1e-12
        assert abs(model.cluster_widths_.max() - radius) < 1e-12
        assert radius <= 2.0 * _brute_force(D, k, "max") + 1e-12
        assert radius <= _plain_farthest_first_radius(D, k) + 1e-12


def test_labels_are_nearest_medoid_with_smallest_index_ties():
    n = 7
    D = np.ones((n, n)) - np.eye(n)  # all points equidistant: every choice is a tie
    for objective in ("sum", "max"):
        model = KMedoids(3, objective=objective).fit(D)
        meds = model.medoid_indices_
        assert np.all(np.diff(meds) > 0)
        # every non-medoid is at distance 1 from all medoids -> smallest medoid index
        for i in range(n):
            expected = list(meds).index(i) if i in meds else 0
            assert model.labels_[i] == expected
    assert list(KMedoids(3).fit(D).medoid_indices_) == [0, 1, 2]


def test_widths_sizes_and_predict(rng):
    X, _ = _groups_of_directions(rng, 3, 6)
    D = sine_dissimilarity(X)
    model = KMedoids(3).fit(D)
    meds = model.medoid_indices_
    dist = D[:, meds]
    np.testing.assert_array_equal(model.labels_, np.argmin(dist, axis=1))
    for c in range(3):
        members = model.labels_ == c
        assert model.cluster_sizes_[c] == members.sum()
        assert model.cluster_widths_[c] == pytest.approx(dist[members, c].max(), abs=1e-15)
    np.testing.assert_array_equal(model.predict(dist), model.labels_)
    with pytest.raises(ValueError, match="shape"):
        model.predict(dist[:, :2])
    with pytest.raises(RuntimeError, match="not fitted"):
        KMedoids(2).predict(dist)


def test_min_cluster_size_dissolves_small_clusters(rng):
    X, _ = _groups_of_directions(rng, 2, 8)
    outlier = rng.standard_normal((X.shape[0], 1))
    X = np.hstack([X, outlier])
    D = sine_dissimilarity(X)
    plain = KMedoids(3).fit(D)
    assert plain.cluster_sizes_.min() == 1  # the outlier is a cluster of its own
    for objective in ("sum", "max"):
        model = KMedoids(3, objective=objective, min_cluster_size=3).fit(D)
        assert model.cluster_sizes_.min() >= 3
        assert model.n_clusters_ == len(model.medoid_indices_) <= 3
        np.testing.assert_array_equal(model.labels_, np.argmin(D[:, model.medoid_indices_], axis=1))


def test_invalid_inputs_raise(rng):
    D = sine_dissimilarity(rng.standard_normal((5, 6)))
    with pytest.raises(ValueError, match="n_clusters"):
        KMedoids(7).fit(D)
    with pytest.raises(ValueError, match="objective"):
        KMedoids(2, objective="mean").fit(D)
    with pytest.raises(ValueError, match="square"):
        KMedoids(2).fit(D[:, :5])
    with pytest.raises(ValueError, match="symmetric"):
        KMedoids(2).fit(D + np.triu(np.ones_like(D), 1))
    bad = D.copy()
    bad[0, 1] = bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KMedoids(2).fit(bad)
    with pytest.raises(ValueError, match="min_cluster_size"):
        KMedoids(2, min_cluster_size=0).fit(D)
    with pytest.raises(ValueError, match="tol"):
        choose_n_clusters(D, tol=-1.0)


def test_choose_n_clusters_finds_the_number_of_separated_groups(rng):
    X, truth = _groups_of_directions(rng, 4, 5, spread=0.02)
    D = sine_dissimilarity(X)
    same = truth[:, None] == truth[None, :]
    intra, inter = D[same].max(), D[~same].min()
    assert 2 * intra < inter  # well separated by construction
    K, model = choose_n_clusters(D, tol=intra, objective="max", max_clusters=10)
    assert K == 4
    assert model.cluster_widths_.max() <= intra
    assert _same_partition(model.labels_, truth)
    # a tolerance no K <= 2 can meet: best K returned
    K2, m2 = choose_n_clusters(D, tol=0.0, max_clusters=2)
    assert K2 == 2 and m2.n_clusters_ == 2


@pytest.mark.mpi
@pytest.mark.partition
def test_clustering_identical_at_any_rank_count(comm, rng):
    X = rng.standard_normal((41, 24))
    D_ref = sine_dissimilarity(X)
    D = sine_dissimilarity(distribute_rows(X, comm), comm=comm)
    for objective in ("sum", "max"):
        ref = KMedoids(4, objective=objective).fit(D_ref)
        model = KMedoids(4, objective=objective).fit(D)
        np.testing.assert_array_equal(model.medoid_indices_, ref.medoid_indices_)
        np.testing.assert_array_equal(model.labels_, ref.labels_)
        for other in comm.allgather(model.labels_):
            np.testing.assert_array_equal(other, model.labels_)


@pytest.mark.mpi
@pytest.mark.partition
def test_kmeans_snapshots_recovers_groups_on_any_rank_count(comm, rng):
    centres = 10.0 * rng.standard_normal((30, 3))
    X = np.hstack([centres[:, [g]] + rng.standard_normal((30, 6)) for g in range(3)])
    truth = np.repeat(np.arange(3), 6)
    labels = kmeans_snapshots(distribute_rows(X, comm), 3, seed=0, comm=comm)
    assert _same_partition(labels, truth)
    for other in comm.allgather(labels):
        np.testing.assert_array_equal(other, labels)


def test_kmeans_parameters_recovers_parameter_groups(rng):
    params = np.concatenate([rng.uniform(0, 1, 7), rng.uniform(5, 6, 5)])
    truth = np.array([0] * 7 + [1] * 5)
    assert _same_partition(kmeans_parameters(params, 2, seed=0), truth)
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_parameters(params, 13)


def _mean_cluster_pod_error(X, labels, n_modes):
    """Mean over clusters of the relative rank-N error sqrt(sum_{n>N} s^2 / sum s^2)."""
    errs = []
    for c in np.unique(labels):
        s2 = np.linalg.svd(X[:, labels == c], compute_uv=False) ** 2
        errs.append(np.sqrt(s2[n_modes:].sum() / s2.sum()))
    return float(np.mean(errs))


def test_sine_kmedoids_beats_parameter_kmeans_on_translating_pulse():
    # A Gaussian pulse at position p with amplitude a: the amplitude is a parameter that
    # costs a linear basis nothing, the position is what matters. k-means on the parameters
    # spends clusters on amplitude; the sine dissimilarity ignores it (Daniel et al.,
    # arXiv:2103.13683: angle-based clustering gives smaller projection errors).
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 1.0, 400)
    n = 80
    pos, amp = rng.uniform(0.15, 0.85, n), rng.uniform(1.0, 10.0, n)
    X = amp * np.exp(-((x[:, None] - pos) ** 2) / (2 * 0.04**2))
    D = sine_dissimilarity(X)
    for K, n_modes in ((3, 5), (4, 3), (6, 5)):
        labels = kmeans_parameters(np.column_stack([pos, amp]), K, seed=0)
        param = _mean_cluster_pod_error(X, labels, n_modes)
        for objective in ("sum", "max"):
            labels = KMedoids(K, objective=objective).fit(D).labels_
            sine = _mean_cluster_pod_error(X, labels, n_modes)
            assert sine < 0.5 * param, (K, n_modes, objective, sine, param)
