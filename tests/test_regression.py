"""The cases of ``cases/`` at their small size against the stored reference figures of
``data/references/`` (tolerances stated there), at 1 and 2 ranks; and the comparison fails
when a figure moves by 10 %.

``data/thermal_snapshots.npz`` (the thermal case's snapshots and mass matrix at the same
size) is a stored input: the POD of the stored data matches the thermal reference without
the finite-element solver.

The runs are shared with ``tests/test_case_*.py`` through the session fixture ``run_case``
(the reference files store the same argument lists). After an intended change of a figure,
regenerate the references: ``bash scripts/regenerate_references.sh`` (docs/regression.md).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import regression
from scipy import sparse

from rom.compression import compress

CASES = list(regression.FIGURES)


def _moved(values: dict, name: str, i: int, factor: float) -> dict:
    """``values`` with entry ``i`` of figure ``name`` multiplied by ``factor``."""
    moved = {k: np.array(v, dtype=float) for k, v in values.items()}
    moved[name][i] *= factor
    return moved


@pytest.mark.parametrize("case", CASES)
def test_reference_is_complete(case):
    # every figure of the specification is stored, with a tolerance, a reason and a value
    ref = regression.load_reference(case)
    assert ref["case"] == case and ref["args"] == regression.CASE_ARGS[case]
    assert set(ref["figures"]) == set(regression.FIGURES[case])
    for name, fig in ref["figures"].items():
        assert fig["reason"] and 0.0 <= fig["rtol"] < 0.1 and fig["atol"] >= 0.0, name
        value = np.asarray(fig["value"], dtype=float)
        assert value.size and np.isfinite(value).all() and np.any(value != 0.0), name


@pytest.mark.parametrize("case", CASES)
def test_ten_percent_move_fails(case):
    # The stored values pass their own comparison; moving any nonzero entry of any figure by
    # +-10 % makes exactly that figure fail, and a missing figure fails too.
    ref = regression.load_reference(case)
    values = {name: np.asarray(fig["value"], dtype=float) for name, fig in ref["figures"].items()}
    assert regression.compare_values(values, ref) == []
    for name, value in values.items():
        for i in np.flatnonzero(value):
            for factor in (1.1, 0.9):
                failures = regression.compare_values(_moved(values, name, i, factor), ref)
                assert len(failures) == 1 and failures[0].startswith(f"{name}["), (name, i)
        assert regression.compare_values(values | {name: None}, ref) == [
            f"{name}: missing from the summary"
        ]


@pytest.mark.fem
@pytest.mark.mpi
@pytest.mark.parametrize("case", CASES)
def test_case_matches_reference(case, case_summary):
    ref = regression.load_reference(case)
    _, _, summary = case_summary(case, ref["args"])
    failures = regression.compare(summary, ref)
    assert failures == [], "\n".join(failures)
    # the same comparison fails on a reference whose first float figure moved by 10 %
    name = next(n for n, f in ref["figures"].items() if f["rtol"] > 0.0)
    moved = copy.deepcopy(ref)
    moved["figures"][name]["value"] = [1.1 * v for v in ref["figures"][name]["value"]]
    assert [f.split("[")[0] for f in regression.compare(summary, moved)] == [name]


@pytest.mark.mpi
@pytest.mark.parametrize("method", ["batch", "incremental", "hapod"])
def test_stored_snapshots_match_thermal_reference(method, comm):
    # POD in the M inner product of the stored thermal snapshots, rows split over the ranks,
    # against numpy's SVD of L^T S (M = L L^T, dense Cholesky) and against the singular
    # values stored in the thermal reference, with that figure's stated tolerance.
    d = np.load(regression.SNAPSHOTS)
    ref = regression.load_reference("thermal")
    assert d["args"].tolist() == ref["args"]
    S = d["snapshots"]
    M = sparse.csr_matrix(
        (d["mass_data"], d["mass_indices"], d["mass_indptr"]), shape=(len(S),) * 2
    )
    rows = np.array_split(np.arange(len(S)), comm.size)[comm.rank]

    def product(X):  # owned rows of M X from owned rows of X (the test data are small)
        return M[rows] @ np.concatenate(comm.allgather(X), axis=0)

    res = compress(S[rows], method=method, product=product, comm=comm, rel_l2_err=1e-6)
    sv = np.asarray(res.singular_values)
    L = np.linalg.cholesky(M.toarray())
    s_np = np.linalg.svd(L.T @ S, compute_uv=False)
    head = ref["figures"]["singular_values_head"]
    n = head["head"]
    np.testing.assert_allclose(sv[:n], s_np[:n], rtol=1e-8)
    assert (
        regression.compare_values(
            {"singular_values_head": sv[:n]}, {"figures": {"singular_values_head": head}}
        )
        == []
    )
