"""cases/thermal.py end to end at a small size, at 1 and 2 ranks (run as a script)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cases"))  # cases/common.py
CASE = ROOT / "cases" / "thermal.py"

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

ARGS = ["--size", "6", "--n-train", "6", "--n-test", "3", "--n-steps", "10", "--tol", "1e-2"]


def test_thermal_case_end_to_end(comm, case_summary):

    # the case as a script, once per session (shared with tests/test_regression.py)
    plots = ("singular_values.png", "error_vs_basis_size.png", "temperature.png")
    out, res, summary = case_summary("thermal", ARGS, ("thermal.h5", "modes.h5", *plots))
    r = summary["results"]
    assert r["held_out"]["max_relative_error"] <= 1e-2  # against the full-order model
    assert r["error_vs_basis_size"]["max"][-1] < 1e-2 * r["error_vs_basis_size"]["max"][0]
    assert r["n_snapshots"] == 6 * 10
    assert res["n_modes"] == r["n_modes"]

    # The stored snapshots, read with plain h5py, give the same L2 singular values as the case
    # (independent path: numpy SVD of M^{1/2}-weighted data through a dense Cholesky factor).
    if comm.rank == 0:
        import dolfinx_solver  # noqa: F401
        from mpi4py import MPI

        from solvers.heat import HeatModel

        model = HeatModel(MPI.COMM_SELF, size=6, n_steps=10)
        with h5py.File(out / "thermal.h5", "r") as f:
            S = f["fields/temperature/values"][...]
            keys = f["fields/temperature/keys"][...]
        S = S[np.searchsorted(keys, model.keys)]  # rows in the model's dof order
        M = model.mass(np.eye(model.n_dofs))
        L = np.linalg.cholesky(0.5 * (M + M.T))
        sref = np.linalg.svd(L.T @ S, compute_uv=False)
        sv = np.array(r["singular_values"])
        np.testing.assert_allclose(sv, sref[: len(sv)], rtol=1e-6, atol=1e-10 * sref[0])
