"""rom.linalg kernels against numpy/LAPACK at 1, 2 and 3 ranks, and the error bounds of the
compression methods against the true projection error on data with a tail near 1e-12."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg as sla

from rom import linalg
from rom.compression import compress
from rom.compression import dist_hapod
from rom.compression import inc_hapod
from rom.compression import pod
from rom.parallel import distribute_rows
from rom.parallel import gather_rows

pytestmark = [pytest.mark.mpi, pytest.mark.partition]

U_EPS = np.finfo(float).eps


def prescribed(rng, n, sv, m=None):
    """A matrix with singular values ``sv`` (random orthonormal factors)."""
    k = len(sv)
    m = k if m is None else m
    Ul = np.linalg.qr(rng.standard_normal((n, k)))[0]
    Vr = np.linalg.qr(rng.standard_normal((m, k)))[0]
    return (Ul * sv) @ Vr.T


def weights(n):
    return 1.0 + 0.5 * np.sin(np.arange(n))


def diag_product(comm, w):
    wl = distribute_rows(w, comm)
    return lambda X: wl[:, None] * X


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("weighted", [False, True])
def test_gram_matrix_sums_over_ranks(comm, rng, weighted):
    n = 101
    X, Y = rng.standard_normal((n, 7)), rng.standard_normal((n, 4))
    w = weights(n) if weighted else np.ones(n)
    product = diag_product(comm, w) if weighted else None
    Xl, Yl = distribute_rows(X, comm), distribute_rows(Y, comm)
    G = linalg.gram_matrix(Xl, product=product, comm=comm)
    np.testing.assert_allclose(G, X.T @ (w[:, None] * X), rtol=1e-13, atol=1e-13)
    assert np.array_equal(G, G.T)
    G2 = linalg.gram_matrix(Xl, Yl, product=product, comm=comm)
    np.testing.assert_allclose(G2, X.T @ (w[:, None] * Y), rtol=1e-13, atol=1e-13)


def test_right_solve_upper_equals_triangular_solve(rng):
    Q = rng.standard_normal((5000, 40))
    Q0 = Q.copy()
    R = np.triu(rng.standard_normal((40, 40))) + 10.0 * np.eye(40)
    Y = linalg.right_solve_upper(Q, R)
    ref = sla.solve_triangular(R, Q.T, trans="T", lower=False).T  # Y R = Q
    np.testing.assert_allclose(Y, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    np.testing.assert_array_equal(Q, Q0)  # the input is left alone


@pytest.mark.parametrize("weighted", [False, True])
def test_cholesky_qr_resolves_an_ill_conditioned_matrix(comm, rng, weighted):
    """kappa = 1e12: Q is M-orthonormal, QR = X, and R has the M-singular values of X (LAPACK
    on sqrt(W) X) down to the documented floor."""
    n = 600
    sv = np.logspace(0, -12, 30)
    X = prescribed(rng, n, sv)
    w = weights(n) if weighted else np.ones(n)
    product = diag_product(comm, w) if weighted else None
    Ql, R = linalg.cholesky_qr(distribute_rows(X, comm), product=product, comm=comm)
    Q = gather_rows(Ql, comm)
    assert np.abs(Q.T @ (w[:, None] * Q) - np.eye(Q.shape[1])).max() <= 1e-13
    np.testing.assert_allclose(Q @ R, X, rtol=0, atol=1e-13)
    sref = np.linalg.svd(np.sqrt(w)[:, None] * X, compute_uv=False)
    floor = U_EPS * math.sqrt(11 * 30 * (n * 30 + 30 * 31))
    np.testing.assert_allclose(np.linalg.svd(R, compute_uv=False), sref, rtol=0, atol=3 * floor)


def test_cholesky_qr_and_tsqr_on_rank_deficient_input(comm, rng):
    B = prescribed(rng, 300, np.array([3.0, 2.0, 1.0, 0.5]))
    X = np.hstack([B, B[:, :2], np.zeros((300, 2))])  # rank 4, 8 columns
    Ql, R = linalg.cholesky_qr(distribute_rows(X, comm), comm=comm)
    Q = gather_rows(Ql, comm)
    assert Q.shape[1] == 4
    assert np.abs(Q.T @ Q - np.eye(4)).max() <= 1e-13
    np.testing.assert_allclose(Q @ R, X, rtol=0, atol=1e-13)
    Qt, Rt = linalg.tsqr(distribute_rows(X, comm), comm=comm)
    Qt = gather_rows(Qt, comm)
    np.testing.assert_allclose(Qt @ Rt, X, rtol=0, atol=1e-13)
    assert np.abs(Qt.T @ Qt - np.eye(Qt.shape[1])).max() <= 1e-13
    with pytest.raises(np.linalg.LinAlgError, match="linearly dependent"):
        linalg.orthonormalize(distribute_rows(X, comm), comm=comm)


@pytest.mark.parametrize("weighted", [False, True])
def test_project_out_is_cgs2(comm, rng, weighted):
    """Two passes leave H M-orthogonal to U to working precision, C = U L + H."""
    n = 400
    w = weights(n) if weighted else np.ones(n)
    product = diag_product(comm, w) if weighted else None
    Ul, _ = linalg.cholesky_qr(
        distribute_rows(rng.standard_normal((n, 12)), comm), product=product, comm=comm
    )
    U = gather_rows(Ul, comm)
    C = U @ rng.standard_normal((12, 5)) * 1e6 + rng.standard_normal((n, 5))  # mostly along U
    Hl, L = linalg.project_out(Ul, distribute_rows(C, comm), product=product, comm=comm)
    H = gather_rows(Hl, comm)
    np.testing.assert_allclose(U @ L + H, C, rtol=0, atol=1e-9)
    assert np.abs(U.T @ (w[:, None] * H)).max() <= 1e-13 * np.abs(H).max() * math.sqrt(n)
    H1, _ = linalg.project_out(Ul, distribute_rows(C, comm), product=product, comm=comm, passes=1)
    assert (
        np.abs(U.T @ (w[:, None] * gather_rows(H1, comm))).max()
        > np.abs(U.T @ (w[:, None] * H)).max()
    )  # one pass leaves more behind (large coefficients: cancellation)


def test_range_basis_eigen_and_accurate_routes(comm, rng):
    n = 500
    # well resolved values: the eigen route; dropped energy = the values below the threshold
    sv = np.array([1.0, 0.5, 0.1, 1e-3, 1e-7, 1e-9])
    H = prescribed(rng, n, sv)
    rb = linalg.range_basis(distribute_rows(H, comm), comm=comm, drop_below=1e-12)
    J = gather_rows(rb.basis, comm)
    assert not rb.accurate and J.shape[1] == 4
    assert np.abs(J.T @ J - np.eye(4)).max() <= 1e-14
    np.testing.assert_allclose(rb.dropped, 1e-14 + 1e-18, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(H - J @ rb.coefficients) ** 2, rb.dropped, rtol=1e-5)
    # a weak direction that must be kept (no budget): the accurate route, values to round-off
    rb = linalg.range_basis(distribute_rows(H, comm), comm=comm, drop_below=1e-20)
    J = gather_rows(rb.basis, comm)
    assert rb.accurate and J.shape[1] == 6
    assert np.abs(J.T @ J - np.eye(6)).max() <= 1e-13
    np.testing.assert_allclose(
        np.linalg.svd(rb.coefficients, compute_uv=False), sv, rtol=0, atol=1e-15
    )
    # ... unless the budget covers it: dropped into it, the eigen route again
    rb = linalg.range_basis(distribute_rows(H, comm), comm=comm, drop_below=1e-20, budget=1e-13)
    assert not rb.accurate and rb.basis.shape[1] == 4
    np.testing.assert_allclose(rb.dropped, 1e-14 + 1e-18, rtol=1e-6)


def test_reorthonormalize_keeps_u_sigma(comm, rng):
    n, k = 300, 8
    Q = np.linalg.qr(rng.standard_normal((n, k)))[0]
    U = Q + 1e-7 * rng.standard_normal((n, k))  # drifted modes
    sv = np.logspace(0, -2, k)
    Gam = rng.standard_normal((k, 11))
    rep = linalg.reorthonormalize(distribute_rows(U, comm), sv, comm=comm, orth_tol=1e-13)
    U2 = gather_rows(rep.modes, comm)
    assert rep.error > 1e-8
    assert np.abs(U2.T @ U2 - np.eye(k)).max() <= 1e-13
    np.testing.assert_allclose(U2 * rep.singular_values @ rep.right.T, U * sv, atol=1e-14)
    np.testing.assert_allclose(U2 @ (rep.left @ Gam), U @ Gam, atol=1e-13)
    np.testing.assert_allclose(np.abs(np.diag(U2.T @ Q)), 1.0, atol=1e-6)
    assert np.all(np.diag(U2.T @ Q) > 0)  # each mode keeps its orientation
    ok = linalg.reorthonormalize(rep.modes, rep.singular_values, comm=comm, orth_tol=1e-13)
    assert ok.modes is rep.modes  # nothing to repair


def test_sign_flips_ties_go_to_the_first_entry():
    V = np.array([[0.6, -0.5], [-0.6 * (1 + 1e-12), 0.5], [0.1, -0.7]])
    np.testing.assert_array_equal(linalg.sign_flips(V), [1.0, -1.0])
    assert linalg.sign_flips(np.zeros((3, 0))).shape == (0,)


def test_tail_energies_resolve_a_tiny_tail():
    sv = np.concatenate([[1.0], np.full(10, 1e-10)])
    t = linalg.tail_energies(sv)
    assert t[1] == pytest.approx(1e-19, rel=1e-14)  # not 1 + 1e-19 - 1 (= 0 in doubles)
    assert t[-1] == 0.0


# --------------------------------------------------------------------------- bounds vs truth
def _tiny_tail_data(rng):
    """400 x 60, 20 values from 1 to 1e-3 and 40 near 1e-12 (relative tail ~ 6e-12)."""
    sv = np.concatenate([np.logspace(0, -3, 20), 1e-12 * np.logspace(0, -0.5, 40)])
    return prescribed(rng, 400, sv, m=60), sv


@pytest.mark.parametrize(
    "method, opts",
    [
        ("batch", {}),
        ("incremental", {}),
        ("hapod", {}),
        ("dist_hapod", {}),
        ("inc_hapod", {}),
    ],
)
def test_error_bound_tracks_a_tail_near_1e_12(comm, rng, method, opts):
    """On data whose discarded tail is ~1e-12 relative, the bound is >= the true projection
    error (explicit, numpy) and within 10x of it: discarded energy is carried as sums of
    dropped sigma^2, never as total - kept (that difference would put a sqrt(u) ~ 1.5e-8 floor
    under the bound)."""
    A, sv = _tiny_tail_data(rng)
    norm = np.linalg.norm(A)
    l2 = 1e-9 * norm  # between the tail (~6e-12) and the 20th value (1e-3)
    X = distribute_rows(A, comm)
    if method in ("batch", "incremental", "hapod"):
        res = compress(X, method=method, chunk=8, comm=comm, l2_err=l2, **opts)
    else:
        f = dist_hapod if method == "dist_hapod" else inc_hapod
        res = f(X, eps=l2 / math.sqrt(A.shape[1]), chunk=8, comm=comm)
    U = gather_rows(res.modes, comm)
    assert res.n_modes >= 20
    true = np.linalg.norm(A - U @ (U.T @ A))
    slack = 1e-14 * norm  # rounding of the explicit projection
    assert true <= res.error_bound + slack
    assert res.error_bound <= 10 * true + slack
    assert res.error_bound <= 1e-10 * norm  # far below sqrt(u) ||A||
    # the tail itself is the optimum for this rank: nothing much worse than LAPACK
    assert true >= math.sqrt(np.sum(sv[res.n_modes :] ** 2)) * (1 - 1e-6)


def test_accurate_pod_bound_counts_what_its_factorization_left_out(comm, rng):
    """At 400 x 60 the accurate method's floor (u sqrt(11 m (nm + m(m+1))) ~ 1e-12) is at the
    tail: values there are not resolved, but the bound adds the explicit factorization
    residual, so it stays >= the true error (= the LAPACK tail) and within 2x of it."""
    A, sv = _tiny_tail_data(rng)
    res = pod(distribute_rows(A, comm), comm=comm, pod_method="qr", rank=20)
    tail = math.sqrt(np.sum(sv[20:] ** 2))
    U = gather_rows(res.modes, comm)
    true = np.linalg.norm(A - U @ (U.T @ A))
    np.testing.assert_allclose(true, tail, rtol=1e-2)
    assert true <= res.error_bound + 1e-14 * np.linalg.norm(A)
    assert res.error_bound <= 2 * true


def test_lost_norm_bound_without_tall_product(comm, rng):
    """With M = I the part the shifted Cholesky-QR drops may be bounded from the Gram matrix
    alone (rounding bound of Higham §3.1): that bound is >= the explicit norm, and a POD
    whose truncation error dwarfs it reports a bound >= the true error (numpy) and within
    1e-3 of it; with a tail near the floor the explicit norm is kept (bound within 2x)."""
    sv = 0.6 ** np.arange(70)  # down to 3e-16 sigma_1: the passes drop directions
    A = prescribed(rng, 2000, sv)
    X = distribute_rows(A, comm)
    exact = linalg.cholesky_qr_deferred(X, comm=comm)[3]
    cheap = linalg.cholesky_qr_deferred(X, comm=comm, negligible=math.inf)[3]
    assert 0 < exact < cheap < 1e-6 * sv[0]  # both tiny; the bound is the looser one
    for rank, rtol in ((10, 1e-3), (60, 1.0)):
        res = pod(X, comm=comm, pod_method="qr", rank=rank)
        U = gather_rows(res.modes, comm)
        true = np.linalg.norm(A - U @ (U.T @ A))
        assert true <= res.error_bound + 1e-14 * np.linalg.norm(A)
        assert res.error_bound <= (1 + rtol) * true + 1e-14 * np.linalg.norm(A)


# --------------------------------------------------------------------------- product check
def p1_mass(n_local):
    """This rank's block of a P1 mass matrix on a uniform 1-D mesh (SPD, block diagonal)."""
    import scipy.sparse as sp

    h = 1.0 / max(n_local, 1)
    off = np.full(n_local - 1, h / 6)
    return sp.diags([off, np.full(n_local, 4 * h / 6), off], [-1, 0, 1]).tocsr()


