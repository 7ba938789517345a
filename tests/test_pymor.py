"""pyMOR interoperability: pyMOR models reduced through this library's public API agree with
pyMOR's own reduction on the same basis. pyMOR is part of the ``test`` extra: a missing pyMOR
is an import error here, not a skip."""

from __future__ import annotations

import numpy as np
import pymor.basic as pb
import pytest

import rom
from rom.interop import affine_from_pymor
from rom.interop import from_pymor
from rom.models import LinearAffineROM
from rom.models import space_time_error

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside pyMOR


pb.set_log_levels({"pymor": "WARN"})

SIZES = (5, 10, 20)
REL = 1e-10


def thermal_block():
    problem = pb.thermal_block_problem((3, 3))
    fom, _ = pb.discretize_stationary_cg(problem, diameter=1 / 20)
    return problem, fom


def block_mus(n, seed):
    """Random thermal-block parameters in pyMOR's parameter range [0.1, 1]^9."""
    rng = np.random.default_rng(seed)
    return [{"diffusion": rng.uniform(0.1, 1.0, 9)} for _ in range(n)]


def heat_problem():
    """pyMOR's heat demo with a source proportional to sin(10 pi t)."""
    box = "(0.45 < x[0] < 0.55)"
    diffusion = pb.LincombFunction(
        [
            pb.ConstantFunction(1.0, dim_domain=2),
            pb.ExpressionFunction(f"{box} * (x[1] < 0.7) * 1.", dim_domain=2),
            pb.ExpressionFunction(
                "(0.35 < x[0] < 0.40) * (x[1] > 0.3) * 1. + (0.60 < x[0] < 0.65) * (x[1] > 0.3) * 1.",
                dim_domain=2,
            ),
        ],
        [1.0, 100.0 - 1.0, pb.ExpressionParameterFunctional("top[0] - 1.", {"top": 1})],
    )
    source = pb.LincombFunction(
        [pb.ConstantFunction(100.0, dim_domain=2)],
        [pb.ExpressionParameterFunctional("sin(10*pi*t[0])", {"t": 1})],
    )
    stationary = pb.StationaryProblem(
        domain=pb.RectDomain(top="dirichlet", bottom="neumann"),
        diffusion=diffusion,
        rhs=source,
        dirichlet_data=pb.ConstantFunction(0.0, dim_domain=2),
        neumann_data=pb.ExpressionFunction(f"{box} * -1000.", dim_domain=2),
    )
    initial = pb.ExpressionFunction(f"{box} * (x[1] < 0.7) * 10.", dim_domain=2)
    return pb.InstationaryProblem(stationary, T=1.0, initial_data=initial)


def test_pymor_arrays_and_products_are_accepted_by_the_compression_entry_points():
    """pod, compress and IncrementalSVD take VectorArrays and Operators: same result as with
    the converted numpy inputs, and pyMOR's POD gives the same singular values."""
    problem, fom = thermal_block()
    U = fom.solution_space.empty()
    for mu in block_mus(12, 1):
        U.append(fom.solve(mu))
    P = fom.h1_0_semi_product
    X, Pm = U.to_numpy(), P.assemble().matrix
    ref = rom.pod(X, product=Pm, rank=6)
    for res in (
        rom.pod(U, product=P, rank=6),
        rom.compress(U, product=P, rank=6),
    ):
        np.testing.assert_allclose(res.singular_values, ref.singular_values, rtol=1e-10)
    isvd = rom.compression.IncrementalSVD(product=P, rank=6).fit(U, chunk=5)
    isvd_np = rom.compression.IncrementalSVD(product=Pm, rank=6).fit(X, chunk=5)
    np.testing.assert_allclose(isvd.singular_values_, isvd_np.singular_values_, rtol=1e-12)
    np.testing.assert_allclose(isvd.modes_, isvd_np.modes_, atol=1e-12)
    _, sv = pb.pod(U, product=P, modes=6)
    np.testing.assert_allclose(ref.singular_values, sv, rtol=1e-8)
    assert np.shape(from_pymor(U)) == (fom.solution_space.dim, 12)
    with pytest.raises(TypeError, match="assemble"):
        from_pymor(fom.operator)  # parametric: say what to pass


