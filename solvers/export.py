"""ParaView export of snapshot columns (VTX/ADIOS2 or XDMF/HDF5) on a rebuilt dolfinx P1 mesh,
and the ``rom export`` sub-command.

The snapshot store keeps the mesh in input order (``/mesh/points``, ``/mesh/cells``) and each
row of a field under a partition-independent key ``node * block_size + component``
(``docs/hdf5-schema.md``). :func:`export_columns` rebuilds a distributed dolfinx mesh from
those arrays (rank 0 passes them, dolfinx partitions), creates the P1 space (vector-valued
when ``block_size > 1``), asks for the values of the keys of every local dof (owned and
ghost) through a callback, and writes one "time step" per column, so that ParaView's time
slider walks through snapshots, modes or reconstructions.

:func:`add_command` is the entry point ``export`` of the group ``rom.commands`` (declared in
``pyproject.toml``) through which :mod:`rom.cli` finds the sub-command; ``rom`` itself never
imports :mod:`solvers` or dolfinx. This module imports dolfinx only when it exports, so that
listing the commands stays cheap and a missing dolfinx is reported in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.cli import CLIError
from rom.cli import atomic_output
from rom.cli import check_not_input
from rom.cli import echo
from rom.cli import field_arg
from rom.cli import open_field
from rom.cli import parse_columns
from rom.cli import positive_int
from rom.cli import store_parser
from rom.io import SnapshotStore
from rom.io import StoreError
from rom.parallel import allreduce_sum
from rom.parallel import check_collective
from rom.parallel import row_range

from .operators import vertex_keys

__all__ = ["FORMATS", "cell_type", "block_size", "export_columns", "add_command"]

logger = logging.getLogger(__name__)

FORMATS = ("vtx", "xdmf")


def _fem_modules() -> tuple[Any, Any, Any]:
    """``(basix, dolfinx, ufl)`` with ``basix.ufl``, ``dolfinx.fem``, ``dolfinx.io`` and
    ``dolfinx.mesh`` loaded; ``dolfinx_solver`` is imported first (it orders MPI ahead of
    the compiled bindings). Raises ``ImportError`` without dolfinx."""
    importlib.import_module("dolfinx_solver")
    import basix.ufl
    import dolfinx.fem
    import dolfinx.io
    import dolfinx.mesh
    import ufl

    return basix, dolfinx, ufl


def cell_type(gdim: int, n_vertices: int) -> str:
    """The basix cell name of a P1 mesh with ``n_vertices`` per cell in dimension ``gdim``.

    Vertices are expected in basix/dolfinx reference order (for quadrilaterals and
    hexahedra: tensor-product order, not VTK's counter-clockwise order).
    """
    table = {2: "interval", 3: "triangle", 8: "hexahedron"}
    if n_vertices == 4:
        return "tetrahedron" if gdim == 3 else "quadrilateral"
    if n_vertices in table and not (n_vertices == 8 and gdim != 3):
        return table[n_vertices]
    raise ValueError(f"unsupported cells: {n_vertices} vertices per cell in dimension {gdim}")


def block_size(n_points: int, keys: np.ndarray) -> int:
    """Components per node, from the number of field rows and mesh nodes.

    The field must have one row per node and component, keyed ``node * bs + component``.
    """
    n_dofs = int(np.asarray(keys).size)
    if n_points <= 0 or n_dofs % n_points:
        raise ValueError(
            f"the field has {n_dofs} rows, not a multiple of the {n_points} mesh nodes: "
            "it is not a P1 field on this mesh"
        )
    bs = n_dofs // n_points
    k = np.asarray(keys)
    if k.size and (k.min() < 0 or k.max() >= n_points * bs):
        raise ValueError(
            f"field keys range over [{k.min()}, {k.max()}], expected node * {bs} + component "
            f"< {n_points * bs}"
        )
    return bs


def export_columns(
    out: str | Path,
    points: np.ndarray,
    cells: np.ndarray,
    values_for_keys: Callable[[np.ndarray], np.ndarray],
    *,
    n_columns: int,
    block_size: int = 1,
    name: str = "u",
    times: Sequence[float] | np.ndarray | None = None,
    fmt: str = "vtx",
    comm: MPI.Comm | None = None,
) -> list[Path]:
    """Write columns of a P1 field to a ParaView file, one time step per column (collective).

    Parameters
    ----------
    out : path-like
        Output directory (created).
    points : ndarray of shape (n_nodes, gdim)
        Mesh nodes in input order (rank 0's arrays are used; other ranks may pass anything).
    cells : ndarray of shape (n_cells, n_vertices) of int
        Cell connectivity into ``points``.
    values_for_keys : callable
        ``values_for_keys(keys)`` returns the rows of those keys, shape
        ``(len(keys), n_columns)``; called once on every rank with the keys of its local dofs
        (owned and ghosts), e.g. ``lambda k: store.read(field, keys=k, columns=cols)``.
    n_columns : int, keyword-only
        Number of columns (time steps written).
    block_size : int, keyword-only
        Components per node (1: scalar field; 2 or 3: vector field).
    name : str, keyword-only
        Function name shown in ParaView; also the file stem.
    times : array_like of shape (n_columns,), optional
        Time value of each column (default ``0, 1, ..., n_columns - 1``).
    fmt : {"vtx", "xdmf"}, keyword-only
        ``"vtx"``: ``<out>/<name>.bp`` (ADIOS2, read by ParaView's ADIOS2VTXReader);
        ``"xdmf"``: ``<out>/<name>.xdmf`` with its ``.h5``.
    comm : mpi4py communicator, optional
        ``MPI.COMM_WORLD`` when ``None``.

    Returns
    -------
    list of pathlib.Path
        The files (or the ``.bp`` directory) written.
    """
    comm = MPI.COMM_WORLD if comm is None else comm
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    t = np.arange(n_columns, dtype=np.float64) if times is None else np.asarray(times, float)
    if t.shape != (n_columns,):
        raise ValueError(f"times must have shape ({n_columns},), got {t.shape}")
    out = Path(out)
    basix, dolfinx, ufl = _fem_modules()
    fem = dolfinx.fem

    if comm.rank == 0:
        pts = np.ascontiguousarray(points, dtype=np.float64)
        cls = np.ascontiguousarray(cells, dtype=np.int64)
        shape = (pts.shape[1], cls.shape[1])
    else:
        shape = None
    gdim, nv = comm.bcast(shape, root=0)
    if comm.rank != 0:
        pts, cls = np.empty((0, gdim)), np.empty((0, nv), dtype=np.int64)
    cell = cell_type(gdim, nv)
    domain = ufl.Mesh(basix.ufl.element("Lagrange", cell, 1, shape=(gdim,)))
    mesh = dolfinx.mesh.create_mesh(comm, cls, domain, pts)

    bs = int(block_size)
    V = fem.functionspace(mesh, ("Lagrange", 1, (bs,)) if bs > 1 else ("Lagrange", 1))
    keys = (vertex_keys(V)[:, None] * bs + np.arange(bs)[None, :]).reshape(-1)
    values = np.asarray(values_for_keys(keys), dtype=np.float64).reshape(keys.size, n_columns)

    u = fem.Function(V, name=name)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    if fmt == "vtx":
        path = out / f"{name}.bp"
        writer = dolfinx.io.VTXWriter(comm, path, [u], engine="BP4")
        try:
            for j in range(n_columns):
                u.x.array[:] = values[:, j]
                writer.write(float(t[j]))
        finally:
            writer.close()
        files = [path]
    else:
        path = out / f"{name}.xdmf"
        with dolfinx.io.XDMFFile(comm, path, "w") as f:
            f.write_mesh(mesh)
            for j in range(n_columns):
                u.x.array[:] = values[:, j]
                f.write_function(u, float(t[j]))
        files = [path, path.with_suffix(".h5")]
    logger.info("wrote %d column(s) of %r to %s", n_columns, name, path)
    return files


# ---------------------------------------------------------------------------- rom export
def _reconstruction(
    st: SnapshotStore,
    field: str,
    cols: np.ndarray,
    mst: SnapshotStore,
    n_modes: int | None,
    comm: MPI.Comm,
) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of :math:`V C` with :math:`C = \\arg\\min_C \\|VC - X\\|_F` (Euclidean least
    squares in the span of the first ``n_modes`` modes; collective)."""
    mfield = field if field in mst.fields else field_arg(mst, None)
    n = mst.n_snapshots if n_modes is None else int(n_modes)
    if not 1 <= n <= mst.n_snapshots:
        raise CLIError(f"--n-modes must be in [1, {mst.n_snapshots}], got {n}")
    keys = st.keys(field)
    start, stop = row_range(keys.size, comm)
    err, V = None, None
    try:
        V = mst.read(mfield, keys=keys[start:stop], columns=slice(0, n))
    except StoreError as e:
        err = f"{mst.path}: the modes do not have the rows of {st.path} field {field!r}: {e}"
    check_collective(err, comm, StoreError)
    X = st.read(field, columns=cols)
    G = allreduce_sum(V.T @ V, comm)
    B = allreduce_sum(V.T @ X, comm)
    C = np.linalg.lstsq(G, B, rcond=None)[0]

    def values(k: np.ndarray) -> np.ndarray:
        return mst.read(mfield, keys=k, columns=slice(0, n)) @ C

    return values


def _mesh_of(st: SnapshotStore, other: Path | None, comm: MPI.Comm) -> tuple:
    """The mesh of the store, or of the store ``--mesh`` names."""
    mesh = st.read_mesh()
    if other is not None:
        with SnapshotStore.open(other, comm=comm) as ms:
            mesh = ms.read_mesh()
            if mesh is None:
                raise CLIError(f"{other}: the store has no mesh")
    if mesh is None:
        raise CLIError(
            f"{st.path}: the store has no mesh (/mesh/points, /mesh/cells); pass --mesh OTHER.h5"
        )
    return mesh


def _run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    try:
        _fem_modules()
    except ImportError as e:
        raise CLIError(
            f"rom export needs dolfinx (install the fem extra: pip install -e '.[fem]'): {e}"
        ) from None
    out = Path(args.out)
    check_not_input(out, [args.store, args.basis, args.mesh])
    with open_field(args.store, args.field, comm) as (st, field):
        cols = parse_columns(args.columns, st.n_snapshots)
        points, cells = _mesh_of(st, args.mesh, comm)
        bs = block_size(points.shape[0], st.keys(field))
        name = args.name or field
        with contextlib.ExitStack() as stack:
            if args.basis is None:

                def values(k: np.ndarray) -> np.ndarray:
                    return st.read(field, keys=k, columns=cols)
            else:
                mst = stack.enter_context(SnapshotStore.open(args.basis, comm=comm))
                values = _reconstruction(st, field, cols, mst, args.n_modes, comm)
                name = args.name or f"{field}_reconstruction"
            if comm.rank == 0:
                out.parent.mkdir(parents=True, exist_ok=True)
            comm.Barrier()
            with atomic_output(out, comm, kind="dir") as tmp:  # nothing half-written in out
                files = export_columns(
                    tmp,
                    points,
                    cells,
                    values,
                    n_columns=cols.size,
                    block_size=bs,
                    name=name,
                    times=cols.astype(float),
                    fmt=args.format,
                    comm=comm,
                )
    files = [out / f.relative_to(tmp) for f in files]
    echo(
        comm,
        f"exported {cols.size} column(s) of {field!r} as {name!r} to "
        + ", ".join(str(f) for f in files),
    )
    return 0


def add_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``rom export`` to the sub-command parsers ``sub`` (entry point ``export`` of the
    group ``rom.commands``)."""
    s = store_parser(
        sub, "export", parents, "write columns (snapshots, modes, reconstructions) for ParaView"
    )
    s.add_argument(
        "--columns",
        nargs="+",
        metavar="SPEC",
        help="column indices or start:stop[:step] slices (default: all)",
    )
    s.add_argument(
        "--basis",
        type=Path,
        help="modes store: export the least-squares reconstructions in its span",
    )
    s.add_argument("--n-modes", type=positive_int, help="use the first N modes of --basis")
    s.add_argument("--mesh", type=Path, help="take the mesh from this store instead")
    s.add_argument("--name", help="function name in ParaView (default: the field name)")
    s.add_argument("--out", type=Path, required=True, help="output directory")
    s.add_argument("--format", choices=FORMATS, default="vtx")
    s.set_defaults(func=_run)
