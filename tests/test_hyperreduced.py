"""Hyper-reduced Newton (rom.adaptive.hyperreduced).

References, independent of the code under test: the full-order trajectory of
solvers.mechanics (its own global Newton on all quadrature points), the full quadrature sum of
the internal-force integrands, a closed-form linear solve (numpy.linalg.solve) for a linear law,
and the global array for the gather helper.
"""

from __future__ import annotations

import numpy as np
import pytest

from rom.adaptive import HyperReducedModel
from rom.adaptive import build_hyperreduced
from rom.adaptive import gather_at_points
from rom.adaptive import internal_force_cubature
from rom.parallel import allreduce_sum
from rom.parallel import distribute_rows


def _temperature(x, t):
    r2 = (x[0] - 0.7) ** 2 + (x[1] - 0.5) ** 2
    return 20.0 + t * (400.0 * (1 + 0.5 * (x[0] - 0.5)) + 200.0 * np.exp(-r2 / 0.05))


@pytest.fixture(scope="module")
def training():
    import dolfinx_solver  # noqa: F401
    from mpi4py import MPI

    from solvers.mechanics import Load
    from solvers.mechanics import ViscoplasticModel

    times = np.linspace(0.0, 1.0, 11)[1:]
    fom = ViscoplasticModel(
        MPI.COMM_WORLD, dim=2, size=6, load=Load(), temperature=_temperature, times=times
    )
    traj = fom.solve()
    from rom.compression import pod

    Psi = pod(traj.u, product=fom.mass, comm=fom.comm, pod_method="qr", rtol=1e-12).modes
    return fom, traj, Psi, fom.strain_at_qp(Psi)


@pytest.mark.fem
@pytest.mark.mpi
def test_reduced_newton_reproduces_the_training_trajectory(training):
    """Basis = all snapshots, cubature on that trajectory: u to 1e-6 relative, p at the reduced
    points to 1e-6 of max p (reference: the full-order trajectory)."""
    fom, traj, Psi, B = training
    comm = fom.comm
    assert allreduce_sum(traj.p.max(axis=0)[-1] > 0, comm) > 0  # plastic: the law is nonlinear
    cub = internal_force_cubature(
        B, traj.stresses, fom.qp_weights, tol=1e-8, svd_tol=1e-12, comm=comm
    )
    n_qp = int(allreduce_sum(float(fom.n_qp_local), comm))
    assert cub.points.size < n_qp
    hr = build_hyperreduced(fom, Psi, cub.points, cub.weights, temperature=_temperature, strains=B)
    C, P = hr.solve(traj.times)
    U = Psi @ C
    num = np.sqrt(allreduce_sum(np.sum((U - traj.u) ** 2, axis=0), comm))
    den = np.sqrt(allreduce_sum(np.sum(traj.u**2, axis=0), comm))
    assert np.max(num / den) <= 1e-6
    p_ref = gather_at_points(traj.p, hr.points, comm)
    assert np.max(np.abs(P - p_ref)) <= 1e-6 * np.max(p_ref)


@pytest.mark.fem
@pytest.mark.mpi
def test_cubature_integrates_training_internal_forces_to_its_tolerance(training):
    """|sum_Z w^ g - sum_q w_q g| <= tol sqrt(|Omega|) ||g||_L2 (+ 1e-6 relative for the
    truncation of the integrand basis at svd_tol = 1e-9) for every integrand
    g = sigma_k : eps(psi_i) of the training states, and the volume to tol (full quadrature
    as the reference)."""
    fom, traj, Psi, B = training
    comm = fom.comm
    tol = 1e-3
    cub = internal_force_cubature(
        B, traj.stresses, fom.qp_weights, tol=tol, svd_tol=1e-9, comm=comm
    )
    g = np.einsum("qcn,qck->qnk", B, traj.stresses)  # (n_qp_local, N, n_t)
    w = fom.qp_weights
    exact = allreduce_sum(np.einsum("q,qnk->nk", w, g), comm)
    g_Z = gather_at_points(g, cub.points, comm)
    approx = np.einsum("z,znk->nk", cub.weights, g_Z)
    l2 = np.sqrt(allreduce_sum(np.einsum("q,qnk->nk", w, g**2), comm))
    volume = float(allreduce_sum(w.sum(), comm))
    assert np.all(np.abs(approx - exact) <= (tol + 1e-6) * np.sqrt(volume) * l2)
    assert abs(cub.weights.sum() - volume) <= tol * volume
    assert np.all(cub.weights > 0)
    n_qp = int(allreduce_sum(float(fom.n_qp_local), comm))
    assert cub.points.size < n_qp  # a real reduction


