"""Heat-conduction FOM on the blade mesh (solvers.heat): convergence, conservation, partition.

All tests are collective and run at 1 and 2 ranks (``-m mpi``).
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
import pytest
import ufl
from dolfinx import fem
from mpi4py import MPI

from solvers.heat import HeatModel
from solvers.mesh import BladeGeometry
from solvers.mesh import blade_mesh

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

SIZE = 4  # 160 dofs: enough for the algebraic identities below
MU = np.array([12.0, 1.5, 60.0, 1.3])


@pytest.fixture(scope="module")
def model():
    return HeatModel(MPI.COMM_WORLD, size=SIZE, n_steps=12)


def _gather_by_key(model, values):
    """Rows of ``values`` from all ranks, ordered by key (every rank gets them)."""
    keys = np.concatenate(model.comm.allgather(model.keys))
    vals = np.concatenate(model.comm.allgather(np.asarray(values)), axis=0)
    order = np.argsort(keys)
    return keys[order], vals[order]


def _shoelace(p):
    return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))


def test_manufactured_steady_solution_converges_at_order_two(comm):
    """P1 on the blade: L2 error of a smooth non-polynomial exact solution falls as h^2.

    k_sub = k_coat = k; f = -div(k grad u_ex); Robin data g_c = k du_ex/dn + h u_ex on the
    channel, flux k du_ex/dn on the outer profile (all exact, via UFL on the discrete domain).
    """
    k, h = 3.0, 20.0
    mu = np.array([k, k, h, 0.0])
    errors, sizes = [], [4, 8, 16]
    for size in sizes:
        # r_coat = 0.75 keeps the radial grid uniform, so each level halves every cell
        m = HeatModel(comm, size=size, r_coat=0.75)
        x = ufl.SpatialCoordinate(m.mesh)
        n = ufl.FacetNormal(m.mesh)
        u_ex = ufl.sin(3.0 * x[0] + 0.5) * ufl.exp(4.0 * x[1]) + ufl.cos(5.0 * x[1])
        flux = k * ufl.dot(ufl.grad(u_ex), n)
        v = ufl.TestFunction(m.V)
        b = m.assemble_vector(
            -ufl.div(k * ufl.grad(u_ex)) * v * m.dx
            + (flux + h * u_ex) * v * m.ds(m.COOLING)
            + flux * v * m.ds(m.HOT_GAS)
        )
        uh = m.to_function(m.steady_solve(mu, extra_rhs=b))
        dxq = ufl.Measure("dx", domain=m.mesh, metadata={"quadrature_degree": 8})
        e2 = fem.assemble_scalar(fem.form((uh - u_ex) ** 2 * dxq))
        errors.append(np.sqrt(comm.allreduce(e2, op=MPI.SUM)))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(rates > 1.5), (errors, rates)  # monotone, close to the asymptotic regime
    assert abs(rates[-1] - 2.0) <= 0.2, (errors, rates)  # observed order on the finest pair


def test_implicit_euler_energy_balance(model):
    """int u^{n+1} - int u^n = dt (q int_h g - h int_c u^{n+1}) to 1e-10 (rho c = 1).

    Integrals by assemble_scalar of UFL functionals, not by the assembled matrices.
    """
    U = model.solve(MU)
    q, h, dt = MU[3], MU[2], model.dt
    heat_in = q * model.functional(region="hot_gas", weight=model.flux_profile)
    stored = [0.0] + [model.functional(U[:, n]) for n in range(model.n_steps)]
    cooled = [model.functional(U[:, n], region="cooling") for n in range(model.n_steps)]
    lhs = np.diff(stored)
    rhs = dt * (heat_in - h * np.array(cooled))
    assert lhs[0] > 0.1 * dt * heat_in  # the balance is not trivially 0 = 0
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10 * dt * heat_in)


def test_default_horizon_spans_the_transient(model):
    """Over the default final time the slowest corner of the parameter box is still heating
    (last energy increment > 2% of the first) and the fastest reaches its steady state."""
    lo, hi = model.parameter_ranges[:, 0], model.parameter_ranges[:, 1]
    ratios = []
    for mu in (np.array([lo[0], lo[1], lo[2], hi[3]]), np.array([hi[0], hi[1], hi[2], hi[3]])):
        U = model.solve(mu)
        stored = [0.0] + [model.functional(U[:, n]) for n in range(model.n_steps)]
        ratios.append(np.diff(stored)[-1] / stored[1])
    assert ratios[0] > 2e-2
    assert abs(ratios[1]) < 1e-3


def test_keys_are_partition_independent(model, comm):
    """Key -> coordinate map equals that of a COMM_SELF mesh and of the generator; keys unique."""
    keys, coords = _gather_by_key(model, model.coordinates)
    assert len(keys) == model.n_dofs
    np.testing.assert_array_equal(keys, np.arange(model.n_dofs))
    ref = blade_mesh(SIZE).points
    np.testing.assert_allclose(coords, ref[keys], rtol=0, atol=1e-14)
    serial = HeatModel(MPI.COMM_SELF, size=SIZE, n_steps=12)
    order = np.argsort(serial.keys)
    np.testing.assert_array_equal(serial.keys[order], keys)
    np.testing.assert_allclose(serial.coordinates[order], coords, rtol=0, atol=1e-14)
    plot = model.mesh_for_plot()
    if comm.rank == 0:
        pts, tris = plot
        np.testing.assert_allclose(pts[model.keys], model.coordinates, rtol=0, atol=1e-14)
        assert tris.shape == (2 * 8 * SIZE * SIZE, 3)
    else:
        assert plot is None


def test_trajectory_independent_of_rank_count(model):
    """The world-comm trajectory gathered by key equals a COMM_SELF solve to 1e-10."""
    _, U = _gather_by_key(model, model.solve(MU))
    serial = HeatModel(MPI.COMM_SELF, size=SIZE, n_steps=12)
    U_ref = serial.solve(MU)[np.argsort(serial.keys)]
    assert np.linalg.norm(U_ref) > 0
    assert np.linalg.norm(U - U_ref) <= 1e-10 * np.linalg.norm(U_ref)


def test_mass_operator_integrates_area(model, comm):
    """sum(M 1) = |Omega_h| = assemble_scalar(1 dx) = shoelace of the mesh boundary polygons,
    and approaches the area between the smooth curves at the O(h^2) rate of inscribed polygons."""
    one = np.ones(model.n_owned)
    area_M = comm.allreduce(float(np.sum(model.mass(one))), op=MPI.SUM)
    area_form = model.functional()
    bm = blade_mesh(SIZE)
    area_poly = _shoelace(bm.points[-bm.n_s :]) - _shoelace(bm.points[: bm.n_s])
    np.testing.assert_allclose(area_M, area_form, rtol=1e-12)
    np.testing.assert_allclose(area_M, area_poly, rtol=1e-12)
    geo = BladeGeometry()
    m = 2000  # samples per mesh arc (mesh nodes sit at theta_j = 2 pi j / n_s)
    t = np.linspace(0.0, 2 * np.pi, m * bm.n_s, endpoint=False)
    area_smooth = _shoelace(geo.outer(t)) - _shoelace(geo.inner(t))
    # a chord of length l under an arc of curvature <= kappa cuts off area ~ kappa l^3 / 12
    bound = 0.0
    for curve, nodes in ((geo.outer, bm.points[-bm.n_s :]), (geo.inner, bm.points[: bm.n_s])):
        kappa = _curvature(curve(t)).reshape(bm.n_s, m)
        kappa = np.maximum(kappa.max(axis=1), np.roll(kappa[:, 0], -1))  # include arc end
        bound += np.sum(kappa * _chords(nodes) ** 3) / 12
    assert abs(area_smooth - area_M) <= 1.2 * bound
    assert bound < 2e-2 * area_smooth


def _chords(p):
    return np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1)


def _curvature(p):
    d1 = (np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)) / 2
    d2 = np.roll(p, -1, axis=0) - 2 * p + np.roll(p, 1, axis=0)
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return np.abs(cross) / np.linalg.norm(d1, axis=1) ** 3


def test_petsc_operator_blocks_and_affine_terms(model, comm, rng):
    """Block action equals column-wise action; A_1 1 = A_2 1 = 0; 1^T A_3 1 = |Gamma_c|."""
    X = rng.standard_normal((model.n_dofs, 3))
    Xo = X[model.keys]
    MX = model.mass(Xo)
    assert MX.shape == (model.n_owned, 3)
    np.testing.assert_allclose(MX[:, 1], model.mass(Xo[:, 1]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(MX, model.mass @ Xo, rtol=0, atol=0)
    one = np.ones(model.n_owned)
    for A in model.stiffness_terms[:2]:
        assert np.max(np.abs(A(one))) < 1e-10
    perimeter = comm.allreduce(float(np.sum(model.stiffness_terms[2](one))), op=MPI.SUM)
    np.testing.assert_allclose(perimeter, model.functional(region="cooling"), rtol=1e-12)
    # symmetric: x^T M y = y^T M x over ranks
    xy = comm.allreduce(float(Xo[:, 0] @ MX[:, 1]), op=MPI.SUM)
    yx = comm.allreduce(float(Xo[:, 1] @ MX[:, 0]), op=MPI.SUM)
    np.testing.assert_allclose(xy, yx, rtol=1e-13)
    with pytest.raises(ValueError, match="owned rows of shape"):
        model.mass(np.ones((model.n_owned + 1, 2)))
