"""Hyper-reduced Newton for nonlinear quasi-static mechanics (docs/theory.md §5, docs/mpi.md).

Casenave & Akkari, "An error indicator-based adaptive reduced order model for nonlinear
structural mechanics", MCA 24(2):41, 2019 (arXiv:1904.09123), with the empirical cubature of
Hernández, Caicedo & Ferrer, CMAME 313, 2017. The displacement is sought in the span of
:math:`M`-orthonormal modes, :math:`u = \\Psi_u c`, :math:`c \\in \\mathbb R^N`, and the
Galerkin equilibrium at :math:`t_{k}` is integrated with the reduced rule
:math:`(\\hat Z, \\hat w)`:

.. math::

    R(c) = \\sum_{q \\in \\hat Z} \\hat w_q\\, B_q^T \\sigma_q(B_q c) - f_r(t_k) = 0,
    \\qquad
    J(c) = \\sum_{q \\in \\hat Z} \\hat w_q\\, B_q^T\\, \\mathbb C^{alg}_q\\, B_q,

where :math:`B_q \\in \\mathbb R^{n_c \\times N}` holds the strains (Mandel) of the modes at point
:math:`q`, :math:`\\sigma_q` is the backward-Euler stress of the constitutive law from the
internal variables of :math:`t_{k-1}` stored *at the reduced points only*, and
:math:`f_r(t) = \\sum_j \\theta_j(t) \\Psi_u^T f_j` the reduced external load. Points with
:math:`\\hat w_q = 0` (imposed points, e.g. the QDEIM points of the error indicator) carry the law
and its internal variables but do not enter :math:`R`.

Everything the online stage touches (:math:`B`, :math:`\\hat w`, the point coordinates, the
reduced loads) is replicated on every rank, so a step is rank-local and costs
:math:`O(|\\hat Z| n_c N^2 + N^3)` plus the law at :math:`|\\hat Z|` points, independent of the
number of degrees of freedom. The offline helper :func:`build_hyperreduced` gathers those few
rows once (collective).

Global point index = number of quadrature points held by lower ranks + local index
(:func:`rom.adaptive.points.global_offset`), as in :mod:`rom.adaptive.cubature` and
:mod:`rom.adaptive.indicator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.adaptive.points import gather_at_points
from rom.adaptive.points import validate_global_indices
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = [
    "ConstitutiveLaw",
    "HyperReducedModel",
    "ReducedState",
    "ReducedStepInfo",
    "build_hyperreduced",
]

logger = logging.getLogger(__name__)

#: ``law(eps (m, n_c), eps_vp_old (m, n_c), p_old (m,), T (m,), dt) -> (sigma, eps_vp, p,
#: tangent (m, n_c, n_c))``, e.g. ``ViscoplasticModel.constitutive``.
ConstitutiveLaw = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, float],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
]
#: ``T(x (3, m), t) -> (m,)`` (the callable convention of ``solvers.mechanics``) or a constant.
Temperature = Callable[[np.ndarray, float], np.ndarray] | float


@dataclass
class ReducedState:
    """Reduced state at time ``t``.

    Attributes
    ----------
    t : float
    c : ndarray (N,)
        Displacement coefficients, :math:`u = \\Psi_u c`.
    eps_vp : ndarray (m, n_comp)
        Viscoplastic strain at the reduced points (order of ``HyperReducedModel.points``).
    p : ndarray (m,)
        Cumulated plastic strain at the reduced points.
    sigma : ndarray (m, n_comp)
        Stress at the reduced points (diagnostic only; not an input of :meth:`step`).
    """

    t: float
    c: np.ndarray
    eps_vp: np.ndarray
    p: np.ndarray
    sigma: np.ndarray


@dataclass
class ReducedStepInfo:
    """Diagnostics of one reduced Newton solve.

    Attributes
    ----------
    iterations : int
        Linear solves.
    residual_norms : list of float
        :math:`\\|R(c)\\|` before each solve and at convergence.
    reference_norm : float
        Scale of the relative test (see :meth:`HyperReducedModel.step`).
    """

    iterations: int
    residual_norms: list[float] = field(default_factory=list)
    reference_norm: float = 0.0


def _model_input_error(Psi_u, strains, weights, coordinates, temperature) -> str | None:
    if Psi_u.ndim != 2:
        return f"Psi_u must be 2-D (n_owned, N), got shape {Psi_u.shape}"
    if strains.ndim != 3 or strains.shape[2] != Psi_u.shape[1]:
        return f"strains must have shape (m, n_comp, N={Psi_u.shape[1]}), got {strains.shape}"
    if weights.shape != (strains.shape[0],):
        return f"weights must have shape ({strains.shape[0]},), got {weights.shape}"
    if coordinates.ndim != 2 or coordinates.shape[0] != strains.shape[0]:
        return f"coordinates must have shape ({strains.shape[0]}, gdim), got {coordinates.shape}"
    if not all(np.all(np.isfinite(a)) for a in (Psi_u, strains, weights, coordinates)):
        return "Psi_u, strains, weights or coordinates contain NaN or Inf"
    if np.any(weights < 0):
        return "weights must be non-negative"
    if not np.any(weights > 0):
        return "at least one reduced point must have a positive weight"
    if not (callable(temperature) or np.isfinite(float(temperature))):
        return f"temperature must be a callable T(x, t) or a finite number, got {temperature!r}"
    return None


def _load_error(loads: list, N: int) -> str | None:
    for j, item in enumerate(loads):
        if len(item) != 2 or not callable(item[1]):
            return f"external_load[{j}] must be a pair (vector (N,), callable theta(t))"
        f = np.asarray(item[0], dtype=np.float64)
        if f.shape != (N,) or not np.all(np.isfinite(f)):
            return f"external_load[{j}] vector must be finite of shape ({N},)"
    return None


class HyperReducedModel:
    """POD-Galerkin model with the constitutive law integrated at reduced points only.

    Parameters
    ----------
    Psi_u : ndarray of shape (n_owned, N)
        This rank's rows of the displacement modes (used by :meth:`reconstruct` only).
    strains : ndarray of shape (m, n_comp, N)
        :math:`B_q`: Mandel strains of the modes at the ``m`` reduced points (replicated).
    weights : ndarray of shape (m,)
        Reduced quadrature weights :math:`\\hat w_q \\ge 0`; zero at imposed points.
    law : callable
        The constitutive law (:data:`ConstitutiveLaw`), evaluated at the ``m`` points only.
    coordinates : ndarray of shape (m, gdim)
        Coordinates of the reduced points, for the temperature callable.
    temperature : callable or float
        :math:`T(x, t)` with ``x`` of shape (3, m) (zero-padded), or a constant.
    external_load : sequence of (ndarray (N,), callable t -> float), optional
        Reduced load terms :math:`(\\Psi_u^T f_j, \\theta_j)`:
        :math:`f_r(t) = \\sum_j \\theta_j(t) \\Psi_u^T f_j`. Default: no external load.
    points : ndarray of int (m,), optional
        Global quadrature indices of the reduced points (bookkeeping).
    rtol, atol : float
        Newton stops when :math:`\\|R\\| \\le \\mathrm{rtol}\\cdot\\rho + \\mathrm{atol}`
        (:meth:`step`).
    max_newton : int
    comm : mpi4py communicator, optional
        Only for the collective validation of the inputs; the online steps do not communicate.
    """

    def __init__(
        self,
        Psi_u: np.ndarray,
        strains: np.ndarray,
        weights: np.ndarray,
        *,
        law: ConstitutiveLaw,
        coordinates: np.ndarray,
        temperature: Temperature,
        external_load: Sequence[tuple[np.ndarray, Callable[[float], float]]] | None = None,
        points: np.ndarray | None = None,
        rtol: float = 1e-10,
        atol: float = 1e-14,
        max_newton: int = 25,
        comm: MPI.Comm | None = None,
    ) -> None:
        comm = get_comm(comm)
        Psi_u = np.asarray(Psi_u, dtype=np.float64)
        strains = np.asarray(strains, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        coordinates = np.asarray(coordinates, dtype=np.float64)
        loads = [] if external_load is None else list(external_load)
        err = _model_input_error(Psi_u, strains, weights, coordinates, temperature)
        if err is None and not (rtol >= 0 and atol >= 0 and int(max_newton) >= 1):
            err = f"need rtol, atol >= 0 and max_newton >= 1, got {rtol}, {atol}, {max_newton}"
        if err is None:
            err = _load_error(loads, Psi_u.shape[1])
        check_collective(err, comm)
        self.Psi_u = Psi_u
        self.strains = strains
        self.weights = weights
        self.law = law
        self.coordinates = coordinates
        self.temperature = temperature
        self.external_load = [(np.asarray(f, dtype=np.float64), th) for f, th in loads]
        self.points = None if points is None else np.asarray(points, dtype=np.int64)
        self.rtol, self.atol, self.max_newton = float(rtol), float(atol), int(max_newton)
        self.n_modes = Psi_u.shape[1]
        self.n_points = strains.shape[0]
        self.n_comp = strains.shape[1]
        active = weights > 0
        # only points with positive weight enter R and J
        self._B = strains[active]
        self._Bflat = self._B.reshape(-1, self.n_modes)
        self._wB = (self._B * weights[active, None, None]).reshape(-1, self.n_modes)
        self._active = active
        self._absB = np.linalg.norm(self._B, axis=1) * weights[active, None]  # (m_a, N)
        x = np.zeros((3, self.n_points))
        x[: coordinates.shape[1]] = coordinates.T
        self._x = x

    # ---------------------------------------------------------------------------- pieces
    def temperature_at_points(self, t: float) -> np.ndarray:
        """:math:`T` at the reduced points at time ``t``, shape (m,)."""
        if callable(self.temperature):
            T = np.asarray(self.temperature(self._x, float(t)), dtype=np.float64)
            return np.broadcast_to(T, (self.n_points,)).copy()
        return np.full(self.n_points, float(self.temperature))

    def reduced_load(self, t: float) -> np.ndarray:
        """:math:`f_r(t) = \\sum_j \\theta_j(t)\\Psi_u^T f_j`, shape (N,)."""
        f = np.zeros(self.n_modes)
        for fj, theta in self.external_load:
            f += float(theta(t)) * fj
        return f

    def initial_state(self, t0: float = 0.0) -> ReducedState:
        """:math:`c = 0` and no viscoplastic strain at time ``t0``."""
        m, nc = self.n_points, self.n_comp
        return ReducedState(
            float(t0), np.zeros(self.n_modes), np.zeros((m, nc)), np.zeros(m), np.zeros((m, nc))
        )

    def reconstruct(self, c: np.ndarray) -> np.ndarray:
        """Owned rows of :math:`u = \\Psi_u c` (``c`` of shape (N,) or (N, k))."""
        return self.Psi_u @ np.asarray(c, dtype=np.float64)

    def internal_force(self, c: np.ndarray, state: ReducedState, t_next: float) -> np.ndarray:
        """:math:`\\sum_q \\hat w_q B_q^T \\sigma_q(B_q c)` from ``state`` to ``t_next``, (N,)."""
        dt = float(t_next) - state.t
        T = self.temperature_at_points(t_next)
        eps = self.strains @ np.asarray(c, dtype=np.float64)
        sigma, _, _, _ = self.law(eps, state.eps_vp, state.p, T, dt)
        return self._wB.T @ sigma[self._active].ravel()

    # ---------------------------------------------------------------------------- stepping
    def step(self, state: ReducedState, t_next: float) -> tuple[ReducedState, ReducedStepInfo]:
        """One backward-Euler step: Newton on :math:`c` (module docstring). Rank-local.

        Starts from :math:`c_{k-1}`; converged when
        :math:`\\|R(c)\\|_2 \\le \\mathrm{rtol}\\,\\rho + \\mathrm{atol}` with the scale
        :math:`\\rho = \\|(\\sum_q \\hat w_q \\|B_{q,:,i}\\|\\,\\|\\sigma_q\\|)_i\\|_2
        + \\|f_r\\|_2` (the size of the terms of the internal force; the reduced problem has
        no reaction forces to measure against). Raises ``RuntimeError`` if Newton does not
        converge or the law fails (deterministic, so on every rank alike).
        """
        t_next = float(t_next)
        if not (np.isfinite(t_next) and t_next > state.t):
            raise ValueError(f"t_next={t_next} must be finite and greater than state.t={state.t}")
        if state.c.shape != (self.n_modes,) or state.p.shape != (self.n_points,):
            raise ValueError(
                f"state does not match the model: c {state.c.shape} (expected ({self.n_modes},)),"
                f" p {state.p.shape} (expected ({self.n_points},))"
            )
        dt = t_next - state.t
        T = self.temperature_at_points(t_next)
        f = self.reduced_load(t_next)
        c = state.c.copy()
        info = ReducedStepInfo(iterations=0)
        act = self._active
        for it in range(self.max_newton + 1):
            eps = self.strains @ c
            sigma, eps_vp, p, tangent = self.law(eps, state.eps_vp, state.p, T, dt)
            if not np.all(np.isfinite(sigma)):
                raise RuntimeError(f"constitutive law returned NaN/Inf at t={t_next}")
            sa = sigma[act]
            R = self._wB.T @ sa.ravel() - f
            ref = float(
                np.linalg.norm(self._absB.T @ np.linalg.norm(sa, axis=1)) + np.linalg.norm(f)
            )
            r = float(np.linalg.norm(R))
            info.residual_norms.append(r)
            info.reference_norm = ref
            if r <= self.rtol * ref + self.atol:
                break
            if it == self.max_newton:
                raise RuntimeError(
                    f"reduced Newton did not converge in {self.max_newton} iterations at "
                    f"t={t_next}: residual norms {info.residual_norms}"
                )
            CB = np.matmul(tangent[act], self._B).reshape(-1, self.n_modes)
            J = self._wB.T @ CB
            c -= np.linalg.solve(J, R)
            info.iterations += 1
        return ReducedState(t_next, c, eps_vp, p, sigma), info

    def solve(self, times: np.ndarray, *, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Run from :meth:`initial_state` through ``times``.

        Returns ``(C (N, n_t), P (m, n_t))``: coefficients and :math:`p` at the reduced points.
        """
        state = self.initial_state(t0)
        times = np.asarray(times, dtype=np.float64).ravel()
        C = np.empty((self.n_modes, times.size))
        P = np.empty((self.n_points, times.size))
        for k, t in enumerate(times):
            state, _ = self.step(state, t)
            C[:, k], P[:, k] = state.c, state.p
        return C, P


