"""Randomized SVD (Halko-Martinsson-Tropp) against LAPACK, at 1, 2 and 3 ranks.

Bounds checked: the deviation bound of Halko, Martinsson, Tropp (SIAM Rev. 53, 2011, eq. 1.9):
with oversampling p >= 2, ``||A - Q Q^T A||_2 <= (1 + 11 sqrt(k + p) sqrt(min(m, n)))
sigma_{k+1}`` except with probability at most ``6 p^-p``; truncating ``Q^T A`` to rank k adds at
most ``sigma_{k+1}``. With power iterations on a fast-decaying spectrum the Frobenius error is
within 5 % of the optimal tail (Eckart-Young, from LAPACK).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rom.compression import column_chunks
from rom.compression.randomized import randomized_svd
from rom.compression.randomized import randomized_svd_streamed
from rom.parallel import distribute_rows
from rom.parallel import gather_rows

pytestmark = [pytest.mark.mpi]


def decaying(rng, n, m, rate=0.6):
    r = min(n, m)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((m, r)))
    s = rate ** np.arange(r)
    return (U * s) @ V.T, s


def weights(n):
    return 1.0 + 0.5 * np.sin(np.arange(n))


@pytest.mark.partition
def test_hmt_deviation_bound_without_power_iterations(comm, rng):
    n, m, k, p = 300, 120, 10, 10
    A, s = decaying(rng, n, m, rate=0.8)
    res = randomized_svd(
        distribute_rows(A, comm), rank=k, oversampling=p, power_iterations=0, comm=comm, seed=3
    )
    U = gather_rows(res.modes, comm)
    err2 = np.linalg.norm(A - U @ (U.T @ A), 2)
    bound = (1 + 11 * math.sqrt(k + p) * math.sqrt(min(m, n))) * s[k] + s[k]
    assert err2 <= bound
    assert np.linalg.norm(A - U @ (U.T @ A), 2) >= s[k] * (1 - 1e-12)  # Eckart-Young


@pytest.mark.partition
@pytest.mark.parametrize("weighted", [False, True])
def test_power_iterations_near_optimal_and_m_orthonormal(comm, rng, weighted):
    n, m, k = 400, 150, 12
    A, _ = decaying(rng, n, m, rate=0.5)
    w = weights(n) if weighted else np.ones(n)
    wl = distribute_rows(w, comm)
    product = (lambda X: wl[:, None] * X) if weighted else None
    res = randomized_svd(
        distribute_rows(A, comm), rank=k, power_iterations=2, product=product, comm=comm, seed=11
    )
    Ul, sv = res.modes, res.singular_values
    U = gather_rows(Ul, comm)
    MU = U * w[:, None]
    assert np.abs(U.T @ MU - np.eye(k)).max() <= 1e-12
    sq = np.sqrt(w)[:, None]
    sref = np.linalg.svd(sq * A, compute_uv=False)  # M-singular values
    tail = math.sqrt(np.sum(sref[k:] ** 2))
    R = A - U @ (MU.T @ A)
    err = math.sqrt(np.sum(R * R * w[:, None]))
    assert tail * (1 - 1e-12) <= err <= 1.05 * tail
    np.testing.assert_allclose(sv[: k // 2], sref[: k // 2], rtol=1e-10)


@pytest.mark.partition
def test_independent_of_rank_count_and_streamed(comm, rng):
    n, m, k = 200, 90, 8
    A, s = decaying(rng, n, m, rate=0.7)
    res = randomized_svd(A, rank=k, seed=5)
    U1, s1 = res.modes, res.singular_values  # serial reference on every rank
    res = randomized_svd(distribute_rows(A, comm), rank=k, comm=comm, seed=5)
    Ul, sv = res.modes, res.singular_values
    np.testing.assert_allclose(sv, s1, rtol=1e-12)
    U = gather_rows(Ul, comm)
    Q1, Q2 = np.linalg.qr(U1)[0], np.linalg.qr(U)[0]
    assert np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2) <= 1e-10
    ncols, blocks = column_chunks(distribute_rows(A, comm), chunk=13)
    res = randomized_svd_streamed(blocks, ncols, rank=k, comm=comm, seed=5)
    Usl, ss = res.modes, res.singular_values
    assert res.method == "randomized" and res.error_bound is None and res.n_snapshots == m
    np.testing.assert_allclose(res.total_energy, np.sum(A * A), rtol=1e-12)
    Us = gather_rows(Usl, comm)
    sref = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(ss[: k // 2], sref[: k // 2], rtol=1e-10)
    err = np.linalg.norm(A - Us @ (Us.T @ A))
    assert err <= 1.05 * math.sqrt(np.sum(sref[k:] ** 2))


def test_invalid_options(comm):
    X = np.ones((6, 4))
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        randomized_svd(X, rank=0, comm=comm)
    with pytest.raises(ValueError, match="power_iterations"):
        randomized_svd(X, rank=2, power_iterations=-1, comm=comm)
    Y = X.copy()
    if comm.rank == 0:
        Y[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        randomized_svd(Y, rank=2, comm=comm)


# --- to a tolerance (adaptive range finder) ---------------------------------------------------
def m_norms(A, w):
    return math.sqrt(np.sum(A * A * w[:, None]))


def optimal_rank(s, tol2):
    """Smallest N with sum_{n>N} s_n^2 <= tol2 (Eckart-Young, from LAPACK's values)."""
    tails = np.cumsum((s**2)[::-1])[::-1]
    return int(np.count_nonzero(tails > tol2))


@pytest.mark.partition
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rel", [1e-2, 1e-5, 1e-9, 1e-12])
def test_tolerance_is_met_and_certified(comm, rng, weighted, rel):
    n, m = 300, 120
    A, _ = decaying(rng, n, m, rate=0.75)
    w = weights(n) if weighted else np.ones(n)
    wl = distribute_rows(w, comm)
    product = (lambda X: wl[:, None] * X) if weighted else None
    res = randomized_svd(
        distribute_rows(A, comm), rel_l2_err=rel, product=product, comm=comm, seed=4
    )
    U = gather_rows(res.modes, comm)
    MU = U * w[:, None]
    assert np.abs(U.T @ MU - np.eye(res.n_modes)).max() <= 1e-12
    total = m_norms(A, w)
    err = m_norms(A - U @ (MU.T @ A), w)  # the achieved projection error, formed here
    assert err <= rel * total  # the tolerance is met
    assert err <= res.error_bound + 1e-14 * total  # the bound is a bound (up to rounding)
    assert res.error_bound <= rel * total * (1 + 1e-12)
    sref = np.linalg.svd(np.sqrt(w)[:, None] * A, compute_uv=False)  # M-singular values
    n_opt = optimal_rank(sref, (rel * total) ** 2)
    assert n_opt <= res.n_modes <= n_opt + 2  # near the optimal rank, never below it
    # Weyl: |s_i(QQ^TMA) - s_i(A)| <= ||A - QQ^TMA||_2 <= the bound (plus rounding u s_1)
    dev = np.abs(res.singular_values - sref[: res.n_modes]).max()
    assert dev <= res.error_bound + 1e-14 * sref[0]


@pytest.mark.partition
def test_tolerance_results_independent_of_rank_count_and_streamed(comm, rng):
    n, m = 200, 90
    A, s = decaying(rng, n, m, rate=0.7)
    ref = randomized_svd(A, l2_err=1e-6, seed=8)  # serial reference on every rank
    res = randomized_svd(distribute_rows(A, comm), l2_err=1e-6, comm=comm, seed=8)
    assert res.n_modes == ref.n_modes == optimal_rank(s, 1e-12)
    np.testing.assert_allclose(res.singular_values, ref.singular_values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.error_bound, ref.error_bound, rtol=1e-6)
    np.testing.assert_allclose(gather_rows(res.modes, comm), ref.modes, atol=1e-10)
    ncols, blocks = column_chunks(distribute_rows(A, comm), chunk=17)
    st = randomized_svd_streamed(blocks, ncols, l2_err=1e-6, comm=comm, seed=8)
    assert st.n_modes == ref.n_modes
    np.testing.assert_allclose(st.singular_values, ref.singular_values, rtol=1e-12, atol=1e-15)
    U = gather_rows(st.modes, comm)
    assert np.linalg.norm(A - U @ (U.T @ A)) <= min(st.error_bound * (1 + 1e-8), 1e-6)


def test_tolerance_below_the_floor_raises_and_a_rank_cap_warns(comm, rng):
    A, _ = decaying(rng, 120, 40, rate=0.5)
    X = distribute_rows(A, comm)
    with pytest.raises(ValueError, match="below what randomized_svd can certify"):
        randomized_svd(X, rel_l2_err=1e-15, comm=comm)
    with pytest.raises(ValueError, match="needs rank=, l2_err= or rel_l2_err="):
        randomized_svd(X, comm=comm)
    with pytest.warns(UserWarning, match="exceeds the requested"):
        res = randomized_svd(X, rank=3, rel_l2_err=1e-6, comm=comm)
    assert res.n_modes == 3
    U = gather_rows(res.modes, comm)
    err = np.linalg.norm(A - U @ (U.T @ A))
    assert err <= res.error_bound * (1 + 1e-8) and res.error_bound > 1e-6 * np.linalg.norm(A)
