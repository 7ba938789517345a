"""Shared skeleton of the P1 implicit-Euler models (:mod:`solvers.heat`, :mod:`solvers.advection`).

Both models distribute a triangulation built on rank 0, use a P1 Lagrange space whose owned
rows are the first ``V.dofmap.index_map.size_local`` dofs, and march

.. math::

    (M / \\Delta t + A(\\mu))\\, u^{n+1} = M u^n / \\Delta t + f(\\mu),
    \\qquad A(\\mu) = \\sum_q \\theta^a_q(\\mu) A_q,

with one MUMPS LU factorization per trajectory. A subclass calls :meth:`_set_time_grid` and
:meth:`_distribute_p1` and sets ``mass`` and ``stiffness_terms``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import basix.ufl
import dolfinx
import dolfinx_solver  # noqa: F401  (orders MPI before the dolfinx/petsc4py bindings)
import numpy as np
import ufl
from dolfinx import fem
from petsc4py import PETSc

from .operators import check_converged
from .operators import mumps_lu
from .operators import vertex_keys

__all__ = ["P1TransientModel"]


class P1TransientModel:
    """Mesh distribution, P1 space, affine system and implicit-Euler march of a P1 model.

    A subclass takes ``comm`` (the mesh is built on its rank 0 and distributed by dolfinx),
    ``final_time`` (:math:`T > 0`) and ``n_steps`` (implicit Euler steps, at least 1;
    :math:`\\Delta t = T / n_{steps}`).
    """

    def _set_time_grid(self, comm: Any, final_time: float, n_steps: int) -> None:
        """Validate and set ``comm``, ``final_time``, ``n_steps`` and ``dt`` (the arguments
        are replicated, so every rank raises together)."""
        if not (np.isfinite(final_time) and final_time > 0) or int(n_steps) < 1:
            raise ValueError(f"need final_time > 0 and n_steps >= 1, got {final_time}, {n_steps}")
        self.comm = comm
        self.final_time = float(final_time)
        self.n_steps = int(n_steps)
        self.dt = self.final_time / self.n_steps

    def _distribute_p1(self, build: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        """Distribute the triangulation ``build()`` (called on rank 0 only) and set up ``V``.

        Sets ``mesh``, ``V``, ``n_owned``, ``n_dofs``, ``keys`` (mesh input node index of each
        owned dof) and ``coordinates`` (shape (n_owned, 2)). Collective.
        """
        if self.comm.rank == 0:
            points, cells = build()
            self._plot_mesh: tuple[np.ndarray, np.ndarray] | None = (points, cells)
        else:
            points, cells = np.empty((0, 2)), np.empty((0, 3), dtype=np.int64)
            self._plot_mesh = None
        domain = ufl.Mesh(basix.ufl.element("Lagrange", "triangle", 1, shape=(2,)))
        self.mesh = dolfinx.mesh.create_mesh(self.comm, cells, domain, points)
        self.V = fem.functionspace(self.mesh, ("Lagrange", 1))
        imap = self.V.dofmap.index_map
        self.n_owned = int(imap.size_local)
        self.n_dofs = int(imap.size_global)
        self.keys = vertex_keys(self.V)[: self.n_owned].copy()
        self.coordinates = self.V.tabulate_dof_coordinates()[: self.n_owned, :2].copy()

    def _log_setup(self) -> None:
        logging.getLogger(type(self).__module__).info(
            "%s: %d dofs (%d owned on rank %d), dt=%g, %d steps",
            type(self).__name__,
            self.n_dofs,
            self.n_owned,
            self.comm.rank,
            self.dt,
            self.n_steps,
        )

    @property
    def times(self) -> np.ndarray:
        """Snapshot times :math:`t_n = n \\Delta t`, :math:`n = 1, \\dots, n_{steps}`."""
        return self.dt * np.arange(1, self.n_steps + 1)

    def mesh_for_plot(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(points (n_nodes, 2), triangles (n_cells, 3))`` in input (key) order on rank 0.

        ``points[keys]`` equals ``coordinates``; other ranks get None.
        """
        return self._plot_mesh

    def _affine_system(self, theta_a: np.ndarray, *, mass_scale: float) -> PETSc.Mat:
        """:math:`s M + \\sum_q \\theta^a_q A_q` as a new PETSc matrix (the caller destroys it)."""
        S = self.mass.petsc.copy()
        S.scale(mass_scale)
        for t, A in zip(theta_a, self.stiffness_terms, strict=True):
            S.axpy(float(t), A.petsc, structure=PETSc.Mat.Structure.SUBSET_NONZERO_PATTERN)
        return S

    def _march(
        self, S: PETSc.Mat, u0: np.ndarray, load: np.ndarray | float, fixed: np.ndarray | None
    ) -> np.ndarray:
        """Implicit Euler :math:`S u^{n+1} = M u^n / \\Delta t + f`, shape (n_owned, n_steps).

        ``S`` (destroyed here) is factored once; the owned ``fixed`` dofs (None: none) are
        zero in :math:`u^0` and in every right-hand side. Collective.
        """
        ksp = mumps_lu(S, self.comm)
        u, rhs = S.createVecs()
        Mu = u.duplicate()
        u.array[:] = np.asarray(u0, dtype=np.float64).reshape(self.n_owned)
        if fixed is not None:
            u.array[fixed] = 0.0
        U = np.empty((self.n_owned, self.n_steps))
        try:
            for n in range(self.n_steps):
                self.mass.petsc.mult(u, Mu)
                rhs.array[:] = Mu.array_r / self.dt + load
                if fixed is not None:
                    rhs.array[fixed] = 0.0
                ksp.solve(rhs, u)
                check_converged(ksp, f"time step {n + 1}")
                U[:, n] = u.array_r
        finally:
            for obj in (ksp, S, u, rhs, Mu):
                obj.destroy()
        return U