SOLVERS = {
    "pod-snapshots": lambda X, M, c: pod(X, product=M, comm=c, rank=3),
    "pod-qr": lambda X, M, c: pod(X, product=M, comm=c, pod_method="qr", rank=3),
    "incremental": lambda X, M, c: compress(X, method="incremental", product=M, comm=c, chunk=3),
    "hapod": lambda X, M, c: compress(X, method="hapod", product=M, comm=c, rel_l2_err=1e-6),
    "randomized": lambda X, M, c: compress(X, method="randomized", product=M, comm=c, rank=3),
}


def test_gram_check_threshold_against_lapack(rng):
    from rom.parallel import gram_error
    from rom.parallel import gram_tolerance

    m = 6
    V = np.linalg.qr(rng.standard_normal((m, m)))[0]
    tau = gram_tolerance(m)
    assert tau == 100 * 50 * U_EPS
    for lam_min, bad in [(-3 * tau, True), (-0.3 * tau, False), (0.0, False)]:
        lam = np.array([lam_min, 0.0, 0.1, 0.3, 0.7, 1.0])
        G = (V * lam) @ V.T
        assert np.linalg.eigvalsh(G)[0] == pytest.approx(lam_min, abs=1e-15)  # LAPACK
        msg = gram_error(G)
        assert (msg is not None) == bad
        if bad:
            assert "product is not positive semidefinite on the snapshots" in msg
    G = np.eye(m)
    G[0, 1] = 10 * tau
    assert "product is not symmetric on the snapshots" in gram_error(G)
    assert gram_error(np.full((2, 2), np.nan)) is None  # NaN is named by the callers


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_product_check_accepts_rank_deficient_data_and_mass_matrices(comm, rng, solver):
    n, r = 400, 4
    A = prescribed(rng, n, 10.0 ** -np.arange(r), m=12)
    A = np.hstack([A, A[:, :3], np.zeros((n, 1))])  # duplicate and zero columns
    X = distribute_rows(A, comm)
    res = SOLVERS[solver](X, p1_mass(X.shape[0]), comm)
    assert res.n_modes >= 1


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_indefinite_or_asymmetric_operator_is_named(comm, rng, solver):
    """Callables: product_error cannot inspect them, the Gram matrix of the data can."""
    X = 1.0 + 0.1 * distribute_rows(rng.standard_normal((60, 8)), comm)
    nl = X.shape[0]

    def indefinite(Y):  # I - (2/n) 1 1^T on this rank's block: eigenvalue -1 on constants
        return Y - (2.0 / nl) * np.sum(Y, axis=0)

    T = np.triu(rng.uniform(0.5, 1.5, (nl, nl)), 1)

    def asymmetric(Y):
        return Y + 3.0 * (T @ Y)

    with pytest.raises(ValueError, match="product is not positive semidefinite on the snapshots"):
        SOLVERS[solver](X, indefinite, comm)
    with pytest.raises(ValueError, match="product is not symmetric on the snapshots"):
        SOLVERS[solver](X, asymmetric, comm)


def test_accurate_pod_meets_a_tolerance_it_can_reach_with_its_own_bound(comm, rng):
    """The rank rule is applied to the reported bound (e_N + ||E||)^2 itself: for tolerances
    well above the floor, no ToleranceWarning, bound <= tolerance, true error <= bound."""
    import warnings

    A = prescribed(rng, 20000, 0.55 ** np.arange(60))
    norm = np.linalg.norm(A)
    X = distribute_rows(A, comm)
    for rel in np.logspace(-1, -11, 11):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = pod(X, comm=comm, pod_method="qr", rel_l2_err=rel)
        U = gather_rows(res.modes, comm)
        true = np.linalg.norm(A - U @ (U.T @ A))
        assert true <= res.error_bound + 1e-14 * norm
        assert res.error_bound <= rel * math.sqrt(res.total_energy) * (1 + 1e-12)
