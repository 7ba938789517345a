"""Batch POD against LAPACK (numpy.linalg.svd), at 1, 2 and 3 ranks."""

from __future__ import annotations

import numpy as np
import pytest

import rom
from rom.parallel import distribute_rows
from rom.parallel import gather_rows
from rom.parallel import row_range

pytestmark = [pytest.mark.mpi, pytest.mark.partition]

METHODS = ["snapshots", "qr"]


def prescribed(rng, n, m, sv):
    """A = U diag(sv) V^T with random orthonormal U (n x r), V (m x r)."""
    r = len(sv)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((m, r)))
    return (U * sv) @ V.T


def lapack_msvd(A, w=None):
    """Reference M-SVD with M = diag(w) through LAPACK: svd of M^{1/2} A."""
    if w is None:
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        return U, s, Vt.T
    sq = np.sqrt(w)[:, None]
    U, s, Vt = np.linalg.svd(sq * A, full_matrices=False)
    return U / sq, s, Vt.T


def projector_distance(U1, U2, w=None):
    """Spectral norm of the difference of the M-orthogonal projectors (sine of largest angle)."""
    W = np.ones(U1.shape[0]) if w is None else w
    s1 = np.sqrt(W)[:, None]
    Q1, _ = np.linalg.qr(s1 * U1)
    Q2, _ = np.linalg.qr(s1 * U2)
    if Q1.shape[1] != Q2.shape[1]:
        return np.inf
    # sin(theta_max) = ||(I - Q1 Q1^T) Q2||_2, accurate for tiny angles (unlike sqrt(1 - cos^2))
    return float(np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2))


def diag_product(w_local):
    return lambda X: w_local[:, None] * X if X.ndim == 2 else w_local * X


def pod_of_prescribed(comm, rng, method, n, m, sv):
    """``A`` (n x m, nonzero singular values ``sv``) and its ``rom.pod`` by ``method``."""
    A = prescribed(rng, n, m, sv)
    return A, rom.pod(distribute_rows(A, comm), comm=comm, pod_method=method)


@pytest.mark.parametrize("method", METHODS)
def test_singular_values_and_modes_match_lapack(comm, rng, method):
    A, res = pod_of_prescribed(comm, rng, method, 600, 40, np.logspace(0, -5, 25))
    U, s = res.modes, res.singular_values
    Uref, sref, _ = lapack_msvd(A)
    assert len(s) == 25
    atol = (1e-12 if method == "qr" else 1e-10) * sref[0]  # Gram eigenvalues: error ~ u s1^2 / s
    np.testing.assert_allclose(s, sref[:25], rtol=0, atol=atol)
    Ug = gather_rows(U, comm)
    # leading, well-separated modes agree with LAPACK's up to sign
    for j in range(10):
        sign = np.sign(Ug[:, j] @ Uref[:, j])
        np.testing.assert_allclose(Ug[:, j] * sign, Uref[:, j], atol=1e-9)
    assert np.abs(Ug.T @ Ug - np.eye(len(s))).max() <= 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_small_singular_values_accuracy(comm, rng, method):
    """The accurate method resolves values far below sqrt(eps) * sigma_1; the fast one stops at 1e-7."""
    A, res = pod_of_prescribed(comm, rng, method, 500, 30, np.logspace(0, -12, 30))
    s = res.singular_values
    sref = np.linalg.svd(A, compute_uv=False)
    if method == "qr":
        assert len(s) == 30
        np.testing.assert_allclose(s, sref, rtol=1e-3)  # relative accuracy at 1e-12 * sigma_1
        np.testing.assert_allclose(s[:12], sref[:12], rtol=1e-9)
    else:
        assert np.all(s > 1e-7 * s[0])
        np.testing.assert_allclose(s[:8], sref[:8], rtol=1e-6)


