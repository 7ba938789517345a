"""cases/adaptive_blade.py end to end at a small size, at 1 and 2 ranks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cases"))  # cases/common.py
CASE = ROOT / "cases" / "adaptive_blade.py"

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

SIZE = 8
ARGS = [
    "--size",
    str(SIZE),
    "--n-steps",
    "20",
    "--n-train",
    "4",
    "--n-cal",
    "2",
    "--max-enrichments",
    "4",
    "--log-level",
    "WARNING",
]


def test_adaptive_case_end_to_end(comm, run_case):

    # the case as a script, once per session (shared with tests/test_regression.py)
    out, res = run_case("adaptive_blade", ARGS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["case"] == "adaptive_blade" and summary["ranks"] == comm.size
    for f in ("error_unenriched.png", "indicator.png", "error_adaptive.png", "wall_time.png"):
        assert (out / f).exists(), f
    r = summary["results"]
    # plane-strain Q1 block with SIZE x SIZE cells: 2 (SIZE + 1)^2 dofs, 4 Gauss points per cell
    assert r["n_dofs"] == 2 * (SIZE + 1) ** 2 and r["n_qp"] == 4 * SIZE**2
    a, u = r["adaptive"], r["unenriched"]
    assert len(a["error_u"]) == len(u["indicator"]) == 20
    assert 1 <= a["fom_steps"] == len(a["enriched_steps"]) <= 4
    # enrichment helps: the enriched ROM's worst error is below the unenriched one's
    assert max(a["max_error_u"], a["max_error_p"]) < max(u["max_error_u"], u["max_error_p"])
    # the unenriched ROM's indicator exceeds the calibrated threshold where enrichment happened
    assert np.all(np.asarray(u["indicator"])[a["enriched_steps"][:1]] > r["tol_E"])
    assert r["calibration"] is not None and len(r["calibration"]["E"]) == 2 * 20
    assert res["tol_E"] == r["tol_E"]
    assert set(summary["timings_s"]) >= {"fom_new_load", "rom_unenriched", "rom_adaptive"}
