"""PETSc-backed linear operators acting on owned-row numpy blocks.

A :class:`PETScOperator` wraps a square PETSc ``Mat`` assembled by dolfinx whose row layout is
the dofs this rank owns (the first ``V.dofmap.index_map.size_local`` dofs, block size 1). Applied
to a block ``X`` of shape ``(n_owned, k)`` it returns the owned rows of :math:`A X`, all
``k`` columns at once (the off-rank rows of ``X`` arrive by one PETSc scatter). This is the callable ``product(X)`` that :func:`rom.parallel.apply_product`
expects (an inner-product matrix such as the FE mass matrix), and it also serves for the
affine stiffness terms :math:`A_q`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from mpi4py import MPI

from rom.parallel import check_collective

__all__ = [
    "PETScOperator",
    "assemble_operator",
    "check_converged",
    "mumps_lu",
    "vertex_keys",
]


class PETScOperator:
    """Owned-row action of a distributed PETSc matrix.

    An AIJ matrix (dolfinx's default) is applied to all columns of a block at once: its owned
    rows are read once (and again whenever the matrix's state changes) into two scipy CSR
    blocks, :math:`A_{own}` on the owned columns and :math:`A_{gh}` on the off-process ones,
    and :math:`AX = A_{own}X_{own} + A_{gh}X_{gh}`, where the rows :math:`X_{gh}` of the
    other ranks arrive by one PETSc ``VecScatter`` of block size :math:`k` (all columns in
    one message). Other matrix types are applied column by column with ``MatMult``. Reading
    the blocks costs about as much as 70 ``MatMult`` calls, paid by the first call after each
    change of the matrix: a matrix changed before every call is applied faster by ``MatMult``.

    Parameters
    ----------
    mat : petsc4py.PETSc.Mat
        Assembled square matrix (``mat.assemble()`` already called), row layout = owned dofs.

    Attributes
    ----------
    petsc : petsc4py.PETSc.Mat
        The wrapped matrix (shared, not copied).
    shape : tuple of int
        Global shape ``(n, n)``.
    local_shape : tuple of int
        Owned rows and columns on this rank.
    """

    #: Column counts whose ghost scatter is kept for reuse.
    _CACHED_WIDTHS = 4

    def __init__(self, mat) -> None:
        self.petsc = mat
        self.shape = tuple(int(n) for n in mat.getSize())
        self.local_shape = tuple(int(n) for n in mat.getLocalSize())
        self._x, self._y = mat.createVecs()
        self._comm = mat.getComm().tompi4py()
        self._aij = mat.getType() in ("seqaij", "mpiaij")
        self._state = None
        self._scatters: dict[int, tuple] = {}

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Return the owned rows of :math:`A X` for ``X`` of shape (n_owned,) or (n_owned, k).

        Collective over the matrix communicator (every rank must call with the same ``k``).
        """
        X = np.asarray(X, dtype=np.float64)
        n = self.local_shape[1]
        err = None
        if X.shape[:1] != (n,) or X.ndim not in (1, 2):
            err = f"expected owned rows of shape ({n},) or ({n}, k), got {X.shape}"
        if self._comm.size > 1:
            ks = self._comm.allgather(X.shape[1:] if err is None else None)
            if err is None and any(k != ks[0] for k in ks):
                err = f"column counts differ over ranks: {ks}"
        check_collective(err, self._comm)
        cols = np.ascontiguousarray(X if X.ndim == 2 else X[:, None])  # n may be 0
        if cols.shape[1] == 0:
            out = np.zeros((self.local_shape[0], 0))
        else:
            out = self._blocked(cols) if self._aij else self._columns(cols)
        return out.reshape((self.local_shape[0],) + X.shape[1:])

    def __matmul__(self, X: np.ndarray) -> np.ndarray:
        return self(X)

    def _columns(self, cols: np.ndarray) -> np.ndarray:
        out = np.empty((self.local_shape[0], cols.shape[1]))
        for j in range(cols.shape[1]):
            self._x.array[:] = cols[:, j]
            self.petsc.mult(self._x, self._y)
            out[:, j] = self._y.array_r
        return out

    def _blocked(self, cols: np.ndarray) -> np.ndarray:
        own, ghost, ghosts = self._local_blocks()
        out = own @ cols
        if self._comm.size > 1:  # collective: every rank scatters, with or without ghosts
            Xg = self._gather(cols, ghosts)
            if ghost.nnz:
                out += ghost @ Xg
        return out

    def _local_blocks(self):
        """:math:`A_{own}`, :math:`A_{gh}` and the global indices of the ghost columns, read
        again when the matrix has changed on any rank (collective)."""
        state = self.petsc.stateGet()
        if self._comm.allreduce(state != self._state, op=MPI.LOR):
            indptr, cols, vals = self.petsc.getValuesCSR()
            c0, c1 = self.petsc.getOwnershipRangeColumn()
            off = (cols < c0) | (cols >= c1)
            ghosts = np.unique(cols[off])
            n_rows, n_cols = self.local_shape
            local = np.where(off, n_cols + np.searchsorted(ghosts, cols), cols - c0)
            A = sp.csr_matrix((vals, local, indptr), shape=(n_rows, n_cols + len(ghosts)))
            self._blocks = (A[:, :n_cols].tocsr(), A[:, n_cols:].tocsr(), ghosts)
            self._drop_scatters(list(self._scatters))
            self._state = state
        return self._blocks

    def _gather(self, cols: np.ndarray, ghosts: np.ndarray) -> np.ndarray:
        """Rows ``ghosts`` (global) of the distributed ``cols``, shape (n_ghosts, k)."""
        from petsc4py import PETSc

        n, k = cols.shape
        pcomm = self.petsc.getComm()
        if k not in self._scatters:
            if len(self._scatters) >= self._CACHED_WIDTHS:
                self._drop_scatters([next(iter(self._scatters))])
            x = PETSc.Vec().createMPI((n * k, PETSc.DECIDE), bsize=k, comm=pcomm)
            g = PETSc.Vec().createSeq(len(ghosts) * k, bsize=k, comm=PETSc.COMM_SELF)
            iset = PETSc.IS().createBlock(k, ghosts.astype(PETSc.IntType), comm=PETSc.COMM_SELF)
            self._scatters[k] = (PETSc.Scatter().create(x, iset, g, None), g)
            x.destroy()
            iset.destroy()
        scatter, g = self._scatters[k]
        xv = PETSc.Vec().createWithArray(
            cols.ravel(), size=(n * k, PETSc.DECIDE), bsize=k, comm=pcomm
        )
        scatter.scatter(xv, g, addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        xv.destroy()
        return g.array_r.reshape(-1, k)

    def _drop_scatters(self, widths: list[int]) -> None:
        """Destroy cached scatters now (collective: every rank drops the same widths), rather
        than leaving them to petsc4py's deferred garbage list."""
        for k in widths:
            for obj in self._scatters.pop(k):
                obj.destroy()

    def __repr__(self) -> str:
        return f"PETScOperator(shape={self.shape}, local_shape={self.local_shape})"


def assemble_operator(a) -> PETScOperator:
    """Assemble a bilinear form (UFL, no Dirichlet rows) into a :class:`PETScOperator`.

    The matrix of ``dolfinx.fem.petsc.assemble_matrix(fem.form(a))`` with its row layout on
    the owned dofs, as the affine terms and products of the full-order models need.
    """
    import dolfinx.fem.petsc
    from dolfinx import fem

    A = dolfinx.fem.petsc.assemble_matrix(fem.form(a))
    A.assemble()
    return PETScOperator(A)


def vertex_keys(V) -> np.ndarray:
    """Mesh input node index of each local (owned, then ghost) node of a degree-1 space.

    Degree-1 Lagrange dofs and degree-1 geometry nodes share the reference-vertex order in
    each cell, so ``keys[dofmap] = input_global_indices[geometry dofmap]``. The input index
    does not depend on the partition: it is the row key of the snapshot store
    (``docs/hdf5-schema.md``). For a blocked space a dof's key is ``node key * bs + comp``.
    """
    geo = V.mesh.geometry
    imap = V.dofmap.index_map
    keys = np.empty(imap.size_local + imap.num_ghosts, dtype=np.int64)
    keys[V.dofmap.list] = np.asarray(geo.input_global_indices)[geo.dofmaps[0]]
    return keys


def mumps_lu(A, comm, *, setup: bool = True):
    """A PETSc ``KSP`` that solves with ``A`` by one MUMPS LU factorization (``preonly``).

    ``setup=False`` defers the factorization (``KSPSetUp``) to the first solve, for a matrix
    whose values are assembled later. The caller destroys the ``KSP``. Collective over
    ``comm``.
    """
    from petsc4py import PETSc

    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType(PETSc.KSP.Type.PREONLY)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.LU)
    pc.setFactorSolverType("mumps")
    if setup:
        ksp.setUp()
    return ksp


def check_converged(ksp, what: str) -> None:
    """Raise ``RuntimeError`` naming ``what`` if the last ``ksp.solve`` diverged.

    The converged reason of a parallel ``KSP`` is the same on every rank, so all ranks raise
    together.
    """
    reason = ksp.getConvergedReason()
    if reason < 0:
        raise RuntimeError(f"{what}: PETSc KSP failed with converged reason {reason}")
