"""dolfinx function spaces in the snapshot store (solvers.spaces): keys, round trips, products.

Collective tests (``mpi``, and ``partition`` for 3 ranks). The fields: P2 vector (elasticity),
the velocity (P2 vector) and pressure (P1) of a Taylor-Hood pair (collapsed sub-spaces of the
mixed space), P3 on triangles, P3 on tetrahedra and a P4 2x2-tensor field on quadrilaterals
(several dofs per edge, dofs on faces, several in cell interiors). Run as a script, ``python tests/test_spaces.py OUT`` writes the reference
store at the launching rank count (used by the cross-rank test under ``mpirun -n P``).

dolfinx computes each dof point in one of the cells around it, so the last bit of a dof
coordinate can depend on the partition. The analytic fields are evaluated at points rounded to
1e-12: their values are then bitwise partition-independent, and a bitwise comparison of stores
written at different rank counts tests the row keys alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import basix.ufl
import dolfinx_solver  # noqa: F401  (before dolfinx)
import numpy as np
import pytest
import ufl
from dolfinx import fem
from dolfinx import mesh
from mpi4py import MPI

import rom
from rom.io import SnapshotStore
from solvers.operators import vertex_keys
from solvers.spaces import SpaceRows
from solvers.spaces import append_functions
from solvers.spaces import create_store
from solvers.spaces import dof_keys
from solvers.spaces import open_store

pytestmark = [pytest.mark.fem, pytest.mark.mpi, pytest.mark.partition]

ROOT = Path(__file__).resolve().parents[1]
MPIRUN = str(Path(sys.executable).with_name("mpirun"))
TIMES = (0.0, 0.7, 1.9)  # one snapshot per time: three columns per field


# ---------------------------------------------------------------------- analytic fields
def _r(x):
    return np.round(x, 12)


def displacement(t):
    def f(x):
        x = _r(x)
        return np.stack([np.sin(np.pi * x[0] + t) * x[1], np.cos(x[0] * x[1] + t) - x[0] ** 2])

    return f


def velocity(t):
    def f(x):
        x = _r(x)
        return np.stack([np.exp(x[1] - t) * x[0], np.sin(2 * x[0] + 3 * x[1] + t)])

    return f


def pressure(t):
    return lambda x: np.cos(3 * _r(x)[0] + t) * (1 + _r(x)[1])


def cubic(t):
    return lambda x: np.exp(_r(x)[0] * (1 + t)) * np.sin(2 * _r(x)[1] + 1)


def cubic3d(t):
    return lambda x: np.sin(_r(x)[0] + 2 * _r(x)[1] - t) * np.exp(_r(x)[2])


def tensor(t):
    def f(x):
        x = _r(x)
        return np.stack([x[0] * x[1] + t, np.sin(x[0] - t), np.cos(x[1] * t), x[0] ** 3 - x[1]])

    return f


def _meshes(comm):
    tri = mesh.create_unit_square(comm, 5, 4)
    tet = mesh.create_unit_cube(comm, 2, 2, 1)
    return tri, tet


def _quad_mesh(comm):
    return mesh.create_unit_square(comm, 3, 2, cell_type=mesh.CellType.quadrilateral)


def build(comm):
    """The spaces, keyed (``SpaceRows``), and the mixed space ``W``: dict field -> rows."""
    tri, tet = _meshes(comm)
    cell = tri.basix_cell()
    W = fem.functionspace(
        tri,
        basix.ufl.mixed_element(
            [basix.ufl.element("Lagrange", cell, 2, shape=(2,)), basix.ufl.element("P", cell, 1)]
        ),
    )
    spaces = {
        "displacement": SpaceRows(fem.functionspace(tri, ("Lagrange", 2, (2,)))),
        "velocity": SpaceRows.subspace(W, 0),
        "pressure": SpaceRows.subspace(W, 1),
        "cubic": SpaceRows(fem.functionspace(tri, ("Lagrange", 3))),
        "cubic3d": SpaceRows(fem.functionspace(tet, ("Lagrange", 3))),
        "tensor": SpaceRows(fem.functionspace(_quad_mesh(comm), ("Lagrange", 4, (2, 2)))),
    }
    return spaces, W


EXPRESSIONS = {
    "displacement": displacement,
    "velocity": velocity,
    "pressure": pressure,
    "cubic": cubic,
    "cubic3d": cubic3d,
    "tensor": tensor,
}


def snapshots(spaces, W):
    """Per field, one Function per time; velocity and pressure as Functions on ``W``."""
    out = {}
    for name in ("displacement", "cubic", "cubic3d", "tensor"):
        fs = []
        for t in TIMES:
            u = fem.Function(spaces[name].V)
            u.interpolate(EXPRESSIONS[name](t))
            fs.append(u)
        out[name] = fs
    mixed = []
    for t in TIMES:
        w = fem.Function(W)
        w.sub(0).interpolate(velocity(t))
        w.sub(1).interpolate(pressure(t))
        mixed.append(w)
    out["velocity"] = out["pressure"] = mixed
    return out


def write(path, comm):
    """Create a store of every field at ``comm.size`` ranks, one append per time."""
    spaces, W = build(comm)
    funcs = snapshots(spaces, W)
    with create_store(path, spaces, overwrite=True, parameter_names=("t",)) as store:
        for j, t in enumerate(TIMES):
            append_functions(
                store, spaces, {f: funcs[f][j] for f in spaces}, parameters=[t], time=[t]
            )
    return spaces, W, funcs


def reference(rows, name, t):
    """The field at the dof points of this rank's owned rows, by numpy (no interpolation)."""
    V = rows.V
    bs = V.dofmap.bs
    X = V.tabulate_dof_coordinates()[: rows.n_owned // bs].T
    return np.asarray(EXPRESSIONS[name](t)(X)).reshape(bs, -1).T.reshape(-1)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    comm = MPI.COMM_WORLD
    d = comm.bcast(str(tmp_path_factory.mktemp("spaces")) if comm.rank == 0 else None)
    path = Path(d) / "fields.h5"
    spaces, W, funcs = write(path, comm)
    return path, spaces, W, funcs


# ---------------------------------------------------------------------- keys
def test_p1_keys_are_the_vertex_keys_of_existing_stores(comm):
    tri, _ = _meshes(comm)
    for shape in (None, (2,)):
        V = fem.functionspace(tri, ("Lagrange", 1, shape) if shape else ("Lagrange", 1))
        bs = V.dofmap.bs
        n = V.dofmap.index_map.size_local
        expected = (vertex_keys(V)[:n, None] * bs + np.arange(bs)).reshape(-1)
        np.testing.assert_array_equal(dof_keys(V), expected)


def test_keys_are_dense_unique_and_carry_one_point_each(written, comm):
    """Over all ranks the keys are 0..n-1 once each, n = global dofs (counted by dolfinx)."""
    _, spaces, _, _ = written
    for name, rows in spaces.items():
        V = rows.V
        keys = np.concatenate(comm.allgather(rows.keys))
        n_global = V.dofmap.index_map.size_global * V.dofmap.bs
        np.testing.assert_array_equal(np.sort(keys), np.arange(n_global), err_msg=name)


def test_uncollapsed_mixed_and_non_lagrange_spaces_and_missing_fields_are_refused(written):
    path, spaces, W, funcs = written
    with pytest.raises(ValueError, match="collapse"):
        dof_keys(W.sub(0))
    with pytest.raises(ValueError, match="mixed space"):
        dof_keys(W)
    with open_store(path, spaces, mode="a") as store:
        with pytest.raises(ValueError, match="functions given for fields"):
            append_functions(store, spaces, {"displacement": funcs["displacement"][0]})
        assert store.n_snapshots == len(TIMES)  # nothing was appended
    ned = fem.functionspace(W.mesh, ("N1curl", 1))
    with pytest.raises(ValueError, match="point evaluations"):
        dof_keys(ned)


# ---------------------------------------------------------------------- (a) values
def test_read_back_equals_the_analytic_field(written, comm):
    """Every field, every column, read by key into Functions: bitwise the expression at the
    dof points (evaluated by numpy on this rank's dof coordinates, not by interpolation)."""
    path, spaces, W, funcs = written
    with open_store(path, spaces) as store:
        assert store.n_snapshots == len(TIMES)
        np.testing.assert_array_equal(store.time, TIMES)
        for name, rows in spaces.items():
            back = rows.read(store, name)
            assert len(back) == len(TIMES)
            for j, t in enumerate(TIMES):
                assert back[j].function_space == rows.V
                np.testing.assert_array_equal(
                    back[j].x.array[: rows.n_owned], reference(rows, name, t)
                )
            # ghosts were updated: the whole local array equals the interpolated Function
            for j in range(len(TIMES)):
                if rows.parent is None:
                    np.testing.assert_array_equal(back[j].x.array, funcs[name][j].x.array)
                else:
                    w = funcs[name][j]
                    np.testing.assert_array_equal(back[j].x.array, w.x.array[rows.parent_dofs])


def test_sub_space_rows_go_back_into_the_mixed_function(written):
    path, spaces, W, funcs = written
    w = fem.Function(W)
    with open_store(path, spaces) as store:
        for name in ("velocity", "pressure"):
            spaces[name].insert(w, store.read(name, columns=[1]))
    np.testing.assert_array_equal(w.x.array, funcs["velocity"][1].x.array)


# ---------------------------------------------------------------------- (b) rank counts
def _clean_env():
    """The environment without the launcher's variables, so that an mpirun started from a
    rank of an mpirun job starts a job of its own."""
    drop = ("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPIR_", "OMPI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def test_store_is_bitwise_the_one_written_at_another_rank_count(written, comm):
    """The reference store is written by ``mpirun -n P`` (P = 2 in the serial run, else 1);
    the key-ordered matrices, the keys and the Functions read from it are bitwise ours."""
    path, spaces, _, _ = written
    p = 2 if comm.size == 1 else 1
    other = path.with_name(f"written-at-{p}.h5")
    log = None
    if comm.rank == 0:
        cmd = [MPIRUN, "-n", str(p), sys.executable, __file__, str(other)]
        try:
            res = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, timeout=120)
            log = None if res.returncode == 0 else res.stdout[-2000:] + res.stderr[-2000:]
        except subprocess.TimeoutExpired:
            log = "the writer did not finish within 120 s"
    log = comm.bcast(log)
    assert log is None, log
    with SnapshotStore.open(path, comm=comm) as ours, open_store(other, spaces) as theirs:
        assert theirs.fields == ours.fields
        for name, rows in spaces.items():
            np.testing.assert_array_equal(theirs.keys(name), ours.keys(name))
            a = ours.read(name, rows="all")
            b = theirs.read(name, rows="all")
            assert a.shape == (ours.n_dofs(name), len(TIMES))
            assert np.array_equal(a, b), name  # bitwise
            for fa, fb in zip(rows.read(ours, name), rows.read(theirs, name)):
                assert np.array_equal(fa.x.array, fb.x.array), name


# ---------------------------------------------------------------------- (c) modes
def _l2_inner(u, v, comm):
    return comm.allreduce(fem.assemble_scalar(fem.form(ufl.inner(u, v) * ufl.dx)), op=MPI.SUM)


def test_modes_round_trip_to_functions_and_are_l2_orthonormal(written, comm):
    """POD of the store in the mass product: modes -> Functions -> rows to 1e-14; their
    L2 Gram matrix by assemble_scalar is the identity to 1e-12; as many modes as the rank of
    the snapshot matrix (numpy), and the snapshots are in their span."""
    path, spaces, _, _ = written
    with open_store(path, spaces) as store:
        for name, rows in spaces.items():
            M = rows.mass_product()
            res = rom.compress(store, field=name, product=M, comm=comm)
            assert res.n_modes == np.linalg.matrix_rank(store.read(name, rows="all")), name
            modes = rows.functions(res.modes, name="mode")
            np.testing.assert_allclose(rows.values(modes), res.modes, rtol=0, atol=1e-14)
            G = np.array([[_l2_inner(a, b, comm) for b in modes] for a in modes])
            np.testing.assert_allclose(G, np.eye(len(modes)), rtol=0, atol=1e-12, err_msg=name)
            X = store.read(name)
            U = res.modes
            proj = U @ rom.parallel.inner(U, X, comm, product=M)
            err = rom.parallel.norms(X - proj, comm, product=M)
            assert err.max() <= 1e-10 * rom.parallel.norms(X, comm, product=M).max(), name


# ---------------------------------------------------------------------- (d) products
def test_products_agree_with_assembled_forms(written, comm):
    """x^T M x = ||u||_L2^2, x^T H x = ||u||_H1^2 and x^T K x = a(u, u) (elastic energy)
    against dolfinx.fem.assemble_scalar of the same functionals, relative 1e-12."""
    path, spaces, _, _ = written
    lam, mu = 1.3, 0.8

    def sigma(u):
        eps = ufl.sym(ufl.grad(u))
        return 2 * mu * eps + lam * ufl.tr(eps) * ufl.Identity(len(u))

    with open_store(path, spaces) as store:
        for name, rows in spaces.items():
            u = rows.read(store, name, columns=[2])[0]
            x = rows.values(u)[:, 0]
            forms = {
                rows.mass_product(): ufl.inner(u, u) * ufl.dx,
                rows.h1_product(): (ufl.inner(u, u) + ufl.inner(ufl.grad(u), ufl.grad(u))) * ufl.dx,
            }
            if name == "displacement":
                K = rows.energy_product(
                    lambda a, b: ufl.inner(sigma(a), ufl.sym(ufl.grad(b))) * ufl.dx
                )
                forms[K] = ufl.inner(sigma(u), ufl.sym(ufl.grad(u))) * ufl.dx
            for op, form in forms.items():
                value = comm.allreduce(float(x @ op(x)), op=MPI.SUM)
                exact = comm.allreduce(fem.assemble_scalar(fem.form(form)), op=MPI.SUM)
                assert abs(value - exact) <= 1e-12 * abs(exact), (name, value, exact)


def test_products_apply_all_columns_as_petsc_matmult_does(written, comm):
    """The blocked product (scipy on the owned rows, one scatter for the ghosts) against
    PETSc's own MatMult column by column, for every space: relative 1e-14; after the matrix
    changes (MatScale) the new values are used; zero columns give an empty block."""
    _, spaces, _, _ = written
    rng = np.random.default_rng(comm.rank)
    for name, rows in spaces.items():
        op = rows.h1_product()
        x, y = op.petsc.createVecs()
        for k in (1, 5, 7, 5, 2, 3, 4):  # more widths than the scatter cache holds
            X = rng.standard_normal((rows.n_owned, k))
            Y = op(X)
            ref = np.empty_like(Y)
            for j in range(k):
                x.array[:] = X[:, j]
                op.petsc.mult(x, y)
                ref[:, j] = y.array_r
            scale = comm.allreduce(float(np.abs(ref).max()), op=MPI.MAX)
            assert np.abs(Y - ref).max() <= 1e-14 * scale, (name, k)
        op.petsc.scale(2.0)
        assert np.abs(op(X) - 2 * ref).max() <= 2e-14 * scale, name
        assert op(np.zeros((rows.n_owned, 0))).shape == (rows.n_owned, 0)


def test_product_with_a_rank_that_owns_no_rows(comm):
    """A tridiagonal AIJ matrix whose second rank owns no rows (5 / 0 / 7 rows): the same as
    PETSc's MatMult column by column, for a block and a vector, on every rank (no hang)."""
    from petsc4py import PETSc

    from solvers.operators import PETScOperator

    n_local = [5, 0, 7][comm.rank % 3]
    A = PETSc.Mat().createAIJ(((n_local, None), (n_local, None)), nnz=3, comm=comm)
    n = A.getSize()[0]
    r0, r1 = A.getOwnershipRange()
    for i in range(r0, r1):
        for j in (i - 1, i, i + 1):
            if 0 <= j < n:
                A.setValue(i, j, 2.0 if i == j else -1.0 + 0.1 * i)
    A.assemble()
    op = PETScOperator(A)
    X = np.random.default_rng(comm.rank).standard_normal((n_local, 3))
    x, y = A.createVecs()
    ref = np.empty_like(X)
    for j in range(3):
        x.array[:] = X[:, j]
        A.mult(x, y)
        ref[:, j] = y.array_r
    assert np.abs(op(X) - ref).max(initial=0.0) <= 1e-14
    assert np.abs(op(X[:, 1]) - ref[:, 1]).max(initial=0.0) <= 1e-14


def test_energy_product_refuses_a_form_on_another_space(written):
    _, spaces, _, _ = written
    V, Q = spaces["velocity"].V, spaces["pressure"].V
    with pytest.raises(ValueError, match="bilinear"):
        spaces["velocity"].energy_product(
            ufl.inner(ufl.TrialFunction(Q), ufl.TestFunction(Q)) * ufl.dx
        )
    with pytest.raises(ValueError, match="not on this space"):
        spaces["displacement"].values(fem.Function(V))


def test_vtx_export_of_modes(written, comm):
    path, spaces, _, _ = written
    rows = spaces["displacement"]
    with open_store(path, spaces) as store:
        X = store.read("displacement")
    out = rows.export_vtx(path.with_name("modes.bp"), X, name="u", times=[0.0, 1.0, 2.0])
    comm.Barrier()
    assert out.is_dir() and any(f.stat().st_size > 0 for f in out.iterdir())


# ---------------------------------------------------------------------- the docs page
def test_own_model_page_runs(tmp_path, comm, monkeypatch):
    """docs/own-model.md: its python blocks, run in order as one script, at this rank count."""
    text = (ROOT / "docs" / "own-model.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    assert "append_functions" in code and "compress" in code and "export_vtx" in code
    d = comm.bcast(str(tmp_path) if comm.rank == 0 else None)
    monkeypatch.chdir(d)
    ns: dict = {}
    exec(compile(code, "docs/own-model.md", "exec"), ns)
    # the page's own checks ran; the mode files are there
    assert ns["result"].n_modes >= 1
    assert Path(d, "modes.bp").is_dir()


if __name__ == "__main__":
    write(Path(sys.argv[1]), MPI.COMM_WORLD)
