"""Small-strain elasto-viscoplastic full-order model of a block (dolfinx, Q1 elements).

The structure is a block :math:`\\Omega = [0, L_x] \\times [0, L_y] (\\times [0, L_z])` in 3-D,
or its plane-strain section in 2-D, meshed with ``size`` quadrilaterals/hexahedra per unit
length. The material law (Norton viscoplasticity with linear isotropic hardening and
temperature-dependent parameters, backward Euler, radial return, consistent tangent) lives in
:mod:`solvers.constitutive` and is the same law that a reduced model integrates at its reduced
quadrature points (Casenave & Akkari, MCA 24(2):41, 2019; ``docs/theory.md`` §5).

Boundary value problem at time :math:`t_{n+1}`: find :math:`u \\in V_h` (vector Q1) with the
Dirichlet conditions below such that for all admissible :math:`v`

.. math::

    F(u; v) = \\int_\\Omega \\sigma(u) : \\varepsilon(v) \\,dx
        - \\int_\\Omega \\rho\\, \\omega(t)^2\\, r(x) \\cdot v \\,dx
        + \\int_{\\Gamma_{x^+}} p(t)\\, n \\cdot v \\,ds = 0,

where :math:`\\sigma(u)` is the backward-Euler stress from the internal variables at
:math:`t_n` (:math:`\\varepsilon^{vp}`, :math:`p` at the quadrature points) and the temperature
at :math:`t_{n+1}`; :math:`r(x) = (x - c_x, y - c_y[, 0])` is the distance vector to the
rotation axis (parallel to :math:`z` through ``Load.axis``), so :math:`\\rho\\omega^2 r` is the
centrifugal body force; :math:`p(t)` a pressure on the face :math:`x = L_x` (positive
compresses). Boundary conditions: rollers :math:`u_x = 0` on :math:`x = 0`, :math:`u_y = 0` on
:math:`y = 0` (and :math:`u_z = 0` on :math:`z = 0`), which remove the rigid motions without
constraining a homogeneous uniaxial state; optionally :math:`u_x = \\delta(t)` on
:math:`x = L_x`.

Global Newton on the displacement with the consistent tangent
:math:`J(u)[\\delta u, v] = \\int_\\Omega \\varepsilon(v) : \\mathbb C^{alg} :
\\varepsilon(\\delta u)`
(assembled with stress and tangent as quadrature-space functions, solved by MUMPS LU), so the
convergence is quadratic once the set of plastic points settles (checked in the tests:
:math:`e_{k+1} \\le 10 e_k^2` for the scaled residual). The first iterate starts from
:math:`u_n` and lifts the Dirichlet increment through the tangent (:math:`J\\,\\delta u = -F` on
the free dofs, :math:`\\delta u = g(t_{n+1}) - u_n` on the constrained ones); forcing the new
boundary values into :math:`u_n` instead concentrates the increment in one layer of cells and
made Newton diverge on fine meshes. Convergence when :math:`u` meets the Dirichlet values and
:math:`\\|F_{free}\\| \\le rtol \\cdot \\|F\\| + atol`, with :math:`\\|F\\|` over all dofs
(reactions included), or when the last Newton correction was below :math:`stol \\cdot \\|u\\|`
(the residual has then reached its round-off floor, which on fine meshes can lie above
:math:`rtol \\cdot \\|F\\|`; PETSc's SNES has the same step test).

Quadrature: Gauss :math:`2^d` points per cell (degree 2), exact for the Q1 stiffness on affine
cells. Strains and stresses are Mandel vectors (see :mod:`solvers.constitutive`), so
:math:`\\sigma : \\varepsilon(\\psi_i)` at the quadrature points is ``(sigma * strain).sum(-1)``
and :math:`\\int_\\Omega \\sigma : \\varepsilon(\\psi_i) \\approx \\sum_q w_q (\\ldots)_q` with
``qp_weights``.

Numbering (partition-independent, for snapshots and the HDF5 store): owned displacement dof
``j`` has key ``node * gdim + component`` (``node`` = mesh input node index); local quadrature
point ``c * n_qp_per_cell + q`` (``c`` a local cell) has key
``input_cell * n_qp_per_cell + q``. The mesh uses no ghost cells, so every local quadrature point
is owned by exactly one rank.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import basix
import basix.ufl
import dolfinx
import dolfinx.fem.petsc
import dolfinx_solver  # noqa: F401  (orders MPI before the dolfinx/petsc4py bindings)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI
from petsc4py import PETSc

from rom.adaptive import FullState
from rom.parallel import check_collective

from .constitutive import Material
from .constitutive import elastic_stiffness
from .constitutive import integrate
from .constitutive import mandel_identity
from .constitutive import n_components
from .operators import assemble_operator
from .operators import mumps_lu
from .operators import vertex_keys

__all__ = ["Load", "State", "StepInfo", "Trajectory", "ViscoplasticModel"]

logger = logging.getLogger(__name__)

TemperatureInput = float | Callable[[np.ndarray, float], np.ndarray] | tuple[np.ndarray, np.ndarray]


def _as_function(f: Callable[[float], float] | float | None) -> Callable[[float], float] | None:
    if f is None or callable(f):
        return f
    value = float(f)
    return lambda t: value


@dataclass(frozen=True)
class Load:
    """Mechanical loading of the block (see the module docstring).

    Parameters
    ----------
    displacement : callable t -> float, float or None
        Imposed :math:`u_x = \\delta(t)` on the face :math:`x = L_x`.
    pressure : callable t -> float, float or None
        Pressure :math:`p(t)` on the face :math:`x = L_x` (traction :math:`-p\\,n`; negative
        pulls). Exclusive with ``displacement``.
    omega : callable t -> float, float or None
        Angular velocity :math:`\\omega(t)` of the centrifugal load :math:`\\rho\\omega^2 r`.
    axis : tuple of 2 floats
        A point :math:`(c_x, c_y)` of the rotation axis (parallel to :math:`z`).
    """

    displacement: Callable[[float], float] | float | None = None
    pressure: Callable[[float], float] | float | None = None
    omega: Callable[[float], float] | float | None = None
    axis: tuple[float, float] = (-1.0, 0.0)

    def __post_init__(self) -> None:
        if self.displacement is not None and self.pressure is not None:
            raise ValueError("Load: give either displacement or pressure on x = L_x, not both")
        if len(self.axis) != 2 or not np.all(np.isfinite(self.axis)):
            raise ValueError(f"Load.axis must be 2 finite numbers, got {self.axis}")


#: Full-order state at time ``t`` (``t``, ``u``, ``eps_vp``, ``p``, ``sigma``): the class
#: :class:`rom.adaptive.FullState` that the adaptive ROM hands to :meth:`ViscoplasticModel.step`.
State = FullState


@dataclass
class StepInfo:
    """Diagnostics of one implicit step.

    Attributes
    ----------
    iterations : int
        Newton iterations (linear solves).
    residual_norms : list of float
        :math:`\\|F_{free}\\|` before each solve and at convergence (length iterations + 1).
    reference_norm : float
        :math:`\\|F\\|` over all dofs at convergence (the scale of ``rtol``).
    n_plastic : int
        Quadrature points (all ranks) with :math:`\\Delta p > 0` in this step.
    """

    iterations: int
    residual_norms: list[float] = field(default_factory=list)
    reference_norm: float = 0.0
    n_plastic: int = 0


@dataclass
class Trajectory:
    """Snapshots of a run at ``times`` (the initial state excluded).

    Attributes
    ----------
    times : ndarray (n_t,)
    u : ndarray (n_owned, n_t)
    p : ndarray (n_qp_local, n_t)
    stresses : ndarray (n_qp_local, n_comp, n_t)
    eps_vp : ndarray (n_qp_local, n_comp, n_t)
    newton_iterations : ndarray of int (n_t,)
    final_state : State
    """

    times: np.ndarray
    u: np.ndarray
    p: np.ndarray
    stresses: np.ndarray
    eps_vp: np.ndarray
    newton_iterations: np.ndarray
    final_state: State


class ViscoplasticModel:
    """Elasto-viscoplastic block under mechanical and thermal loads (module docstring).

    Parameters
    ----------
    comm : mpi4py communicator
    dim : int
        2 (plane strain, quadrilaterals) or 3 (hexahedra).
    size : int
        Cells per unit length; the mesh has ``max(1, round(size * L))`` cells along each side.
    material : Material, optional
        Defaults to ``Material()``.
    load : Load, optional
        Defaults to ``Load(displacement=lambda t: 2e-3 * t * L_x)`` (a tensile ramp).
    temperature : float, callable or tuple, optional
        ``None`` (the reference temperature), a constant, a callable ``T(x, t)`` with ``x`` of
        shape (3, m) returning (m,) values, or ``(times (n_T,), values (n_T_owned, n_T))``:
        nodal values on ``temperature_space`` (P1, owned rows keyed by ``temperature_keys``),
        linear in time between the given times (e.g. a run of :mod:`solvers.heat` on this mesh).
    times : array_like, optional
        Increasing output times :math:`t_1 < \\dots < t_N` after ``initial_time``; default
        ``linspace(0, 1, 11)[1:]``.
    lengths : tuple of float, optional
        Block extents, default all 1.
    initial_time : float
        :math:`t_0` of :meth:`initial_state`.
    rtol, atol, stol : float
        Global Newton tolerances (module docstring).
    max_newton : int
        Iteration cap; a step that does not converge raises ``RuntimeError`` on every rank.

    Attributes
    ----------
    mesh, V, gdim, n_comp
        dolfinx mesh, vector Q1 space, dimension, Mandel components (4 or 6).
    n_dofs, n_owned : int
        Global and owned displacement dofs.
    keys : ndarray of int64 (n_owned,)
        ``input node * gdim + component``.
    n_qp_local, n_qp_per_cell : int
    qp_keys : ndarray of int64 (n_qp_local,)
        ``input cell * n_qp_per_cell + q``.
    qp_weights : ndarray (n_qp_local,)
        :math:`|\\det J| w_q`, so :math:`\\int_\\Omega f \\approx \\sum_q w_q f(x_q)`.
    qp_coordinates : ndarray (n_qp_local, gdim)
    mass : PETScOperator
        :math:`M_{ij} = \\int_\\Omega \\phi_j \\cdot \\phi_i` (vector mass matrix), owned rows.
    temperature_space : dolfinx FunctionSpace
        P1 scalar space of the nodal temperature input; ``temperature_keys`` its input node
        indices (owned rows).
    """

    def __init__(
        self,
        comm: MPI.Comm = MPI.COMM_WORLD,
        *,
        dim: int = 2,
        size: int = 8,
        material: Material | None = None,
        load: Load | None = None,
        temperature: TemperatureInput | None = None,
        times: np.ndarray | None = None,
        lengths: tuple[float, ...] | None = None,
        initial_time: float = 0.0,
        rtol: float = 1e-10,
        atol: float = 1e-14,
        stol: float = 1e-10,
        max_newton: int = 25,
    ) -> None:
        n_comp = n_components(dim)
        lengths = (1.0,) * dim if lengths is None else tuple(float(v) for v in lengths)
        if len(lengths) != dim or not all(np.isfinite(v) and v > 0 for v in lengths):
            raise ValueError(f"lengths must be {dim} positive numbers, got {lengths}")
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not (rtol >= 0 and atol >= 0 and stol >= 0 and int(max_newton) >= 1):
            raise ValueError(
                f"need rtol, atol, stol >= 0 and max_newton >= 1, got {rtol}, {atol}, {stol}, "
                f"{max_newton}"
            )
        self.comm = comm
        self.gdim = dim
        self.n_comp = n_comp
        self.lengths = lengths
        self.material = Material() if material is None else material
        self.load = Load(displacement=lambda t: 2e-3 * t * lengths[0]) if load is None else load
        self.initial_time = float(initial_time)
        self.times = self._check_times(
            np.linspace(0.0, 1.0, 11)[1:] if times is None else times, self.initial_time
        )
        self.rtol, self.atol, self.max_newton = float(rtol), float(atol), int(max_newton)
        self.stol = float(stol)

        cells = [max(1, round(size * L)) for L in lengths]
        corner = [[0.0] * dim, list(lengths)]
        create, cell_type = (
            (dolfinx.mesh.create_rectangle, dolfinx.mesh.CellType.quadrilateral)
            if dim == 2
            else (dolfinx.mesh.create_box, dolfinx.mesh.CellType.hexahedron)
        )
        self.mesh = create(comm, corner, cells, cell_type, ghost_mode=dolfinx.mesh.GhostMode.none)
        mesh, tdim = self.mesh, dim
        self.V = fem.functionspace(mesh, ("Lagrange", 1, (dim,)))
        imap = self.V.dofmap.index_map
        self.n_owned = int(imap.size_local) * dim
        self.n_dofs = int(imap.size_global) * dim
        node_keys = self._vertex_keys(self.V)
        self.keys = (node_keys[: imap.size_local, None] * dim + np.arange(dim)).ravel()

        # quadrature: local point c * nq + q, the order of Expression.eval over cells 0..n-1
        self.n_cells_local = int(mesh.topology.index_map(tdim).size_local)
        self._cells = np.arange(self.n_cells_local, dtype=np.int32)
        self._qp_ref, self._qw_ref = basix.make_quadrature(mesh.basix_cell(), 2)
        self.n_qp_per_cell = int(self._qw_ref.size)
        self.n_qp_local = self.n_cells_local * self.n_qp_per_cell
        orig = np.asarray(mesh.topology.original_cell_index[: self.n_cells_local], dtype=np.int64)
        self.qp_keys = (orig[:, None] * self.n_qp_per_cell + np.arange(self.n_qp_per_cell)).ravel()
        detj = self._eval_qp(abs(ufl.JacobianDeterminant(mesh)))
        detj = detj.reshape(self.n_cells_local, self.n_qp_per_cell)
        self.qp_weights = (detj * self._qw_ref).ravel()
        self.qp_coordinates = self._eval_qp(ufl.SpatialCoordinate(mesh)).reshape(-1, dim)

        qe = basix.ufl.quadrature_element(mesh.basix_cell(), value_shape=(n_comp,), degree=2)
        qt = basix.ufl.quadrature_element(mesh.basix_cell(), value_shape=(n_comp, n_comp), degree=2)
        self._sig = fem.Function(fem.functionspace(mesh, qe))
        self._tan = fem.Function(fem.functionspace(mesh, qt))
        self._sig_dofs = self._sig.function_space.dofmap.list.ravel()
        self._tan_dofs = self._tan.function_space.dofmap.list.ravel()

        self.temperature_space = fem.functionspace(mesh, ("Lagrange", 1))
        self.temperature_keys = self._vertex_keys(self.temperature_space)[
            : self.temperature_space.dofmap.index_map.size_local
        ].copy()
        self._T_fn = fem.Function(self.temperature_space)
        self._T_expr = fem.Expression(self._T_fn, self._qp_ref)
        self.set_temperature(temperature)

        self._u = fem.Function(self.V)
        self._work = fem.Function(self.V)
        self._strain_expr = fem.Expression(self._eps(self._work), self._qp_ref)
        self._u_strain_expr = fem.Expression(self._eps(self._u), self._qp_ref)
        self._setup_problem()
        logger.info(
            "ViscoplasticModel: dim=%d, %s cells, %d dofs (%d owned on rank %d), %d local qps",
            dim,
            cells,
            self.n_dofs,
            self.n_owned,
            comm.rank,
            self.n_qp_local,
        )

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_times(times: Any, t0: float) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64).ravel()
        if times.size == 0 or not np.all(np.isfinite(times)):
            raise ValueError(f"times must be a non-empty finite array, got {times}")
        if times[0] <= t0 or np.any(np.diff(times) <= 0):
            raise ValueError(f"times must increase strictly from above initial_time={t0}")
        return times

    def _vertex_keys(self, V: fem.FunctionSpace) -> np.ndarray:
        """Mesh input node index of each (blocked) local dof of a degree-1 Lagrange space."""
        return vertex_keys(V)

    def _eps(self, w: Any) -> Any:
        e = ufl.sym(ufl.grad(w))
        s2 = np.sqrt(2.0)
        if self.gdim == 2:
            return ufl.as_vector([e[0, 0], e[1, 1], 0.0, s2 * e[0, 1]])
        return ufl.as_vector([e[0, 0], e[1, 1], e[2, 2], s2 * e[1, 2], s2 * e[0, 2], s2 * e[0, 1]])

    def _eval_qp(self, expr: Any) -> np.ndarray:
        values = fem.Expression(expr, self._qp_ref).eval(self.mesh, self._cells)
        return values.reshape((self.n_qp_local,) + values.shape[2:])

    def _facets(self, axis: int, value: float) -> np.ndarray:
        fdim = self.gdim - 1
        return dolfinx.mesh.locate_entities_boundary(
            self.mesh, fdim, lambda x: np.isclose(x[axis], value)
        )

    def _setup_problem(self) -> None:
        mesh, V, dim = self.mesh, self.V, self.gdim
        fdim = dim - 1
        mesh.topology.create_connectivity(fdim, dim)
        zero = fem.Constant(mesh, PETSc.ScalarType(0.0))
        self._bcs = []
        for axis in range(dim):  # rollers on the faces x_i = 0
            dofs = fem.locate_dofs_topological(V.sub(axis), fdim, self._facets(axis, 0.0))
            self._bcs.append(fem.dirichletbc(zero, dofs, V.sub(axis)))
        right = self._facets(0, self.lengths[0])
        self._disp = fem.Constant(mesh, PETSc.ScalarType(0.0))
        if self.load.displacement is not None:
            dofs = fem.locate_dofs_topological(V.sub(0), fdim, right)
            self._bcs.append(fem.dirichletbc(self._disp, dofs, V.sub(0)))
        tags = dolfinx.mesh.meshtags(
            mesh, fdim, np.sort(right).astype(np.int32), np.ones(right.size, dtype=np.int32)
        )
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
        dxq = ufl.Measure(
            "dx", domain=mesh, metadata={"quadrature_degree": 2, "quadrature_scheme": "default"}
        )
        self._pressure = fem.Constant(mesh, PETSc.ScalarType(0.0))
        self._omega2 = fem.Constant(mesh, PETSc.ScalarType(0.0))
        x = ufl.SpatialCoordinate(mesh)
        c = self.load.axis
        r = [x[0] - c[0], x[1] - c[1]] + ([0.0] if dim == 3 else [])
        rho = float(self.material.density)
        v, du = ufl.TestFunction(V), ufl.TrialFunction(V)
        n = ufl.FacetNormal(mesh)
        F = (
            ufl.dot(self._sig, self._eps(v)) * dxq
            - rho * self._omega2 * ufl.dot(ufl.as_vector(r), v) * dxq
            + self._pressure * ufl.dot(n, v) * ds(1)
        )
        J = ufl.dot(ufl.dot(self._tan, self._eps(du)), self._eps(v)) * dxq
        self._F_form = fem.form(F)
        self._J_form = fem.form(J)
        self._A = dolfinx.fem.petsc.create_matrix(self._J_form)
        self._b = dolfinx.fem.petsc.create_vector(V)
        self._du = self._A.createVecRight()
        self._rhs = dolfinx.fem.petsc.create_vector(V)
        self._ksp = mumps_lu(self._A, self.comm, setup=False)
        u_, v_ = ufl.TrialFunction(V), ufl.TestFunction(V)
        self.mass = assemble_operator(ufl.inner(u_, v_) * ufl.dx)

    # ------------------------------------------------------------------ temperature
    def set_temperature(self, temperature: TemperatureInput | None) -> None:
        """Replace the thermal load (same forms as the constructor argument). Collective."""
        err = None
        kind: str
        if temperature is None or np.isscalar(temperature):
            value = self.material.T_ref if temperature is None else float(temperature)
            if not np.isfinite(value):
                err = f"constant temperature must be finite, got {value}"
            kind, data = "constant", value
        elif callable(temperature):
            kind, data = "callable", temperature
        elif isinstance(temperature, tuple) and len(temperature) == 2:
            tt = np.asarray(temperature[0], dtype=np.float64).ravel()
            vals = np.asarray(temperature[1], dtype=np.float64)
            n_T = self.temperature_space.dofmap.index_map.size_local
            if vals.ndim != 2 or vals.shape != (n_T, tt.size):
                err = (
                    f"nodal temperature values must have shape ({n_T}, {tt.size}), got {vals.shape}"
                )
            elif tt.size == 0 or np.any(np.diff(tt) <= 0) or not np.all(np.isfinite(tt)):
                err = "nodal temperature times must be finite and strictly increasing"
            elif not np.all(np.isfinite(vals)):
                err = "nodal temperature values contain NaN or Inf"
            kind, data = "nodal", (tt, vals)
        else:
            err = (
                "temperature must be None, a number, a callable T(x, t) or a tuple "
                f"(times, nodal values), got {type(temperature).__name__}"
            )
            kind, data = "constant", 0.0
        check_collective(err, self.comm)
        self._T_kind, self._T_data = kind, data

    def temperature_at_qp(self, t: float) -> np.ndarray:
        """Temperature at the local quadrature points at time ``t``, shape (n_qp_local,).

        Collective for nodal temperature input (ghost update); errors are raised on every rank.
        """
        t = float(t)
        err = None
        T = np.empty(self.n_qp_local)
        if self._T_kind == "constant":
            T[:] = self._T_data
        elif self._T_kind == "callable":
            x = np.zeros((3, self.n_qp_local))
            x[: self.gdim] = self.qp_coordinates.T
            try:
                vals = np.asarray(self._T_data(x, t), dtype=np.float64)
                T[:] = np.broadcast_to(vals, (self.n_qp_local,))
            except (ValueError, TypeError) as exc:
                err = f"temperature callable T(x, t) failed at t={t}: {exc}"
        else:
            tt, vals = self._T_data
            span = max(tt[-1] - tt[0], 1.0)
            if t < tt[0] - 1e-12 * span or t > tt[-1] + 1e-12 * span:
                raise ValueError(
                    f"t={t} is outside the nodal temperature times [{tt[0]}, {tt[-1]}]"
                )
            k = int(np.clip(np.searchsorted(tt, t) - 1, 0, max(tt.size - 2, 0)))
            if tt.size == 1:
                nodal = vals[:, 0]
            else:
                a = (t - tt[k]) / (tt[k + 1] - tt[k])
                nodal = (1 - a) * vals[:, k] + a * vals[:, k + 1]
            self._T_fn.x.array[: nodal.size] = nodal
            self._T_fn.x.scatter_forward()
            T[:] = self._T_expr.eval(self.mesh, self._cells).ravel()
        if err is None:
            err = self.material.check_temperature(T)
        check_collective(err, self.comm)
        return T

    # ------------------------------------------------------------------ quadrature data
    def strain_at_qp(self, U: np.ndarray) -> np.ndarray:
        """:math:`\\varepsilon(u)` (Mandel) at the local quadrature points of owned-row fields.

        Parameters
        ----------
        U : ndarray (n_owned,) or (n_owned, k)
            Displacements (e.g. POD modes :math:`\\psi_i`), owned rows.

        Returns
        -------
        ndarray (n_qp_local, n_comp, k) (or (n_qp_local, n_comp) for a vector). Collective.
        """
        U = np.asarray(U, dtype=np.float64)
        err = None
        if U.ndim not in (1, 2) or U.shape[0] != self.n_owned:
            err = f"U must have shape ({self.n_owned},) or ({self.n_owned}, k), got {U.shape}"
        elif not np.all(np.isfinite(U)):
            err = "U contains NaN or Inf"
        ks = self.comm.allgather(U.shape[1:] if err is None else None)
        if err is None and any(k != ks[0] for k in ks):
            err = f"column counts differ over ranks: {ks}"
        check_collective(err, self.comm)
        cols = U.reshape(self.n_owned, -1)
        out = np.empty((self.n_qp_local, self.n_comp, cols.shape[1]))
        for j in range(cols.shape[1]):
            self._work.x.array[: self.n_owned] = cols[:, j]
            self._work.x.scatter_forward()
            vals = self._strain_expr.eval(self.mesh, self._cells)
            out[:, :, j] = vals.reshape(self.n_qp_local, self.n_comp)
        return out[:, :, 0] if U.ndim == 1 else out

    @staticmethod
    def integrands(stresses: np.ndarray, strains: np.ndarray) -> np.ndarray:
        """Cubature integrands :math:`g_{ik}(x_q) = \\sigma_k(x_q) : \\varepsilon(\\psi_i)(x_q)`.

        Parameters
        ----------
        stresses : ndarray (n_qp, n_comp, n_s) or (n_qp, n_comp)
            Stress snapshots at quadrature points (Mandel).
        strains : ndarray (n_qp, n_comp, n_modes) or (n_qp, n_comp)
            :meth:`strain_at_qp` of the modes :math:`\\psi_i`.

        Returns
        -------
        ndarray (n_modes, n_s, n_qp)
            With ``qp_weights`` (summed over ranks),
            :math:`\\int_\\Omega \\sigma_k : \\varepsilon(\\psi_i) \\approx
            \\sum_q w_q g_{ik}(x_q)`, the reduced internal force (Hernandez et al., CMAME 313,
            2017, for the empirical cubature built on these rows).
        """
        S = np.asarray(stresses, dtype=np.float64)
        E = np.asarray(strains, dtype=np.float64)
        S = S[:, :, None] if S.ndim == 2 else S
        E = E[:, :, None] if E.ndim == 2 else E
        if S.ndim != 3 or E.ndim != 3 or S.shape[:2] != E.shape[:2]:
            raise ValueError(
                f"stresses {np.shape(stresses)} and strains {np.shape(strains)} must share "
                "(n_qp, n_comp)"
            )
        return np.einsum("qcs,qci->isq", S, E)

    def constitutive(
        self,
        eps: np.ndarray,
        eps_vp_old: np.ndarray,
        p_old: np.ndarray,
        T: np.ndarray | float,
        dt: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The material law at any set of ``m`` points (local, no communication).

        See :func:`solvers.constitutive.integrate`. Returns ``(sigma (m, n_comp),
        eps_vp (m, n_comp), p (m,), tangent (m, n_comp, n_comp))``.
        """
        res = integrate(self.material, eps, eps_vp_old, p_old, T, dt)
        return res.sigma, res.eps_vp, res.p, res.tangent

    # ------------------------------------------------------------------ time stepping
    def initial_state(self) -> State:
        """Undeformed state at ``initial_time``: :math:`u = 0`, no viscoplastic strain,
        :math:`\\sigma = -\\mathbb C(T) : \\alpha (T - T_{ref}) \\mathbf 1` (collective)."""
        T = self.temperature_at_qp(self.initial_time)
        C = elastic_stiffness(self.material, T, self.n_comp)
        eps_th = self.material.thermal_strain(T)[:, None] * mandel_identity(self.n_comp)
        sigma = -np.einsum("qij,qj->qi", C, eps_th)
        return State(
            t=self.initial_time,
            u=np.zeros(self.n_owned),
            eps_vp=np.zeros((self.n_qp_local, self.n_comp)),
            p=np.zeros(self.n_qp_local),
            sigma=sigma,
        )

    def _check_state(self, state: State, t_next: float) -> None:
        err = None
        shapes = {
            "u": (self.n_owned,),
            "eps_vp": (self.n_qp_local, self.n_comp),
            "p": (self.n_qp_local,),
        }
        for name, shape in shapes.items():
            a = np.asarray(getattr(state, name))
            if a.shape != shape:
                err = f"state.{name} must have shape {shape}, got {a.shape}"
                break
            if not np.all(np.isfinite(a)):
                err = f"state.{name} contains NaN or Inf"
                break
        if err is None and np.any(np.asarray(state.p) < 0):
            err = "state.p must be >= 0"
        if err is None and not (np.isfinite(t_next) and t_next > state.t):
            err = f"t_next={t_next} must be finite and greater than state.t={state.t}"
        check_collective(err, self.comm)

    def _set_loads(self, t: float) -> None:
        ld = self.load
        disp, pres, om = (_as_function(f) for f in (ld.displacement, ld.pressure, ld.omega))
        self._disp.value = 0.0 if disp is None else float(disp(t))
        self._pressure.value = 0.0 if pres is None else float(pres(t))
        self._omega2.value = 0.0 if om is None else float(om(t)) ** 2

    def residual(self, sigma: np.ndarray, t: float) -> tuple[np.ndarray, float]:
        """Equilibrium residual of a stress field: :math:`F_i = \\int_\\Omega \\sigma :
        \\varepsilon(\\phi_i) - f_{ext,i}(t)` on the free dofs, 0 on the Dirichlet ones.

        Parameters
        ----------
        sigma : ndarray (n_qp_local,) + (n_comp,)
            Stress (Mandel) at the local quadrature points.
        t : float
            Time of the external loads.

        Returns
        -------
        (ndarray (n_owned,), float)
            Owned rows of :math:`F` and :math:`\\|F\\|_2` over all dofs with the Dirichlet
            rows kept (the scale of the Newton tolerance in :meth:`step`). Collective.
        """
        sigma = np.asarray(sigma, dtype=np.float64)
        shape = (self.n_qp_local, self.n_comp)
        check_collective(
            None if sigma.shape == shape else f"sigma must have shape {shape}, got {sigma.shape}",
            self.comm,
        )
        self._set_loads(float(t))
        nc = self.n_comp
        self._sig.x.array.reshape(-1, nc)[self._sig_dofs] = sigma
        b = self._b
        with b.localForm() as loc:
            loc.set(0.0)
        dolfinx.fem.petsc.assemble_vector(b, self._F_form)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        ref = float(b.norm())
        dolfinx.fem.petsc.set_bc(b, self._bcs, alpha=0.0)
        return b.array_r[: self.n_owned].copy(), ref

    def _fill_quadrature(self, sigma: np.ndarray, tangent: np.ndarray) -> None:
        nc = self.n_comp
        self._sig.x.array.reshape(-1, nc)[self._sig_dofs] = sigma
        self._tan.x.array.reshape(-1, nc * nc)[self._tan_dofs] = tangent.reshape(-1, nc * nc)

    def step(
        self,
        state: State,
        t_next: float,
        *,
        u_guess: np.ndarray | None = None,
        rtol: float | None = None,
    ) -> tuple[State, StepInfo]:
        """One implicit (backward Euler) step from ``state`` to ``t_next``: global Newton.

        ``state`` may come from anywhere (e.g. a reduced model's reconstruction). ``u_guess``
        (owned rows, optional) is Newton's first iterate for :math:`u(t_{next})`, by default
        ``state.u``; the converged step depends on it only within the Newton tolerance, and a
        close guess (a reduced model's prediction) saves iterations. ``rtol`` replaces the
        model's relative Newton tolerance for this step. Collective; raises ``RuntimeError`` on
        every rank if Newton or the local integration fails.
        """
        t_next = float(t_next)
        self._check_state(state, t_next)
        if rtol is None:
            rtol = self.rtol
        else:  # a collective check only when a tolerance is given
            rtol = float(rtol)
            check_collective(None if rtol >= 0 else f"rtol must be >= 0, got {rtol}", self.comm)
        if u_guess is not None:
            g = np.asarray(u_guess, dtype=np.float64)
            check_collective(
                None
                if g.shape == (self.n_owned,) and np.all(np.isfinite(g))
                else f"u_guess must be finite with shape ({self.n_owned},), got {g.shape}",
                self.comm,
            )
        dt = t_next - state.t
        T = self.temperature_at_qp(t_next)
        self._set_loads(t_next)
        u = self._u
        n = self.n_owned
        u.x.array[:n] = state.u if u_guess is None else g
        u.x.scatter_forward()
        eps_vp_old = np.asarray(state.eps_vp, dtype=np.float64)
        p_old = np.asarray(state.p, dtype=np.float64)
        info = StepInfo(iterations=0)
        b, rhs, A, ksp = self._b, self._rhs, self._A, self._ksp
        res = None
        step_small = False  # the last correction was below stol ||u||
        for it in range(self.max_newton + 1):
            eps = self._u_strain_expr.eval(self.mesh, self._cells).reshape(
                self.n_qp_local, self.n_comp
            )
            res = integrate(self.material, eps, eps_vp_old, p_old, T, dt, raise_on_failure=False)
            bad = int((~res.converged).sum())
            check_collective(
                None if bad == 0 else f"local Norton integration failed at {bad} points",
                self.comm,
                RuntimeError,
            )
            self._fill_quadrature(res.sigma, res.tangent)
            with b.localForm() as loc:
                loc.set(0.0)
            dolfinx.fem.petsc.assemble_vector(b, self._F_form)
            b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            ref = b.norm()
            dolfinx.fem.petsc.set_bc(b, self._bcs, alpha=0.0)  # F on the free dofs
            r = b.norm()
            # distance of u to the Dirichlet values (nonzero before the first update only)
            with rhs.localForm() as loc:
                loc.set(0.0)
            dolfinx.fem.petsc.set_bc(rhs, self._bcs, x0=u.x.petsc_vec, alpha=1.0)
            gap = rhs.norm()
            info.residual_norms.append(float(r))
            info.reference_norm = float(ref)
            if not np.isfinite(r):
                raise RuntimeError(f"Newton residual is not finite at t={t_next} (iteration {it})")
            if gap == 0.0 and (r <= rtol * ref + self.atol or step_small):
                break
            if it == self.max_newton:
                raise RuntimeError(
                    f"global Newton did not converge in {self.max_newton} iterations at "
                    f"t={t_next}: residual norms {info.residual_norms}"
                )
            A.zeroEntries()
            dolfinx.fem.petsc.assemble_matrix(A, self._J_form, bcs=self._bcs)
            A.assemble()
            # J du = -F on the free dofs, du = g - u on the Dirichlet dofs (lifting)
            b.copy(rhs)
            rhs.scale(-1.0)
            if gap > 0.0:
                dolfinx.fem.petsc.apply_lifting(
                    rhs, [self._J_form], bcs=[self._bcs], x0=[u.x.petsc_vec], alpha=1.0
                )
                rhs.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            dolfinx.fem.petsc.set_bc(rhs, self._bcs, x0=u.x.petsc_vec, alpha=1.0)
            ksp.solve(rhs, self._du)
            reason = ksp.getConvergedReason()
            if reason < 0:
                raise RuntimeError(f"PETSc KSP failed with converged reason {reason} at t={t_next}")
            u.x.array[:n] += self._du.array_r
            u.x.scatter_forward()
            step_small = self._du.norm() <= self.stol * u.x.petsc_vec.norm()
            for bc in self._bcs:  # exact Dirichlet values (rounding of u + (g - u))
                bc.set(u.x.array)
            info.iterations += 1
        assert res is not None
        info.n_plastic = int(self.comm.allreduce(int(np.sum(res.p > p_old)), op=MPI.SUM))
        logger.debug(
            "t=%g: %d Newton iterations, residuals %s, %d plastic points",
            t_next,
            info.iterations,
            info.residual_norms,
            info.n_plastic,
        )
        new = State(t=t_next, u=u.x.array[:n].copy(), eps_vp=res.eps_vp, p=res.p, sigma=res.sigma)
        return new, info

    def solve(self, *, times: np.ndarray | None = None) -> Trajectory:
        """Run from :meth:`initial_state` through ``times`` (default ``self.times``). Collective."""
        times = self.times if times is None else self._check_times(times, self.initial_time)
        n_t = times.size
        traj = Trajectory(
            times=times.copy(),
            u=np.empty((self.n_owned, n_t)),
            p=np.empty((self.n_qp_local, n_t)),
            stresses=np.empty((self.n_qp_local, self.n_comp, n_t)),
            eps_vp=np.empty((self.n_qp_local, self.n_comp, n_t)),
            newton_iterations=np.zeros(n_t, dtype=np.int64),
            final_state=self.initial_state(),
        )
        state = traj.final_state
        for k, t in enumerate(times):
            state, info = self.step(state, t)
            traj.u[:, k] = state.u
            traj.p[:, k] = state.p
            traj.stresses[:, :, k] = state.sigma
            traj.eps_vp[:, :, k] = state.eps_vp
            traj.newton_iterations[k] = info.iterations
        traj.final_state = state
        return traj
