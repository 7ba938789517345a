"""Incremental SVD (Brand block update) against LAPACK, at 1, 2 and 3 ranks.

References: ``numpy.linalg.svd`` of the full matrix (of ``M^{1/2} S`` with a diagonal mass
matrix ``M``); the bound ``error_bound_ >= ||S - U U^T M S||_F`` and ``>= ||S - U Gamma||_F``
(exact in exact arithmetic, checked with a round-off slack of ``1e-12 ||S||_F``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from rom.compression.incremental_svd import IncrementalSVD
from rom.parallel import distribute_rows
from rom.parallel import gather_rows

pytestmark = [pytest.mark.mpi]

SLACK = 1e-12  # round-off allowance on the bound, relative to ||S||_F


def prescribed(rng, n, m, sv):
    r = len(sv)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((m, r)))
    return (U * sv) @ V.T


def weights(n):
    """A diagonal SPD mass matrix, the same on every rank."""
    return 1.0 + 0.5 * np.sin(np.arange(n))


def msvd(A, w=None):
    """LAPACK reference M-SVD (M = diag(w)): svd of M^{1/2} A."""
    sq = np.ones((A.shape[0], 1)) if w is None else np.sqrt(w)[:, None]
    U, s, _ = np.linalg.svd(sq * A, full_matrices=False)
    return U / sq, s


def sin_largest_angle(U1, U2, w=None):
    """sin of the largest principal angle between span U1 and span U2 (M-inner product)."""
    sq = np.ones((U1.shape[0], 1)) if w is None else np.sqrt(w)[:, None]
    Q1, _ = np.linalg.qr(sq * U1)
    Q2, _ = np.linalg.qr(sq * U2)
    assert Q1.shape[1] == Q2.shape[1]
    return float(np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2))


def mnorm(A, w=None):
    return float(np.sqrt(np.sum(A * A * (1.0 if w is None else w[:, None]))))


def local_product(w, comm):
    wl = distribute_rows(w, comm)
    return lambda X: wl[:, None] * X


def run(A, comm, *, w=None, block=7, **opts):
    product = None if w is None else local_product(w, comm)
    est = IncrementalSVD(product=product, comm=comm, **opts)
    Al = distribute_rows(A, comm)
    for j in range(0, A.shape[1], block):
        est.partial_fit(Al[:, j : j + block])
    return est, gather_rows(est.modes_, comm)


def errors(A, est, U, w=None):
    """True projection error ||S - U U^T M S||_F and ||S - U Gamma||_F (M-norms)."""
    MU = U * (1.0 if w is None else w[:, None])
    proj = mnorm(A - U @ (MU.T @ A), w)
    approx = mnorm(A - U @ est.coefficients_, w) if est.coefficients_ is not None else None
    return proj, approx


@pytest.mark.partition
@pytest.mark.parametrize("weighted", [False, True])
def test_untruncated_matches_lapack(comm, rng, weighted):
    n, m = 240, 61
    sv = np.logspace(0, -4, 25)
    A = prescribed(rng, n, m, sv)
    w = weights(n) if weighted else None
    est, U = run(A, comm, w=w, block=7)
    Uref, sref = msvd(A, w)
    k = est.n_components_
    assert k == 25
    np.testing.assert_allclose(est.singular_values_, sref[:k], rtol=0, atol=1e-10 * sref[0])
    assert sin_largest_angle(U, Uref[:, :k], w) <= 1e-10
    MU = U * (1.0 if w is None else w[:, None])
    assert np.abs(U.T @ MU - np.eye(k)).max() <= 1e-12
    assert est.n_samples_seen_ == m and est.n_features_ == n
    # coefficients: S~ = U Gamma reproduces S, and Gamma = U^T M S
    assert mnorm(A - U @ est.coefficients_, w) <= 1e-11 * mnorm(A, w)
    np.testing.assert_allclose(est.coefficients_, MU.T @ A, rtol=0, atol=1e-11 * sref[0])
    assert est.error_bound_ <= 1e-8 * sref[0]


@pytest.mark.partition
def test_transform_and_inverse_transform(comm, rng):
    n, m = 150, 30
    A = prescribed(rng, n, m, np.logspace(0, -2, 8))
    w = weights(n)
    est, U = run(A, comm, w=w, block=4)
    B = rng.standard_normal((n, 5))
    coeff = est.transform(distribute_rows(B, comm))
    np.testing.assert_allclose(coeff, (U * w[:, None]).T @ B, rtol=0, atol=1e-12 * np.abs(B).max())
    rec = gather_rows(est.inverse_transform(coeff), comm)
    np.testing.assert_allclose(rec, U @ coeff, rtol=0, atol=1e-13 * np.abs(B).max())


@settings(
    derandomize=True,
    deadline=None,
    max_examples=25,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    n=st.integers(12, 60),
    m=st.integers(1, 30),
    block=st.integers(1, 9),
    r=st.integers(1, 12),
    decay=st.floats(0.0, 10.0),
    rule=st.sampled_from(["rank", "rtol", "l2_err", "rel_l2_err", "l2_err_stream"]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_bound_holds_on_random_shapes_and_spectra(
    comm, n, m, block, r, decay, rule, weighted, seed
):
    g = np.random.default_rng(seed)
    r = min(r, n, m)
    A = prescribed(g, n, m, np.logspace(0, -decay, r)) + 1e-3 * g.standard_normal((n, m))
    w = weights(n) if weighted else None
    total = mnorm(A, w)
    opts = {
        "rank": {"rank": max(1, r // 2)},
        "rtol": {"rtol": 1e-2},
        "l2_err": {"l2_err": 0.1 * total, "n_total": m},
        "rel_l2_err": {"rel_l2_err": 0.05},
        "l2_err_stream": {"l2_err": 0.1 * total},
    }[rule]
    est, U = run(A, comm, w=w, block=block, **opts)
    proj, approx = errors(A, est, U, w)
    bound = est.error_bound_
    assert bound + SLACK * total >= proj
    assert bound + SLACK * total >= approx
    assert approx >= proj - SLACK * total  # S~ lies in span U
    if rule in ("l2_err", "l2_err_stream"):
        assert bound <= 0.1 * total * (1 + 1e-12)
    if rule == "rel_l2_err":
        assert bound <= 0.05 * total * (1 + 1e-12)
    # singular values of S~ = U Gamma; |sigma_i(S) - sigma_i(S~)| <= ||S - S~||_2 <= bound
    _, sref = msvd(A, w)
    k = est.n_components_
    assert np.all(np.abs(est.singular_values_ - sref[:k]) <= bound + SLACK * total)


def adversarial(rng, kind):
    n = 90
    base = prescribed(rng, n, 12, np.logspace(0, -3, 6))
    if kind == "duplicates":
        A = np.hstack([base, base[:, :5], base[:, :5]])
    elif kind == "zeros":
        A = np.hstack([np.zeros((n, 3)), base[:, :6], np.zeros((n, 4)), base[:, 6:]])
    elif kind == "huge":
        A = 1e150 * base
    elif kind == "tiny":
        A = 1e-14 * base
    elif kind == "mixed_scales":
        A = np.hstack([base[:, :4] * 1e150, base[:, 4:8], base[:, 8:] * 1e-14])
    elif kind == "nearly_dependent":
        A = np.hstack([base, base[:, :6] + 1e-13 * rng.standard_normal((n, 6))])
    else:
        raise AssertionError(kind)
    return A


KINDS = ["duplicates", "zeros", "huge", "tiny", "mixed_scales", "nearly_dependent"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "order", [pytest.param("given", marks=pytest.mark.partition), "reversed", "norm_ascending"]
)
def test_adversarial_columns(comm, rng, kind, order):
    A = adversarial(rng, kind)
    if order == "reversed":
        A = A[:, ::-1]
    elif order == "norm_ascending":
        A = A[:, np.argsort(np.linalg.norm(A, axis=0), kind="stable")]
    total = mnorm(A)
    _, sref = msvd(A)
    # untruncated: the numerically nonzero spectrum, to 1e-10 sigma_1
    est, U = run(A, comm, block=4)
    k = est.n_components_
    keep = sref > 1e-9 * sref[0]
    assert k >= int(np.count_nonzero(keep))
    np.testing.assert_allclose(
        est.singular_values_[: keep.sum()], sref[keep], rtol=0, atol=1e-10 * sref[0]
    )
    assert np.all(est.singular_values_[keep.sum() :] <= 1e-9 * sref[0])
    assert np.abs(U.T @ U - np.eye(k)).max() <= 1e-12
    proj, approx = errors(A, est, U)
    assert proj <= est.error_bound_ + SLACK * total
    assert approx <= est.error_bound_ + SLACK * total
    # truncated to 3 modes: the bound still holds, and is no better than the optimum
    est, U = run(A, comm, block=4, rank=3)
    proj, approx = errors(A, est, U)
    assert proj <= est.error_bound_ + SLACK * total
    assert approx <= est.error_bound_ + SLACK * total
    assert est.error_bound_ >= np.sqrt(np.sum(sref[3:] ** 2)) * (1 - 1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("order", ["given", "reversed"])
def test_adversarial_columns_with_error_rule(comm, rng, kind, order):
    """Truncated by an allowance (weak directions charged to it): the bound, the allowance,
    orthonormality and the singular values (Weyl: |sigma_i - sigma_i^ref| <= bound) hold."""
    A = adversarial(rng, kind)
    if order == "reversed":
        A = A[:, ::-1]
    total = mnorm(A)
    _, sref = msvd(A)
    rel = 1e-4
    est, _ = run(A, comm, block=4, rel_l2_err=rel)
    est.check_orthonormality()
    U = gather_rows(est.modes_, comm)
    k = est.n_components_
    assert np.abs(U.T @ U - np.eye(k)).max() <= 1e-12
    proj, approx = errors(A, est, U)
    assert proj <= est.error_bound_ + SLACK * total
    assert approx <= est.error_bound_ + SLACK * total
    assert est.error_bound_ <= rel * total * (1 + 1e-12)
    assert np.all(np.abs(est.singular_values_ - sref[:k]) <= est.error_bound_ + SLACK * total)
    assert np.sqrt(np.sum(sref[k:] ** 2)) <= est.error_bound_ + SLACK * total


def test_nan_block_refused_state_unchanged(comm, rng):
    A = prescribed(rng, 60, 20, np.logspace(0, -2, 5))
    est, _ = run(A, comm, block=5, rank=4)
    before = {
        k: np.copy(getattr(est, k))
        for k in (
            "modes_",
            "singular_values_",
            "coefficients_",
            "n_samples_seen_",
            "discarded_energy_",
            "total_energy_",
        )
    }
    bad = distribute_rows(A[:, :3], comm)
    if comm.rank == comm.size - 1:  # only the last rank sees the NaN
        bad[-1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        est.partial_fit(bad)
    wrong = np.ones((distribute_rows(A, comm).shape[0] + (comm.rank == 0), 2))
    with pytest.raises(ValueError, match="local rows"):
        est.partial_fit(wrong)
    for k, v in before.items():
        np.testing.assert_array_equal(getattr(est, k), v)
    # and the estimator still works afterwards
    est.partial_fit(distribute_rows(A[:, :3], comm))
    assert est.n_samples_seen_ == 23


def test_invalid_options_raise_on_every_rank(comm):
    X = np.ones((5, 2))
    with pytest.raises(ValueError, match="at most one of"):
        IncrementalSVD(l2_err=1.0, rel_l2_err=0.1, comm=comm).partial_fit(X)
    with pytest.raises(ValueError, match="novelty_tol"):
        IncrementalSVD(novelty_tol=-1.0, comm=comm).partial_fit(X)
    with pytest.raises(ValueError, match="rank must be"):
        IncrementalSVD(rank=-2, comm=comm).partial_fit(X)


def test_truncate_keeps_bound(comm, rng):
    n, m = 80, 40
    A = prescribed(rng, n, m, np.logspace(0, -3, 15))
    est, _ = run(A, comm, block=6)
    tol = 1e-2 * mnorm(A)
    est.truncate(l2_err=tol)
    U = gather_rows(est.modes_, comm)
    proj, approx = errors(A, est, U)
    assert est.error_bound_ <= tol
    assert proj <= est.error_bound_ + SLACK * mnorm(A)
    _, sref = msvd(A)
    # the POD of A at the same tolerance keeps no more modes than needed (same count here,
    # since nothing was discarded before the truncation)
    tails = np.cumsum(sref[::-1] ** 2)[::-1]
    n_opt = int(np.argmax(np.append(tails, 0.0) <= tol**2))
    assert est.n_components_ == n_opt


def test_fit_equals_partial_fit_stream(comm, rng):
    A = prescribed(rng, 50, 23, np.logspace(0, -1, 6))
    est, U = run(A, comm, block=5, l2_err=0.01 * mnorm(A), n_total=23)
    est2 = IncrementalSVD(comm=comm, l2_err=0.01 * mnorm(A)).fit(distribute_rows(A, comm), chunk=5)
    np.testing.assert_allclose(est2.singular_values_, est.singular_values_, rtol=1e-13)
    assert est2.error_bound_ == pytest.approx(est.error_bound_, rel=1e-10, abs=1e-300)
    # fit streams the same blocks: the modes and coefficients are those of the plain
    # stream, to round-off
    np.testing.assert_allclose(gather_rows(est2.modes_, comm), U, rtol=0, atol=1e-12)
    np.testing.assert_allclose(est2.coefficients_, est.coefficients_, rtol=0, atol=1e-12)


@pytest.mark.partition
def test_fit_with_nan_in_a_later_block_keeps_the_earlier_blocks(comm, rng):
    """A NaN in block 3 of ``fit`` (on the last rank only) is refused on every rank, and the
    state is that of the first two blocks."""
    A = prescribed(rng, 80, 30, np.logspace(0, -3, 12))
    ref, Uref = run(A[:, :20], comm, block=10, rank=8)
    bad = A.copy()
    bad[-1, 24] = np.nan  # last row: on the last rank only
    est = IncrementalSVD(comm=comm, rank=8)
    with pytest.raises(ValueError, match="NaN or Inf"):
        est.fit(distribute_rows(bad, comm), chunk=10)
    assert est.n_samples_seen_ == 20
    np.testing.assert_allclose(est.singular_values_, ref.singular_values_, rtol=1e-13)
    np.testing.assert_allclose(gather_rows(est.modes_, comm), Uref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pool", [1, 2])
def test_tall_stream_matches_lapack_at_any_blas_thread_count(rng, pool):
    """A tall stream with one or two BLAS threads (a limit: one core runs it as well) matches
    LAPACK: values, subspace, orthonormality."""
    from threadpoolctl import threadpool_limits

    n, m = 60_000, 120
    A = prescribed(rng, n, m, np.logspace(0, -5, 30))
    with threadpool_limits(limits=pool, user_api="blas"):
        est = IncrementalSVD(rank=30).fit(A, chunk=30)
    Uref, sref, _ = np.linalg.svd(A, full_matrices=False)
    assert est.n_components_ == 30
    np.testing.assert_allclose(est.singular_values_, sref[:30], rtol=0, atol=1e-11)
    assert sin_largest_angle(est.modes_, Uref[:, :30]) <= 1e-9
    assert np.abs(est.modes_.T @ est.modes_ - np.eye(30)).max() <= 1e-12
    # nothing was truncated beyond rank 30: the bound is the exact tail of the stream
    assert est.error_bound_ >= np.sqrt(np.sum(sref[30:] ** 2)) * (1 - 1e-9)


@pytest.mark.partition
def test_weak_new_directions_match_lapack_and_the_stream(comm, rng):
    """Weak new directions (sigma down to 1e-6) are resolved beyond what the eigen route of
    the residual basis gives (orthonormal only to about u/sigma^2 before its Cholesky pass):
    fit equals the plain partial_fit stream and LAPACK, and the coefficients are U^T A."""
    A = prescribed(rng, 300, 60, np.logspace(0, -6, 30))
    est = IncrementalSVD(comm=comm, rank=30).fit(distribute_rows(A, comm), chunk=10)
    ref, Uref = run(A, comm, block=10, rank=30)
    U = gather_rows(est.modes_, comm)
    np.testing.assert_allclose(est.singular_values_, ref.singular_values_, rtol=0, atol=1e-13)
    np.testing.assert_allclose(U, Uref, rtol=0, atol=1e-9)  # sigma_30 = 1e-6: u / sigma
    Ul, sl, _ = np.linalg.svd(A, full_matrices=False)
    np.testing.assert_allclose(est.singular_values_, sl[:30], rtol=0, atol=1e-12)
    assert sin_largest_angle(U, Ul[:, :30]) <= 1e-8
    assert np.abs(U.T @ U - np.eye(30)).max() <= 1e-12
    np.testing.assert_allclose(est.coefficients_, U.T @ A, rtol=0, atol=1e-11)
