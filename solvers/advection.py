"""Parametrized convection-dominated transport of a Gaussian pulse (dolfinx FOM).

On the unit square :math:`\\Omega = (0, 1)^2` a pulse is carried by a constant velocity whose
direction angle :math:`a` and speed :math:`s` are the parameters :math:`\\mu = (a, s)`:

.. math::

    \\partial_t u + b(\\mu)\\cdot\\nabla u - \\varepsilon\\Delta u = 0, \\qquad
    b(\\mu) = s\\,(\\cos a, \\sin a), \\quad a \\in [0, \\pi/2],

    u = 0 \\text{ on } \\Gamma_{in} = \\{x = 0\\} \\cup \\{y = 0\\}, \\qquad
    \\varepsilon\\,\\partial_n u = 0 \\text{ on the rest (outflow)}, \\qquad
    u(x, 0) = u_0(x) = \\exp\\bigl(-|x - x_0|^2 / (2 w^2)\\bigr),

(:math:`\\Gamma_{in}` contains the inflow boundary :math:`b\\cdot n < 0` for every angle in
the range). With small :math:`\\varepsilon` the pulse moves almost rigidly, so the solution
manifold :math:`\\{u(t;\\mu)\\}` is a family of translates: its Kolmogorov width decays slowly,
the situation where local reduced bases pay off (``docs/theory.md`` §3).

Discretization: P1 Lagrange on a structured triangulation, SUPG stabilization
(Brooks & Hughes, CMAME 32, 1982) of the steady operator, implicit Euler:

.. math::

    \\bigl(\\tfrac{u^{n+1} - u^n}{\\Delta t}, v\\bigr) + (b\\cdot\\nabla u^{n+1}, v)
    + \\varepsilon(\\nabla u^{n+1}, \\nabla v)
    + \\bigl(b\\cdot\\nabla u^{n+1}, \\tau\\, b\\cdot\\nabla v\\bigr) = 0,
    \\qquad \\tau = \\frac{\\delta\\, h_K}{2|b|},

with :math:`h_K` the cell diameter and :math:`\\delta = 1`: the advection-dominated limit of the
classical choice :math:`\\tau = \\frac{h}{2|b|}(\\coth Pe - 1/Pe)`,
:math:`Pe = |b|h/(2\\varepsilon)`
(at the default :math:`\\varepsilon = 10^{-4}`, :math:`h = 1/48`, :math:`|b| \\ge 0.5`:
:math:`Pe \\ge 50`, factor :math:`\\ge 0.98`). Two documented choices make the problem
**exactly affine** in :math:`\\mu` so a Galerkin ROM needs no approximation:

* with this :math:`\\tau`, :math:`\\tau\\, b_i b_j = \\tfrac{\\delta h}{2} s\\, d_i d_j`,
  :math:`d = (\\cos a, \\sin a)`, so the SUPG term is a sum of three fixed matrices;
* the SUPG test function is applied to the steady residual only (the term
  :math:`(\\partial_t u, \\tau b\\cdot\\nabla v)` is omitted), so the mass matrix does not
  depend on :math:`\\mu`. This is a common inconsistent-in-time variant: it keeps the scheme
  stable, costs accuracy only at the level of the implicit-Euler error, and still conserves
  :math:`\\int u` and moves the centroid with :math:`b` (test with :math:`v = 1` and
  :math:`v = x_i`, both in :math:`V_h`) while the pulse is away from the boundary.

Affine decomposition :math:`A(\\mu) = \\sum_{q=1}^{6} \\theta_q(\\mu) A_q`:

.. math::

    \\theta(\\mu) = (1,\\ s\\cos a,\\ s\\sin a,\\ s\\cos^2 a,\\ s\\sin a\\cos a,\\ s\\sin^2 a),

    A_1 = \\varepsilon(\\nabla u, \\nabla v),\\ A_2 = (\\partial_x u, v),\\
    A_3 = (\\partial_y u, v),\\ A_4 = (\\tau_0\\partial_x u, \\partial_x v),\\
    A_5 = (\\tau_0\\partial_x u, \\partial_y v) + (\\tau_0\\partial_y u, \\partial_x v),\\
    A_6 = (\\tau_0\\partial_y u, \\partial_y v),

:math:`\\tau_0 = \\delta h_K/2`; no load (``rhs_terms`` is empty). The exposed operators are
assembled **without** the Dirichlet condition: every snapshot vanishes on :math:`\\Gamma_{in}`,
so a reduced basis built from snapshots does too, and :math:`V^T A_q V` is the Galerkin
projection of the constrained problem. :meth:`AdvectionModel.solve` imposes the condition by
zeroing the rows and columns of the :math:`\\Gamma_{in}` dofs in
:math:`M/\\Delta t + A(\\mu)` (unit diagonal) and one MUMPS LU per trajectory.

Owned rows follow dolfinx (the first ``V.dofmap.index_map.size_local`` dofs); ``keys`` are the
input node indices ``j (size + 1) + i`` of the node :math:`(i/size, j/size)`, independent of the
partition.
"""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (orders MPI before the dolfinx/petsc4py bindings)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from rom.parallel import allreduce_sum

