"""cases/local_bases.py end to end at a tiny size, at 1 and 2 ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cases"))  # cases/common.py
CASE = ROOT / "cases" / "local_bases.py"

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

TOL = 1e-2
ARGS = [
    "--size",
    "10",
    "--n-train",
    "6",
    "--n-test",
    "2",
    "--n-steps",
    "6",
    "--tol",
    str(TOL),
    "--clusters",
    "1,2",
    "--clusterings",
    "kmeans-parameters,sine-kmedoids,merge",
    "--basis-size",
    "6",
    "--log-level",
    "WARNING",
]


def test_local_bases_case_end_to_end(comm, case_summary):

    # the case as a script, once per session (shared with tests/test_regression.py)
    files = ("advection.h5", "clusters.png", "error_vs_basis_size.png")
    out, res, summary = case_summary("local_bases", ARGS, files)
    r = summary["results"]
    cfg = r["configurations"]
    assert {
        "kmeans-parameters/K=1",
        "kmeans-parameters/K=2",
        "sine-kmedoids/K=1",
        "sine-kmedoids/K=2",
    } <= set(cfg)
    assert any(k.startswith("merge/") for k in cfg)
    keys = {
        "n_clusters",
        "cluster_sizes",
        "basis_sizes",
        "global_basis_size",
        "train_projection_error_mean",
        "train_projection_error_p90",
        "test_projection_error_mean",
        "test_projection_error_p90",
        "test_rom_error_mean",
        "rom_error_vs_n",
        "eta_estimated",
        "cost_ratio_measured",
        "modes_to_match_global",
    }
    for c in cfg.values():
        assert keys <= set(c)
        assert sum(c["cluster_sizes"]) == 6
        assert 0.0 <= c["train_projection_error_mean"] <= 1.0
    # worst case (max over held-out parameters of the max over steps) with route(): the
    # matched size is the first of the grid at or below the global ROM's worst case
    level = cfg["sine-kmedoids/K=1"]["test_rom_error_worst_time_max"]
    for c in cfg.values():
        curve = c["routed"]["error_vs_n"]
        per = np.asarray(curve["per_parameter"])
        assert per.shape == (2, len(curve["n"]))
        np.testing.assert_allclose(curve["worst"], per.max(axis=0))
        assert set(c["routed"]["rules"]) <= {"candidates", "widened", "global", "untrusted"}
        below = [n for n, w in zip(curve["n"], curve["worst"], strict=True) if w <= level]
        assert c["modes_to_match_global_worst"] == (below[0] if below else None)
    one = cfg["sine-kmedoids/K=1"]
    assert one["eta_estimated"] == 1.0 and one["basis_sizes"] == [one["global_basis_size"]]
    assert res["n_snapshots"] == r["n_snapshots"] == 6 * 6

    # The global basis size for the tolerance from the stored snapshots, by an independent
    # path: numpy SVD of the M^{1/2}-weighted data (dense Cholesky factor of the mass matrix).
    if comm.rank == 0:
        import dolfinx_solver  # noqa: F401
        from mpi4py import MPI

        from solvers.advection import AdvectionModel

        model = AdvectionModel(MPI.COMM_SELF, size=10, n_steps=6)
        with h5py.File(out / "advection.h5", "r") as f:
            S = f["fields/u/values"][...]
            keys_h5 = f["fields/u/keys"][...]
        S = S[np.searchsorted(keys_h5, model.keys)]
        Mm = model.mass(np.eye(model.n_dofs))
        L = np.linalg.cholesky(0.5 * (Mm + Mm.T))
        s2 = np.linalg.svd(L.T @ S, compute_uv=False) ** 2
        tails = np.concatenate([np.cumsum(s2[::-1])[::-1], [0.0]])
        n_ref = int(np.flatnonzero(tails <= TOL**2 * s2.sum())[0])
        assert one["global_basis_size"] == n_ref