def build_hyperreduced(
    fom: Any,
    Psi_u: np.ndarray,
    points: np.ndarray,
    weights: np.ndarray,
    *,
    temperature: Temperature,
    imposed_points: np.ndarray | None = None,
    external_load: Sequence[tuple[np.ndarray, Callable[[float], float]]] | None = None,
    strains: np.ndarray | None = None,
    rtol: float = 1e-10,
    atol: float = 1e-14,
    max_newton: int = 25,
) -> HyperReducedModel:
    """Offline assembly of a :class:`HyperReducedModel` from a full-order model (collective).

    Parameters
    ----------
    fom : full-order model
        Provides ``comm``, ``n_qp_local``, ``qp_coordinates`` (n_qp_local, gdim),
        ``strain_at_qp(U)`` and ``constitutive(...)`` (e.g.
        ``solvers.mechanics.ViscoplasticModel``).
    Psi_u : ndarray (n_owned, N)
        Displacement modes, owned rows.
    points, weights : ndarray (n_z,)
        Reduced quadrature (global indices, e.g. :func:`rom.adaptive.cubature.empirical_cubature`).
    temperature : callable or float
        :math:`T(x, t)` as given to the full-order model (callable form), or a constant.
    imposed_points : ndarray of int, optional
        Extra points where the law is integrated with weight 0 (e.g. the indicator mask).
        The reduced points are the sorted union, so ``state.p`` is in the order of
        ``GappyIndicator.mask_`` when the mask is passed here.
    external_load : sequence of (owned-row vector f_j (n_owned,), callable theta_j), optional
        Full-order load terms; projected once, :math:`\\Psi_u^T f_j`.
    strains : ndarray (n_qp_local, n_comp, N), optional
        ``fom.strain_at_qp(Psi_u)`` if already computed.
    """
    comm = get_comm(fom.comm)
    Psi_u = np.asarray(Psi_u, dtype=np.float64)
    n_qp = int(allreduce_sum(float(fom.n_qp_local), comm))
    pts, err = validate_global_indices(points, n_qp, "points")
    imp, err2 = validate_global_indices(imposed_points, n_qp, "imposed_points")
    err = err or err2
    w = np.asarray(weights, dtype=np.float64)
    if err is None and (w.shape != np.shape(points) or not np.all(np.isfinite(w)) or np.any(w < 0)):
        err = f"weights must be finite, >= 0 and of shape {np.shape(points)}, got {w.shape}"
    if err is None and pts.size != np.size(points):
        err = "points contain duplicates"
    if err is None and (Psi_u.ndim != 2 or Psi_u.shape[0] != fom.n_owned):
        err = f"Psi_u must have shape ({fom.n_owned}, N), got {Psi_u.shape}"
    check_collective(err, comm)
    order = np.argsort(np.asarray(points, dtype=np.int64))
    pts, w = np.asarray(points, dtype=np.int64)[order], w[order]
    mask = np.union1d(pts, imp).astype(np.int64)
    wm = np.zeros(mask.size)
    wm[np.searchsorted(mask, pts)] = w
    if strains is None:
        strains = fom.strain_at_qp(Psi_u)
    B = gather_at_points(
        np.asarray(strains).reshape(fom.n_qp_local, -1, Psi_u.shape[1]), mask, comm
    )
    X = gather_at_points(np.asarray(fom.qp_coordinates), mask, comm)
    loads = []
    for fj, theta in external_load or []:
        loads.append((allreduce_sum(Psi_u.T @ np.asarray(fj, dtype=np.float64), comm), theta))
    return HyperReducedModel(
        Psi_u,
        B,
        wm,
        law=fom.constitutive,
        coordinates=X,
        temperature=temperature,
        external_load=loads,
        points=mask,
        rtol=rtol,
        atol=atol,
        max_newton=max_newton,
        comm=comm,
    )
