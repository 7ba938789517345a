"""HAPOD: the a-priori guarantee (1/|S|) sum_s ||s - P s||_M^2 <= eps^2 on random trees and
tolerances, the a-posteriori bound, and independence of the rank count (1, 2, 3 ranks).

The measured error is computed on the gathered full matrix with numpy (independent of the
code under test); the round-off slack is ``1e-12 ||S||_F`` on Frobenius quantities.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rom.compression import Chunk
from rom.compression import dist_hapod
from rom.compression import hapod
from rom.compression import inc_hapod
from rom.parallel import distribute_rows
from rom.parallel import gather_rows

pytestmark = [pytest.mark.mpi]

SLACK = 1e-12


def snapshots(g, n, m, decay):
    r = min(n, m, 30)
    U, _ = np.linalg.qr(g.standard_normal((n, r)))
    V, _ = np.linalg.qr(g.standard_normal((m, r)))
    return (U * np.logspace(0, -decay, r)) @ V.T


def weights(n):
    return 1.0 + 0.5 * np.cos(np.arange(n))


def random_tree(g, A_local, lo, hi, depth):
    """A random tree over the columns [lo, hi): the same shape on every rank (seeded g)."""
    if depth == 0 or hi - lo < 2 or g.random() < 0.25:
        if g.random() < 0.5:
            return A_local[:, lo:hi]
        return Chunk(hi - lo, lambda a=lo, b=hi: A_local[:, a:b].copy())
    n_children = int(g.integers(2, 5))
    cuts = np.sort(
        g.choice(np.arange(lo + 1, hi), size=min(n_children - 1, hi - lo - 1), replace=False)
    )
    bounds = [lo, *cuts.tolist(), hi]
    return [random_tree(g, A_local, a, b, depth - 1) for a, b in zip(bounds[:-1], bounds[1:])]


def mean_sq_error(A, U, w=None):
    W = np.ones(A.shape[0]) if w is None else w
    R = A - U @ ((U * W[:, None]).T @ A)
    mse = float(np.sum(R * R * W[:, None])) / A.shape[1]
    return mse, float(np.sqrt(np.sum(A * A * W[:, None])))


@pytest.mark.partition
@pytest.mark.parametrize("pod_method", ["qr", "snapshots"])
@pytest.mark.parametrize("seed", range(8))
def test_random_tree_meets_mean_square_target(comm, seed, pod_method):
    """Random trees, both node methods, with and without an inner product: the mean-square
    target, the a-posteriori bound and M-orthonormality, all measured with numpy."""
    g = np.random.default_rng(seed)
    n, m = int(g.integers(40, 120)), int(g.integers(5, 90))
    A = snapshots(g, n, m, decay=float(g.uniform(1, 8)))
    eps = float(10 ** g.uniform(-6, -1)) * np.linalg.norm(A) / math.sqrt(m)
    omega = float(g.uniform(0.1, 0.95))
    weighted = bool(g.integers(0, 2))
    w = weights(n) if weighted else None
    Al = distribute_rows(A, comm)
    wl = None if w is None else distribute_rows(w, comm)
    product = None if w is None else (lambda X: wl[:, None] * X)
    tree = random_tree(g, Al, 0, m, depth=int(g.integers(1, 4)))
    res = hapod(tree, eps=eps, omega=omega, product=product, comm=comm, pod_method=pod_method)
    s = res.singular_values
    U = gather_rows(res.modes, comm)
    mse, normA = mean_sq_error(A, U, w)
    slack = (SLACK * normA) ** 2 / m
    assert mse <= eps**2 + slack
    # a posteriori: the sum of local tails bounds the error and stays within the a-priori one
    assert math.sqrt(mse * m) <= res.error_bound + SLACK * normA  # rounding: u ||A||
    assert res.error_bound <= res.details["guaranteed_bound"] * (1 + 1e-12)
    assert res.n_snapshots == m and res.method == "hapod"
    W = np.ones(n) if w is None else w
    np.testing.assert_allclose(res.total_energy, np.sum(W[:, None] * A * A), rtol=1e-12)
    for node in res.details["nodes"]:
        assert node["local_error"] <= node["tolerance"] * (1 + 1e-12) + SLACK * normA
    assert np.abs((U * W[:, None]).T @ U - np.eye(len(s))).max() <= 1e-12


@pytest.mark.parametrize("shape", ["dist", "inc"])
@pytest.mark.parametrize("rel_eps", [1e-1, 1e-3, 1e-6])
def test_dist_and_inc_hapod_guarantee(comm, rng, shape, rel_eps):
    n, m = 100, 70
    A = snapshots(rng, n, m, decay=7)
    eps = rel_eps * np.linalg.norm(A) / math.sqrt(m)
    f = dist_hapod if shape == "dist" else inc_hapod
    res = f(distribute_rows(A, comm), eps=eps, chunk=9, comm=comm)
    s = res.singular_values
    U = gather_rows(res.modes, comm)
    assert res.n_snapshots == m
    np.testing.assert_allclose(res.total_energy, np.sum(A * A), rtol=1e-12)
    mse, normA = mean_sq_error(A, U)
    assert mse <= eps**2 + (SLACK * normA) ** 2 / m
    assert math.sqrt(mse * m) <= res.error_bound + SLACK * normA  # rounding: u ||A||
    # no better than the optimum: POD of A with the same number of modes (LAPACK)
    sref = np.linalg.svd(A, compute_uv=False)
    assert mse * m >= np.sum(sref[len(s) :] ** 2) * (1 - 1e-8) - (SLACK * normA) ** 2
    # leaves never exceed their tolerance
    for node in res.details["nodes"]:
        assert node["local_error"] <= node["tolerance"] * (1 + 1e-12) + SLACK * normA
    if shape == "dist":  # the default "auto": the fast method only far above its floor
        methods = {node["pod_method"] for node in res.details["nodes"]}
        assert methods == {"snapshots"} if rel_eps == 1e-1 else methods <= {"snapshots", "qr"}
        assert rel_eps > 1e-6 or methods == {"qr"}


@pytest.mark.partition
@pytest.mark.parametrize("shape", ["dist", "inc"])
def test_result_independent_of_rank_count(comm, rng, shape):
    n, m = 90, 50
    A = snapshots(rng, n, m, decay=5)
    eps = 1e-3 * np.linalg.norm(A) / math.sqrt(m)
    f = dist_hapod if shape == "dist" else inc_hapod
    r1 = f(A, eps=eps, chunk=8)  # serial on every rank, the reference
    U1, s1 = r1.modes, r1.singular_values
    r = f(distribute_rows(A, comm), eps=eps, chunk=8, comm=comm)
    s = r.singular_values
    U = gather_rows(r.modes, comm)
    assert len(s) == len(s1)
    np.testing.assert_allclose(s, s1, rtol=1e-12)
    Q1, Q2 = np.linalg.qr(U1)[0], np.linalg.qr(U)[0]
    assert np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2) <= 1e-10


def test_invalid_tolerances_raise(comm):
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match="omega must be in"):
        hapod([X], eps=0.1, omega=1.0, comm=comm)
    with pytest.raises(ValueError, match="eps must be finite"):
        dist_hapod(X, eps=-1.0, comm=comm)
    with pytest.raises(ValueError, match="no children"):
        hapod([X, []], eps=0.1, comm=comm)
