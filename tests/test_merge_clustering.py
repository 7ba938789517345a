"""Error-constrained greedy clustering (rom.local.merge_clustering).

References: numpy.linalg.svd of each cluster's concatenation (certified errors, eps), a planted
grouping (brute force: blocks drawn from known rank-r subspaces), and the serial run (1 vs 2
vs 3 ranks, identical labels).
"""

from __future__ import annotations

import numpy as np
import pytest

from rom.local import bounds
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.merge_clustering import clustering_metrics
from rom.parallel import distribute_rows
from rom.synthetic import advection_blocks

R, EPS = 67, 0.05


@pytest.fixture(scope="module")
def transport():
    return advection_blocks(16, seed=23, n_cells=64)  # 16 blocks of 192 x 67


def svd_error(blocks, members, r):
    s = np.linalg.svd(np.hstack([blocks[j] for j in members]), compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)))


def check_partition(labels, clusters, k):
    assert sorted(j for c in clusters for j in c) == list(range(k))
    for c, members in enumerate(clusters):
        assert all(labels[j] == c for j in members)


@pytest.mark.mpi
@pytest.mark.parametrize(
    "predictor,ordering",
    [
        ("estimator", "norm"),
        ("estimator", "residual"),
        ("residual", "norm"),
        ("weyl", "norm"),
        ("exact", "norm"),
    ],
)
def test_certified_errors_never_exceed_eps(transport, predictor, ordering, comm):
    loc = [distribute_rows(A, comm) for A in transport]
    est = ErrorConstrainedClustering(
        rank=R, eps=EPS, predictor=predictor, ordering=ordering, comm=comm
    ).fit(loc)
    check_partition(est.labels_, est.clusters_, len(transport))
    for members, e in zip(est.clusters_, est.certified_errors_):
        if len(members) > 1:
            ref = svd_error(transport, members, R)
            assert e == pytest.approx(ref, rel=1e-9, abs=1e-12)
            assert ref <= EPS
    assert est.metrics_["violations"] == 0


def test_published_forms_need_certification(transport):
    # the published estimator/Weyl may accept more than the bound allows; certification
    # splits such clusters, so the certified result still meets eps
    est = ErrorConstrainedClustering(rank=R, eps=EPS, published=True).fit(transport)
    for members in est.clusters_:
        if len(members) > 1:
            assert svd_error(transport, members, R) <= EPS


def test_estimator_merges_like_exact_baseline(transport):
    # the estimator is an upper bound that is tight on transport blocks: it never accepts a
    # merge the exact SVD rejects, and on these blocks it finds the same clusters
    ex = ErrorConstrainedClustering(rank=R, eps=EPS, predictor="exact").fit(transport)
    es = ErrorConstrainedClustering(rank=R, eps=EPS, predictor="estimator").fit(transport)
    assert es.metrics_["n_splits"] == 0 and ex.metrics_["n_splits"] == 0
    assert es.clusters_ == ex.clusters_
    assert es.metrics_["n_nonsingletons"] >= 1  # the data do admit merges
    wl = ErrorConstrainedClustering(rank=R, eps=EPS, predictor="weyl").fit(transport)
    assert wl.metrics_["compression_ratio"] <= es.metrics_["compression_ratio"]


@pytest.mark.mpi
def test_shared_spectra_give_the_same_clusters_and_are_checked(comm, transport):
    # one set of per-block SVDs serves every predictor: the same clusters as computing them
    # inside each fit; spectra of other blocks are refused on every rank
    loc = [distribute_rows(A, comm) for A in transport]
    spectra = bounds.block_spectra(loc, comm=comm, keep=R + 5)
    for predictor, ordering in (("estimator", "residual"), ("weyl", "norm"), ("exact", "norm")):
        kw = dict(rank=R, eps=EPS, predictor=predictor, ordering=ordering, comm=comm)
        own = ErrorConstrainedClustering(**kw).fit(loc)
        shared = ErrorConstrainedClustering(**kw).fit(loc, spectra=spectra)
        assert shared.clusters_ == own.clusters_, predictor
        np.testing.assert_allclose(shared.certified_errors_, own.certified_errors_, rtol=1e-12)
        assert shared.metrics_["spectra_time"] == 0.0
    with pytest.raises(ValueError, match="spectra has"):
        ErrorConstrainedClustering(rank=R, eps=EPS, comm=comm).fit(loc, spectra=spectra[:-1])
    with pytest.raises(ValueError, match="do not match"):
        ErrorConstrainedClustering(rank=R, eps=EPS, comm=comm).fit(
            [A[:, :10] for A in loc], spectra=spectra
        )


