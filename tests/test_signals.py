"""Indicator signals (rom.adaptive.signals) on a synthetic model without dolfinx: a 1-D bar,
P1 elements, one quadrature point per element, ends fixed, rows split over the ranks.

References: the residual assembled densely with numpy (F_i = sigma_{i-1} - sigma_i for the
interior node i), and fields built inside a known span (the Gappy-POD residual is then 0).
"""

from __future__ import annotations

import numpy as np
import pytest

from rom.adaptive import GappyIndicator
from rom.adaptive import SampledResidual
from rom.adaptive.signals import common_mask

N_EL = 60  # elements; free dofs are the N_EL - 1 interior nodes


def _split(n, comm):
    counts = [n // comm.size + (r < n % comm.size) for r in range(comm.size)]
    lo = sum(counts[: comm.rank])
    return lo, lo + counts[comm.rank]


class Bar:
    """The interface SampledResidual needs: comm, n_owned, n_qp_local, qp_weights,
    strain_at_qp (collective)."""

    def __init__(self, comm):
        self.comm = comm
        self.h = 1.0 / N_EL
        self.dofs = _split(N_EL - 1, comm)  # owned interior nodes 1 + [lo, hi)
        self.elems = _split(N_EL, comm)
        self.n_owned = self.dofs[1] - self.dofs[0]
        self.n_qp_local = self.elems[1] - self.elems[0]
        self.qp_weights = np.full(self.n_qp_local, self.h)

    def strain_at_qp(self, U):
        U = np.asarray(U, dtype=float).reshape(self.n_owned, -1)
        full = np.vstack(self.comm.allgather(U))  # (N_EL - 1, k)
        nodes = np.vstack([np.zeros((1, U.shape[1])), full, np.zeros((1, U.shape[1]))])
        eps = (nodes[1:] - nodes[:-1]) / self.h  # (N_EL, k), element e between nodes e, e+1
        lo, hi = self.elems
        return eps[lo:hi, None, :]  # (n_qp_local, n_comp = 1, k)


def _stress_for(F):
    """A stress per element whose residual F_i = sigma_{i-1} - sigma_i is the given F."""
    sigma = np.empty(N_EL)
    sigma[0] = 1.0
    for i in range(1, N_EL):
        sigma[i] = sigma[i - 1] - F[i - 1]
    return sigma


def _orthonormal(rng, n, k):
    x = np.linspace(0, 1, n + 2)[1:-1]
    X = np.column_stack(
        [np.sin((j + 1) * np.pi * x) + 0.1 * rng.standard_normal(n) for j in range(k)]
    )
    return np.linalg.qr(X)[0]


@pytest.mark.mpi
@pytest.mark.partition
def test_sampled_residual_matches_the_assembled_residual(comm):
    """F_I from the stresses of the cells around the sample equals the densely assembled
    residual at I, and for a residual in span(Phi_r) rho * F_ref is its exact 2-norm, at any
    rank count (the sample does not depend on it)."""
    rng = np.random.default_rng(3)
    bar = Bar(comm)
    Phi_full = _orthonormal(rng, N_EL - 1, 5)
    lo, hi = bar.dofs
    res = SampledResidual(Phi_full[lo:hi], bar, f_ref=2.0)
    assert res.dofs_.size == 10  # QDEIM rows plus as many leverage rows
    a = rng.standard_normal(5)
    F = Phi_full @ a
    sigma = _stress_for(F)
    s_Q = sigma[res.points_][:, None]  # stresses at the sample's quadrature points
    np.testing.assert_allclose(res.sample(s_Q), F[res.dofs_], rtol=1e-12, atol=1e-12)
    assert res.evaluate(s_Q) == pytest.approx(np.linalg.norm(F) / 2.0, rel=1e-12)
    # the sample's quadrature points are exactly the elements around the sample dofs
    np.testing.assert_array_equal(res.points_, np.unique(np.r_[res.dofs_, res.dofs_ + 1]))
    # the same sample on one rank
    serial = SampledResidual(Phi_full, Bar(comm.Split(comm.rank)), f_ref=2.0)
    np.testing.assert_array_equal(serial.dofs_, res.dofs_)


@pytest.mark.mpi
def test_gappy_residual_blind_to_a_drift_inside_the_span_the_residual_is_not(comm):
    """A drift of p inside span(Phi_p) (right shape, wrong amplitude) leaves the Gappy-POD
    residual at 0 whatever its size; the equilibrium residual of the stress that goes with
    it grows with the drift."""
    rng = np.random.default_rng(4)
    bar = Bar(comm)
    lo, hi = bar.dofs
    Phi_p = _orthonormal(rng, N_EL, 3)
    Phi_r = _orthonormal(rng, N_EL - 1, 4)
    res = SampledResidual(Phi_r[lo:hi], bar, f_ref=1.0)
    (gappy,) = common_mask([Phi_p[bar.elems[0] : bar.elems[1]]], res.points_, comm)
    c = np.array([1.0, -0.5, 0.25])
    rows = Phi_p[gappy.mask_]  # Phi_p on the mask
    E, rho = [], []
    for drift in (0.0, 0.1, 0.5, 2.0):
        p_hat = rows @ (c * (1 + drift))
        E.append(gappy.evaluate(p_hat))
        F = drift * (Phi_r @ np.array([1.0, 0.3, 0.0, -0.2]))  # out of equilibrium by drift
        rho.append(res.evaluate(_stress_for(F)[res.points_][:, None]))
    assert max(E) < 1e-12
    assert rho[0] < 1e-12 and np.all(np.diff(rho) > 0)
    assert rho[-1] == pytest.approx(2.0 * np.linalg.norm([1.0, 0.3, 0.0, -0.2]), rel=1e-12)


@pytest.mark.mpi
def test_common_mask_holds_every_basis_points(comm):
    """One mask for several Gappy fits: it contains each basis's QDEIM points and the given
    points, and every fit has at least twice its modes on it."""
    rng = np.random.default_rng(5)
    bar = Bar(comm)
    el = slice(*bar.elems)
    bases = [_orthonormal(rng, N_EL, 3)[el], _orthonormal(rng, N_EL, 6)[el]]
    fits = common_mask(bases, np.array([0, 59]), comm)
    mask = fits[0].mask_
    for fit, Phi in zip(fits, bases, strict=True):
        np.testing.assert_array_equal(fit.mask_, mask)
        assert np.all(np.isin(fit.qdeim_points_, mask)) and mask.size >= 2 * Phi.shape[1]
        assert isinstance(fit, GappyIndicator)
    assert {0, 59} <= set(mask.tolist())