def test_accurate_method_floor_is_the_documented_one(comm, rng):
    """The accurate method returns every value above its documented floor
    u sqrt(11 m (n m + m (m + 1))) sigma_1 (1.3e-11 at 40,000 x 90) to LAPACK's accuracy, and
    none far below it."""
    n, m = 40_000, 90
    sv = np.logspace(0, -13, 40)
    A = prescribed(rng, n, m, sv)
    res = rom.pod(distribute_rows(A, comm), comm=comm, pod_method="qr")
    s = res.singular_values
    u = np.finfo(float).eps
    floor = u * np.sqrt(11 * m * (n * m + m * (m + 1)))
    above = sv > 3 * floor
    assert np.count_nonzero(above) <= len(s) <= np.count_nonzero(sv > floor / 3)
    np.testing.assert_allclose(s[: np.count_nonzero(above)], sv[above], rtol=1e-3, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_rank_deficient_duplicate_and_zero_columns(comm, rng, method):
    n = 400
    B = prescribed(rng, n, 8, np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1]))
    A = np.hstack([B, B[:, :3], np.zeros((n, 4)), 2.0 * B[:, 5:6]])  # rank 8, 16 columns
    res = rom.pod(distribute_rows(A, comm), comm=comm, pod_method=method)
    U, s = res.modes, res.singular_values
    sref = np.linalg.svd(A, compute_uv=False)
    assert len(s) == 8
    np.testing.assert_allclose(s, sref[:8], rtol=1e-10)
    Ug = gather_rows(U, comm)
    assert np.abs(Ug.T @ Ug - np.eye(8)).max() <= 1e-12
    # the modes span the column space: projection of A on them is exact
    assert np.linalg.norm(A - Ug @ (Ug.T @ A)) <= 1e-10 * np.linalg.norm(A)


@pytest.mark.parametrize("method", METHODS)
def test_spd_product(comm, rng, method):
    """M-orthonormal modes and M-singular values against LAPACK on diag(w)^{1/2} A."""
    n, m = 500, 30
    A = prescribed(rng, n, m, np.logspace(0, -4, 20))
    w = rng.uniform(0.5, 3.0, n)  # a lumped mass matrix: SPD, row-distributable
    w_loc = distribute_rows(w, comm)
    res = rom.pod(
        distribute_rows(A, comm), comm=comm, pod_method=method, product=diag_product(w_loc)
    )
    U, s = res.modes, res.singular_values
    Uref, sref, _ = lapack_msvd(A, w)
    np.testing.assert_allclose(s, sref[:20], rtol=1e-9 if method == "qr" else 1e-7)
    Ug = gather_rows(U, comm)
    assert np.abs(Ug.T @ (w[:, None] * Ug) - np.eye(20)).max() <= 1e-12
    assert projector_distance(Ug[:, :10], Uref[:, :10], w) <= 1e-9


def test_dense_spd_product_serial(rng):
    """A full (non-diagonal) SPD product, serial: reference through its Cholesky factor."""
    n, m = 200, 25
    A = prescribed(rng, n, m, np.logspace(0, -3, 15))
    K = rng.standard_normal((n, n))
    M = K @ K.T / n + np.eye(n)
    L = np.linalg.cholesky(M)
    sref = np.linalg.svd(L.T @ A, compute_uv=False)
    for method in METHODS:
        res = rom.pod(A, product=M, pod_method=method)
        U, s = res.modes, res.singular_values
        np.testing.assert_allclose(s, sref[:15], rtol=1e-8)
        assert np.abs(U.T @ M @ U - np.eye(15)).max() <= 1e-12


