"""A dolfinx-assembled mass matrix applied to a block of columns: our operator against
PETSc's ``MatMult`` column by column, and against scipy on one process.

    .venv/bin/python benchmarks/bench_fe_product.py [--cells 447 --cols 50 --rounds 7]
    .venv/bin/mpirun -n 2 .venv/bin/python benchmarks/bench_fe_product.py

writes ``benchmarks/results/fe_product.json`` (``fe_product_np2.json`` under ``mpirun -n 2``).
``--quick``: a 40 x 40 mesh, 3 rounds (smoke test; the figures mean nothing).

The matrix: :math:`M_{ij} = \\int_\\Omega \\phi_j\\phi_i` of P1 on the unit square, ``cells``
x ``cells`` squares split into two triangles (``create_unit_square``; 448 x 448 vertices,
200,704 dofs by default), assembled by dolfinx (``SpaceRows.mass_product``). The block: ``cols``
columns of this rank's owned rows (standard normal, seeded by rank).

Contenders, every one applying :math:`M` to the same block:

- ``petsc_operator``: :class:`solvers.operators.PETScOperator` (all columns at once: scipy on
  the owned rows, one PETSc scatter of block size ``cols`` for the rows of other ranks);
- ``matmult_columns``: PETSc's ``MatMult`` once per column, each column copied into and out of a
  PETSc vector (what the operator did before);
- ``scipy_serial`` (one process only): ``scipy.sparse.csr_matrix @ X`` on the same matrix,
  the reference for a serial product.

Interleaved rounds with warm-up (``benchmarks/protocol.py``), reference ``matmult_columns``;
every output is checked against ``matmult_columns`` (relative 1e-14). Target: the operator at
least 2x faster than ``matmult_columns`` at 1 and 2 ranks, and within 1.2x of
``scipy_serial`` on one process.
"""

from __future__ import annotations

import argparse

import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
import protocol
import scipy.sparse as sp
from dolfinx import fem
from dolfinx import mesh
from mpi4py import MPI

import rom
from solvers.spaces import SpaceRows


def matmult_columns(op, X: np.ndarray) -> np.ndarray:
    """``MatMult`` column by column through one pair of PETSc vectors."""
    x, y = op.petsc.createVecs()
    out = np.empty_like(X)
    for j in range(X.shape[1]):
        x.array[:] = X[:, j]
        op.petsc.mult(x, y)
        out[:, j] = y.array_r
    return out


def run(args, rounds: int) -> dict:
    comm = MPI.COMM_WORLD
    msh = mesh.create_unit_square(comm, args.cells, args.cells)
    rows = SpaceRows(fem.functionspace(msh, ("Lagrange", 1)))
    op = rows.mass_product()
    X = np.random.default_rng(comm.rank).standard_normal((rows.n_owned, args.cols))
    contenders = {
        "petsc_operator": lambda: op(X),
        "matmult_columns": lambda: matmult_columns(op, X),
    }
    pairs = {"matmult_columns_over_petsc_operator": ("matmult_columns", "petsc_operator")}
    if comm.size == 1:
        indptr, indices, values = op.petsc.getValuesCSR()
        S = sp.csr_matrix((values, indices, indptr), shape=op.shape)
        contenders["scipy_serial"] = lambda: S @ X
        pairs["petsc_operator_over_scipy_serial"] = ("petsc_operator", "scipy_serial")
    record, outs = protocol.run_rounds(
        contenders,
        rounds=rounds,
        reference="matmult_columns",
        warmup=True,
        pairs=pairs,
        comm=comm if comm.size > 1 else None,
    )
    ref = outs["matmult_columns"]
    scale = comm.allreduce(float(np.abs(ref).max()), op=MPI.MAX)
    errors = {
        n: comm.allreduce(float(np.abs(Y - ref).max()), op=MPI.MAX) / scale for n, Y in outs.items()
    }
    speedup = record["pairs"]["matmult_columns_over_petsc_operator"]["median"]
    targets = {"petsc_operator >= 2x faster than matmult_columns": speedup >= 2.0}
    if comm.size == 1:
        ratio = record["pairs"]["petsc_operator_over_scipy_serial"]["median"]
        targets["petsc_operator within 1.2x of scipy_serial"] = ratio <= 1.2
    targets["outputs agree (relative 1e-14)"] = max(errors.values()) <= 1e-14
    return {
        "benchmark": "fe_product",
        "ranks": comm.size,
        "n_dofs": op.shape[0],
        "nnz": int(op.petsc.getInfo()["nz_used"]),  # summed over the ranks by PETSc
        "cols": args.cols,
        "timing": record,
        "max_rel_diff_to_matmult": errors,
        "targets": targets,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=None, help="squares per side (default 447)")
    p.add_argument("--cols", type=int, default=50, help="columns of the block")
    protocol.add_common_arguments(p, rounds=7)
    args = p.parse_args(argv)
    rom.limit_blas_per_rank()
    args.cells = args.cells or (40 if args.quick else 447)
    res = run(args, protocol.rounds_of(args, 7))
    if MPI.COMM_WORLD.rank == 0:
        name = "fe_product.json" if res["ranks"] == 1 else f"fe_product_np{res['ranks']}.json"
        protocol.finish(args, res, name)


if __name__ == "__main__":
    main()
