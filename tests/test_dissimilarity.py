"""Sine dissimilarity, principal angles and trajectory distances vs independent references.

References: per-pair least-squares projection residuals (numpy.linalg.lstsq), the analytic sine
of a constructed angle, scipy.linalg.subspace_angles and explicit projector norms; the
M-inner product is handled in the references by the Cholesky factor M = L L^T.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from rom.local import principal_angles
from rom.local import sine_dissimilarity
from rom.local import sine_dissimilarity_between
from rom.local import subspace_distance
from rom.local import trajectory_dissimilarity
from rom.parallel import distribute_rows
from rom.parallel import row_range

EPS = np.finfo(np.float64).eps


def _spd(n, rng):
    A = rng.standard_normal((n, n))
    return A @ A.T / n + np.eye(n)


def _lstsq_sine(X, L=None):
    """delta_ij = ||u - P_v u|| / ||u|| by least squares in the L^T-transformed space."""
    Y = X if L is None else L.T @ X
    n = Y.shape[1]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            u, v = Y[:, i], Y[:, j]
            c = np.linalg.lstsq(v[:, None], u, rcond=None)[0]
            D[i, j] = np.linalg.norm(u - v * c[0]) / np.linalg.norm(u)
    return D


def _local_diag_product(w, comm):
    """This rank's block of a diagonal (lumped-mass) product, as a sparse matrix."""
    start, stop = row_range(len(w), comm)
    return sp.diags(w[start:stop])


def test_sine_matches_lstsq_projection_residual(rng):
    X = rng.standard_normal((40, 9))
    X[:, 3] = 2.5 * X[:, 1] + 0.3 * X[:, 2]  # some structure
    D = sine_dissimilarity(X)
    np.testing.assert_allclose(D, _lstsq_sine(X), rtol=0, atol=1e-12)


def test_sine_with_spd_product_matches_cholesky_reference(rng):
    n = 30
    M = _spd(n, rng)
    L = np.linalg.cholesky(M)
    X = rng.standard_normal((n, 7))
    D = sine_dissimilarity(X, product=M)
    np.testing.assert_allclose(D, _lstsq_sine(X, L), rtol=0, atol=1e-12)
    # the product as a callable gives the same matrix
    D2 = sine_dissimilarity(X, product=lambda Z: M @ Z)
    np.testing.assert_allclose(D2, D, rtol=0, atol=1e-14)


@pytest.mark.mpi
@pytest.mark.partition
def test_nearly_parallel_pairs_keep_relative_accuracy(comm, rng):
    # u, w orthonormal; v = u + t w has sine t / sqrt(1 + t^2) exactly
    Q, _ = np.linalg.qr(rng.standard_normal((50, 2)))
    u, w = Q[:, 0], Q[:, 1]
    ts = np.array([1e-4, 1e-7, 1e-10, 1e-13])
    X = np.column_stack([u] + [3.0 * (u + t * w) for t in ts])
    D = sine_dissimilarity(distribute_rows(X, comm), comm=comm)
    expected = ts / np.sqrt(1 + ts**2)
    # absolute accuracy a few eps: relative 1e-6 down to t = 1e-10 (Gram alone gives ~1e-8 noise)
    np.testing.assert_allclose(D[0, 1:4], expected[:3], rtol=1e-6)
    assert abs(D[0, 4] - expected[3]) < 20 * EPS


def test_metric_properties_on_random_data(rng):
    X = rng.standard_normal((12, 30))
    X[:, 5] = -4.0 * X[:, 7]  # a line counted twice: distance zero
    D = sine_dissimilarity(X)
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0.0)
    assert D.min() >= 0.0 and D.max() <= 1.0
    assert D[5, 7] < 20 * EPS
    # triangle inequality for all triples (the sine is ||P_u - P_v||_2, a metric on lines)
    viol = D[:, :, None] + D[None, :, :] - D[:, None, :]  # d(i,j) + d(j,k) - d(i,k)
    assert viol.min() >= -1e-12
    # invariant to scale and sign of the snapshots
    s = rng.uniform(0.1, 10.0, 30) * rng.choice([-1.0, 1.0], 30)
    np.testing.assert_allclose(sine_dissimilarity(X * s), D, rtol=0, atol=1e-12)