def expected_rank(sref, *, rank=None, rtol=None, l2_err=None, rel_l2_err=None):
    """Independent statement of the truncation rules on LAPACK singular values."""
    total = float(np.sum(sref**2))
    cands = []
    if rtol is not None:
        cands.append(sum(1 for x in sref if x >= rtol * sref[0]))
    for tol2 in ([l2_err**2] if l2_err is not None else []) + (
        [rel_l2_err**2 * total] if rel_l2_err is not None else []
    ):
        N = 0
        while sum(x * x for x in sref[N:]) > tol2:
            N += 1
        cands.append(N)
    N = max(cands) if cands else len(sref)
    return min(N, rank) if rank is not None else N


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "rule",
    [
        {"rank": 7},
        {"rtol": 1e-2},
        {"l2_err": 1e-3},
        {"rel_l2_err": 1e-2},
        {"rel_l2_err": 1e-4, "rank": 9},
        {"rtol": 1e-1, "l2_err": 1e-4},
    ],
)
def test_truncation_rules(comm, rng, method, rule):
    n, m = 300, 30
    sref_in = np.logspace(0, -6, 30) * (1 + 0.1 * np.sin(np.arange(30)))
    A = prescribed(rng, n, m, np.sort(sref_in)[::-1])
    sref = np.linalg.svd(A, compute_uv=False)
    res = rom.pod(distribute_rows(A, comm), comm=comm, pod_method=method, **rule)
    s = res.singular_values
    assert len(s) == expected_rank(sref, **rule)
    assert res.method == "batch" and res.n_snapshots == m and res.n_modes == len(s)
    # the reported bound is the LAPACK tail, the total energy the Frobenius norm
    tail = np.sqrt(np.sum(sref[len(s) :] ** 2))
    np.testing.assert_allclose(res.error_bound, tail, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(res.total_energy, np.sum(A * A), rtol=1e-12)
    # right singular vectors: A^T U = V Sigma
    V = res.details["right_singular_vectors"]
    np.testing.assert_allclose(A.T @ gather_rows(res.modes, comm), V * s, atol=1e-9 * sref[0])


def test_results_identical_across_rank_counts(comm, rng):
    """Modes (with the sign convention) equal the serial computation on rank-local copies."""
    A = prescribed(rng, 333, 20, np.logspace(0, -3, 12))
    for method in METHODS:
        res = rom.pod(distribute_rows(A, comm), comm=comm, pod_method=method)
        U, s = res.modes, res.singular_values
        res = rom.pod(A, comm=None, pod_method=method)
        Us, ss = res.modes, res.singular_values  # serial, on every rank
        np.testing.assert_allclose(s, ss, rtol=1e-12)
        lo, hi = row_range(A.shape[0], comm)
        np.testing.assert_allclose(U, Us[lo:hi], atol=1e-10)


def test_pod_estimator_transform_roundtrip(comm, rng):
    A = prescribed(rng, 250, 15, np.logspace(0, -2, 6))
    X = distribute_rows(A, comm)
    est = rom.POD(rtol=1e-6, comm=comm).fit(X)
    assert est.n_components_ == 6
    C = est.transform(X)
    assert C.shape == (6, 15)
    np.testing.assert_allclose(gather_rows(est.inverse_transform(C), comm), A, atol=1e-12)
    assert est.projection_error(X) <= 1e-12
    est5 = rom.POD(rank=5, comm=comm).fit(X)
    sref = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(
        est5.projection_error(X), np.sqrt(np.sum(sref[5:] ** 2) / np.sum(sref**2)), rtol=1e-8
    )
    np.testing.assert_allclose(est5.error_bound_, np.sqrt(np.sum(sref[5:] ** 2)), rtol=1e-6)


def test_nan_is_refused_on_every_rank(comm, rng):
    A = rng.standard_normal((100, 5))
    X = distribute_rows(A, comm)
    if comm.rank == comm.size - 1:
        X[0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        rom.pod(X, comm=comm)


def test_bad_shapes_and_options(comm, rng):
    X = distribute_rows(rng.standard_normal((100, 5)), comm)
    Xbad = X[:, :4] if comm.rank == 0 else X
    if comm.size > 1:
        with pytest.raises(ValueError, match="columns"):
            rom.pod(Xbad, comm=comm)
    with pytest.raises(ValueError, match="2-D"):
        rom.pod(X[:, 0], comm=comm)
    with pytest.raises(ValueError, match="rtol"):
        rom.pod(X, comm=comm, rtol=-1.0)
    with pytest.raises(ValueError, match="method"):
        rom.pod(X, comm=comm, pod_method="svd")
    with pytest.raises(RuntimeError, match="not fitted"):
        rom.POD().transform(X)


def test_snapshot_method_warns_below_its_floor(rng):
    A = prescribed(rng, 200, 20, np.logspace(0, -12, 20))
    with pytest.warns(UserWarning, match="pod_method='qr'"):
        rom.pod(A, pod_method="snapshots", rel_l2_err=1e-11)


@pytest.mark.parametrize("pool", [1, 2])
def test_tall_method_of_snapshots_matches_lapack_at_any_blas_thread_count(rng, pool):
    """A tall matrix with one or two BLAS threads: values and modes match LAPACK, the modes are
    orthonormal to 1e-12 (the thread count is a limit: one core runs it as well)."""
    from threadpoolctl import threadpool_limits

    n, m = 40_000, 90
    A = prescribed(rng, n, m, np.logspace(0, -6, 30))
    Uref, sref, _ = lapack_msvd(A)
    with threadpool_limits(limits=pool, user_api="blas"):
        res = rom.pod(A, rank=30)
    U, s = res.modes, res.singular_values
    np.testing.assert_allclose(s, sref[:30], rtol=0, atol=1e-10)
    assert projector_distance(U, Uref[:, :30]) <= 1e-4  # sigma_30 = 1e-6: angle ~ u/s^2
    assert np.abs(U.T @ U - np.eye(30)).max() <= 1e-12


@pytest.mark.parametrize("pool", [1, 2])
def test_tall_accurate_method_matches_lapack_at_any_blas_thread_count(rng, pool):
    """The accurate method on a tall matrix resolves values far below the sqrt(u) floor of the
    method of snapshots (down to 1e-10, above this size's floor of about u m sqrt(11 n) =
    1.3e-11), with one or two BLAS threads."""
    from threadpoolctl import threadpool_limits

    n, m = 40_000, 90
    A = prescribed(rng, n, m, np.logspace(0, -10, 30))  # beyond the method of snapshots
    Uref, sref, _ = lapack_msvd(A)
    with threadpool_limits(limits=pool, user_api="blas"):
        res = rom.pod(A, pod_method="qr", rank=30)
    U, s = res.modes, res.singular_values
    np.testing.assert_allclose(s, sref[:30], rtol=0, atol=1e-14)
    assert projector_distance(U[:, :20], Uref[:, :20]) <= 1e-8
    assert np.abs(U.T @ U - np.eye(30)).max() <= 1e-12


@pytest.mark.parametrize("weighted", [False, True])
def test_auto_method_takes_snapshots_only_far_above_their_floor(comm, rng, weighted):
    """``pod_method="auto"``: at a tolerance far above the method of snapshots' resolution it
    runs that method (the same result as asking for it), near the floor the accurate one; in
    both cases the bound is >= the true error and tracks it (LAPACK/numpy reference)."""
    n, m = 600, 40
    sv = np.logspace(0, -14, m)
    A = prescribed(rng, n, m, sv)
    w = 1.0 + 0.5 * np.sin(np.arange(n)) if weighted else None
    product = diag_product(distribute_rows(w, comm)) if weighted else None
    X = distribute_rows(A, comm)
    W = np.ones(n) if w is None else w
    norm = np.sqrt(np.sum(W[:, None] * A * A))
    for rel, expected in ((1e-3, "snapshots"), (1e-11, "qr")):
        res = rom.pod(X, comm=comm, product=product, pod_method="auto", rel_l2_err=rel)
        assert res.details["pod_method"] == expected
        same = rom.pod(X, comm=comm, product=product, pod_method=expected, rel_l2_err=rel)
        np.testing.assert_array_equal(res.singular_values, same.singular_values)
        U = gather_rows(res.modes, comm)
        R = A - U @ (U.T @ (W[:, None] * A))
        true = np.sqrt(np.sum(W[:, None] * R * R))
        assert true <= res.error_bound + 1e-14 * norm
        assert res.error_bound <= 2 * true + 1e-14 * norm
        assert res.error_bound <= rel * norm