@pytest.mark.mpi
@pytest.mark.partition
def test_recovers_planted_subspace_groups_same_at_any_rank_count(comm, rng):
    # 3 groups of blocks, each group inside its own r-dimensional subspace: a group's
    # concatenation has e_r = 0, any mix has e_r > eps. Residual ordering puts a seed's group
    # first, so the greedy must return exactly the groups.
    m, r = 40, 4
    bases = [np.linalg.qr(rng.standard_normal((m, r)))[0] for _ in range(3)]
    truth = rng.permutation(np.repeat(np.arange(3), 4))
    blocks = [bases[g] @ rng.standard_normal((r, r)) * rng.uniform(1, 2) for g in truth]
    loc = [distribute_rows(A, comm) for A in blocks]
    for predictor in ("estimator", "exact"):
        est = ErrorConstrainedClustering(
            rank=r, eps=0.01, predictor=predictor, ordering="residual", comm=comm
        ).fit(loc)
        found = sorted(sorted(c) for c in est.clusters_)
        expected = sorted(sorted(np.flatnonzero(truth == g).tolist()) for g in range(3))
        assert found == expected
        serial = ErrorConstrainedClustering(
            rank=r, eps=0.01, predictor=predictor, ordering="residual"
        ).fit(blocks)
        assert np.array_equal(est.labels_, serial.labels_)
        np.testing.assert_allclose(est.certified_errors_, serial.certified_errors_, atol=1e-10)


@pytest.mark.mpi
@pytest.mark.partition
def test_same_clusters_at_any_rank_count_on_transport(transport, comm):
    loc = [distribute_rows(A, comm) for A in transport]
    est = ErrorConstrainedClustering(rank=R, eps=EPS, comm=comm).fit(loc)
    serial = ErrorConstrainedClustering(rank=R, eps=EPS).fit(transport)
    assert est.clusters_ == serial.clusters_
    np.testing.assert_allclose(
        est.certified_errors_, serial.certified_errors_, rtol=1e-9, atol=1e-12
    )


def test_patience_makes_remaining_blocks_singletons(rng):
    # independent Gaussian blocks of width r: no merge can meet eps = 0.01, so with patience 1
    # the first seed's failure ends the loop after one candidate
    blocks = [rng.standard_normal((30, 3)) for _ in range(6)]
    est = ErrorConstrainedClustering(rank=3, eps=0.01, patience=1).fit(blocks)
    assert all(len(c) == 1 for c in est.clusters_)
    assert est.metrics_["n_evaluations"] == 1
    assert est.metrics_["compression_ratio"] == pytest.approx(1.0)


def test_seed_takes_blocks_while_width_fits(rng):
    # widths 2 + 2 <= r = 4: the seed is two blocks, error 0 without any prediction
    blocks = [rng.standard_normal((20, 2)) * s for s in (3.0, 2.0, 1.0)]
    est = ErrorConstrainedClustering(rank=4, eps=0.01, patience=1).fit(blocks)
    assert est.clusters_[0] == [0, 1]
    assert est.certified_errors_[0] == pytest.approx(svd_error(blocks, [0, 1], 4), abs=1e-12)


def test_metrics_formulae():
    # m = 100, r = 5: cluster {0,1} (20 columns) stores min(5*120, 2000) = 600 numbers;
    # singleton {2} (10 columns) stores 1000; CR = 100*30/1600
    m = clustering_metrics([10, 10, 10], [[0, 1], [2]], [0.02, 0.0], n_rows=100, rank=5, eps=0.05)
    assert m["compression_ratio"] == pytest.approx(3000 / 1600)
    assert (m["n_clusters"], m["n_nonsingletons"], m["violations"]) == (2, 1, 0)
    assert m["mean_error"] == pytest.approx(0.02)


@pytest.mark.mpi
def test_invalid_options_raise_on_every_rank(comm, rng):
    blocks = [distribute_rows(rng.standard_normal((12, 3)), comm) for _ in range(2)]
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 1\)"):
        ErrorConstrainedClustering(rank=3, eps=1.5, comm=comm).fit(blocks)
    with pytest.raises(ValueError, match="predictor must be"):
        ErrorConstrainedClustering(rank=3, eps=0.1, predictor="magic", comm=comm).fit(blocks)
    with pytest.raises(ValueError, match="ordering must be"):
        ErrorConstrainedClustering(rank=3, eps=0.1, ordering="size", comm=comm).fit(blocks)
    bad = [b.copy() for b in blocks]
    if comm.rank == 0:
        bad[1][0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        ErrorConstrainedClustering(rank=3, eps=0.1, comm=comm).fit(bad)
