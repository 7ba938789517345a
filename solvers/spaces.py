"""Any dolfinx Lagrange function space as rows of the snapshot store, and back.

The snapshot store (:class:`rom.io.SnapshotStore`) keys every row with a partition-independent
int64. :func:`dof_keys` builds such keys for the owned dofs of a dolfinx space: Lagrange of any
degree (continuous or discontinuous), blocked (vector and tensor) spaces, and collapsed
sub-spaces of mixed spaces (e.g. the velocity or the pressure of a Taylor-Hood pair).

Keys come from the *input* numbering of the mesh entities that the dofs sit on, never from the
partition. With :math:`e_d` dofs per entity of dimension :math:`d` (per block) and block size
:math:`b`, a dof with component :math:`c` sitting at position :math:`p` on entity :math:`E` of
dimension :math:`d` gets

.. math::

    \\mathrm{key} = \\bigl(o_d + \\iota_d(E)\\, e_d + p\\bigr)\\, b + c, \\qquad
    o_d = \\sum_{d' < d} N_{d'}\\, e_{d'},

where :math:`\\iota_d(E) \\in [0, N_d)` numbers the entities of dimension :math:`d`:

* vertices: the input index of the vertex's geometry node
  (``mesh.geometry.input_global_indices``), :math:`N_0` = one plus the largest input index;
* cells: the input cell index (``mesh.topology.original_cell_index``), :math:`N_{t}` = number
  of cells;
* edges and faces: the rank, in lexicographic order, of the sorted tuple of the input indices
  of their vertices among all such tuples of the mesh (rank 0 sorts them once), :math:`N_d` =
  number of entities.

For P1 spaces this is ``input node * b + c``, the key of :func:`solvers.operators.vertex_keys`
and of existing P1 stores. When an entity carries several dofs (degree 3 and up on edges, 4 and
up on triangular faces, interior dofs), :math:`p` orders them by their affine coordinates in the
frame of the entity's vertices sorted by input index (rounded to :math:`2^{-24}`): a property of
the dof's position on the entity, the same on every partition. The dofs must be point
evaluations (``V.element.interpolation_ident``), which is the case for Lagrange elements.

:class:`SpaceRows` ties a space to its keys: it turns :class:`dolfinx.fem.Function` objects into
owned-row blocks (ghosts excluded, rows in dolfinx's owned order), turns owned-row blocks (store
columns, POD modes) back into Functions (ghosts updated), assembles the mass, :math:`H^1` and
energy inner products as :class:`~solvers.operators.PETScOperator` (the ``product=`` of
:mod:`rom`), and writes modes to ParaView (:class:`dolfinx.io.VTXWriter`).
:func:`create_store`, :func:`open_store` and :func:`append_functions` connect it to the store.
``docs/own-model.md`` walks through a complete example.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dolfinx
import dolfinx_solver  # noqa: F401  (orders MPI before the dolfinx/petsc4py bindings)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from rom.io import SnapshotStore
from rom.parallel import check_collective

from .operators import PETScOperator
from .operators import assemble_operator

__all__ = [
    "SpaceRows",
    "append_functions",
    "create_store",
    "dof_keys",
    "open_store",
]

_ROUND = 2.0**24  # grid of the affine coordinates that order dofs on one entity


def _check_space(V) -> str | None:
    """This rank's verdict on whether ``V`` can be keyed (None when it can)."""
    if len(V.component()) > 0:
        return (
            "a sub-space of a mixed or blocked space has no own dof numbering: "
            "collapse it first (V.sub(i).collapse()[0], or SpaceRows.subspace(W, i))"
        )
    if V.ufl_element().is_mixed:
        return (
            "a mixed space has no single block layout: key each collapsed sub-space "
            "(SpaceRows.subspace(W, i))"
        )
    if not V.element.interpolation_ident:
        return "the dofs must be point evaluations (Lagrange elements)"
    if len(V.mesh.geometry.dofmaps) != 1:
        return "meshes with several cell types are not supported"
    return None