def test_thermal_block_errors_equal_pymor_reduction():
    """Stationary thermal block: same basis, same errors as pyMOR's StationaryRBReductor."""
    problem, fom = thermal_block()
    P = fom.h1_0_semi_product
    train = fom.solution_space.empty()
    for mu in block_mus(60, 2):
        train.append(fom.solve(mu))
    V = rom.pod(train, product=P, rank=max(SIZES)).modes
    full = LinearAffineROM.from_full(
        V, stiffness=affine_from_pymor(fom.operator), rhs=affine_from_pymor(fom.rhs)
    )
    reductor = pb.StationaryRBReductor(
        fom, fom.solution_space.from_numpy(V), product=P, check_orthonormality=False
    )
    tests = block_mus(4, 3)
    worst = []
    for n in SIZES:
        ours, theirs = full.truncated(n), reductor.reduce(n)
        errors = []
        for mu in tests:
            u = fom.solve(mu)
            c = ours.solve_stationary(mu)
            c_p = theirs.solve(mu).to_numpy()[:, 0]
            np.testing.assert_allclose(c, c_p, rtol=0, atol=REL * np.abs(c_p).max())
            e = (u - fom.solution_space.from_numpy(ours.reconstruct(c))).norm(P)[0]
            e_p = (u - reductor.reconstruct(theirs.solve(mu))).norm(P)[0]
            assert abs(e - e_p) <= REL * e_p, (n, e, e_p)
            errors.append(e / u.norm(P)[0])
        worst.append(max(errors))
    assert worst[0] > worst[1] > worst[2], worst  # the Galerkin error falls with N


def test_parabolic_heat_errors_equal_pymor_reduction():
    """Heat demo (source ~ sin(10 pi t), implicit Euler, trajectories include u^0): same basis,
    same space-time errors as pyMOR's InstationaryRBReductor."""
    fom, _ = pb.discretize_instationary_cg(heat_problem(), diameter=1 / 20, nt=50)
    P = fom.h1_0_semi_product
    train = fom.solution_space.empty()
    for top in (1.0, 5.0, 20.0, 50.0):
        train.append(fom.solve({"top": top}))
    V = rom.pod(train, product=P, rank=max(SIZES)).modes
    full = LinearAffineROM.from_full(
        V,
        mass=fom.mass,
        stiffness=affine_from_pymor(fom.operator),
        rhs=affine_from_pymor(fom.rhs),
    )
    assert full.load.time_dependent
    reductor = pb.InstationaryRBReductor(
        fom, fom.solution_space.from_numpy(V), product=P, check_orthonormality=False
    )
    u0 = fom.initial_data.as_range_array().to_numpy()[:, 0]
    dt, nt = fom.T / fom.time_stepper.nt, fom.time_stepper.nt
    Pm = P.assemble().matrix
    worst = []
    for n in SIZES:
        ours, theirs = full.truncated(n), reductor.reduce(n)
        errors = []
        for top in (3.0, 30.0):
            mu = {"top": top}
            U = fom.solve(mu).to_numpy()
            C = ours.solve(mu, dt=dt, n_steps=nt, c0=ours.project_state(u0, product=P))
            C_p = theirs.solve(mu).to_numpy()
            np.testing.assert_allclose(C, C_p, rtol=0, atol=REL * np.abs(C_p).max())
            e = space_time_error(U, ours.reconstruct(C), product=Pm)
            e_p = space_time_error(U, reductor.reconstruct(theirs.solve(mu)).to_numpy(), product=Pm)
            assert abs(e - e_p) <= REL * e_p, (n, e, e_p)
            errors.append(e)
        worst.append(max(errors))
    assert worst[0] > worst[1] > worst[2], worst


def test_import_rom_does_not_import_pymor():
    """pyMOR is an optional extra (installed here): only rom.interop's conversions touch pyMOR objects."""
    import subprocess
    import sys

    code = "import sys, rom, rom.interop, rom.models; assert 'pymor' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
