"""Advection FOM (solvers.advection): transport physics, affine terms, partition independence.

All tests are collective and run at 1 and 2 ranks (``-m mpi``); the partition test also at 3.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
import pytest
from mpi4py import MPI

from rom.compression import pod
from rom.models.galerkin import LinearAffineROM
from rom.models.galerkin import space_time_error
from rom.parallel import allreduce_sum
from solvers.advection import AdvectionModel

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

SIZE = 24
MU = np.array([0.6, 1.0])  # angle (rad), speed


@pytest.fixture(scope="module")
def model():
    return AdvectionModel(MPI.COMM_WORLD, size=SIZE, final_time=0.15, n_steps=10)


@pytest.fixture(scope="module")
def trajectory(model):
    return model.solve(MU)


def _gather_by_key(comm, keys, values):
    keys = np.concatenate(comm.allgather(keys))
    vals = np.concatenate(comm.allgather(np.asarray(values)), axis=0)
    order = np.argsort(keys)
    return keys[order], vals[order]


def test_pulse_conserves_mass_and_its_centroid_moves_with_the_velocity(model, trajectory):
    """Away from the boundary, d/dt int u = 0 and d/dt int x u = b int u (the continuous
    transport-diffusion equation; test functions 1 and x_i lie in V_h). The centroid
    displacement after each step matches b t to 1 %, the mass to 0.2 %."""
    U = trajectory
    x, y = model.coordinates.T
    u0 = model.initial_condition(MU)
    m0 = model.integrate(u0)
    c0 = np.array([model.integrate(u0, x), model.integrate(u0, y)]) / m0
    np.testing.assert_allclose(c0, model.center, atol=1e-3)  # interpolated Gaussian
    b = np.array([np.cos(MU[0]), np.sin(MU[0])]) * MU[1]
    for n, t in enumerate(model.times):
        m = model.integrate(U[:, n])
        assert abs(m / m0 - 1) < 2e-3
        c = np.array([model.integrate(U[:, n], x), model.integrate(U[:, n], y)]) / m
        assert np.linalg.norm(c - c0 - b * t) < 1e-2 * np.linalg.norm(b * t)
    # the pulse peak has moved too (coarse, mesh-size tolerance)
    vals = model.comm.allgather((float(U[:, -1].max()), model.coordinates[np.argmax(U[:, -1])]))
    loc = max(vals, key=lambda v: v[0])[1]
    assert np.linalg.norm(loc - (model.center + b * model.times[-1])) <= 1.5 / SIZE


def test_affine_terms_satisfy_the_solver_trajectory(model, trajectory):
    """The exposed mass, stiffness terms and theta_a reproduce solve(): the implicit Euler
    residual M(u^{n+1} - u^n)/dt + sum_q theta_q A_q u^{n+1} vanishes off the inflow boundary,
    and the solution vanishes on it."""
    U = trajectory
    prev = np.column_stack([model.initial_condition(MU), U[:, :-1]])
    theta = model.theta_a(MU)
    R = model.mass(U - prev) / model.dt
    R += sum(t * A(U) for t, A in zip(theta, model.stiffness_terms, strict=True))
    scale = np.abs(model.mass(U)).max() / model.dt
    free = np.ones(model.n_owned, bool)
    free[model.inflow_dofs] = False
    err = model.comm.allreduce(float(np.abs(R[free]).max(initial=0.0)), op=MPI.MAX)
    assert err < 1e-10 * model.comm.allreduce(scale, op=MPI.MAX)
    assert np.all(U[model.inflow_dofs] == 0.0)
    np.testing.assert_allclose(model.velocity(MU), MU[1] * np.array([np.cos(0.6), np.sin(0.6)]))


def test_galerkin_rom_on_the_snapshot_span_reproduces_the_trajectory(model, trajectory):
    """With a basis spanning u^0..u^N (all vanish on the inflow boundary), the Galerkin ROM of
    the unconstrained affine terms equals the constrained FOM (rom.models.galerkin, independent code)."""
    u0 = model.initial_condition(MU)
    V = pod(
        np.column_stack([u0, trajectory]), product=model.mass, comm=model.comm, pod_method="qr"
    ).modes
    r = LinearAffineROM.from_full(
        V,
        mass=model.mass,
        stiffness=model.stiffness_terms,
        rhs=model.rhs_terms,
        comm=model.comm,
        theta_a=model.theta_a,
        theta_f=model.theta_f,
    )
    c0 = allreduce_sum(V.T @ model.mass(u0), model.comm)
    C = r.solve(MU, dt=model.dt, n_steps=model.n_steps, c0=c0)[:, 1:]  # drop c^0
    err = space_time_error(trajectory, V @ C, product=model.mass, comm=model.comm)
    assert err < 1e-9


@pytest.mark.partition
def test_solution_and_keys_do_not_depend_on_the_rank_count(model, trajectory):
    """Keys are the input node indices (j (size+1) + i at (i/size, j/size)); the trajectory
    gathered by key equals a single-rank solve to 1e-10."""
    comm = model.comm
    i = np.rint(model.coordinates[:, 0] * SIZE).astype(np.int64)
    j = np.rint(model.coordinates[:, 1] * SIZE).astype(np.int64)
    np.testing.assert_array_equal(model.keys, j * (SIZE + 1) + i)
    keys, U = _gather_by_key(comm, model.keys, trajectory)
    np.testing.assert_array_equal(keys, np.arange((SIZE + 1) ** 2))
    serial = AdvectionModel(MPI.COMM_SELF, size=SIZE, final_time=0.15, n_steps=10)
    Us = serial.solve(MU)[np.argsort(serial.keys)]
    np.testing.assert_allclose(U, Us, rtol=0, atol=1e-10 * np.abs(Us).max())


def test_invalid_parameters_raise(model):
    with pytest.raises(ValueError, match="mu must have 2 entries"):
        model.solve(np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="speed must be > 0"):
        model.solve(np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.theta_a(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="size must be an integer"):
        AdvectionModel(MPI.COMM_WORLD, size=1)
