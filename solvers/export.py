"""ParaView export of snapshot columns (VTX/ADIOS2 or XDMF/HDF5) on a rebuilt dolfinx P1 mesh.

The snapshot store keeps the mesh in input order (``/mesh/points``, ``/mesh/cells``) and each
row of a field under a partition-independent key ``node * block_size + component``
(``docs/hdf5-schema.md``). :func:`export_columns` rebuilds a distributed dolfinx mesh from
those arrays (rank 0 passes them, dolfinx partitions), creates the P1 space (vector-valued
when ``block_size > 1``), asks for the values of the keys of every local dof (owned and
ghost) through a callback, and writes one "time step" per column, so that ParaView's time
slider walks through snapshots, modes or reconstructions.

This is the only place where the ``rom`` command line touches dolfinx; it imports this module
lazily (``rom`` itself never imports dolfinx).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import basix.ufl
import dolfinx
import dolfinx_solver  # noqa: F401  (must come before dolfinx)
import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from .operators import vertex_keys

__all__ = ["FORMATS", "cell_type", "block_size", "export_columns"]

logger = logging.getLogger(__name__)

FORMATS = ("vtx", "xdmf")


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
