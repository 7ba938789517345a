"""What the Gappy residual misses: input novelty and a sampled equilibrium residual
(docs/theory.md §5.5).

The Gappy-POD residual of :math:`p` (:class:`rom.adaptive.indicator.GappyIndicator`) stays
small when the plastic strain at the mask still fits its basis although the solution is wrong:
a new plastic zone whose trace on the mask is near the span, or an error that accumulates
inside :math:`\\mathrm{span}\\,\\Phi_p` (right shape, wrong amplitude). Two further signals, each
evaluated on a fixed small set of points, so at a cost independent of the mesh:

* **Input novelty** :math:`\\nu_k`: the Gappy-POD residual of the temperature increment
  :math:`\\Delta T_k = T(t_k) - T(t_0)` at the mask against the POD basis :math:`\\Phi_T` of the
  training increments, relative to :math:`\\max(\\|\\Delta \\hat T_k\\|, \\Delta T_{ref})`. It is
  known before the reduced Newton runs: the model knows it extrapolates.
* **Sampled equilibrium residual** :math:`\\rho_k` (:class:`SampledResidual`): the full-order
  residual :math:`F_i = \\int_\\Omega \\sigma : \\varepsilon(\\phi_i) - f_{ext,i}` of the reduced
  state at a few sample dofs :math:`I` (QDEIM rows of a residual POD basis :math:`\\Phi_r`,
  oversampled by leverage), from the stresses at the quadrature points of the cells around
  them, which the reduced model integrates alongside its cubature points. With
  :math:`a = (\\Phi_r[I,:])^+ F_I` (Gappy-POD), :math:`\\rho_k = \\|a\\|_2 / F_{ref}`, an estimate
  of :math:`\\|F\\|_2` relative to the force scale :math:`F_{ref}` of the training (the norm the
  full-order Newton solver measures convergence in). A Galerkin solution that cannot
  represent the new deformation leaves equilibrium residual outside
  :math:`\\mathrm{span}(M\\Psi_u)`, whether or not :math:`p` fits :math:`\\Phi_p`.
* **History** :math:`H_k = \\sum_{j} \\rho_j\\,\\Delta t_j / \\overline{\\Delta t}` over the steps
  since the last full-order state (the state is exact there): viscoplastic errors are time
  integrals of the residual, and a small residual held for many steps adds up.

How the signals combine into one decision is calibrated, not fixed: see
:func:`rom.adaptive.indicator.calibrate`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.adaptive.indicator import GappyIndicator
from rom.adaptive.points import gather_at_points
from rom.adaptive.points import global_offset
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = ["SIGNALS", "SampledResidual", "common_mask"]

logger = logging.getLogger(__name__)

#: Names of the indicator signals, in the column order of ``AdaptiveRun.signals``.
SIGNALS = ("gappy", "novelty", "residual", "history")


class SampledResidual:
    """Full-order equilibrium residual at a few sample dofs of a reduced state.

    Parameters
    ----------
    Phi_r : ndarray of shape (n_owned, n_r)
        This rank's rows of an orthonormal POD basis of residual snapshots (0 on Dirichlet dofs).
    fom : full-order model
        Provides ``comm``, ``n_owned``, ``n_qp_local``, ``qp_weights`` and ``strain_at_qp(U)``.
    f_ref : float
        Force scale :math:`F_{ref} > 0`.
    margin : int, optional
        Extra sample dofs beyond :math:`n_r` (leverage points); default :math:`n_r`.

    Attributes
    ----------
    dofs_ : ndarray of int64 (n_I,)
        Global sample dofs :math:`I` (owned-row numbering in rank order).
    points_ : ndarray of int64 (n_Q,)
        Global quadrature points of the cells around :math:`I`: the reduced model must integrate
        the constitutive law there (imposed points).
    G_ : ndarray (n_I, n_Q * n_comp)
        :math:`G_{i,(q,c)} = w_q B_{qc,i}`, so :math:`F_I = G \\sigma_Q` (replicated).
    gappy_ : GappyIndicator
        The Gappy-POD fit of :math:`\\Phi_r` on :math:`I`.
    """

    def __init__(
        self,
        Phi_r: np.ndarray,
        fom: Any,
        *,
        f_ref: float,
        margin: int | None = None,
    ) -> None:
        comm = get_comm(fom.comm)
        check_collective(
            None if np.isfinite(f_ref) and f_ref > 0 else f"f_ref must be > 0, got {f_ref!r}",
            comm,
        )
        self.f_ref = float(f_ref)
        self.gappy_ = GappyIndicator(Phi_r, None, margin=margin, comm=comm)
        dofs = self.gappy_.mask_
        offset, _ = global_offset(fom.n_owned, comm)
        E = np.zeros((fom.n_owned, dofs.size))
        loc = dofs - offset
        mine = np.flatnonzero((loc >= 0) & (loc < fom.n_owned))
        E[loc[mine], mine] = 1.0
        B = fom.strain_at_qp(E).reshape(fom.n_qp_local, -1, dofs.size)
        touched = np.flatnonzero(np.any(B != 0.0, axis=(1, 2)))
        q_offset, _ = global_offset(fom.n_qp_local, comm)
        parts = comm.allgather(touched + q_offset) if comm.size > 1 else [touched + q_offset]
        self.points_ = np.unique(np.concatenate(parts)).astype(np.int64)
        WB = B * np.asarray(fom.qp_weights)[:, None, None]
        self.G_ = gather_at_points(WB, self.points_, comm, offset=q_offset)
        self.G_ = self.G_.reshape(-1, dofs.size).T.copy()
        self.dofs_ = dofs
        logger.info(
            "sampled residual: %d modes, %d sample dofs, %d quadrature points",
            Phi_r.shape[1],
            dofs.size,
            self.points_.size,
        )

    def sample(self, sigma_at_points: np.ndarray) -> np.ndarray:
        """:math:`F_I = G\\sigma_Q` from the stresses at :attr:`points_` (shape (n_Q, n_comp))."""
        return self.G_ @ np.asarray(sigma_at_points, dtype=np.float64).ravel()

    def evaluate(self, sigma_at_points: np.ndarray) -> float:
        """:math:`\\rho = \\|(\\Phi_r[I,:])^+ F_I\\|_2 / F_{ref}`."""
        a = self.gappy_.reconstruct(self.sample(sigma_at_points))
        return float(np.linalg.norm(a)) / self.f_ref


def common_mask(
    bases: list[np.ndarray], points: np.ndarray, comm: MPI.Comm, **kwargs: Any
) -> list[GappyIndicator]:
    """One mask for several Gappy-POD fits: every basis gets its QDEIM and margin points on
    the union, and the union is extended until it contains all of them (collective).

    Returns one :class:`GappyIndicator` per basis, all with the same ``mask_``; ``kwargs`` go to
    every :class:`GappyIndicator`.
    """
    mask = np.asarray(points, dtype=np.int64)
    while True:
        fits = []
        for Phi in bases:
            fits.append(GappyIndicator(Phi, mask, comm=comm, **kwargs))
            mask = fits[-1].mask_
        if all(f.mask_.size == mask.size for f in fits):
            return fits


def training_force_scale(references: list[float]) -> float:
    """:math:`F_{ref}`: the largest full-order force scale over the training steps."""
    return max(max(references), 1e-300)


def temperature_increments(fom: Any, temperature: Any, times: np.ndarray) -> np.ndarray:
    """:math:`T(t_k) - T(t_0)` at the local quadrature points, shape (n_qp_local, n_t)
    (collective; sets the model's temperature)."""
    fom.set_temperature(temperature)
    T0 = fom.temperature_at_qp(fom.initial_time)
    return np.column_stack([fom.temperature_at_qp(t) - T0 for t in times])


def mask_norm_scale(X: np.ndarray, n_mask: int, comm: MPI.Comm) -> float:
    """The largest column norm of a point field scaled to a mask of ``n_mask`` points,
    :math:`\\max_k \\|x_k\\|_2 \\sqrt{n_{mask} / n_q}` (collective)."""
    n_q = allreduce_sum(float(X.shape[0]), comm)
    col = np.sqrt(np.max(allreduce_sum(np.sum(np.square(X), axis=0), comm)))
    return float(col * np.sqrt(n_mask / max(n_q, 1.0)))


def leave_one_out_residuals(
    fom: Any,
    trajectories: list[Any],
    temperatures: list[Any],
    *,
    svd_rtol: float,
) -> tuple[np.ndarray, float]:
    """Residual snapshots of loads a basis has not seen, from the training alone (collective).

    For each training trajectory :math:`j`, its displacements are projected (:math:`M`-orthogonally)
    on the POD basis of the *other* trajectories, the constitutive law is integrated at every
    quadrature point from the trajectory's own internal variables at :math:`t_{k-1}`, and the
    full-order residual ``fom.residual(sigma, t_k)`` of that stress is the snapshot: the
    equilibrium a reduced model misses on a load outside its span.

    Returns ``(R (n_owned, n_snapshots), F_ref)`` with :math:`F_{ref}` the largest force scale
    (``fom.residual``'s second value) over the snapshots.
    """
    from rom.compression.incremental_svd import IncrementalSVD

    comm = get_comm(fom.comm)
    snapshots, refs = [], []
    nq, nc = fom.n_qp_local, fom.n_comp
    for j, (tr, T) in enumerate(zip(trajectories, temperatures, strict=True)):
        others = IncrementalSVD(product=fom.mass, rtol=svd_rtol, comm=comm)
        for i, other in enumerate(trajectories):
            if i != j:
                others.partial_fit(other.u)
        U = others.modes_ @ others.transform(tr.u)
        strains = fom.strain_at_qp(U).reshape(nq, nc, -1)
        fom.set_temperature(T)
        times = np.asarray(tr.times, dtype=np.float64)
        t_prev = float(fom.initial_time)
        evp = np.zeros((nq, nc))
        p = np.zeros(nq)
        for k, t in enumerate(times):
            sigma, _, _, _ = fom.constitutive(
                strains[:, :, k], evp, p, fom.temperature_at_qp(t), t - t_prev
            )
            r, ref = fom.residual(sigma, t)
            snapshots.append(r)
            refs.append(ref)
            evp, p, t_prev = tr.eps_vp[:, :, k], tr.p[:, k], float(t)
    return np.column_stack(snapshots), training_force_scale(refs)
