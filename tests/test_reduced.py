"""Galerkin ROM of an affine heat equation, checked against an independent scipy FOM."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import rom
from rom.models import AffineDecomposition
from rom.models import LinearAffineROM
from rom.models import Parameters
from rom.models import space_time_error
from rom.parallel import distribute_rows
from rom.parallel import gather_rows
from rom.parallel import row_range

pytestmark = [pytest.mark.mpi, pytest.mark.partition]

N_DOF = 161
DT, N_STEPS = 0.01, 30


def fem_1d(n=N_DOF):
    """P1 finite elements on [0, 1] with two conductivity zones and a Robin end.

    A_1: stiffness on [0, 0.5], A_2: stiffness on [0.5, 1], A_3: Robin term at x = 1,
    f_1: unit flux at x = 0. Returns the (lumped-free) mass matrix, terms and nodes.
    """
    x = np.linspace(0.0, 1.0, n)
    h = np.diff(x)
    mid = 0.5 * (x[:-1] + x[1:])
    mats = []
    for zone in (mid < 0.5, mid >= 0.5):
        d = np.zeros(n)
        o = np.zeros(n - 1)
        k = zone / h
        d[:-1] += k
        d[1:] += k
        o -= k
        mats.append(sp.diags([o, d, o], [-1, 0, 1], format="csr"))
    robin = sp.csr_matrix(([1.0], ([n - 1], [n - 1])), shape=(n, n))
    dm = np.zeros(n)
    dm[:-1] += h / 3
    dm[1:] += h / 3
    M = sp.diags([h / 6, dm, h / 6], [-1, 0, 1], format="csr")
    f = np.zeros(n)
    f[0] = 1.0
    return M, mats + [robin], [f], x


def theta_a(mu):
    return np.array([mu[0], mu[1], mu[2]])


def theta_f(mu):
    return np.array([mu[3]])


def fom(mu, M, A, F):
    """Implicit Euler with scipy's sparse LU: the independent reference."""
    K = (M / DT + sum(t * a for t, a in zip(theta_a(mu), A))).tocsc()
    f = sum(t * g for t, g in zip(theta_f(mu), F))
    lu = spla.splu(K)
    u = np.zeros(M.shape[0])
    out = []
    for _ in range(N_STEPS):
        u = lu.solve(M @ u / DT + f)
        out.append(u)
    return np.array(out).T


def distributed(Aglob, comm):
    """Owned-row action of a global sparse matrix (gathers the input: test-sized only)."""
    lo, hi = row_range(Aglob.shape[0], comm)
    rows = Aglob[lo:hi]
    return lambda X: rows @ gather_rows(X, comm)


def training(M, A, F, rng, n_train=6):
    mus = np.column_stack(
        [
            rng.uniform(1, 5, n_train),
            rng.uniform(0.2, 2, n_train),
            rng.uniform(0.5, 5, n_train),
            rng.uniform(0.5, 2, n_train),
        ]
    )
    return np.hstack([fom(mu, M, A, F) for mu in mus])


def reduced(Vl, M, A, F, comm, **kwargs):
    """``LinearAffineROM.from_full`` on the owned rows ``Vl`` of a basis, with the mass,
    stiffness and load terms of :func:`fem_1d` distributed over ``comm``."""
    return LinearAffineROM.from_full(
        Vl,
        mass=distributed(M, comm),
        stiffness=[distributed(a, comm) for a in A],
        rhs=[distribute_rows(f, comm) for f in F],
        comm=comm,
        **kwargs,
    )


def eigenmode(K, M, j):
    """Eigenvalue and M-normalized eigenvector ``j`` of ``K v = lam M v`` (LAPACK via scipy)."""
    lam, W = sla.eigh(K.toarray(), M.toarray())
    return lam[j], W[:, j] / np.sqrt(W[:, j] @ M @ W[:, j])


