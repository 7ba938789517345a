"""Parametrized transient heat conduction in a cooled turbine-blade section (dolfinx FOM).

Domain :math:`\\Omega` (see :mod:`solvers.mesh`): the wall between an elliptic cooling channel
:math:`\\Gamma_c` and the outer hot-gas profile :math:`\\Gamma_h`, split into the substrate
:math:`\\Omega_s` and an outer coating layer :math:`\\Omega_t`. Nondimensional temperature
:math:`u` relative to the coolant, :math:`\\rho c = 1`, :math:`u(\\cdot, 0) = 0`:

.. math::

    \\partial_t u - \\nabla\\cdot(k \\nabla u) = 0 \\ \\text{in } \\Omega, \\qquad
    k = k_{sub} \\text{ on } \\Omega_s, \\ k = k_{coat} \\text{ on } \\Omega_t,

    -k \\nabla u \\cdot n = h\\, u \\ \\text{on } \\Gamma_c \\ \\text{(convective cooling)}, \\qquad
    k \\nabla u \\cdot n = q\\, g(x) \\ \\text{on } \\Gamma_h \\ \\text{(hot-gas flux)},

with the fixed flux profile peaking at the leading edge :math:`x_{LE}`,
:math:`g(x) = 1 + 2 \\exp(-|x - x_{LE}|^2 / (2 \\sigma^2))`, :math:`\\sigma = 0.08`, and the
parameters :math:`\\mu = (k_{sub}, k_{coat}, h, q)`.

Weak form (P1 Lagrange :math:`V_h`): find :math:`u(t) \\in V_h` with

.. math::

    (\\partial_t u, v)_\\Omega + \\sum_{q=1}^{3} \\theta^a_q(\\mu)\\, a_q(u, v)
        = \\theta^f_1(\\mu)\\, f_1(v) \\quad \\forall v \\in V_h,

    a_1(u, v) = \\int_{\\Omega_s} \\nabla u \\cdot \\nabla v, \\quad
    a_2(u, v) = \\int_{\\Omega_t} \\nabla u \\cdot \\nabla v, \\quad
    a_3(u, v) = \\int_{\\Gamma_c} u v, \\quad f_1(v) = \\int_{\\Gamma_h} g v,

    \\theta^a(\\mu) = (k_{sub}, k_{coat}, h), \\qquad \\theta^f(\\mu) = (q),

an affine decomposition :math:`A(\\mu) = \\sum_q \\theta^a_q(\\mu) A_q`,
:math:`f(\\mu) = \\sum_q \\theta^f_q(\\mu) f_q` (no Dirichlet conditions). Implicit Euler with
step :math:`\\Delta t`:

.. math::

    (M / \\Delta t + A(\\mu))\\, u^{n+1} = M u^n / \\Delta t + f(\\mu), \\qquad u^0 = 0,

with one LU factorization (MUMPS, through PETSc ``KSP`` preonly) per trajectory. Testing with
:math:`v = 1` gives the discrete energy balance
:math:`\\int_\\Omega u^{n+1} - \\int_\\Omega u^n = \\Delta t (q \\int_{\\Gamma_h} g
- h \\int_{\\Gamma_c} u^{n+1})`.

The default final time (0.05) spans the transient of the whole parameter box: the slowest
parameter (weak cooling, :math:`h = 10`) is still heating up at the end, the fastest
(:math:`h = 200`, :math:`k_{sub} = 50`) reaches its steady state after a few steps.

Owned rows follow dolfinx: the first ``V.dofmap.index_map.size_local`` dofs of each rank;
``keys`` are the mesh input node indices of those dofs, independent of the partition.
"""

from __future__ import annotations

from typing import Any

import dolfinx
import dolfinx.fem.petsc
import dolfinx_solver  # noqa: F401  (orders MPI before the dolfinx/petsc4py bindings)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from rom.parallel import allreduce_sum
from rom.parallel import check_collective

from .mesh import BladeGeometry
from .mesh import blade_mesh
from .mesh import grid_layout
from .operators import assemble_operator
from .operators import check_converged
from .operators import mumps_lu
from .transient import P1TransientModel

__all__ = ["HeatModel"]

_REGIONS = {
    "domain": ("dx", None),
    "substrate": ("dx", 1),
    "coating": ("dx", 2),
    "cooling": ("ds", 1),
    "hot_gas": ("ds", 2),
}


