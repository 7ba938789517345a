"""Galerkin reduced models of affine linear evolution problems.

Full-order model (e.g. :class:`solvers.heat.HeatModel`), implicit Euler in time:

.. math::

    M \\frac{u^{k+1} - u^k}{\\Delta t} + A(\\mu) u^{k+1} = f(\\mu), \\qquad
    A(\\mu) = \\sum_{q=1}^{Q_a} \\theta^a_q(\\mu) A_q, \\quad
    f(\\mu) = \\sum_{q=1}^{Q_f} \\theta^f_q(\\mu) f_q .

With an :math:`M`-orthonormal basis :math:`V` (rows distributed over ranks), :math:`u \\approx V c`
and Galerkin projection give the reduced model

.. math::

    \\hat M \\frac{c^{k+1} - c^k}{\\Delta t} + \\sum_q \\theta^a_q(\\mu) \\hat A_q c^{k+1}
    = \\sum_q \\theta^f_q(\\mu) \\hat f_q, \\quad
    \\hat A_q = V^T A_q V, \\ \\hat f_q = V^T f_q, \\ \\hat M = V^T M V,

where each reduced matrix is a local product summed over ranks (offline, once). The online
cost per parameter is :math:`O(Q_a N^2 + N^3)` for assembling and factoring
:math:`\\hat M/\\Delta t + \\hat A(\\mu)` plus :math:`O(N^2)` per step: independent of the
number of dofs. With the full basis the reduced trajectory equals the full-order one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from mpi4py import MPI

from rom.parallel import (
    Product,
    allreduce_sum,
    apply_product,
    check_collective,
    validate_local_rows,
)

__all__ = ["project_operator", "project_vector", "LinearAffineROM", "space_time_error"]


def project_operator(
    operator: Product, V: np.ndarray, *, W: np.ndarray | None = None, comm: MPI.Comm | None = None
) -> np.ndarray:
    """Reduced matrix :math:`W^T A V` (Galerkin: ``W = V``), replicated on every rank.

    ``operator`` acts on owned rows like a product (:func:`rom.parallel.apply_product`).
    """
    W = V if W is None else W
    return allreduce_sum(W.T @ apply_product(operator, V), comm)


def project_vector(f: np.ndarray, V: np.ndarray, *, comm: MPI.Comm | None = None) -> np.ndarray:
    """Reduced vector :math:`V^T f` (owned rows of ``f``), replicated."""
    return allreduce_sum(V.T @ np.asarray(f, dtype=np.float64).reshape(V.shape[0]), comm)


class LinearAffineROM:
    """Galerkin ROM of :math:`M\\dot u + A(\\mu)u = f(\\mu)` with implicit Euler (module doc).

    Parameters
    ----------
    mass : ndarray of shape (N, N)
        :math:`\\hat M = V^T M V` (the identity for an :math:`M`-orthonormal basis).
    stiffness : sequence of ndarray of shape (N, N)
        :math:`\\hat A_q`.
    rhs : sequence of ndarray of shape (N,)
        :math:`\\hat f_q`.
    theta_a, theta_f : callable, optional
        :math:`\\mu \\mapsto (\\theta^a_q(\\mu))_q` and :math:`(\\theta^f_q(\\mu))_q`; without them
        :meth:`solve` takes the coefficient vectors directly.
    """

    def __init__(
        self,
        mass: np.ndarray,
        stiffness: Sequence[np.ndarray],
        rhs: Sequence[np.ndarray],
        *,
        theta_a: Callable[[np.ndarray], np.ndarray] | None = None,
        theta_f: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.mass = np.asarray(mass, dtype=np.float64)
        self.stiffness = [np.asarray(a, dtype=np.float64) for a in stiffness]
        self.rhs = [np.asarray(f, dtype=np.float64) for f in rhs]
        N = self.mass.shape[0]
        if self.mass.shape != (N, N) or any(a.shape != (N, N) for a in self.stiffness):
            raise ValueError("reduced mass and stiffness matrices must all be (N, N)")
        if any(f.shape != (N,) for f in self.rhs):
            raise ValueError(f"reduced right-hand sides must have shape ({N},)")
        self.theta_a = theta_a
        self.theta_f = theta_f

    @property
    def n_modes(self) -> int:
        """Reduced dimension :math:`N`."""
        return self.mass.shape[0]

    @classmethod
    def from_full(
        cls,
        V: np.ndarray,
        *,
        mass: Product,
        stiffness: Sequence[Product],
        rhs: Sequence[np.ndarray],
        comm: MPI.Comm | None = None,
        theta_a: Callable | None = None,
        theta_f: Callable | None = None,
    ) -> LinearAffineROM:
        """Galerkin projection of full-order affine terms onto the basis ``V`` (owned rows).

        Collective: one reduction per term.
        """
        V, _ = validate_local_rows(V, "basis V", comm)
        return cls(
            project_operator(mass, V, comm=comm),
            [project_operator(a, V, comm=comm) for a in stiffness],
            [project_vector(f, V, comm=comm) for f in rhs],
            theta_a=theta_a,
            theta_f=theta_f,
        )

    def truncated(self, n: int) -> LinearAffineROM:
        """The ROM on the first ``n`` basis vectors (leading blocks; no full-order work)."""
        if not 0 < n <= self.n_modes:
            raise ValueError(f"n must be in [1, {self.n_modes}], got {n}")
        return LinearAffineROM(
            self.mass[:n, :n],
            [a[:n, :n] for a in self.stiffness],
            [f[:n] for f in self.rhs],
            theta_a=self.theta_a,
            theta_f=self.theta_f,
        )

    def _coefficients(self, mu, theta_a, theta_f):
        if theta_a is None:
            if self.theta_a is None or mu is None:
                raise ValueError("give mu (with theta functions set) or theta_a and theta_f")
            theta_a = self.theta_a(mu)
        if theta_f is None:
            if self.theta_f is None or mu is None:
                raise ValueError("give mu (with theta functions set) or theta_a and theta_f")
            theta_f = self.theta_f(mu)
        theta_a = np.asarray(theta_a, dtype=np.float64).ravel()
        theta_f = np.asarray(theta_f, dtype=np.float64).ravel()
        if theta_a.shape != (len(self.stiffness),) or theta_f.shape != (len(self.rhs),):
            raise ValueError(
                f"expected {len(self.stiffness)} stiffness and {len(self.rhs)} load coefficients, "
                f"got {theta_a.size} and {theta_f.size}"
            )
        if not (np.all(np.isfinite(theta_a)) and np.all(np.isfinite(theta_f))):
            raise ValueError("parameter coefficients contain NaN or Inf")
        return theta_a, theta_f

    def solve(
        self,
        mu: np.ndarray | None = None,
        *,
        dt: float,
        n_steps: int,
        c0: np.ndarray | None = None,
        theta_a: np.ndarray | None = None,
        theta_f: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reduced trajectory :math:`c^1, \\dots, c^{n}`, shape (N, n_steps).

        Solves :math:`(\\hat M/\\Delta t + \\hat A(\\mu)) c^{k+1} = \\hat M c^k/\\Delta t +
        \\hat f(\\mu)` with one LU factorization per parameter, used to form the one-step map
        :math:`c^{k+1} = B c^k + g`. ``c0`` defaults to zero.
        """
        if not (dt > 0) or int(n_steps) < 1:
            raise ValueError(f"need dt > 0 and n_steps >= 1, got dt={dt}, n_steps={n_steps}")
        ta, tf = self._coefficients(mu, theta_a, theta_f)
        N = self.n_modes
        Mdt = self.mass / dt
        A = Mdt + sum(t * a for t, a in zip(ta, self.stiffness, strict=True))
        f = sum((t * g for t, g in zip(tf, self.rhs, strict=True)), np.zeros(N))
        # One factorization, then c^{k+1} = B c^k + g with B = A^{-1} M/dt, g = A^{-1} f:
        # one N x N mat-vec per step.
        Bg = np.linalg.solve(A, np.column_stack([Mdt, f]))  # one LU (LAPACK gesv)
        B, g = Bg[:, :N], Bg[:, N]
        C = np.empty((N, int(n_steps)))
        c = np.zeros(N) if c0 is None else np.asarray(c0, dtype=np.float64).reshape(N)
        for k in range(int(n_steps)):
            c = B @ c + g
            C[:, k] = c
        return C


def space_time_error(
    U: np.ndarray,
    U_approx: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
) -> float:
    """Relative space-time error :math:`\\sqrt{\\sum_k \\|u^k - \\tilde u^k\\|_M^2 /
    \\sum_k \\|u^k\\|_M^2}` of trajectories stored column-wise (owned rows; collective)."""
    err = (
        None
        if np.shape(U) == np.shape(U_approx)
        else (f"trajectories differ in shape: {np.shape(U)} vs {np.shape(U_approx)}")
    )
    check_collective(err, comm)
    E = U - U_approx
    num = float(allreduce_sum(np.sum(E * apply_product(product, E)), comm))
    den = float(allreduce_sum(np.sum(U * apply_product(product, U)), comm))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else float(np.sqrt(max(num, 0.0)))