def test_full_basis_reproduces_fom(comm, rng):
    M, A, F, _ = fem_1d()
    V = np.linalg.qr(rng.standard_normal((N_DOF, N_DOF)))[0]  # any complete basis
    Vl = distribute_rows(V, comm)
    model = reduced(Vl, M, A, F, comm, theta_a=theta_a, theta_f=theta_f)
    mu = np.array([2.0, 0.7, 3.0, 1.3])
    C = model.solve(mu, dt=DT, n_steps=N_STEPS)
    assert C.shape == (N_DOF, N_STEPS + 1)
    np.testing.assert_array_equal(C[:, 0], 0.0)  # the initial state is the first column
    U = fom(mu, M, A, F)
    np.testing.assert_allclose(gather_rows(Vl @ C[:, 1:], comm), U, atol=1e-10 * np.abs(U).max())
    np.testing.assert_allclose(gather_rows(model.reconstruct(C[:, 1:]), comm), U, atol=1e-10)


def test_decaying_eigenmode_matches_analytic_discrete_decay(comm):
    """f = 0, u0 = generalized eigenvector (A v = lam M v): c_k = (1 + dt lam)^-k exactly."""
    M, A, F, _ = fem_1d()
    mu = np.array([1.0, 1.0, 0.0, 0.0])
    K = sum(t * a for t, a in zip(theta_a(mu), A))
    lam, v = eigenmode(K, M, 3)
    model = reduced(distribute_rows(v[:, None], comm), M, A, F, comm)
    C = model.solve(dt=DT, n_steps=N_STEPS, c0=np.ones(1), theta_a=theta_a(mu), theta_f=theta_f(mu))
    expected = (1.0 + DT * lam) ** -np.arange(0, N_STEPS + 1)
    np.testing.assert_allclose(C[0], expected, rtol=1e-10)