class HeatModel(P1TransientModel):
    """Full-order model of the cooled blade (module docstring for the PDE and weak form).

    Parameters
    ----------
    size : int
        Cells across the wall (``r``); ``8 * size`` cells around, about ``8 size^2`` dofs.
    comm, final_time, n_steps
        Communicator (the mesh is generated on its rank 0), end time :math:`T` and number of
        implicit Euler steps (:class:`~solvers.transient.P1TransientModel`).
    degree : int
        Lagrange degree; only 1 (vertex dofs carry the partition-independent keys).
    s_factor, r_coat, geometry
        Mesh options of :func:`solvers.mesh.blade_mesh`.

    Attributes
    ----------
    mesh, V, cell_tags, facet_tags, dx, ds
        dolfinx mesh, P1 space, subdomain tags (``SUBSTRATE``, ``COATING``; ``COOLING``,
        ``HOT_GAS``) and the tagged measures.
    flux_profile : UFL expression
        :math:`g(x)`.
    mass : PETScOperator
        :math:`M_{ij} = \\int_\\Omega \\phi_j \\phi_i`.
    stiffness_terms : list of PETScOperator
        :math:`[A_1, A_2, A_3]`.
    rhs_terms : list of ndarray of shape (n_owned,)
        :math:`[f_1]`, owned rows.
    keys : ndarray of int64, shape (n_owned,)
        Mesh input node index of each owned dof.
    coordinates : ndarray of shape (n_owned, 2)
    """

    parameter_names: tuple[str, ...] = ("k_sub", "k_coat", "h_cool", "q_flux")
    SUBSTRATE, COATING = 1, 2
    COOLING, HOT_GAS = 1, 2
    flux_width: float = 0.08

    def __init__(
        self,
        comm: MPI.Comm = MPI.COMM_WORLD,
        *,
        size: int = 8,
        final_time: float = 0.05,
        n_steps: int = 30,
        degree: int = 1,
        s_factor: int = 8,
        r_coat: float = 0.85,
        geometry: BladeGeometry | None = None,
    ) -> None:
        if degree != 1:
            raise ValueError(f"only degree=1 is supported (keys are mesh vertices), got {degree}")
        self._set_time_grid(comm, final_time, n_steps)
        self.parameter_ranges = np.array([[5.0, 50.0], [0.5, 5.0], [10.0, 200.0], [0.5, 2.0]])
        self.geometry = BladeGeometry() if geometry is None else geometry
        n_s, n_r, n_coat = grid_layout(size, s_factor=s_factor, r_coat=r_coat)

        def build() -> tuple[np.ndarray, np.ndarray]:
            bm = blade_mesh(size, s_factor=s_factor, r_coat=r_coat, geometry=self.geometry)
            return bm.points, bm.cells

        self._distribute_p1(build)
        self._tag_subdomains(n_s, n_r, n_coat)

        x = ufl.SpatialCoordinate(self.mesh)
        le = self.geometry.leading_edge
        r2 = (x[0] - le[0]) ** 2 + (x[1] - le[1]) ** 2
        self.flux_profile = 1.0 + 2.0 * ufl.exp(-r2 / (2.0 * self.flux_width**2))

        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        dx, ds = self.dx, self.ds
        self.mass = assemble_operator(u * v * dx)
        self.stiffness_terms = [
            assemble_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * dx(self.SUBSTRATE)),
            assemble_operator(ufl.inner(ufl.grad(u), ufl.grad(v)) * dx(self.COATING)),
            assemble_operator(u * v * ds(self.COOLING)),
        ]
        self.rhs_terms = [self.assemble_vector(self.flux_profile * v * ds(self.HOT_GAS))]
        self._log_setup()

    # ------------------------------------------------------------------ setup helpers
    def _tag_subdomains(self, n_s: int, n_r: int, n_coat: int) -> None:
        mesh, tdim = self.mesh, self.mesh.topology.dim
        n_cells = mesh.topology.index_map(tdim).size_local
        orig = np.asarray(mesh.topology.original_cell_index[:n_cells], dtype=np.int64)
        coat = orig // (2 * n_s) >= n_r - n_coat
        self.cell_tags = dolfinx.mesh.meshtags(
            mesh,
            tdim,
            np.arange(n_cells, dtype=np.int32),
            np.where(coat, self.COATING, self.SUBSTRATE).astype(np.int32),
        )
        mesh.topology.create_connectivity(tdim - 1, tdim)
        facets = np.sort(dolfinx.mesh.exterior_facet_indices(mesh.topology)).astype(np.int32)
        nodes = dolfinx.mesh.entities_to_geometry(mesh, tdim - 1, facets)
        layer = np.asarray(mesh.geometry.input_global_indices)[nodes] // n_s
        tags = np.zeros(len(facets), dtype=np.int32)
        tags[np.all(layer == 0, axis=1)] = self.COOLING
        tags[np.all(layer == n_r, axis=1)] = self.HOT_GAS
        check_collective(
            None if np.all(tags > 0) else "exterior facet on neither boundary curve",
            self.comm,
            RuntimeError,
        )
        self.facet_tags = dolfinx.mesh.meshtags(mesh, tdim - 1, facets, tags)
        self.dx = ufl.Measure("dx", domain=mesh, subdomain_data=self.cell_tags)
        self.ds = ufl.Measure("ds", domain=mesh, subdomain_data=self.facet_tags)

    # ------------------------------------------------------------------ public helpers
    def theta_a(self, mu: np.ndarray) -> np.ndarray:
        """:math:`\\theta^a(\\mu) = (k_{sub}, k_{coat}, h)`, shape (3,)."""
        mu = self._check_mu(mu)
        return mu[:3].copy()

    def theta_f(self, mu: np.ndarray) -> np.ndarray:
        """:math:`\\theta^f(\\mu) = (q)`, shape (1,)."""
        mu = self._check_mu(mu)
        return mu[3:4].copy()

    def _check_mu(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64).ravel()
        err = None
        if mu.shape != (4,):
            err = f"mu must have 4 entries {self.parameter_names}, got shape {mu.shape}"
        elif not np.all(np.isfinite(mu)):
            err = f"mu contains NaN or Inf: {mu}"
        elif mu[0] <= 0 or mu[1] <= 0 or mu[2] < 0:
            err = f"need k_sub > 0, k_coat > 0, h_cool >= 0, got {mu[:3]}"
        if err is not None:  # mu is replicated, so every rank raises together
            raise ValueError(err)
        return mu

    def assemble_vector(self, L: Any) -> np.ndarray:
        """Owned rows of the vector of a linear UFL form on ``V`` (ghost contributions summed)."""
        b = fem.assemble_vector(fem.form(L))
        b.scatter_reverse(dolfinx.la.InsertMode.add)
        return np.array(b.array[: self.n_owned], copy=True)

    def to_function(self, u: np.ndarray | None = None) -> fem.Function:
        """A dolfinx ``Function`` with the owned values ``u`` (ghosts updated); zero if None."""
        fn = fem.Function(self.V)
        if u is not None:
            fn.x.array[: self.n_owned] = np.asarray(u, dtype=np.float64).reshape(self.n_owned)
            fn.x.scatter_forward()
        return fn

    def functional(
        self, u: np.ndarray | None = None, *, region: str = "domain", weight: Any = None
    ) -> float:
        """:math:`\\int_R w\\, u` by ``assemble_scalar`` of a UFL form, summed over ranks.

        ``u`` is an owned-row vector (None: 1); ``weight`` a UFL expression or number (None: 1);
        ``region`` one of ``domain``, ``substrate``, ``coating`` (cells), ``cooling``,
        ``hot_gas`` (boundary facets). Collective.
        """
        if region not in _REGIONS:
            raise ValueError(f"region must be one of {sorted(_REGIONS)}, got {region!r}")
        kind, tag = _REGIONS[region]
        measure = getattr(self, kind) if tag is None else getattr(self, kind)(tag)
        integrand = fem.Constant(self.mesh, PETSc.ScalarType(1.0))
        if u is not None:
            integrand = integrand * self.to_function(u)
        if weight is not None:
            integrand = integrand * weight
        local = fem.assemble_scalar(fem.form(integrand * measure))
        return float(allreduce_sum(local, self.comm))

    # ------------------------------------------------------------------ solvers
    def solve(self, mu: np.ndarray) -> np.ndarray:
        """Implicit Euler trajectory :math:`u^1, \\dots, u^N` (owned rows), shape (n_owned, N).

        :math:`(M/\\Delta t + A(\\mu)) u^{n+1} = M u^n/\\Delta t + f(\\mu)`, :math:`u^0 = 0`;
        the system matrix is factored once (MUMPS LU). Collective.
        """
        mu = self._check_mu(mu)
        theta_a, theta_f = self.theta_a(mu), self.theta_f(mu)
        f = sum(t * g for t, g in zip(theta_f, self.rhs_terms, strict=True))
        S = self._affine_system(theta_a, mass_scale=1.0 / self.dt)
        return self._march(S, np.zeros(self.n_owned), f, None)

    def steady_solve(self, mu: np.ndarray, *, extra_rhs: np.ndarray | None = None) -> np.ndarray:
        """Steady state :math:`A(\\mu) u = f(\\mu) + b` (owned rows); ``b = extra_rhs``.

        Needs :math:`h > 0` (the Robin term makes :math:`A(\\mu)` definite). Collective.
        """
        mu = self._check_mu(mu)
        if mu[2] <= 0:
            raise ValueError(f"steady_solve needs h_cool > 0, got {mu[2]}")
        b = sum(t * g for t, g in zip(self.theta_f(mu), self.rhs_terms, strict=True))
        if extra_rhs is not None:
            extra = np.asarray(extra_rhs, dtype=np.float64)
            err = (
                None
                if extra.shape == (self.n_owned,)
                else (f"extra_rhs must have shape ({self.n_owned},), got {extra.shape}")
            )
            check_collective(err, self.comm)
            b = b + extra
        S = self._affine_system(self.theta_a(mu), mass_scale=0.0)
        ksp = mumps_lu(S, self.comm)
        u, rhs = S.createVecs()
        try:
            rhs.array[:] = b
            ksp.solve(rhs, u)
            check_converged(ksp, "steady solve")
            return np.array(u.array_r, copy=True)
        finally:
            for obj in (ksp, S, u, rhs):
                obj.destroy()