def _vertex_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """Input index and coordinates of each local vertex (owned and ghost).

    The first ``n_vertices`` geometry nodes of a cell are its vertices, in the order of the
    topology's cell-vertex connectivity.
    """
    topo, geo = mesh.topology, mesh.geometry
    tdim = topo.dim
    topo.create_connectivity(tdim, 0)
    imap = topo.index_map(0)
    n_vertices = imap.size_local + imap.num_ghosts
    gdofs = geo.dofmaps[0]
    c2v = topo.connectivity(tdim, 0).array.reshape(gdofs.shape[0], -1)
    nodes = gdofs[:, : c2v.shape[1]]
    vin = np.full(n_vertices, -1, dtype=np.int64)
    vin[c2v] = np.asarray(geo.input_global_indices, dtype=np.int64)[nodes]
    vx = np.zeros((n_vertices, 3))
    vx[c2v] = geo.x[nodes]
    return vin, vx


def _rank_tuples(tuples: np.ndarray, comm: MPI.Comm) -> tuple[np.ndarray, int]:
    """Number the distinct rows of ``tuples`` (over all ranks) in lexicographic order.

    Rank 0 gathers every rank's rows, sorts the union once and sends each rank the numbers of
    its rows; returns ``(numbers, total)``. The numbering depends only on the set of rows.
    """
    gathered = comm.gather(tuples, root=0)
    if comm.rank == 0:
        union = np.concatenate(gathered, axis=0)
        uniq, inverse = np.unique(union, axis=0, return_inverse=True)
        split = np.cumsum([g.shape[0] for g in gathered])[:-1]
        parts = np.split(inverse.reshape(-1).astype(np.int64), split)
        total = int(uniq.shape[0])
    else:
        parts, total = None, None
    return comm.scatter(parts, root=0), comm.bcast(total, root=0)


def _entity_numbers(mesh, d: int, vin: np.ndarray, comm: MPI.Comm) -> tuple[np.ndarray, int]:
    """Partition-independent number of each local entity of dimension ``d``, and their count."""
    topo = mesh.topology
    tdim = topo.dim
    if d == 0:
        return vin, int(comm.allreduce(int(vin.max(initial=-1)) + 1, op=MPI.MAX))
    if d == tdim:
        imap = topo.index_map(tdim)
        return np.asarray(topo.original_cell_index, dtype=np.int64), int(imap.size_global)
    topo.create_connectivity(d, 0)
    imap = topo.index_map(d)
    n = imap.size_local + imap.num_ghosts
    e2v = topo.connectivity(d, 0).array.reshape(n, -1)
    return _rank_tuples(np.sort(vin[e2v], axis=1), comm)


