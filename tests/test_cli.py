"""The ``rom`` command line on small stores built here, checked against numpy/LAPACK.

Subcommands run in-process through :func:`rom.cli.main` (collective under ``mpirun``: every
rank calls it) and, for the entry points and the error messages, as real subprocesses.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rom.cli import main
from rom.cli import parse_columns
from rom.io import SnapshotStore
from rom.parallel import distribute_rows

ROOT = Path(__file__).resolve().parents[1]
N_SIDE = 8  # (N_SIDE + 1)^2 mesh nodes


def _grid(n: int = N_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Unit square, (n+1)^2 nodes, 2 n^2 counter-clockwise triangles."""
    xs = np.linspace(0.0, 1.0, n + 1)
    X, Y = np.meshgrid(xs, xs, indexing="xy")
    pts = np.c_[X.ravel(), Y.ravel()]
    j, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (j * (n + 1) + i).ravel()
    b, c, d = a + 1, a + n + 2, a + n + 1
    cells = np.concatenate([np.c_[a, b, c], np.c_[a, c, d]]).astype(np.int64)
    return pts, cells


def _field(pts: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Analytic snapshot: two families (mu[2] = 0 or 1) that differ in shape."""
    x, y = pts[:, 0], pts[:, 1]
    if mu[2] < 0.5:
        return np.sin(mu[0] * x) * np.cos(mu[1] * y)
    return np.exp(-mu[0] * (x - 0.7) ** 2 - mu[1] * (y - 0.3) ** 2) * (1.0 + x * y)


def _params(rng: np.random.Generator, m: int = 12) -> np.ndarray:
    mus = np.c_[rng.uniform(1.0, 3.0, size=(m, 2)), np.zeros(m)]
    mus[m // 2 :, 2] = 1.0
    return mus


def _make_store(path: Path, comm, rng, *, mesh: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A store of field ``u`` (keys = node indices, shuffled row order per rank), two segments.

    Returns the global snapshot matrix (rows in key order) and the parameters.
    """
    pts, cells = _grid()
    mus = _params(rng)
    X = np.stack([_field(pts, mu) for mu in mus], axis=1)
    perm = rng.permutation(pts.shape[0])  # partition-independent keys in any local order
    keys = distribute_rows(perm, comm)
    st = SnapshotStore.create(
        path,
        {"u": keys},
        parameter_names=("a", "b", "family"),
        comm=comm,
        attrs={"case": "cli-test"},
    )
    st.append(
        {"u": X[keys, :5]},
        parameters=mus[:5],
        time=np.arange(5.0),
        sample=np.zeros(5, dtype=np.int64),
    )
    st.append(
        {"u": X[keys, 5:]},
        parameters=mus[5:],
        time=np.arange(7.0),
        sample=np.ones(7, dtype=np.int64),
    )
    if mesh:
        st.write_mesh(pts, cells)
    st.close()
    return X, mus


@pytest.fixture
def store(shared_tmp_path, comm, rng):
    path = shared_tmp_path / "snap.h5"
    X, mus = _make_store(path, comm, rng)
    return path, X, mus


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "rom.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------- info
def test_info_json_reports_the_stored_numbers(store, capsys):
    path, X, mus = store
    assert main(["info", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n_snapshots"] == 12
    assert d["fields"] == {"u": {"n_dofs": X.shape[0], "shape": [X.shape[0], 12]}}
    for i, name in enumerate(("a", "b", "family")):
        assert d["parameters"][name] == {"min": mus[:, i].min(), "max": mus[:, i].max()}
    assert d["samples"] == {"n_samples": 2, "ids": [0, 1], "unassigned": 0}
    assert d["time"] == {"min": 0.0, "max": 6.0}
    assert d["segments"] == {"count": 2, "n_columns": [5, 7]}
    assert d["schema_version"] == 1 and d["format"] == "rom-snapshot-store"
    pts, cells = _grid()
    assert d["mesh"] == {
        "n_points": pts.shape[0],
        "n_cells": cells.shape[0],
        "gdim": 2,
        "vertices_per_cell": 3,
    }
    assert d["attrs"] == {"case": "cli-test"}
    on_disk = path.stat().st_size + sum(
        f.stat().st_size for f in Path(str(path) + ".d").rglob("*") if f.is_file()
    )
    assert d["size_bytes"] == on_disk


def test_info_text_names_shapes_parameters_and_segments(store, capsys):
    path, X, mus = store
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"({X.shape[0]}, 12)" in out
    assert f"[{mus[:, 0].min():.6g}, {mus[:, 0].max():.6g}]" in out
    assert "segments        2 (5..7 columns each)" in out
    assert "schema version 1" in out


# ---------------------------------------------------------------------------- compress
@pytest.mark.mpi
@pytest.mark.parametrize(
    "method, opts",
    [
        ("batch", ["--rank", "6"]),
        ("hapod", ["--eps", "1e-9", "--chunk", "4"]),
        ("incremental", ["--rtol", "1e-6", "--chunk", "5"]),
    ],
)
def test_compress_singular_values_match_lapack(store, comm, capsys, method, opts):
    path, X, _ = store
    out = path.parent / f"modes-{method}.h5"
    rc = main(
        [
            "compress",
            str(path),
            "--field",
            "u",
            "--method",
            method,
            *opts,
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    s_ref = np.linalg.svd(X, compute_uv=False)
    with SnapshotStore.open(out) as ms:
        sv = ms.parameters[:, 0]
        U = ms.read("u", rows="all")
        assert ms.parameter_names == ("singular_value",)
        assert np.array_equal(ms.keys("u"), np.arange(X.shape[0]))
        assert ms.read_mesh() is not None
    n = sv.size
    assert n >= 5
    if method == "batch":
        assert n == 6
    # every kept value matches LAPACK; the kept modes are orthonormal and span the data's
    # dominant subspace (projection error = the LAPACK tail, within the method's tolerance)
    np.testing.assert_allclose(sv, s_ref[:n], rtol=1e-7, atol=1e-9 * s_ref[0])
    np.testing.assert_allclose(U.T @ U, np.eye(n), atol=1e-10)
    tail = np.sqrt(np.sum(s_ref[n:] ** 2))
    err = np.linalg.norm(X - U @ (U.T @ X))
    assert err <= tail + 1e-7 * s_ref[0]
    if comm.rank == 0:
        summary = json.loads(capsys.readouterr().out)
        assert summary["n_modes"] == n and summary["ranks"] == comm.size
        np.testing.assert_allclose(summary["singular_values"], sv, rtol=1e-14)


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["batch", "hapod", "incremental"])
def test_compress_says_when_a_tolerance_is_below_the_floor(
    shared_tmp_path, comm, rng, capsys, method
):
    """Singular values 1 ... 1e-20: ``--rel-l2-err 1e-15`` cannot be certified (one warning
    line, ``tolerance_met`` false, the bound still above the true error); 1e-6 can."""
    U, _ = np.linalg.qr(rng.standard_normal((300, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    A = (U * np.logspace(0, -20, 40)) @ V.T
    path = shared_tmp_path / "floor.h5"
    keys = distribute_rows(np.arange(300), comm)
    with SnapshotStore.create(path, {"u": keys}, comm=comm) as st:
        st.append({"u": A[keys]})
    for tol, met in (("1e-15", False), ("1e-6", True)):
        out = shared_tmp_path / f"modes-{tol}.h5"
        args = ["compress", str(path), "--method", method, "--rel-l2-err", tol, "--chunk", "16"]
        assert main([*args, "--out", str(out), "--json", "--no-progress"]) == 0
        cap = capsys.readouterr()
        if comm.rank == 0:
            summary = json.loads(cap.out)
            assert summary["tolerance_met"] is met
            rel = summary["relative_error_bound"]
            assert (rel > 1e-15) if not met else (rel <= 1e-6)
            lines = cap.err.splitlines()
            if met:
                assert lines == []
            else:
                assert len(lines) == 1 and lines[0].startswith("rom: warning: ")
                assert "below what it can certify" in lines[0]
        else:
            assert cap.err == ""
        with SnapshotStore.open(out, comm=comm) as ms:
            Phi = ms.read("u", rows="all")
        err = np.linalg.norm(A - Phi @ (Phi.T @ A)) / np.linalg.norm(A)  # numpy, independent
        assert err <= comm.bcast(rel if comm.rank == 0 else None) * (1 + 1e-6) + 1e-14


def test_compress_refuses_to_overwrite_without_flag(store, capsys):
    path, _, _ = store
    out = path.parent / "m.h5"
    assert main(["compress", str(path), "--rank", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compress", str(path), "--rank", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists (pass --overwrite" in err
    assert main(["compress", str(path), "--rank", "3", "--out", str(out), "--overwrite"]) == 0
    with SnapshotStore.open(out) as ms:
        assert ms.n_snapshots == 3


# ---------------------------------------------------------------------------- cluster
@pytest.mark.mpi
@pytest.mark.parametrize("objective", ["sum", "max"])
def test_cluster_labels_are_nearest_medoids_in_sine_dissimilarity(store, comm, objective):
    path, X, mus = store
    out = path.parent / f"labels-{objective}.json"
    assert (
        main(
            ["cluster", str(path), "--n-clusters", "2", "--objective", objective, "--out", str(out)]
        )
        == 0
    )
    d = json.loads(out.read_text())
    labels, med = np.array(d["labels"]), np.array(d["medoids"])
    # independent reference: sine dissimilarity from normalized columns (numpy)
    Xn = X / np.linalg.norm(X, axis=0)
    D = np.sqrt(np.clip(1.0 - (Xn.T @ Xn) ** 2, 0.0, 1.0))
    np.testing.assert_array_equal(labels, np.argmin(D[:, med], axis=1))
    assert labels.shape == (12,) and sorted(set(labels.tolist())) == [0, 1]
    # the two analytic families are separated
    fam = mus[:, 2].astype(int)
    assert len(set(labels[fam == 0])) == 1 and len(set(labels[fam == 1])) == 1
    assert labels[fam == 0][0] != labels[fam == 1][0]
    widths = [D[labels == k, med[k]].max() for k in range(2)]
    np.testing.assert_allclose(d["cluster_widths"], widths, atol=1e-10)
    np.testing.assert_allclose(d["parameters"], mus)


# ---------------------------------------------------------------------------- export
def _xdmf_values(h5path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with h5py.File(h5path, "r") as f:
        geo = f["Mesh/mesh/geometry"][...]
        name = next(iter(f["Function"]))
        steps = {k: f[f"Function/{name}/{k}"][...].reshape(-1) for k in f[f"Function/{name}"]}
    return geo, steps


@pytest.mark.fem
@pytest.mark.mpi
def test_export_xdmf_writes_the_columns_at_the_right_nodes(store, capsys):
    path, X, mus = store
    out = path.parent / "paraview"
    assert (
        main(
            [
                "export",
                str(path),
                "--field",
                "u",
                "--columns",
                "0",
                "7:9",
                "--out",
                str(out),
                "--format",
                "xdmf",
            ]
        )
        == 0
    )
    assert (out / "u.xdmf").is_file()
    geo, steps = _xdmf_values(out / "u.h5")
    assert sorted(steps, key=float) == ["0", "7", "8"]
    for j in (0, 7, 8):  # the analytic field at the exported node coordinates
        np.testing.assert_allclose(steps[str(j)], _field(geo, mus[j]), atol=1e-12)


@pytest.mark.fem
@pytest.mark.mpi
def test_export_reconstruction_in_the_full_basis_is_the_snapshot(store, capsys):
    path, X, mus = store
    modes = path.parent / "modes-full.h5"
    assert main(["compress", str(path), "--out", str(modes)]) == 0
    out = path.parent / "rec"
    export = ["export", str(path), "--columns", "3", "--basis", str(modes), "--out", str(out)]
    assert main([*export, "--format", "xdmf"]) == 0
    geo, steps = _xdmf_values(out / "u_reconstruction.h5")
    np.testing.assert_allclose(steps["3"], _field(geo, mus[3]), atol=1e-8)
    # with one mode: the least-squares fit c = v^T x (v a unit vector) at every node
    assert main([*export, "--n-modes", "1", "--format", "xdmf"]) == 0
    geo, steps = _xdmf_values(out / "u_reconstruction.h5")
    U = np.linalg.svd(X, full_matrices=False)[0][:, :1]
    rec = U @ (U.T @ X[:, 3])
    node = np.array([np.argmin(np.linalg.norm(_grid()[0] - g[:2], axis=1)) for g in geo])
    np.testing.assert_allclose(steps["3"], rec[node], atol=1e-10)


@pytest.mark.fem
def test_export_vtx_writes_a_bp_directory(store, capsys):
    path, _, _ = store
    out = path.parent / "vtx"
    assert main(["export", str(path), "--columns", "0:2", "--out", str(out)]) == 0
    bp = out / "u.bp"
    assert bp.is_dir() and any(p.stat().st_size > 0 for p in bp.iterdir())


@pytest.mark.mpi
def test_export_without_mesh_is_one_line_error_on_every_rank(shared_tmp_path, comm, rng, capsys):
    path = shared_tmp_path / "nomesh.h5"
    _make_store(path, comm, rng, mesh=False)
    assert main(["export", str(path), "--out", str(shared_tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert err.count("\n") == 1 and "has no mesh" in err
    else:  # the error is raised on every rank, printed by rank 0 only
        assert err == ""


# ---------------------------------------------------------------------------- plot
def test_plot_kinds_write_pngs(store, capsys):
    path, X, _ = store
    tmp = path.parent
    modes = tmp / "modes.h5"
    assert main(["compress", str(path), "--rank", "4", "--out", str(modes)]) == 0
    assert main(["cluster", str(path), "--n-clusters", "3", "--out", str(tmp / "l.json")]) == 0
    summary = {
        "results": {
            "singular_values": np.linalg.svd(X, compute_uv=False).tolist(),
            "error_vs_basis_size": {
                "n": [1, 2, 4],
                "max": [0.3, 0.1, 0.01],
                "mean": [0.2, 0.05, 0.004],
            },
            "projection_tail_rel": [0.25, 0.04, 0.003],
            "indicator": {"values": [1e-4, 3e-4, 2e-3], "error": [2e-4, 5e-4, 3e-3], "tol": 1e-3},
        }
    }
    (tmp / "summary.json").write_text(json.dumps(summary))
    cases = [
        (path, "sv"),
        (modes, "sv"),
        (tmp / "summary.json", "sv"),
        (tmp / "summary.json", "errors"),
        (tmp / "l.json", "clusters"),
        (tmp / "summary.json", "indicator"),
    ]
    for i, (src, kind) in enumerate(cases):
        png = tmp / f"plot{i}.png"
        assert main(["plot", str(src), "--kind", kind, "--out", str(png)]) == 0, (src, kind)
        assert _png_size(png) == (600, 420)  # 5 x 3.5 in at 120 dpi


def test_plot_json_without_the_data_is_one_line_error(tmp_path, capsys):
    (tmp_path / "s.json").write_text(json.dumps({"results": {"n_modes": 3}}))
    assert (
        main(
            ["plot", str(tmp_path / "s.json"), "--kind", "errors", "--out", str(tmp_path / "p.png")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("rom: error:") and "error_vs_basis_size" in err
    assert err.count("\n") == 1


# ---------------------------------------------------------------------------- errors
def _foreign(tmp: Path) -> Path:
    p = tmp / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.arange(3)
    return p


def _corrupt(tmp: Path) -> Path:
    p = tmp / "corrupt.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    return p


@pytest.mark.parametrize(
    "make, args, match",
    [
        (lambda t: t / "missing.h5", ["info"], "no such file"),
        (_foreign, ["info"], "not a rom snapshot store"),
        (_corrupt, ["info"], "not a readable HDF5 file"),
        (_corrupt, ["compress", "--out", "x.h5"], "not a readable HDF5 file"),
        (
            lambda t: t / "missing.h5",
            ["compress", "--method", "svd", "--out", "x.h5"],
            "invalid choice: 'svd'",
        ),
        (lambda t: t / "missing.h5", ["cluster", "--out", "l.json"], "required: --n-clusters"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys, make, args, match):
    path = make(tmp_path)
    rc = main([args[0], str(path), *args[1:]])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.startswith("rom: error: ") and captured.err.count("\n") == 1
    assert match in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_bad_options_on_a_good_store(store, capsys):
    path, _, _ = store
    for args, match in [
        (
            ["compress", str(path), "--field", "v", "--out", str(path.parent / "m.h5")],
            "no field 'v'",
        ),
        (
            ["compress", str(path), "--method", "randomized", "--out", str(path.parent / "m.h5")],
            "needs rank=",
        ),
        (
            ["cluster", str(path), "--n-clusters", "13", "--out", str(path.parent / "l.json")],
            "--n-clusters must be in [1, 12]",
        ),
        (
            ["export", str(path), "--columns", "12", "--out", str(path.parent / "e")],
            "column 12 out of range",
        ),
        (
            ["plot", str(path), "--kind", "errors", "--out", str(path.parent / "p.png")],
            "plots a JSON file",
        ),
    ]:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("rom: error: ") and err.count("\n") == 1 and match in err, err


def test_missing_segment_is_named_by_verify_and_compress(store, capsys):
    path, _, _ = store
    seg = Path(str(path) + ".d") / "seg-000002.h5"
    seg.unlink()
    assert main(["info", str(path)]) == 0  # metadata only
    capsys.readouterr()
    assert main(["info", str(path), "--verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seg-000002.h5" in err
    assert main(["compress", str(path), "--out", str(path.parent / "m.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seg-000002.h5" in err


def test_info_verify_passes_on_a_sound_store(store, capsys):
    path, _, _ = store
    assert main(["info", str(path), "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is True


def test_subprocess_entry_points_and_stderr(store, tmp_path):
    path, X, _ = store
    res = _run("info", str(path))
    assert res.returncode == 0 and "snapshots       12" in res.stdout
    res = _run("info", str(_corrupt(tmp_path)))  # the other bad inputs: in-process above
    assert res.returncode == 2
    assert res.stderr.startswith("rom: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr and "not a readable HDF5 file" in res.stderr
    res = _run("info", str(tmp_path / "nope.h5"), "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr and "StoreError" in res.stderr
    script = Path(sys.executable).parent / "rom"
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("rom ")


def test_export_without_dolfinx_is_one_line_error(store, tmp_path):
    path, _, _ = store
    code = (
        "import sys\n"
        "for name in ('dolfinx', 'dolfinx_solver', 'petsc4py', 'basix', 'ufl'):\n"
        "    sys.modules[name] = None  # importing them now raises ImportError\n"
        "from rom.cli import main\n"
        f"sys.exit(main(['export', {str(path)!r}, '--out', {str(tmp_path / 'e')!r}]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 2
    assert res.stderr.startswith("rom: error: rom export needs dolfinx")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_parse_columns_follows_numpy_slicing():
    n = 10
    ref = np.arange(n)
    assert parse_columns(["2:8:3", "-2", "::4"], n).tolist() == [*ref[2:8:3], ref[-2], *ref[::4]]
    assert parse_columns(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="bad column spec"):
        parse_columns(["a:b"], n)
    with pytest.raises(ValueError, match="is empty"):
        parse_columns(["5:2"], n)


# ---------------------------------------------------------------------------- rom.plotting
def test_plotting_singular_values_draws_normalized_values_and_tail():
    import matplotlib

    matplotlib.use("Agg")
    from rom import plotting

    s = np.array([4.0, 2.0, 1.0, 0.5])
    fig = plotting.singular_values(s, total_energy=float(np.sum(s**2)) + 0.25)
    ratio, tail = fig.axes[0].get_lines()
    np.testing.assert_allclose(ratio.get_ydata(), s / 4.0)
    total = np.sum(s**2) + 0.25  # the tail includes the energy discarded before
    ref = [np.sqrt((np.sum(s[n:] ** 2) + 0.25) / total) for n in range(1, 5)]
    np.testing.assert_allclose(tail.get_ydata(), ref, rtol=1e-14)
    with pytest.raises(ValueError, match="first singular value must be positive"):
        plotting.singular_values([0.0, 0.0])


def test_plotting_clusters_lays_trajectories_out_in_time_and_sample():
    import matplotlib

    matplotlib.use("Agg")
    from rom import plotting

    sample = np.repeat([0, 1, 2], 4)
    time = np.tile([0.1, 0.2, 0.3, 0.4], 3)
    labels = (time > 0.25).astype(np.int64) + 2 * (sample == 2)
    fig = plotting.clusters(
        labels, sample=sample, time=time, medoids=[0, 11], parameters=np.zeros((12, 2))
    )
    xy = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(xy), np.c_[time, sample])
    np.testing.assert_array_equal(fig.axes[0].collections[0].get_array(), labels)
    with pytest.raises(ValueError, match="labels must be a non-empty 1-D integer array"):
        plotting.clusters(np.array([0.5, 1.0]))


# ---------------------------------------------------------------------------- outputs
def _listing(path: Path) -> tuple[list[str], bytes]:
    return sorted(os.listdir(str(path) + ".d")), path.read_bytes()


def _leftovers(directory: Path) -> list[str]:
    """Temporary outputs (``.<name>.*.tmp``) left in a directory."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.mpi
@pytest.mark.parametrize(
    "cmd",
    [
        ["cluster", "{s}", "--n-clusters", "2", "--out", "{s}", "--overwrite"],
        ["compress", "{s}", "--rank", "2", "--out", "{s}", "--overwrite"],
        ["compress", "{s}", "--rank", "2", "--out", "{s}.d/m.h5", "--overwrite"],
        ["plot", "{s}", "--kind", "sv", "--out", "{s}"],
        ["merge", "{s}", "{s}", "--out", "{s}", "--overwrite"],
    ],
)
def test_out_equal_to_or_inside_an_input_refused(store, comm, capsys, cmd):
    path, X, _ = store
    before = _listing(path)
    assert main([c.format(s=path) for c in cmd]) == 2
    err = capsys.readouterr().err
    if comm.rank == 0:
        assert "the output would overwrite the input" in err and err.count("\n") == 1
    assert _listing(path) == before
    with SnapshotStore.open(path, comm=comm) as st:
        np.testing.assert_array_equal(st.read("u", rows="all"), X)


@pytest.mark.mpi
@pytest.mark.parametrize("method, fault", [("append", KeyboardInterrupt), ("write_mesh", OSError)])
def test_failed_compress_leaves_no_output(store, comm, capsys, monkeypatch, method, fault):
    """Ctrl-C or a write error while the modes are written: no modes.h5, the rerun works."""
    path, X, _ = store
    out = path.parent / "modes.h5"

    def failing(self, *args, **kwargs):
        raise fault("disk full (simulated)")

    monkeypatch.setattr(SnapshotStore, method, failing)
    args = ["compress", str(path), "--rank", "3", "--out", str(out)]
    if fault is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            main(args)
    else:
        assert main(args) == 2
        assert comm.rank != 0 or "disk full (simulated)" in capsys.readouterr().err
    monkeypatch.undo()
    comm.Barrier()
    assert not out.exists() and not Path(str(out) + ".d").exists()
    assert _leftovers(path.parent) == []
    assert main(args) == 0  # not refused as "already exists"
    with SnapshotStore.open(out, comm=comm) as ms:
        assert ms.n_snapshots == 3 and ms.read_mesh() is not None


_SLOW_WRITE = """
import sys, time
from mpi4py import MPI
from rom.cli import main
from rom.io import SnapshotStore
append = SnapshotStore.append
def slow(self, *args, **kwargs):  # the modes half written when the signal comes
    append(self, *args, **kwargs)
    if MPI.COMM_WORLD.rank == 0:
        print("writing", flush=True)
    time.sleep(60)
SnapshotStore.append = slow
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_writing_leaves_no_output(store, tmp_path, sig, n):
    """Ctrl-C (SIGINT) or a batch system's SIGTERM to ``rom compress`` (plain, or to
    ``mpirun -n 2``) while the modes are written: the run ends within seconds, killed, with
    no output and no temporary left; the input is intact and a rerun is not refused."""
    path, X, _ = store
    out = path.parent / "modes.h5"
    script = tmp_path / "slow_write.py"
    script.write_text(_SLOW_WRITE)
    cmd = [sys.executable, str(script), "compress", str(path), "--rank", "3", "--out", str(out)]
    if n > 1:
        cmd = [str(Path(sys.executable).with_name("mpirun")), "-n", str(n), *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert _leftovers(path.parent) != []  # the half-written output, under its temporary name
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert time.monotonic() - t0 < 15 and proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert not out.exists() and not Path(str(out) + ".d").exists()
    assert _leftovers(path.parent) == []
    with SnapshotStore.open(path) as st:
        np.testing.assert_array_equal(st.read("u", rows="all"), X)
    assert main(["compress", str(path), "--rank", "3", "--out", str(out)]) == 0


def test_overwrite_of_a_store_being_written_refused(store, capsys):
    path, _, _ = store
    out = path.parent / "modes.h5"
    assert main(["compress", str(path), "--rank", "2", "--out", str(out)]) == 0
    with SnapshotStore.open(out, "a"):
        args = ["compress", str(path), "--rank", "3", "--out", str(out), "--overwrite"]
        assert main(args) == 2
        assert f"locked for writing by pid {os.getpid()}" in capsys.readouterr().err
    with SnapshotStore.open(out) as ms:
        assert ms.n_snapshots == 2  # the previous modes, intact
        ms.verify()
    assert _leftovers(path.parent) == []


@pytest.mark.mpi
def test_merge_command_concatenates_the_columns(store, comm, capsys, rng):
    path, X, mus = store
    other = path.parent / "other.h5"
    X2, mus2 = _make_store(other, comm, rng, mesh=False)
    out = path.parent / "merged.h5"
    assert main(["merge", str(path), str(other), "--out", str(out)]) == 0
    assert comm.rank != 0 or "merged 2 stores" in capsys.readouterr().out
    with SnapshotStore.open(out, comm=comm) as st:
        np.testing.assert_array_equal(st.read("u", rows="all"), np.hstack([X, X2]))
        np.testing.assert_array_equal(st.parameters, np.vstack([mus, mus2]))
        np.testing.assert_array_equal(st.sample, [0] * 5 + [1] * 7 + [0] * 5 + [1] * 7)
        assert st.read_mesh() is not None
    bad = path.parent / "bad.h5"
    n = X.shape[0]
    start, stop = (n * comm.rank) // comm.size, (n * (comm.rank + 1)) // comm.size
    with SnapshotStore.create(bad, {"v": np.arange(start, stop)}, comm=comm) as st:
        st.append({"v": np.ones((stop - start, 1))})
    capsys.readouterr()
    assert main(["merge", str(path), str(bad), "--out", str(path.parent / "no.h5")]) == 2
    err = capsys.readouterr().err
    assert comm.rank != 0 or ("fields ('v',) differ" in err and err.count("\n") == 1)
    comm.Barrier()  # rank 0 removes the temporary output
    assert not (path.parent / "no.h5").exists() and _leftovers(path.parent) == []


def test_unlock_command(store, capsys):
    path, _, _ = store
    lock = Path(str(path) + ".lock")
    with SnapshotStore.open(path, "a"):
        assert main(["unlock", str(path)]) == 2
        assert "locked for writing" in capsys.readouterr().err
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))  # killed
    assert main(["unlock", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: not locked" and not lock.exists()


def test_missing_plugin_command_says_what_to_install(store, capsys, monkeypatch):
    import rom.cli

    path, _, _ = store
    monkeypatch.setattr(rom.cli, "entry_points", lambda group: [])  # solvers not installed
    assert main(["export", str(path), "--out", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rom: error: rom export needs dolfinx (install the fem extra")
    assert err.count("\n") == 1


def test_rom_never_imports_solvers_nor_dolfinx():
    for f in sorted((ROOT / "rom").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in ("solvers", "dolfinx") for n in names), f
    code = (
        "import sys\nfrom rom.cli import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dolfinx', 'petsc4py')))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
