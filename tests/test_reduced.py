"""Galerkin ROM of an affine heat equation, checked against an independent scipy FOM."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import rom
from rom.models import LinearAffineROM, space_time_error
from rom.parallel import distribute_rows, gather_rows, row_range

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


def test_full_basis_reproduces_fom(comm, rng):
    M, A, F, _ = fem_1d()
    V = np.linalg.qr(rng.standard_normal((N_DOF, N_DOF)))[0]  # any complete basis
    Vl = distribute_rows(V, comm)
    model = LinearAffineROM.from_full(
        Vl,
        mass=distributed(M, comm),
        stiffness=[distributed(a, comm) for a in A],
        rhs=[distribute_rows(f, comm) for f in F],
        comm=comm,
        theta_a=theta_a,
        theta_f=theta_f,
    )
    mu = np.array([2.0, 0.7, 3.0, 1.3])
    C = model.solve(mu, dt=DT, n_steps=N_STEPS)
    U = fom(mu, M, A, F)
    np.testing.assert_allclose(gather_rows(Vl @ C, comm), U, atol=1e-10 * np.abs(U).max())


def test_decaying_eigenmode_matches_analytic_discrete_decay(comm):
    """f = 0, u0 = generalized eigenvector (A v = lam M v): c_k = (1 + dt lam)^-k exactly."""
    M, A, F, _ = fem_1d()
    mu = np.array([1.0, 1.0, 0.0, 0.0])
    K = sum(t * a for t, a in zip(theta_a(mu), A))
    import scipy.linalg as sla

    lam, W = sla.eigh(K.toarray(), M.toarray())
    v = W[:, 3] / np.sqrt(W[:, 3] @ M @ W[:, 3])
    model = LinearAffineROM.from_full(
        distribute_rows(v[:, None], comm),
        mass=distributed(M, comm),
        stiffness=[distributed(a, comm) for a in A],
        rhs=[distribute_rows(f, comm) for f in F],
        comm=comm,
    )
    C = model.solve(dt=DT, n_steps=N_STEPS, c0=np.ones(1), theta_a=theta_a(mu), theta_f=theta_f(mu))
    expected = (1.0 + DT * lam[3]) ** -np.arange(1, N_STEPS + 1)
    np.testing.assert_allclose(C[0], expected, rtol=1e-10)


def test_held_out_error_small_and_decreasing_with_basis_size(comm, rng):
    M, A, F, _ = fem_1d()
    S = training(M, A, F, rng)
    Mop = distributed(M, comm)
    modes = rom.pod(
        distribute_rows(S, comm), product=Mop, comm=comm, rank=20, pod_method="qr"
    ).modes
    full = LinearAffineROM.from_full(
        modes,
        mass=Mop,
        stiffness=[distributed(a, comm) for a in A],
        rhs=[distribute_rows(f, comm) for f in F],
        comm=comm,
        theta_a=theta_a,
        theta_f=theta_f,
    )
    np.testing.assert_allclose(full.mass, np.eye(modes.shape[1]), atol=1e-12)  # M-orthonormal
    test_mus = [np.array([3.3, 1.1, 2.2, 0.8]), np.array([1.5, 0.4, 4.0, 1.9])]
    errors = []
    for n in (1, 2, 4, 8, 12, 20):
        sub = full.truncated(n)
        e = 0.0
        for mu in test_mus:
            U = fom(mu, M, A, F)
            Ur = modes[:, :n] @ sub.solve(mu, dt=DT, n_steps=N_STEPS)
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
