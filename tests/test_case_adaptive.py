"""cases/adaptive_blade.py end to end at a small size, at 1 and 2 ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cases"))  # cases/common.py
CASE = ROOT / "cases" / "adaptive_blade.py"

pytestmark = [pytest.mark.fem, pytest.mark.mpi]

SIZE = 10
N_STEPS = 30
ARGS = ["--size", str(SIZE), "--n-steps", str(N_STEPS), "--n-train", "4", "--n-cal", "4"]
ARGS += ["--log-level", "WARNING"]


def test_adaptive_case_end_to_end(comm, case_summary):
    # the case as a script, once per session (shared with tests/test_regression.py)
    figures = ("error_unenriched.png", "indicator.png", "error_adaptive.png", "test_loads.png")
    out, res, summary = case_summary("adaptive_blade", ARGS, (*figures, "wall_time.png"))
    r = summary["results"]
    # plane-strain Q1 block with SIZE x SIZE cells: 2 (SIZE + 1)^2 dofs, 4 Gauss points per cell
    assert r["n_dofs"] == 2 * (SIZE + 1) ** 2 and r["n_qp"] == 4 * SIZE**2
    a, u = r["adaptive"], r["unenriched"]
    assert len(a["error_u"]) == len(u["indicator"]) == N_STEPS
    assert a["fom_steps"] == len(a["enriched_steps"]) >= 1
    # the unenriched ROM misses the target on the shown load, the adaptive one meets it
    assert max(u["max_error_u"], u["max_error_p"]) > r["target"]
    assert max(a["max_error_u"], a["max_error_p"]) <= r["target"]
    # the first full-order step comes where the unenriched indicator crosses its threshold
    first = a["enriched_steps"][0]
    assert u["indicator"][first] > r["threshold"] and max(u["indicator"][:first]) <= 1.0
    # every test load: no step accepted above the target, no budget (none was given)
    loads = r["test_loads"]
    assert len(loads) == 6
    for name, v in loads.items():
        assert v["silent_misses"] == 0 and not v["budget_reached"], name
        assert np.max(v["error"]) <= r["target"], name
    cal = r["calibration"]
    assert len(cal["E"]) == 4 * N_STEPS and len(cal["thresholds"]) == 4
    # no calibration step above the target is accepted (the conservative rule)
    E, e = np.asarray(cal["E"]), np.asarray(cal["e"])
    assert not np.any((E <= 1.0) & (e > r["target"]))
    assert res["threshold"] == r["threshold"] == 1.0
    assert set(summary["timings_s"]) >= {"fom_new_load", "rom_unenriched", "rom_adaptive"}
