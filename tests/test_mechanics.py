"""Elasto-viscoplastic law (solvers.constitutive) and FOM (solvers.mechanics).

References, all independent of the code under test: closed-form Norton creep and relaxation
(n = 1), a fine Radau solution of the relaxation ODE (scipy), central finite differences of the
stress, the analytic homogeneous elastic solutions of a bar, a scalar root-finder (brentq) for
the uniaxial-stress material point, and a serial run for the partition test.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from solvers.constitutive import Material
from solvers.constitutive import integrate
from solvers.constitutive import von_mises

S2 = np.sqrt(2.0)


def _lame(mat: Material, T: float) -> tuple[float, float, float]:
    E = mat.young * (1 - mat.young_slope * (T - mat.T_ref))
    nu = mat.poisson
    return E, E / (2 * (1 + nu)), E / (3 * (1 - 2 * nu))


def _uniaxial(n_comp: int) -> np.ndarray:
    d = np.zeros(n_comp)
    d[:3] = [1.0, -0.5, -0.5]
    return d


# ---------------------------------------------------------------------- local integrator
@pytest.mark.parametrize("n_comp", [4, 6])
def test_constant_uniaxial_stress_creeps_at_the_norton_rate(n_comp):
    """H = 0, sigma = const: p(t) = t ((sigma - sigma_y)/K)^n and eps_vp = p (1, -1/2, -1/2).

    Backward Euler is exact for a constant rate, so the strain history consistent with the
    analytic creep must return the applied stress and the analytic p to round-off (1e-10).
    """
    mat = Material(hardening=0.0, norton_n=4.0, norton_n_slope=2e-3)
    T, sig, dt = 320.0, 260.0, 0.05
    E, mu, kappa = _lame(mat, T)
    sy = mat.yield_stress * (1 - mat.yield_slope * (T - mat.T_ref))
    K = mat.norton_K * np.exp(-mat.norton_K_rate * (T - mat.T_ref))
    n = mat.norton_n + mat.norton_n_slope * (T - mat.T_ref)
    rate = ((sig - sy) / K) ** n
    assert rate > 0
    nu = mat.poisson
    eps_el = np.zeros(n_comp)
    eps_el[:3] = np.array([1.0, -nu, -nu]) * sig / E + mat.expansion * (T - mat.T_ref)
    sigma_ref = np.zeros(n_comp)
    sigma_ref[0] = sig
    evp, p = np.zeros((1, n_comp)), np.zeros(1)
    for k in range(1, 11):
        p_exact = k * dt * rate
        eps = (eps_el + p_exact * _uniaxial(n_comp))[None]
        res = integrate(mat, eps, evp, p, T, dt)
        evp, p = res.eps_vp, res.p
        np.testing.assert_allclose(res.sigma[0], sigma_ref, rtol=0, atol=1e-10 * sig)
        np.testing.assert_allclose(p[0], p_exact, rtol=1e-10)
        np.testing.assert_allclose(evp[0], p_exact * _uniaxial(n_comp), rtol=0, atol=1e-12)


def _relax(mat, T, gamma, t_end, n_steps, n_comp=6):
    """Backward Euler under the fixed pure-shear strain eps_xy = gamma: (sigma_eq, p)."""
    m = np.size(T)
    eps = np.zeros((m, n_comp))
    eps[:, :3] = mat.expansion * (np.asarray(T) - mat.T_ref)[:, None]
    eps[:, -1] = S2 * gamma
    evp, p = np.zeros((m, n_comp)), np.zeros(m)
    dt = t_end / n_steps
    for _ in range(n_steps):
        res = integrate(mat, eps, evp, p, T, dt)
        evp, p = res.eps_vp, res.p
    return von_mises(res.sigma), p


def test_relaxation_n1_matches_closed_form_with_first_order_convergence():
    """n = 1, fixed shear strain: f = sigma_eq - sigma_y - H p decays as exp(-(3 mu + H) t / K).

    From d(sigma_eq) = -3 mu dp: p = (f0 - f)/(3 mu + H). Backward Euler converges at order 1:
    the observed orders between dt, dt/2, dt/4, dt/8 lie in [0.9, 1.1].
    """
    mat = Material(norton_n=1.0, hardening=3e3)
    T = np.array([20.0, 250.0, 600.0])
    E = mat.young * (1 - mat.young_slope * (T - mat.T_ref))
    mu = E / (2 * (1 + mat.poisson))
    sy = mat.yield_stress * (1 - mat.yield_slope * (T - mat.T_ref))
    K = mat.norton_K * np.exp(-mat.norton_K_rate * (T - mat.T_ref))
    gamma, H = 2e-3, mat.hardening
    q0 = np.sqrt(3.0) * 2 * mu * gamma
    f0 = q0 - sy
    assert np.all(f0 > 0)
    t_end = 0.5 * np.max(K / (3 * mu + H))  # about half a relaxation time or more
    f = f0 * np.exp(-(3 * mu + H) * t_end / K)
    p_ref = (f0 - f) / (3 * mu + H)
    q_ref = q0 - 3 * mu * p_ref
    errors = []
    for n_steps in (10, 20, 40, 80):
        q, p = _relax(mat, T, gamma, t_end, n_steps)
        errors.append(np.max(np.abs(p - p_ref) / p_ref))
        np.testing.assert_allclose(q, q0 - 3 * mu * p, rtol=1e-12)  # exact consistency
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 0.9) & (orders < 1.1)), (errors, orders)
    assert errors[-1] < 5e-3
    np.testing.assert_allclose(q, q_ref, rtol=5e-3 * np.max(p_ref * 3 * mu / q_ref) + 1e-12)


def test_relaxation_n3_converges_to_fine_radau_solution():
    """n = 3: backward Euler tends to the Radau solution (rtol 1e-11) of
    d(sigma_eq)/dt = -3 mu ((sigma_eq - sigma_y - H p)/K)^n, dp/dt = ((...)/K)^n at order 1."""
    mat = Material(norton_n=3.0, hardening=1e3)
    T = np.array([100.0, 400.0])
    E = mat.young * (1 - mat.young_slope * (T - mat.T_ref))
    mu = E / (2 * (1 + mat.poisson))
    sy = mat.yield_stress * (1 - mat.yield_slope * (T - mat.T_ref))
    K = mat.norton_K * np.exp(-mat.norton_K_rate * (T - mat.T_ref))
    gamma, H, n = 1.5e-3, mat.hardening, mat.norton_n
    q0 = np.sqrt(3.0) * 2 * mu * gamma
    t_end = 2.0
    p_ref = np.empty(T.size)
    for i in range(T.size):

        def rhs(t, y, i=i):
            rate = max((y[0] - sy[i] - H * y[1]) / K[i], 0.0) ** n
            return [-3 * mu[i] * rate, rate]

        sol = solve_ivp(rhs, (0, t_end), [q0[i], 0.0], method="Radau", rtol=1e-11, atol=1e-14)
        assert sol.success
        p_ref[i] = sol.y[1, -1]
    assert np.all(p_ref > 1e-4)
    errors = []
    for n_steps in (20, 40, 80):
        _, p = _relax(mat, T, gamma, t_end, n_steps, n_comp=4)
        errors.append(np.max(np.abs(p - p_ref) / p_ref))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 0.85) & (orders < 1.15)), (errors, orders)
    assert errors[-1] < 2e-2


@pytest.mark.parametrize("n_comp", [4, 6])
def test_consistent_tangent_matches_finite_differences(n_comp, rng):
    """Central differences (h = 1e-8) of sigma(eps) agree with the tangent to 1e-6 relative,
    at elastic and viscoplastic points; the tangent is symmetric."""
    mat = Material(hardening=800.0, norton_n=4.0)
    m = 40
    eps = rng.standard_normal((m, n_comp)) * 1.5e-3 * rng.uniform(0.05, 1.0, (m, 1))
    evp = rng.standard_normal((m, n_comp)) * 2e-5
    evp[:, :3] -= evp[:, :3].mean(axis=1, keepdims=True)
    p0 = np.abs(rng.standard_normal(m)) * 1e-3
    T = rng.uniform(20.0, 500.0, m)
    dt = 0.1
    res = integrate(mat, eps, evp, p0, T, dt)
    plastic = res.p > p0
    assert 5 < plastic.sum() < m  # both regimes are exercised
    h = 1e-8
    fd = np.empty_like(res.tangent)
    for c in range(n_comp):
        d = np.zeros(n_comp)
        d[c] = h
        fd[:, :, c] = (
            integrate(mat, eps + d, evp, p0, T, dt).sigma
            - integrate(mat, eps - d, evp, p0, T, dt).sigma
        ) / (2 * h)
    scale = np.abs(res.tangent).max()
    assert np.abs(fd - res.tangent).max() <= 1e-6 * scale
    np.testing.assert_allclose(res.tangent, res.tangent.transpose(0, 2, 1), atol=1e-9 * scale)
    # plastic points lie on the rate surface sigma_eq - R = K (dp/dt)^(1/n) (stress form,
    # well conditioned for a small overstress); dp = p - p0 itself is only accurate where it
    # is not tiny next to p0
    plastic &= res.p - p0 > 1e-6 * p0
    assert plastic.sum() > 5
    q = von_mises(res.sigma[plastic])
    Tp = T[plastic]
    R = mat.yield_strength(Tp) + mat.hardening * res.p[plastic]
    over = mat.norton_resistance(Tp) * ((res.p - p0)[plastic] / dt) ** (1 / mat.norton_exponent(Tp))
    np.testing.assert_allclose(q - R, over, rtol=0, atol=1e-11 * q.max())


def test_integrate_rejects_bad_input():
    mat = Material()
    eps = np.zeros((3, 4))
    ok = (np.zeros((3, 4)), np.zeros(3), 20.0, 0.1)
    with pytest.raises(ValueError, match="eps contains NaN"):
        integrate(mat, np.full((3, 4), np.nan), *ok)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        integrate(mat, eps, ok[0], ok[1], 20.0, 0.0)
    with pytest.raises(ValueError, match="eps_vp_old must have shape"):
        integrate(mat, eps, np.zeros((2, 4)), ok[1], 20.0, 0.1)
    with pytest.raises(ValueError, match=r"E\(T\) <= 0"):
        integrate(mat, eps, ok[0], ok[1], 1e4, 0.1)
    with pytest.raises(ValueError, match="poisson"):
        Material(poisson=0.5)


# ---------------------------------------------------------------------- finite elements
def _model(comm, **kw):
    from solvers.mechanics import ViscoplasticModel

    return ViscoplasticModel(comm, **kw)


@pytest.mark.fem
@pytest.mark.parametrize("loading", ["displacement", "pressure"])
def test_plane_strain_bar_is_the_analytic_elastic_solution(comm, loading):
    """Rollers + load on x = L, elastic: sigma_yy = eps_zz = 0, so
    sigma_xx = E/(1 - nu^2) eps_xx, eps_yy = -nu/(1 - nu) eps_xx, sigma_zz = nu sigma_xx,
    u = (eps_xx x, eps_yy y), at every dof and quadrature point (1e-9 relative)."""
    from solvers.mechanics import Load

    mat = Material(yield_stress=1e5, expansion=0.0)
    T, L = 300.0, 2.0
    E, _, _ = _lame(mat, T)
    nu = mat.poisson
    if loading == "displacement":
        load = Load(displacement=lambda t: 1e-3 * t * L)
        exx = 1e-3
    else:
        load = Load(pressure=lambda t: -150.0 * t)
        exx = 150.0 * (1 - nu**2) / E
    model = _model(
        comm,
        dim=2,
        size=2,
        lengths=(L, 1.0),
        material=mat,
        load=load,
        temperature=T,
        times=[1.0],
    )
    traj = model.solve()
    sxx = E / (1 - nu**2) * exx
    eyy = -nu / (1 - nu) * exx
    sig = traj.stresses[:, :, 0]
    ref = np.array([sxx, 0.0, nu * sxx, 0.0])
    np.testing.assert_allclose(sig, np.broadcast_to(ref, sig.shape), rtol=0, atol=1e-9 * sxx)
    comp = model.keys % 2
    assert model.keys.dtype == np.int64
    np.testing.assert_array_equal(comp, np.arange(model.n_owned) % 2)  # blocked (x, y) rows
    x = model.V.tabulate_dof_coordinates()[: model.n_owned // 2]
    xy = np.repeat(x[:, :2], 2, axis=0)
    u_ref = np.where(comp == 0, exx * xy[:, 0], eyy * xy[:, 1])
    np.testing.assert_allclose(traj.u[:, 0], u_ref, rtol=0, atol=1e-9 * exx * L)
    np.testing.assert_array_equal(traj.p, 0.0)


def _uniaxial_point(mat, exx, T, evp, p, dt, n_comp=6):
    """Uniaxial-stress material point: the lateral strain solves sigma_yy(e) = 0 (brentq)."""

    def run(e):
        eps = np.zeros((1, n_comp))
        eps[0, :3] = [exx, e, e]
        return integrate(mat, eps, evp, p, T, dt)

    e = brentq(
        lambda e: run(e).sigma[0, 1],
        -2 * abs(exx) - 1e-2,
        2 * abs(exx) + 1e-2,
        xtol=1e-16,
        rtol=1e-15,
    )
    return run(e), e


@pytest.mark.fem
def test_homogeneous_3d_bar_matches_the_material_point(comm):
    """3-D box with rollers and u_x = delta(t) on x = L, T(t) uniform in space: the FE solution
    is homogeneous uniaxial stress. Step 1 is elastic (analytic: sigma_xx = E (eps_xx - a dT));
    every step equals the uniaxial-stress material point at all quadrature points (1e-8)."""
    from solvers.mechanics import Load

    mat = Material(hardening=1e3, norton_n=3.0)
    L = 2.0
    rate = 1.2e-3
    times = np.array([0.5, 1.5, 2.5, 3.5])

    def temp(x, t):
        return np.full(x.shape[1], 100.0 + 50.0 * t)

    model = _model(
        comm,
        dim=3,
        size=1,
        lengths=(L, 1.0, 1.0),
        material=mat,
        load=Load(displacement=lambda t: rate * t * L),
        temperature=temp,
        times=times,
    )
    traj = model.solve()
    evp, p, t_old = np.zeros((1, 6)), np.zeros(1), 0.0
    for k, t in enumerate(times):
        T = 100.0 + 50.0 * t
        res, e_lat = _uniaxial_point(mat, rate * t, T, evp, p, t - t_old)
        evp, p, t_old = res.eps_vp, res.p, t
        sig = traj.stresses[:, :, k]
        scale = abs(res.sigma[0, 0])
        np.testing.assert_allclose(
            sig, np.broadcast_to(res.sigma[0], sig.shape), rtol=0, atol=1e-8 * scale
        )
        np.testing.assert_allclose(traj.p[:, k], p[0], rtol=1e-8, atol=1e-14)
        if k == 0:  # elastic range: Hooke with thermal strain
            E, _, _ = _lame(mat, T)
            a_dT = mat.expansion * (T - mat.T_ref)
            assert p[0] == 0.0
            np.testing.assert_allclose(sig[:, 0], E * (rate * t - a_dT), rtol=1e-9)
            np.testing.assert_allclose(e_lat, -mat.poisson * (rate * t - a_dT) + a_dT, rtol=1e-9)
        x = model.V.tabulate_dof_coordinates()[: model.n_owned // 3]
        comp = model.keys % 3
        u_ref = np.where(
            comp == 0,
            rate * t * np.repeat(x[:, 0], 3),
            e_lat * np.repeat(x, 3, axis=0)[np.arange(comp.size), comp],
        )
        np.testing.assert_allclose(traj.u[:, k], u_ref, rtol=0, atol=1e-8 * rate * t * L)
    assert p[0] > 1e-4  # the run reached the viscoplastic range


def _rotating_plate(comm, **kw):
    """A non-homogeneous case: pressure, centrifugal load and a temperature gradient."""
    from solvers.mechanics import Load

    def temp(x, t):
        return 150.0 + 300.0 * t * x[0] + 80.0 * x[1] ** 2

    load = Load(pressure=lambda t: -120.0 * t, omega=lambda t: 4e4 * t, axis=(-1.0, 0.3))
    args = dict(
        dim=2, size=2, lengths=(2.0, 1.0), load=load, temperature=temp, times=[0.5, 1.0, 1.5]
    )
    args.update(kw)
    return _model(comm, **args)


@pytest.mark.fem
@pytest.mark.parametrize("case", ["pressure_rotating", "displacement_16x16"])
def test_global_newton_converges_quadratically(comm, case):
    """With the consistent tangent the scaled residual e_k = |F_free|/|F| converges
    quadratically: e_{k+1} <= 10 e_k^2 + 1e-13 (round-off) whenever e_k < 1e-2, checked on at
    least one pair in every viscoplastic step (linear convergence at rate rho would need
    rho <= 10 e_k); at most 8 iterations per step, also on a finer mesh with an imposed
    displacement (the first iterate lifts the Dirichlet increment)."""
    from solvers.mechanics import Load

    if case == "pressure_rotating":
        model = _rotating_plate(comm)
    else:
        load = Load(displacement=lambda t: 4e-3 * t, omega=lambda t: 4e4 * t)
        model = _rotating_plate(
            comm, size=16, lengths=(1.0, 1.0), load=load, times=[0.25, 0.5, 0.75, 1.0]
        )
    state = model.initial_state()
    n_plastic_steps = 0
    for t in model.times:
        state, info = model.step(state, t)
        assert info.iterations <= 8, info
        e = np.array(info.residual_norms) / info.reference_norm
        assert e[-1] <= model.rtol + model.atol / info.reference_norm
        if info.n_plastic == 0:
            continue
        n_plastic_steps += 1
        pairs = [(a, b) for a, b in zip(e[1:-1], e[2:]) if a < 1e-2]
        assert pairs, e
        assert all(b <= 10 * a**2 + 1e-13 for a, b in pairs), e
    assert n_plastic_steps >= 2
    assert np.max(state.p) > 0 and np.min(state.p) < np.max(state.p)  # non-homogeneous


@pytest.mark.fem
@pytest.mark.mpi
def test_newton_stops_at_the_round_off_floor(comm):
    """rtol = atol = 0 cannot be met (the residual stagnates at round-off): Newton stops on
    the step test (correction below stol ||u||) instead of failing, with the same trajectory
    as with the default tolerances to 1e-9; with stol = 0 as well it fails as before."""
    strict = _rotating_plate(comm, rtol=0.0, atol=0.0)
    default = _rotating_plate(comm)
    a, b = strict.solve(), default.solve()
    scale = comm.allreduce(float(np.abs(b.u).max()), op=MPI.MAX)
    assert comm.allreduce(float(np.abs(a.u - b.u).max()), op=MPI.MAX) <= 1e-9 * scale
    never = _rotating_plate(comm, rtol=0.0, atol=0.0, stol=0.0, max_newton=12)
    with pytest.raises(RuntimeError, match="did not converge"):
        never.solve()


@pytest.mark.fem
@pytest.mark.mpi
def test_quadrature_data_of_a_linear_field(comm):
    """strain_at_qp of u = A x is sym(A) in Mandel form at every point; the weights and the
    mass matrix integrate the volume; nodal and callable temperatures agree for a bilinear T."""
    from rom.parallel import allreduce_sum

    model = _model(comm, dim=3, size=2, lengths=(1.0, 0.5, 1.5), times=[1.0])
    A = np.array([[1.0, 2.0, -1.0], [0.5, -3.0, 0.2], [0.0, 1.0, 4.0]]) * 1e-3
    x = model.V.tabulate_dof_coordinates()[: model.n_owned // 3]
    comp = model.keys % 3
    X = np.repeat(x, 3, axis=0)
    u = np.einsum("ij,ij->i", A[comp], X)
    U = np.column_stack([u, 2 * u])
    eps = model.strain_at_qp(U)
    S = 0.5 * (A + A.T)
    ref = np.array([S[0, 0], S[1, 1], S[2, 2], S2 * S[1, 2], S2 * S[0, 2], S2 * S[0, 1]])
    np.testing.assert_allclose(eps[:, :, 0], np.broadcast_to(ref, eps[:, :, 0].shape), atol=1e-15)
    np.testing.assert_allclose(eps[:, :, 1], 2 * eps[:, :, 0], atol=1e-15)
    vol = 1.0 * 0.5 * 1.5
    np.testing.assert_allclose(allreduce_sum(model.qp_weights.sum(), comm), vol, rtol=1e-13)
    ones = (comp == 1).astype(float)
    np.testing.assert_allclose(allreduce_sum(ones @ model.mass(ones), comm), vol, rtol=1e-13)

    def temp(x, t):
        return 200.0 + 10.0 * t * x[0] - 30.0 * x[1] + 5.0 * x[0] * x[2]

    xt = model.temperature_space.tabulate_dof_coordinates()[: model.temperature_keys.size].T
    nodal = np.column_stack([temp(xt, 0.0), temp(xt, 2.0)])
    model.set_temperature(temp)
    T_call = model.temperature_at_qp(1.5)
    model.set_temperature((np.array([0.0, 2.0]), nodal))
    np.testing.assert_allclose(model.temperature_at_qp(1.5), T_call, rtol=1e-13)
    with pytest.raises(ValueError, match="outside the nodal temperature times"):
        model.temperature_at_qp(3.0)
    with pytest.raises(ValueError, match="nodal temperature values must have shape"):
        model.set_temperature((np.array([0.0, 2.0]), nodal[:, :1]))


@pytest.mark.fem
@pytest.mark.mpi
def test_equilibrium_under_centrifugal_and_pressure_loads(comm):
    """Testing the converged equations with the admissible field psi = x e_x (zero on the
    roller x = 0, free elsewhere under a pressure load) gives the exact identity
    sum_q w_q sigma : eps(psi) = rho w^2 L_y (L_x^3/3 - c_x L_x^2/2) - p L_x L_y, computed
    through strain_at_qp and integrands, to 1e-8 relative in every (viscoplastic,
    non-homogeneous) step."""
    from rom.parallel import allreduce_sum

    model = _rotating_plate(comm)
    traj = model.solve()
    Lx, Ly = model.lengths
    cx = model.load.axis[0]
    rho = model.material.density
    assert allreduce_sum(float(np.sum(traj.p[:, -1] > 0)), comm) > 0
    x = model.V.tabulate_dof_coordinates()[: model.n_owned // 2, 0]
    psi = np.where(model.keys % 2 == 0, np.repeat(x, 2), 0.0)
    g = model.integrands(traj.stresses, model.strain_at_qp(psi))
    assert g.shape == (1, traj.times.size, model.n_qp_local)
    lhs = allreduce_sum(g[0] @ model.qp_weights, comm)
    for k, t in enumerate(traj.times):
        w2 = (4e4 * t) ** 2
        pres = -120.0 * t
        ref = rho * w2 * Ly * (Lx**3 / 3 - cx * Lx**2 / 2) - pres * Lx * Ly
        np.testing.assert_allclose(lhs[k], ref, rtol=1e-8)


def _gather(keys, values, comm):
    keys = np.concatenate(comm.allgather(keys))
    values = np.concatenate(comm.allgather(values))
    order = np.argsort(keys)
    assert np.all(np.diff(keys[order]) > 0)
    return values[order]


@pytest.mark.fem
@pytest.mark.mpi
@pytest.mark.partition
def test_partition_independent_displacement_and_plastic_strain(comm):
    """Run on the world communicator and serially on COMM_SELF: u, p, stresses and the
    quadrature-point coordinates gathered by key agree to 1e-12 relative."""
    par = _rotating_plate(comm)
    ser = _rotating_plate(MPI.COMM_SELF)
    tp, ts = par.solve(), ser.solve()
    assert par.n_dofs == ser.n_dofs and allreduce_n(par.n_qp_local, comm) == ser.n_qp_local
    np.testing.assert_allclose(
        _gather(par.qp_keys, par.qp_coordinates, comm),
        _gather(ser.qp_keys, ser.qp_coordinates, MPI.COMM_SELF),
        atol=1e-14,
    )
    u_p, u_s = _gather(par.keys, tp.u, comm), _gather(ser.keys, ts.u, MPI.COMM_SELF)
    np.testing.assert_allclose(u_p, u_s, rtol=0, atol=1e-12 * np.abs(u_s).max())
    p_p, p_s = _gather(par.qp_keys, tp.p, comm), _gather(ser.qp_keys, ts.p, MPI.COMM_SELF)
    assert p_s.max() > 0
    np.testing.assert_allclose(p_p, p_s, rtol=0, atol=1e-12 * p_s.max())
    s_p = _gather(par.qp_keys, tp.stresses, comm)
    s_s = _gather(ser.qp_keys, ts.stresses, MPI.COMM_SELF)
    np.testing.assert_allclose(s_p, s_s, rtol=0, atol=1e-12 * np.abs(s_s).max())
    np.testing.assert_array_equal(tp.newton_iterations, ts.newton_iterations)


def allreduce_n(n, comm):
    return comm.allreduce(int(n), op=MPI.SUM)


@pytest.mark.fem
@pytest.mark.mpi
def test_step_rejects_bad_state_on_every_rank(comm):
    model = _rotating_plate(comm, times=[1.0])
    state = model.initial_state()
    if comm.rank == comm.size - 1:
        state.p = state.p.copy()
        state.p[:1] = np.nan
    with pytest.raises(ValueError, match="state.p contains NaN"):
        model.step(state, 1.0)
    with pytest.raises(ValueError, match="must be finite and greater than state.t"):
        model.step(model.initial_state(), 0.0)


@pytest.mark.fem
@pytest.mark.mpi
def test_newton_first_iterate_changes_iterations_not_the_step(comm):
    """``u_guess`` is only Newton's first iterate: from a perturbed converged solution the step
    converges to the same state (within the Newton tolerance) as from ``state.u``, and from the
    converged solution itself it needs no iteration. A guess of the wrong shape is refused on
    every rank."""
    model = _rotating_plate(comm, size=8)
    s0 = model.initial_state()
    s1, info = model.step(s0, 0.5)
    assert info.iterations >= 2 and info.n_plastic > 0
    rng = np.random.default_rng(comm.rank)
    guess = s1.u * (1.0 + 1e-3 * rng.standard_normal(s1.u.shape))
    s1g, _ = model.step(s0, 0.5, u_guess=guess)
    scale = np.sqrt(comm.allreduce(float(s1.u @ s1.u)))
    du = np.sqrt(comm.allreduce(float((s1g.u - s1.u) @ (s1g.u - s1.u))))
    assert du <= 1e-8 * scale
    dp = comm.allreduce(float(np.max(np.abs(s1g.p - s1.p))), op=MPI.MAX)
    assert dp <= 1e-8 * comm.allreduce(float(np.max(s1.p)), op=MPI.MAX)
    _, info_0 = model.step(s0, 0.5, u_guess=s1.u)
    assert info_0.iterations == 0  # already converged: one residual evaluation
    # a looser per-step tolerance: no more iterations, and the residual it stopped at meets it
    _, info_r = model.step(s0, 0.5, rtol=1e-4)
    assert info_r.iterations <= info.iterations
    assert info_r.residual_norms[-1] <= 1e-4 * info_r.reference_norm + model.atol
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        model.step(s0, 0.5, rtol=-1.0)
    bad = np.zeros(s1.u.size + (1 if comm.rank == 0 else 0))
    with pytest.raises(ValueError, match="u_guess must be finite"):
        model.step(s0, 0.5, u_guess=bad)