def test_between_matches_all_pairs_block(rng):
    X = rng.standard_normal((20, 5))
    Y = rng.standard_normal((20, 3))
    Y[:, 1] = -2.0 * X[:, 4] + 1e-9 * X[:, 0]
    full = sine_dissimilarity(np.hstack([X, Y]))
    B = sine_dissimilarity_between(X, Y)
    assert B.shape == (5, 3)
    np.testing.assert_allclose(B, full[:5, 5:], rtol=0, atol=1e-13)


@pytest.mark.mpi
def test_zero_column_raises_on_every_rank(comm, rng):
    X = rng.standard_normal((10, 4))
    X[:, 2] = 0.0
    with pytest.raises(ValueError, match="zero column"):
        sine_dissimilarity(distribute_rows(X, comm), comm=comm)
    with pytest.raises(ValueError, match="zero column"):
        sine_dissimilarity_between(
            distribute_rows(X[:, :2], comm), distribute_rows(X[:, 2:], comm), comm=comm
        )


@pytest.mark.mpi
def test_nan_on_one_rank_raises_on_every_rank(comm, rng):
    X = distribute_rows(rng.standard_normal((10, 4)), comm)
    if comm.rank == 0:
        X[0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        sine_dissimilarity(X, comm=comm)


def test_bad_options_raise(rng):
    X = rng.standard_normal((8, 3))
    with pytest.raises(ValueError, match="refine_below"):
        sine_dissimilarity(X, refine_below=2.0)
    with pytest.raises(ValueError, match="local rows"):
        sine_dissimilarity_between(X, X[:5])


@pytest.mark.mpi
@pytest.mark.partition
def test_sine_identical_at_any_rank_count(comm, rng):
    n = 37
    X = rng.standard_normal((n, 11))
    X[:, 4] = X[:, 0] + 1e-6 * X[:, 1]  # exercises the refined pairs too
    w = rng.uniform(0.5, 2.0, n)
    ref = sine_dissimilarity(X, product=sp.diags(w))  # serial, on every rank
    Xl = distribute_rows(X, comm)
    D = sine_dissimilarity(Xl, product=_local_diag_product(w, comm), comm=comm)
    np.testing.assert_allclose(D, ref, rtol=0, atol=1e-12)
    # replicated bit-identically across ranks
    assert all(np.array_equal(D, other) for other in comm.allgather(D))
    B = sine_dissimilarity_between(Xl[:, :6], Xl[:, 6:], comm=comm)
    np.testing.assert_allclose(B, sine_dissimilarity_between(X[:, :6], X[:, 6:]), atol=1e-12)


def _m_orthonormal(A, L):
    """Basis of span(A), M-orthonormal for M = L L^T."""
    Q, _ = np.linalg.qr(L.T @ A)
    return sla.solve_triangular(L.T, Q, lower=False)


@pytest.mark.parametrize("with_product", [False, True])
def test_principal_angles_match_scipy(rng, with_product):
    n = 25
    M = _spd(n, rng) if with_product else np.eye(n)
    L = np.linalg.cholesky(M)
    U = _m_orthonormal(rng.standard_normal((n, 4)), L)
    V = _m_orthonormal(rng.standard_normal((n, 3)), L)
    ref = sla.subspace_angles(L.T @ U, L.T @ V)
    prod = M if with_product else None
    theta = principal_angles(U, V, product=prod)
    np.testing.assert_allclose(theta, ref, rtol=0, atol=1e-12)
    # equal dimensions: the three metrics from the reference angles
    V4 = _m_orthonormal(rng.standard_normal((n, 4)), L)
    ref4 = sla.subspace_angles(L.T @ U, L.T @ V4)
    for metric, expected in (
        ("projection", np.sin(ref4.max())),
        ("chordal", np.sqrt(np.sum(np.sin(ref4) ** 2))),
        ("geodesic", np.sqrt(np.sum(ref4**2))),
    ):
        d = subspace_distance(U, V4, metric=metric, product=prod)
        assert abs(d - expected) < 1e-12, metric


def test_small_principal_angles_resolved(rng):
    n = 40
    U, _ = np.linalg.qr(rng.standard_normal((n, 3)))
    W = rng.standard_normal((n, 3))
    W -= U @ (U.T @ W)
    V, _ = np.linalg.qr(U + 1e-10 * W)
    ref = sla.subspace_angles(U, V)
    theta = principal_angles(U, V)
    assert ref.max() < 1e-8
    np.testing.assert_allclose(theta, ref, rtol=1e-5)


def test_subspace_distance_as_projector_norms(rng):
    n = 15
    U, _ = np.linalg.qr(rng.standard_normal((n, 3)))
    V, _ = np.linalg.qr(rng.standard_normal((n, 5)))
    dP = U @ U.T - V @ V.T
    assert abs(subspace_distance(U, V) - np.linalg.norm(dP, 2)) < 1e-12
    chord = np.linalg.norm(dP, "fro") / np.sqrt(2)
    assert abs(subspace_distance(U, V, metric="chordal") - chord) < 1e-12
    with pytest.raises(ValueError, match="equal dimension"):
        subspace_distance(U, V, metric="geodesic")
    with pytest.raises(ValueError, match="metric must be one of"):
        subspace_distance(U, V, metric="hausdorff")
    with pytest.raises(ValueError, match="not M-orthonormal"):
        subspace_distance(2.0 * U, V)


def _numpy_pod_basis(S, k):
    return np.linalg.svd(S, full_matrices=False)[0][:, :k]


@pytest.mark.mpi
@pytest.mark.partition
def test_trajectory_dissimilarity_matches_scipy_angles(comm, rng):
    n, m = 30, 6
    base = rng.standard_normal((n, 4))
    trajs = [
        base @ rng.standard_normal((4, m)) + 0.3 * rng.standard_normal((n, m)) for _ in range(4)
    ]
    k = 3
    bases = [_numpy_pod_basis(S, k) for S in trajs]
    ref = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                ref[i, j] = np.sin(sla.subspace_angles(bases[i], bases[j]).max())
    D = trajectory_dissimilarity([distribute_rows(S, comm) for S in trajs], rank=k, comm=comm)
    np.testing.assert_allclose(D, ref, rtol=0, atol=1e-10)
    # rel_l2_err: k is the (rounded-up) median of the per-trajectory ranks
    eps = 0.2
    ranks = []
    for S in trajs:
        s2 = np.linalg.svd(S, compute_uv=False) ** 2
        tails = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
        ranks.append(int(np.flatnonzero(tails <= eps**2 * s2.sum())[0]))
    k2 = int(np.ceil(np.median(ranks)))
    D2, B2 = trajectory_dissimilarity(
        [distribute_rows(S, comm) for S in trajs], rel_l2_err=eps, comm=comm, return_bases=True
    )
    assert all(B.shape[1] == k2 for B in B2)
    bases2 = [_numpy_pod_basis(S, k2) for S in trajs]
    ref2 = sla.subspace_angles(bases2[0], bases2[1])
    assert abs(D2[0, 1] - np.sin(ref2.max())) < 1e-10


def test_trajectory_dissimilarity_options_raise(rng):
    S = [rng.standard_normal((10, 3))]
    with pytest.raises(ValueError, match="exactly one"):
        trajectory_dissimilarity(S)
    with pytest.raises(ValueError, match="exactly one"):
        trajectory_dissimilarity(S, rank=2, rel_l2_err=0.1)
    with pytest.raises(ValueError, match="metric"):
        trajectory_dissimilarity(S, rank=2, metric="bad")