def _positions(points: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Order of the dofs of each entity by their affine coordinates in the entity's frame.

    ``points``: (n, e, 3) dof coordinates, ``frame``: (n, k, 3) entity vertex coordinates
    sorted by input index. Coordinates :math:`\\lambda = A^+ (x - P_0)` with
    :math:`A = [P_1 - P_0, \\dots]` (minimum-norm least squares, so quadrilateral and
    hexahedral entities work too), rounded; returns (n, e) ranks in lexicographic order.
    """
    A = np.swapaxes(frame[:, 1:] - frame[:, :1], 1, 2)  # (n, 3, k - 1)
    lam = np.einsum("nij,nej->nei", np.linalg.pinv(A), points - frame[:, :1])
    q = np.rint(lam * _ROUND).astype(np.int64)  # (n, e, k - 1)
    e = q.shape[1]
    less = np.zeros((q.shape[0], e, e), dtype=bool)  # less[n, i, j]: dof j before dof i
    equal = np.ones_like(less)
    for c in range(q.shape[2]):
        qi, qj = q[:, :, None, c], q[:, None, :, c]
        less |= equal & (qj < qi)
        equal &= qj == qi
    return less.sum(axis=2)


def _block_keys(V, comm: MPI.Comm) -> np.ndarray:
    """Key of every local block (owned and ghost), before the block size is applied."""
    mesh = V.mesh
    tdim = mesh.topology.dim
    layout = V.dofmap.dof_layout
    cell_blocks = V.dofmap.list
    imap = V.dofmap.index_map
    keys = np.full(imap.size_local + imap.num_ghosts, -1, dtype=np.int64)
    vin, vx = _vertex_arrays(mesh)
    coords = None
    offset = 0
    for d in range(tdim + 1):
        n_per_entity = len(layout.entity_dofs(d, 0))
        if n_per_entity == 0:
            continue
        numbers, count = _entity_numbers(mesh, d, vin, comm)
        mesh.topology.create_connectivity(tdim, d)
        c2e = mesh.topology.connectivity(tdim, d).array.reshape(cell_blocks.shape[0], -1)
        if n_per_entity > 1:
            mesh.topology.create_connectivity(d, 0)
            e2v = mesh.topology.connectivity(d, 0).array
            e2v = e2v.reshape(-1, 1) if d == 0 else e2v.reshape(-1, e2v.size // numbers.size)
            order = np.argsort(vin[e2v], axis=1)
            frames = vx[np.take_along_axis(e2v, order, axis=1)]
            coords = V.tabulate_dof_coordinates() if coords is None else coords
        for local in range(c2e.shape[1]):
            blocks = cell_blocks[:, layout.entity_dofs(d, local)]
            entity = c2e[:, local]
            if n_per_entity == 1:
                pos = np.zeros_like(blocks)
            else:
                pos = _positions(coords[blocks], frames[entity])
            keys[blocks] = offset + numbers[entity][:, None] * n_per_entity + pos
        offset += count * n_per_entity
    return keys


def _check_unique(keys: np.ndarray, comm: MPI.Comm) -> None:
    """Every key once over all ranks (rank 0 checks the union; raised on every rank)."""
    gathered = comm.gather(keys, root=0)
    err = None
    if comm.rank == 0:
        union = np.concatenate(gathered)
        if union.size and union.min() < 0:
            err = "some owned dofs sit on no mesh entity of the dof layout"
        elif np.unique(union).size != union.size:
            err = (
                f"dof keys are not unique ({union.size - np.unique(union).size} duplicates): "
                "two dofs share an entity and a position"
            )
    check_collective(err, comm)


def dof_keys(V) -> np.ndarray:
    """Partition-independent int64 keys of the owned dofs of a dolfinx function space.

    Collective over ``V.mesh.comm``. The formula is in the module docstring: from the input
    numbering of the entity each dof sits on, its position there, the block size and the
    component. Uniqueness over all ranks is checked (rank 0 checks the union).

    Parameters
    ----------
    V : dolfinx.fem.FunctionSpace
        Lagrange space (any degree, blocked or not, continuous or discontinuous) on a mesh of
        one cell type; a sub-space of a mixed space must be collapsed first.

    Returns
    -------
    ndarray of shape (V.dofmap.index_map.size_local * V.dofmap.bs,)
        Keys of the owned dofs in dolfinx's owned order: entry ``i * bs + c`` is the key of
        component ``c`` of owned block ``i`` (the layout of ``u.x.array``).

    Raises
    ------
    ValueError
        On every rank: a space that is not point-evaluation, an uncollapsed sub-space, a
        mixed-topology mesh, or keys that collide.
    """
    comm = V.mesh.comm
    check_collective(_check_space(V), comm)
    bs = V.dofmap.bs
    n_owned = V.dofmap.index_map.size_local
    blocks = _block_keys(V, comm)[:n_owned]
    keys = (blocks[:, None] * bs + np.arange(bs, dtype=np.int64)[None, :]).reshape(-1)
    _check_unique(keys, comm)
    return keys


def _as_list(functions: Any) -> list:
    if isinstance(functions, fem.Function):
        return [functions]
    return list(functions)


class SpaceRows:
    """A dolfinx function space seen as owned rows of the snapshot store.

    Parameters
    ----------
    V : dolfinx.fem.FunctionSpace
        The space (collapsed if it comes from a mixed space; see :meth:`subspace`).

    Attributes
    ----------
    V : dolfinx.fem.FunctionSpace
        The space.
    comm : mpi4py communicator
        ``V.mesh.comm``.
    keys : ndarray of shape (n_owned,)
        :func:`dof_keys` of ``V``: the store keys of this rank's rows.
    n_owned : int
        Owned dofs (blocks times block size), the rows this rank contributes.
    parent : dolfinx.fem.FunctionSpace or None
        The mixed space that ``V`` was collapsed from (:meth:`subspace`).
    parent_dofs : ndarray or None
        Local dofs of ``parent`` of the local dofs of ``V`` (owned, then ghosts).
    """

    def __init__(self, V, *, _parent=None, _parent_dofs=None) -> None:
        self.V = V
        self.comm = V.mesh.comm
        self.keys = dof_keys(V)
        self.n_owned = int(self.keys.size)
        self.parent = _parent
        self.parent_dofs = _parent_dofs

    @classmethod
    def subspace(cls, W, i: int) -> SpaceRows:
        """Rows of the collapsed sub-space ``i`` of a mixed space ``W`` (collective).

        :meth:`values` then also accepts Functions on ``W`` (their sub-function ``i`` is
        taken), and :meth:`insert` writes rows back into one.
        """
        V, dofs = W.sub(i).collapse()
        dofs = np.asarray(dofs[0] if isinstance(dofs, (list, tuple)) else dofs, dtype=np.int64)
        return cls(V, _parent=W, _parent_dofs=dofs)

    # ------------------------------------------------------------------ functions <-> rows
    def _owned_values(self, u) -> tuple[np.ndarray | None, str | None]:
        if not isinstance(u, fem.Function):
            return None, f"expected a dolfinx Function, got {type(u).__name__}"
        if u.function_space == self.V:
            return u.x.array[: self.n_owned], None
        if self.parent is not None and u.function_space == self.parent:
            return u.x.array[self.parent_dofs[: self.n_owned]], None
        return None, f"Function {u.name!r} is not on this space (nor on its parent space)"

    def values(self, functions: Any) -> np.ndarray:
        """Owned rows of Functions, shape (n_owned, k), float64 (collective validation).

        Parameters
        ----------
        functions : dolfinx.fem.Function or sequence of them
            On :attr:`V`, or on :attr:`parent` for a sub-space. Ghost entries are left out.
        """
        funcs = _as_list(functions)
        out = np.empty((self.n_owned, len(funcs)))
        err = None
        for j, u in enumerate(funcs):
            col, err = self._owned_values(u)
            if err is not None:
                break
            out[:, j] = col
        check_collective(err, self.comm)
        return out

    def _check_rows(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        err = None
        if X.ndim != 2 or X.shape[0] != self.n_owned:
            err = f"expected owned rows of shape ({self.n_owned}, k), got {X.shape}"
        check_collective(err, self.comm)
        return X

    def functions(self, X: Any, *, name: str = "u") -> list:
        """Functions on :attr:`V` from owned rows (collective: ghosts are scattered).

        Parameters
        ----------
        X : ndarray of shape (n_owned,) or (n_owned, k)
            Owned rows in this space's order (:meth:`read`, modes of :func:`rom.pod` on a
            store opened with :func:`open_store`).
        name : str, keyword-only
            Function name (``name_0``, ``name_1``, ... for several columns).

        Returns
        -------
        list of dolfinx.fem.Function
        """
        X = self._check_rows(X)
        out = []
        for j in range(X.shape[1]):
            u = fem.Function(self.V, name=name if X.shape[1] == 1 else f"{name}_{j}")
            u.x.array[: self.n_owned] = X[:, j]
            u.x.scatter_forward()
            out.append(u)
        return out

    def insert(self, w, x: np.ndarray) -> None:
        """Write one column of owned rows into sub-space ``i`` of a Function ``w`` on
        :attr:`parent` (collective: ghosts of ``w`` are scattered)."""
        err = None
        on_parent = isinstance(w, fem.Function) and w.function_space == self.parent
        if self.parent is None or not on_parent:
            err = "insert needs a Function on the parent space of SpaceRows.subspace"
        check_collective(err, self.comm)
        x = self._check_rows(x)
        if x.shape[1] != 1:
            raise ValueError(f"insert takes one column, got {x.shape[1]}")
        w.x.array[self.parent_dofs[: self.n_owned]] = x[:, 0]
        w.x.scatter_forward()

    def read(self, store: SnapshotStore, field: str | None = None, *, columns=None) -> list:
        """Columns of a store as Functions on :attr:`V` (collective; any rank count).

        The rows are looked up by key, so the store may have been written with any number
        of ranks and any partition of the same mesh input.
        """
        try:
            X, err = store.read(field, keys=self.keys, columns=columns), None
        except ValueError as e:  # StoreError included
            X, err = None, str(e)
        check_collective(err, self.comm)
        return self.functions(X, name=field or "u")

    # ------------------------------------------------------------------ inner products
    def mass_product(self) -> PETScOperator:
        """:math:`M_{ij} = \\int_\\Omega \\phi_j \\cdot \\phi_i` on owned rows (collective).

        :math:`x^T M y = (u_x, u_y)_{L^2(\\Omega)}` for the Functions with coefficients
        :math:`x, y`: POD in this product gives :math:`L^2`-orthonormal modes.
        """
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        return assemble_operator(ufl.inner(u, v) * ufl.dx)

    def h1_product(self) -> PETScOperator:
        """:math:`\\int_\\Omega \\phi_j \\cdot \\phi_i + \\nabla\\phi_j : \\nabla\\phi_i`
        (the :math:`H^1` inner product) on owned rows (collective)."""
        u, v = ufl.TrialFunction(self.V), ufl.TestFunction(self.V)
        return assemble_operator((ufl.inner(u, v) + ufl.inner(ufl.grad(u), ufl.grad(v))) * ufl.dx)

    def energy_product(self, a: Any) -> PETScOperator:
        """The matrix of a symmetric positive (semi-)definite bilinear form on :attr:`V`.

        Parameters
        ----------
        a : ufl.Form or callable
            A bilinear form in a trial and a test function of :attr:`V`, or
            ``a(u, v) -> ufl.Form`` (called with them), e.g. the elastic energy
            :math:`\\int_\\Omega \\sigma(u) : \\varepsilon(v)`. No Dirichlet rows.
        """
        if not isinstance(a, ufl.Form) and callable(a):
            a = a(ufl.TrialFunction(self.V), ufl.TestFunction(self.V))
        spaces = [arg.ufl_function_space() for arg in a.arguments()]
        err = None
        if len(spaces) != 2 or any(s != self.V for s in spaces):
            err = "the energy form must be bilinear with both arguments on this space"
        check_collective(err, self.comm)
        return assemble_operator(a)

    # ------------------------------------------------------------------ ParaView
    def export_vtx(
        self,
        path: str | os.PathLike,
        X: Any,
        *,
        name: str = "mode",
        times: Sequence[float] | np.ndarray | None = None,
        engine: str = "BP4",
    ) -> Path:
        """Write columns (e.g. POD modes) to a VTX file, one time step per column.

        Parameters
        ----------
        path : path-like
            The ``.bp`` directory (ParaView: ADIOS2VTXReader).
        X : ndarray of shape (n_owned, k), or Functions on :attr:`V`
            Owned rows of the columns.
        name : str, keyword-only
            Function name in ParaView.
        times : array_like of shape (k,), optional
            "Time" of each column (``0, 1, ..., k - 1`` by default).
        engine : str, keyword-only
            ADIOS2 engine.

        Returns
        -------
        pathlib.Path
            The ``.bp`` directory.
        """
        X = self.values(X) if not isinstance(X, np.ndarray) else self._check_rows(X)
        k = X.shape[1]
        t = np.arange(k, dtype=np.float64) if times is None else np.asarray(times, float)
        check_collective(
            None if t.shape == (k,) else f"times must have shape ({k},), got {t.shape}",
            self.comm,
        )
        path = Path(path)
        u = fem.Function(self.V, name=name)
        writer = dolfinx.io.VTXWriter(self.comm, path, [u], engine=engine)
        try:
            for j in range(k):
                u.x.array[: self.n_owned] = X[:, j]
                u.x.scatter_forward()
                writer.write(float(t[j]))
        finally:
            writer.close()
        return path

    def __repr__(self) -> str:
        return f"SpaceRows(n_owned={self.n_owned}, bs={self.V.dofmap.bs})"


# ---------------------------------------------------------------------- store helpers
def _space_dict(spaces: SpaceRows | dict[str, SpaceRows]) -> dict[str, SpaceRows]:
    return {"u": spaces} if isinstance(spaces, SpaceRows) else dict(spaces)


def create_store(
    path: str | os.PathLike, spaces: SpaceRows | dict[str, SpaceRows], **kwargs: Any
) -> SnapshotStore:
    """Create a store with one field per space (collective over the spaces' communicator).

    ``spaces``: a :class:`SpaceRows` (one field ``"u"``) or a dict field name to
    :class:`SpaceRows`; ``kwargs`` go to :meth:`rom.io.SnapshotStore.create`
    (``parameter_names``, ``overwrite``, ``attrs``).
    """
    sp = _space_dict(spaces)
    comm = next(iter(sp.values())).comm
    return SnapshotStore.create(path, {f: s.keys for f, s in sp.items()}, comm=comm, **kwargs)


def open_store(
    path: str | os.PathLike, spaces: SpaceRows | dict[str, SpaceRows], mode: str = "r"
) -> SnapshotStore:
    """Open a store with this rank's rows set to the spaces' owned dofs (collective).

    ``store.read(field)`` and :func:`rom.compress` on it then give owned rows in each space's
    order, whatever the rank count that wrote the store.
    """
    sp = _space_dict(spaces)
    comm = next(iter(sp.values())).comm
    return SnapshotStore.open(path, mode, comm=comm, keys={f: s.keys for f, s in sp.items()})


def append_functions(
    store: SnapshotStore,
    spaces: SpaceRows | dict[str, SpaceRows],
    functions: Any,
    **metadata: Any,
) -> None:
    """Append Functions as columns of a store (collective).

    Parameters
    ----------
    store : rom.io.SnapshotStore
        Created by :func:`create_store` (or opened by :func:`open_store` in mode ``"a"``) with
        the same spaces.
    spaces : SpaceRows or dict of str to SpaceRows
        As given to :func:`create_store`.
    functions : Function, sequence of Functions, or dict of field name to them
        One column per Function; a dict when the store has several fields.
    **metadata
        ``parameters``, ``time``, ``sample`` of :meth:`rom.io.SnapshotStore.append`.
    """
    sp = _space_dict(spaces)
    if not isinstance(functions, dict):
        functions = {next(iter(sp)): functions}
    err = None
    if set(functions) != set(sp):
        err = f"functions given for fields {sorted(functions)}, the spaces are {sorted(sp)}"
    check_collective(err, next(iter(sp.values())).comm)
    store.append({f: sp[f].values(functions[f]) for f in sp}, **metadata)
