"""Smoke test of the benchmark scripts: each one's ``--quick`` mode runs once, serially, in a
subprocess, and writes a JSON file with every round of the protocol and the median ratios.

No timing is asserted: the figures of a quick run on a shared machine mean nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{script}.json"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(BENCH / f"{script}.py"), "--quick", "--json", str(out), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    assert data["machine"]["numpy"] and data["machine"]["blas"] and data["machine"]["date"]
    return data


def _check_rounds(timing: dict, contenders: set[str]) -> None:
    """Every round stored with every contender, per-round ratios and their median."""
    proto = timing["protocol"]
    rounds = timing["rounds"]
    assert len(rounds) == proto["rounds"] >= 1
    ref = proto["reference"]
    assert ref in contenders
    for k, r in enumerate(rounds):
        assert set(r["times_s"]) == contenders
        assert all(t > 0 for t in r["times_s"].values())
        assert sorted(r["order"]) == sorted(contenders)
        if len(contenders) > 1 and proto["order"].startswith("rotated"):
            assert r["order"][0] == list(rounds[0]["order"])[k % len(contenders)]
    for name in contenders - {ref}:
        per_round = timing["per_round_ratio"][name]
        assert len(per_round) == len(rounds)
        expected = [r["times_s"][name] / r["times_s"][ref] for r in rounds]
        assert per_round == pytest.approx(expected, rel=1e-12)
        assert timing["median_ratio"][name] == pytest.approx(statistics.median(per_round))


def _pymor_recorded(data: dict, contender: str) -> None:
    try:
        import pymor
    except ImportError:
        assert data["pymor"] == "not installed"
        assert contender not in data["timing"]["times_s"]
    else:
        assert data["pymor"] == pymor.__version__
        assert contender in data["timing"]["times_s"]


def test_bench_pod_quick(tmp_path):
    data = _run("bench_pod", tmp_path)
    names = {"bare_limit", "rom_snapshots", "rom_qr"}
    _pymor_recorded(data, "pymor_method_of_snapshots")
    if data["pymor"] != "not installed":
        names.add("pymor_method_of_snapshots")
    _check_rounds(data["timing"], names)
    assert data["timing"]["protocol"]["warmup"] is True
    for acc in (data["accuracy"]["rom_snapshots"], data["accuracy"]["rom_qr"]):
        assert acc["orth_err"] <= 1e-12  # the method's guarantee, checked on the output


def test_bench_streaming_quick(tmp_path):
    data = _run("bench_streaming", tmp_path)
    names = {
        "rom_incremental_svd",
        "rom_inc_hapod",
        "rom_dist_hapod",
        "rom_batch_pod_snapshots",
        "rom_batch_pod_qr",
        "sklearn_incremental_pca",
    }
    _pymor_recorded(data, "pymor_inc_vectorarray_hapod")
    if data["pymor"] != "not installed":
        names.add("pymor_inc_vectorarray_hapod")
    _check_rounds(data["timing"], names)
    for name in names - {"sklearn_incremental_pca"}:
        assert data["runs"][name]["proj_rel_err"] <= data["rel_err_target"]
        assert data["runs"][name]["peak_mib"] > 0


def test_bench_product_quick(tmp_path):
    data = _run("bench_product", tmp_path)
    ours = {
        "rom_pod_snapshots",
        "rom_pod_qr",
        "rom_incremental_svd",
        "rom_compress_incremental",
        "rom_inc_hapod",
        "rom_dist_hapod_auto",
        "rom_dist_hapod_qr",
        "rom_dist_hapod_snapshots",
        "rom_compress_hapod",
    }
    peers = {
        "pymor_pod",
        "pymor_pod_qr_svd",
        "pymor_inc_vectorarray_hapod",
        "pymor_dist_vectorarray_hapod",
        "pymor_dist_vectorarray_hapod_executor",
    }
    names = set(ours)
    for peer in peers:
        _pymor_recorded(data, peer)
    if data["pymor"] != "not installed":
        names |= peers
        # every one of ours has its peer (the HAPODs both of pyMOR's configurations), and the
        # accurate POD and HAPOD are also set against pyMOR's method of snapshots
        assert len(data["timing"]["pairs"]) == len(ours) + 4 + 1
        assert isinstance(data["speedup_target_met"], bool)
    assert data["timing"]["protocol"]["warmup_round"] is True
    # the process kept the memory it freed (glibc on the test machines)
    assert data["allocator"] == {
        "mode": "kept",
        "mmap_threshold": 2**31 - 1,
        "trim_threshold": 2**31 - 1,
        "applied": True,
    }
    _check_rounds(data["timing"], names)
    # the assembled mass matrix integrates P1 functions exactly: area 1, int x^2 = 1/3
    mass = data["mass_matrix"]
    assert abs(mass["one_M_one_minus_area"]) <= 1e-12
    assert abs(mass["x_M_x_minus_third"]) <= 1e-12
    assert mass["asymmetry"] == 0.0
    assert mass["nnz"] <= 7 * mass["n_dofs"]
    target = data["rel_err_target"]
    for name in names:
        run = data["runs"][name]
        assert 0 < run["proj_rel_err_M"] <= target  # equal tolerance, checked by the script
        assert run["n_modes"] >= data["n_modes_optimal"]  # no method beats the optimal rank
    for name in ours:
        assert data["runs"][name]["orth_err_M"] <= 1e-12  # M-orthonormal, as documented


@pytest.mark.fem
def test_bench_thermal_quick(tmp_path):
    data = _run("bench_thermal", tmp_path, "--out", str(tmp_path / "case"))
    _check_rounds(data["timing"], {"fom", "rom"})
    assert data["speedup_median"] == data["timing"]["median_ratio"]["fom"]


@pytest.mark.fem
def test_bench_local_bases_quick(tmp_path):
    data = _run("bench_local_bases", tmp_path, "--out", str(tmp_path / "case"))
    assert [row["K"] for row in data["by_K"]] == [2]
    assert data["global_basis_size"] >= 1 and data["targets"]


@pytest.mark.fem
def test_bench_adaptive_quick(tmp_path):
    loads = ["cycling", "spot-elsewhere"]
    data = _run("bench_adaptive", tmp_path, "--loads", *loads, "--cost-sizes", "4", "8")
    assert set(data["indicators"]) == {"composite", "gappy"}
    for kind, result in data["indicators"].items():
        assert list(result["loads"]) == loads
        cal = result["calibration"]
        assert cal["n_steps"] == 6 * data["n_steps"] and -1 <= cal["spearman"] <= 1
        for load in result["loads"].values():
            plain, adaptive = load["unenriched"], load["adaptive"]
            assert len(plain["indicator"]) == len(plain["error"]) == data["n_steps"]
            assert adaptive["fom_steps"] == len(adaptive["enriched_steps"])
            assert max(adaptive["max_error_u"], adaptive["max_error_p"]) < 1  # a ROM, not noise
            if kind == "composite":  # timed in rounds against the full-order model
                _check_rounds(load["timing"], {"fom", "adaptive_rom"})
                assert load["speedup"] == load["timing"]["median_ratio"]["fom"]
    cost = data["indicator_cost"]["timing"]
    _check_rounds(
        cost, {"reduced_step_fine", "indicator_fine", "reduced_step_coarse", "indicator_coarse"}
    )
    assert set(data["targets"]) >= {"no silent miss (unenriched runs)", "median speed-up >= 10"}


def test_warmup_round_calls_every_contender_once_untimed_first():
    sys.path.insert(0, str(BENCH))
    import protocol

    calls = []
    contenders = {n: (lambda n=n: calls.append(n)) for n in ("a", "b", "c")}
    record, _ = protocol.run_rounds(contenders, rounds=2, reference="a", warmup_round=True)
    assert calls[:3] == ["a", "b", "c"] and len(calls) == 3 + 2 * 3
    assert record["protocol"]["warmup_round"] is True
    assert [r["order"] for r in record["rounds"]] == [["a", "b", "c"], ["b", "c", "a"]]


@pytest.mark.fem
def test_bench_fe_product_quick(tmp_path):
    data = _run("bench_fe_product", tmp_path)
    _check_rounds(data["timing"], {"petsc_operator", "matmult_columns", "scipy_serial"})
    assert data["timing"]["protocol"]["warmup"] is True
    # the same matrix applied three ways: PETSc's MatMult is the independent reference
    assert max(data["max_rel_diff_to_matmult"].values()) <= 1e-14
    assert data["n_dofs"] == 41 * 41 and data["nnz"] <= 7 * data["n_dofs"]