from .operators import assemble_operator
from .transient import P1TransientModel

__all__ = ["AdvectionModel", "square_mesh"]


def square_mesh(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Structured triangulation of the unit square: ``(points (n, 2), triangles (m, 3))``.

    Node ``(i, j)`` (``x = i/size``, ``y = j/size``) has index ``j (size + 1) + i``; each
    square is split along its lower-left to upper-right diagonal.
    """
    n = int(size)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1))
    points = np.column_stack([i.ravel() / n, j.ravel() / n])
    ci, cj = np.meshgrid(np.arange(n), np.arange(n))
    v0 = (cj * (n + 1) + ci).ravel()
    v1, v2, v3 = v0 + 1, v0 + n + 2, v0 + n + 1
    cells = np.empty((2 * n * n, 3), dtype=np.int64)
    cells[0::2] = np.column_stack([v0, v1, v2])
    cells[1::2] = np.column_stack([v0, v2, v3])
    return points, cells


class AdvectionModel(P1TransientModel):
    """Full-order model of the transported pulse (module docstring for PDE and weak form).

    Parameters
    ----------
    size : int
        Cells per side; :math:`(size+1)^2` dofs.
    comm, final_time, n_steps
        As for :class:`~solvers.heat.HeatModel`.
    diffusion : float
        :math:`\\varepsilon > 0`.
    width : float
        Pulse width :math:`w`.
    center : tuple of float
        Initial pulse centre :math:`x_0`.
    supg : float
        :math:`\\delta \\ge 0` (0 switches the stabilization off).

    Attributes
    ----------
    mesh, V : dolfinx mesh and P1 space.
    mass : PETScOperator
        :math:`M_{ij} = \\int_\\Omega \\phi_j\\phi_i` (no boundary condition).
    stiffness_terms : list of PETScOperator
        :math:`[A_1, \\dots, A_6]` (no boundary condition).
    rhs_terms : list
        Empty (no load).
    keys : ndarray of int64, shape (n_owned,)
    coordinates : ndarray of shape (n_owned, 2)
    inflow_dofs : ndarray of int32
        Owned (local) dofs on :math:`\\Gamma_{in}`.
    parameter_ranges : ndarray of shape (2, 2)
        :math:`a \\in [0, \\pi/2]`, :math:`s \\in [0.5, 1.5]`.
    """

    parameter_names: tuple[str, ...] = ("angle", "speed")

    def __init__(
        self,
        comm: MPI.Comm = MPI.COMM_WORLD,
        *,
        size: int = 48,
        final_time: float = 0.5,
        n_steps: int = 40,
        diffusion: float = 1e-4,
        width: float = 0.06,
        center: tuple[float, float] = (0.25, 0.25),
        supg: float = 1.0,
    ) -> None:
        err = None
        if not isinstance(size, (int, np.integer)) or size < 2:
            err = f"size must be an integer >= 2, got {size!r}"
        elif not (np.isfinite(diffusion) and diffusion > 0):
            err = f"diffusion must be > 0, got {diffusion}"
        elif not (np.isfinite(width) and width > 0) or not (np.isfinite(supg) and supg >= 0):
            err = f"need width > 0 and supg >= 0, got {width}, {supg}"
        if err is not None:  # arguments are replicated: every rank raises together
            raise ValueError(err)
        self._set_time_grid(comm, final_time, n_steps)
        self.size = int(size)
        self.diffusion = float(diffusion)
        self.width = float(width)
        self.center = np.asarray(center, dtype=np.float64)
        self.supg = float(supg)
        self.parameter_ranges = np.array([[0.0, 0.5 * np.pi], [0.5, 1.5]])

        self._distribute_p1(lambda: square_mesh(self.size))

        inflow = fem.locate_dofs_geometrical(
            self.V, lambda x: np.isclose(x[0], 0.0) | np.isclose(x[1], 0.0)
        )
        self.inflow_dofs = np.asarray(inflow[inflow < self.n_owned], dtype=np.int32)
        first = self.V.dofmap.index_map.local_range[0]
        self._inflow_global = (self.inflow_dofs + first).astype(PETSc.IntType)

        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        tau0 = 0.5 * self.supg * ufl.CellDiameter(self.mesh)
        dx = ufl.dx
        ux, uy, vx, vy = u.dx(0), u.dx(1), v.dx(0), v.dx(1)
        self.mass = assemble_operator(u * v * dx)
        self.stiffness_terms = [
            assemble_operator(self.diffusion * ufl.inner(ufl.grad(u), ufl.grad(v)) * dx),
            assemble_operator(ux * v * dx),
            assemble_operator(uy * v * dx),
            assemble_operator(tau0 * ux * vx * dx),
            assemble_operator(tau0 * (ux * vy + uy * vx) * dx),
            assemble_operator(tau0 * uy * vy * dx),
        ]
        self.rhs_terms: list[np.ndarray] = []
        self._log_setup()

    # ------------------------------------------------------------------ parameters
    def _check_mu(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=np.float64).ravel()
        err = None
        if mu.shape != (2,):
            err = f"mu must have 2 entries {self.parameter_names}, got shape {mu.shape}"
        elif not np.all(np.isfinite(mu)):
            err = f"mu contains NaN or Inf: {mu}"
        elif mu[1] <= 0:
            err = f"speed must be > 0, got {mu[1]}"
        if err is not None:  # mu is replicated, so every rank raises together
            raise ValueError(err)
        return mu

    def velocity(self, mu: np.ndarray) -> np.ndarray:
        """:math:`b(\\mu) = s(\\cos a, \\sin a)`."""
        a, s = self._check_mu(mu)
        return s * np.array([np.cos(a), np.sin(a)])

    def theta_a(self, mu: np.ndarray) -> np.ndarray:
        """:math:`\\theta(\\mu)`, shape (6,) (module docstring)."""
        a, s = self._check_mu(mu)
        c, d = np.cos(a), np.sin(a)
        return np.array([1.0, s * c, s * d, s * c * c, s * d * c, s * d * d])

    def theta_f(self, mu: np.ndarray) -> np.ndarray:
        """No load: shape (0,)."""
        self._check_mu(mu)
        return np.zeros(0)

    # ------------------------------------------------------------------ fields
    def initial_condition(self, mu: np.ndarray | None = None) -> np.ndarray:
        """Owned rows of :math:`u_0` (nodal interpolation, zero on :math:`\\Gamma_{in}`)."""
        r2 = np.sum((self.coordinates - self.center) ** 2, axis=1)
        u0 = np.exp(-r2 / (2.0 * self.width**2))
        u0[self.inflow_dofs] = 0.0
        return u0

    def exact_solution(self, mu: np.ndarray, t: float) -> np.ndarray:
        """Owned nodal values of the free-space solution of the continuous problem.

        :math:`u = \\frac{w^2}{w^2 + 2\\varepsilon t}\\exp\\bigl(-|x - x_0 - bt|^2 /
        (2(w^2 + 2\\varepsilon t))\\bigr)` (no boundary; valid while the pulse is far from it).
        """
        b = self.velocity(mu)
        w2 = self.width**2 + 2.0 * self.diffusion * t
        r2 = np.sum((self.coordinates - self.center - b * t) ** 2, axis=1)
        return self.width**2 / w2 * np.exp(-r2 / (2.0 * w2))

    def integrate(self, u: np.ndarray, weight: np.ndarray | None = None) -> float:
        """:math:`\\int_\\Omega w\\,u` for owned-row FE coefficient vectors (``M`` and a sum).

        ``weight`` (owned rows, default 1) is interpolated in :math:`V_h`, so
        :math:`\\int w u = w^T M u` exactly. Collective.
        """
        u = np.asarray(u, dtype=np.float64).reshape(self.n_owned)
        w = np.ones(self.n_owned) if weight is None else np.asarray(weight).reshape(self.n_owned)
        return float(allreduce_sum(w @ self.mass(u), self.comm))

    # ------------------------------------------------------------------ solver
    def system_matrix(self, mu: np.ndarray) -> PETSc.Mat:
        """:math:`M/\\Delta t + A(\\mu)` with the :math:`\\Gamma_{in}` rows/columns set to the
        identity (a new PETSc matrix; the caller destroys it). Collective."""
        S = self._affine_system(self.theta_a(mu), mass_scale=1.0 / self.dt)
        S.zeroRowsColumns(self._inflow_global, diag=1.0)
        return S

    def solve(self, mu: np.ndarray, *, u0: np.ndarray | None = None) -> np.ndarray:
        """Implicit Euler trajectory :math:`u^1, \\dots, u^N` (owned rows), shape (n_owned, N).

        :math:`(M/\\Delta t + A(\\mu))u^{n+1} = M u^n/\\Delta t` on the free dofs,
        :math:`u^{n+1} = 0` on :math:`\\Gamma_{in}`; ``u0`` defaults to
        :meth:`initial_condition`. One MUMPS LU per trajectory. Collective.
        """
        mu = self._check_mu(mu)
        u_init = self.initial_condition(mu) if u0 is None else np.asarray(u0, dtype=np.float64)
        S = self.system_matrix(mu)
        return self._march(S, u_init, 0.0, self.inflow_dofs)