def test_held_out_error_small_and_decreasing_with_basis_size(comm, rng):
    M, A, F, _ = fem_1d()
    S = training(M, A, F, rng)
    Mop = distributed(M, comm)
    modes = rom.pod(
        distribute_rows(S, comm), product=Mop, comm=comm, rank=20, pod_method="qr"
    ).modes
    full = reduced(modes, M, A, F, comm, theta_a=theta_a, theta_f=theta_f)
    np.testing.assert_allclose(full.mass, np.eye(modes.shape[1]), atol=1e-12)  # M-orthonormal
    test_mus = [np.array([3.3, 1.1, 2.2, 0.8]), np.array([1.5, 0.4, 4.0, 1.9])]
    errors = []
    for n in (1, 2, 4, 8, 12, 20):
        sub = full.truncated(n)
        e = 0.0
        for mu in test_mus:
            U = fom(mu, M, A, F)
            Ur = modes[:, :n] @ sub.solve(mu, dt=DT, n_steps=N_STEPS)[:, 1:]
            e = max(e, space_time_error(distribute_rows(U, comm), Ur, product=Mop, comm=comm))
        errors.append(e)
    assert errors[-1] <= 1e-4, errors
    # Galerkin error decreases with the basis size (non-strictly, with a small slack)
    assert all(b <= a * 1.05 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-2 * errors[0]


def test_bad_coefficients_are_refused():
    model = LinearAffineROM(np.eye(2), [np.eye(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="give mu"):
        model.solve(dt=0.1, n_steps=2)
    with pytest.raises(ValueError, match="coefficients"):
        model.solve(dt=0.1, n_steps=2, theta_a=[1.0, 2.0], theta_f=[1.0])
    with pytest.raises(ValueError, match="NaN"):
        model.solve(dt=0.1, n_steps=2, theta_a=[np.nan], theta_f=[1.0])
    with pytest.raises(ValueError, match="dt > 0"):
        model.solve(dt=0.0, n_steps=2, theta_a=[1.0], theta_f=[1.0])


PARAMS = Parameters({"conductivity": 2, "robin": 1, "flux": 1})


def affine_terms(A, F, *, time_dependent=False):
    """A(mu) and f(mu[, t]) as AffineDecompositions over named parameters."""
    op = AffineDecomposition.from_pairs(
        [
            (A[0], lambda mu: mu["conductivity"][0]),
            (A[1], lambda mu: mu["conductivity"][1]),
            (A[2], lambda mu: mu["robin"][0]),
        ],
        parameters=PARAMS,
    )
    if not time_dependent:
        return op, AffineDecomposition(F, [lambda mu: mu["flux"][0]], parameters=PARAMS)
    # flux oscillating in time plus a constant unit source
    src = np.ones(N_DOF) / N_DOF
    load = AffineDecomposition(
        [F[0], src],
        [lambda mu, t: mu["flux"][0] * np.sin(10 * np.pi * t), 1.0],
        parameters=PARAMS,
        time_dependent=True,
    )
    return op, load


def test_parameters_parse_dict_and_array_alike():
    mu = {"conductivity": [2.0, 0.5], "robin": 3.0, "flux": 1.5}
    flat = PARAMS.to_array(mu)
    np.testing.assert_array_equal(flat, [2.0, 0.5, 3.0, 1.5])
    for k, v in PARAMS.parse(flat).items():
        np.testing.assert_array_equal(v, np.ravel(mu[k]))
    with pytest.raises(ValueError, match="expected parameters"):
        PARAMS.parse({"conductivity": [1.0, 1.0]})
    with pytest.raises(ValueError, match="needs 2 values"):
        PARAMS.parse({"conductivity": [1.0], "robin": 1.0, "flux": 1.0})
    with pytest.raises(ValueError, match="expected 4 parameter values"):
        PARAMS.parse(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        PARAMS.parse(np.array([1.0, np.nan, 1.0, 1.0]))


def test_stationary_solve_and_output_match_sparse_direct_solve(comm, rng):
    """Complete basis: ROM solution and output equal scipy's sparse solve to round-off."""
    M, A, F, x = fem_1d()
    op, load = affine_terms(A, F)
    ell = M @ (x < 0.5)  # mean temperature over the first zone (times its length)
    ell2 = np.column_stack([ell, M @ np.ones(N_DOF)])
    out = AffineDecomposition([ell2], [lambda mu: 2.0 * mu["robin"][0]], parameters=PARAMS)
    V = np.linalg.qr(rng.standard_normal((N_DOF, N_DOF)))[0]
    model = LinearAffineROM.from_full(
        distribute_rows(V, comm),
        stiffness=op.with_terms([distributed(a, comm) for a in A]),
        rhs=load.with_terms([distribute_rows(f, comm) for f in F]),
        outputs=out.with_terms([distribute_rows(ell2, comm)]),
        comm=comm,
    )
    assert model.mass is None
    mu = {"conductivity": [2.0, 0.7], "robin": 3.0, "flux": 1.3}
    K = (2.0 * A[0] + 0.7 * A[1] + 3.0 * A[2]).tocsc()
    u = spla.spsolve(K, 1.3 * F[0])
    c = model.solve_stationary(mu)
    np.testing.assert_allclose(
        gather_rows(model.reconstruct(c), comm), u, atol=1e-11 * abs(u).max()
    )
    np.testing.assert_allclose(model.outputs(c, mu), 6.0 * ell2.T @ u, rtol=1e-11)
    # flat array parameters give the same answer
    np.testing.assert_array_equal(model.solve_stationary(PARAMS.to_array(mu)), c)


def theta_scheme_fom(M, K, load, u0, dt, n, theta):
    """Independent theta-scheme with scipy's sparse LU; returns u^0..u^n as columns."""
    lu = spla.splu((M / dt + theta * K).tocsc())
    R = (M / dt - (1 - theta) * K).tocsr()
    U = [u0]
    for k in range(n):
        rhs = R @ U[-1] + theta * load((k + 1) * dt) + (1 - theta) * load(k * dt)
        U.append(lu.solve(rhs))
    return np.array(U).T


@pytest.mark.parametrize("theta", [1.0, 0.5])
def test_theta_scheme_with_time_dependent_load_reproduces_fom(comm, rng, theta):
    """Complete basis, nonzero u0, load ~ sin(10 pi t): trajectory (with u^0) and outputs per
    step equal an independent sparse theta-scheme to round-off."""
    M, A, F, x = fem_1d()
    op, load = affine_terms(A, F, time_dependent=True)
    mu = np.array([2.0, 0.7, 3.0, 1.3])
    K = 2.0 * A[0] + 0.7 * A[1] + 3.0 * A[2]
    src = np.ones(N_DOF) / N_DOF
    u0 = np.sin(np.pi * x)
    U = theta_scheme_fom(
        M, K, lambda t: 1.3 * np.sin(10 * np.pi * t) * F[0] + src, u0, DT, N_STEPS, theta
    )
    V = np.linalg.qr(rng.standard_normal((N_DOF, N_DOF)))[0]
    Vl = distribute_rows(V, comm)
    Mop = distributed(M, comm)
    model = LinearAffineROM.from_full(
        Vl,
        mass=Mop,
        stiffness=op.with_terms([distributed(a, comm) for a in A]),
        rhs=load.with_terms([distribute_rows(g, comm) for g in load.terms]),
        outputs=[distribute_rows(M @ np.ones(N_DOF), comm)],
        theta_l=lambda mu: [1.0],
        comm=comm,
    )
    c0 = V.T @ u0  # V orthonormal and complete: exact coordinates
    C = model.solve(mu, dt=DT, n_steps=N_STEPS, c0=c0, theta=theta)
    assert C.shape == (N_DOF, N_STEPS + 1)
    Ur = gather_rows(Vl @ C, comm)
    np.testing.assert_allclose(Ur, U, atol=1e-11 * np.abs(U).max())
    S = model.outputs(C, mu)
    assert S.shape == (1, N_STEPS + 1)
    np.testing.assert_allclose(S[0], np.ones(N_DOF) @ M @ U, rtol=1e-10)


def test_crank_nicolson_eigenmode_decays_by_the_analytic_factor(comm):
    """f = 0, u0 = generalized eigenvector: c_k = ((1 - dt lam/2) / (1 + dt lam/2))^k."""
    M, A, F, _ = fem_1d()
    lam, v = eigenmode(A[0] + A[1], M, 5)
    model = reduced(distribute_rows(v[:, None], comm), M, A, F, comm)
    C = model.solve(
        dt=DT, n_steps=N_STEPS, c0=np.ones(1), theta=0.5, theta_a=[1, 1, 0], theta_f=[0]
    )
    r = (1 - 0.5 * DT * lam) / (1 + 0.5 * DT * lam)
    np.testing.assert_allclose(C[0], r ** np.arange(N_STEPS + 1), rtol=1e-10)


def test_affine_decomposition_is_validated():
    with pytest.raises(ValueError, match="2 terms but 1"):
        AffineDecomposition([np.eye(2), np.eye(2)], [1.0])
    td = AffineDecomposition([np.ones(2)], [lambda mu, t: t], time_dependent=True)
    with pytest.raises(ValueError, match="time t"):
        td.evaluate(np.ones(1))
    np.testing.assert_array_equal(td.evaluate(np.ones(1), 0.25), [0.25])
    load = AffineDecomposition([np.ones(2)], [lambda mu, t: t], time_dependent=True)
    timed = LinearAffineROM(np.eye(2), [np.eye(2)], load)
    with pytest.raises(ValueError, match="time-dependent load"):
        timed.solve(dt=0.1, n_steps=2, theta_a=[1.0], theta_f=[1.0])
    model = LinearAffineROM(np.eye(2), [np.eye(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="no outputs"):
        model.outputs(np.ones(2))
    with pytest.raises(ValueError, match="no basis"):
        model.reconstruct(np.ones(2))
    with pytest.raises(ValueError, match="theta"):
        model.solve(dt=0.1, n_steps=2, theta=1.5, theta_a=[1.0], theta_f=[1.0])