def test_cubature_workspace_reuse_gives_the_same_rule(training):
    """A workspace kept between calls (as the adaptive ROM does between enrichments) gives
    the rule of a call without one, also when the next call has more integrands (the buffers
    grow) or fewer (views of them), and its buffers are reused, not allocated again."""
    fom, traj, _, B = training
    comm = fom.comm
    work = {}
    buffers = []
    for n_modes in (B.shape[2] - 1, B.shape[2], B.shape[2] - 2):
        args = (B[:, :, :n_modes], traj.stresses, fom.qp_weights)
        ref = internal_force_cubature(*args, tol=1e-4, comm=comm)
        cub = internal_force_cubature(*args, tol=1e-4, comm=comm, workspace=work)
        np.testing.assert_array_equal(cub.points, ref.points)
        np.testing.assert_allclose(cub.weights, ref.weights, rtol=1e-12)
        buffers.append(dict(work))
    assert {"integrands", "rows"} <= set(work)
    # the buffers grow when a call needs more than they hold (with 50 % headroom); the
    # third, smallest call reuses every buffer of the second
    assert all(buffers[2][k] is buffers[1][k] for k in buffers[1])


def test_cubature_of_zero_stresses_integrates_the_volume(rng, comm):
    """All stress directions vanish (an unloaded state): no integrand is kept, and the rule
    still integrates the constant, sum w^ = sum w (full quadrature as the reference)."""
    B = rng.standard_normal((400, 3, 4))
    w = rng.random(400) + 0.1
    cub = internal_force_cubature(B, np.zeros((400, 3, 5)), w, tol=1e-6, comm=comm)
    volume = float(allreduce_sum(w.sum(), comm))
    assert cub.points.size >= 1 and np.all(cub.weights > 0)
    assert abs(cub.weights.sum() - volume) <= 1e-6 * volume


def test_linear_law_is_one_newton_step_to_the_closed_form(rng):
    """sigma = C (eps - eps_th): the reduced solution is solve(sum w B^T C B, sum w B^T C eps_th)
    (numpy.linalg.solve), reached in one Newton iteration."""
    m, nc, N = 30, 4, 5
    B = rng.standard_normal((m, nc, N))
    A = rng.standard_normal((m, nc, nc))
    C = np.einsum("mij,mkj->mik", A, A) + nc * np.eye(nc)  # SPD per point
    w = rng.random(m)
    w[:5] = 0.0  # imposed points: no contribution
    eps_th = rng.standard_normal((m, nc))

    def law(eps, evp, p, T, dt):
        sig = np.einsum("mij,mj->mi", C, eps - eps_th * T[:, None])
        return sig, evp, p + np.linalg.norm(eps, axis=1), C

    hr = HyperReducedModel(np.eye(N), B, w, law=law, coordinates=np.zeros((m, 2)), temperature=1.0)
    state, info = hr.step(hr.initial_state(0.0), 1.0)
    K = np.einsum("m,mcn,mcd,mde->ne", w, B, C, B)
    f = np.einsum("m,mcn,mcd,md->n", w, B, C, eps_th)
    c_ref = np.linalg.solve(K, f)
    np.testing.assert_allclose(state.c, c_ref, rtol=1e-10, atol=1e-12 * np.abs(c_ref).max())
    assert info.iterations == 1
    # internal variables are integrated at every point, weighted or not
    np.testing.assert_allclose(state.p, np.linalg.norm(B @ state.c, axis=1), rtol=1e-12)


@pytest.mark.mpi
@pytest.mark.partition
def test_gather_at_points_returns_the_global_rows(comm, rng):
    A = rng.standard_normal((23, 3, 2))
    pts = rng.choice(23, size=7, replace=False)
    np.testing.assert_array_equal(gather_at_points(distribute_rows(A, comm), pts, comm), A[pts])


@pytest.mark.mpi
def test_invalid_inputs_raise_on_every_rank(comm, rng):
    m, nc, N = 6, 4, 3
    B = rng.standard_normal((m, nc, N))
    ok = dict(law=None, coordinates=np.zeros((m, 2)), temperature=300.0, comm=comm)
    bad = B.copy()
    if comm.rank == comm.size - 1:
        bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        HyperReducedModel(np.zeros((4, N)), bad, np.ones(m), **ok)
    with pytest.raises(ValueError, match="non-negative"):
        HyperReducedModel(np.zeros((4, N)), B, -np.ones(m), **ok)
    with pytest.raises(ValueError, match="strains must have shape"):
        HyperReducedModel(np.zeros((4, N + 1)), B, np.ones(m), **ok)
    S = rng.standard_normal((m, nc, 2))
    w = np.ones(m)
    if comm.rank == 0:
        w[1] = 0.0
    with pytest.raises(ValueError, match="qp_weights must be positive"):
        internal_force_cubature(B, S, w, comm=comm)
