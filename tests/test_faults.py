"""Faults and bad input: one clear error on every rank, never a hang, never a silent result.

The one-rank faults run under ``mpirun`` in a subprocess (``tests/fault_driver.py``) with a
hang detector: the driver's ``faulthandler`` ends a case that does not return within its
time limit, and this test reports it as a hang. Each case must raise the same ``ValueError``
on every rank, with a one-line message that names the problem.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import fault_driver  # tests/ is on sys.path (pytest's rootdir-relative import)
import numpy as np
import pytest

import rom
from rom.compression import ToleranceWarning
from rom.parallel import distribute_rows
from rom.parallel import gather_rows

HERE = Path(__file__).parent
MPIRUN = str(Path(sys.executable).with_name("mpirun"))

#: Words the message must contain (all of one of the alternatives), per fault.
EXPECTED = {
    "product_shape_one_rank": [("product", "shape")],
    "nan_one_rank": [("NaN",)],
    "inf_all_ranks": [("Inf",)],
    "columns_one_rank": [("columns",)],
    "product_negative_all": [("product", "positive")],
    "product_negative_one_rank": [("product", "positive")],
    "product_not_symmetric": [("product", "symmetric")],
    "product_indefinite": [("product", "positive")],
    "product_nan": [("product", "NaN")],
    "no_rows_one_rank": [("no rows",)],
}
assert set(EXPECTED) == set(fault_driver.FAULTS)


@functools.cache
def _run_group(call: str, n: int) -> tuple[dict, list, str]:
    """Run every fault against ``call`` at ``n`` ranks; records per case and rank."""
    out = tempfile.mkdtemp(prefix=f"faults-{n}-")
    cmd = [MPIRUN, "-n", str(n), sys.executable, "-m", "mpi4py", str(HERE / "fault_driver.py")]
    cmd += ["--call", call, "--timeout", "30", "--out", out]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        log = res.stdout[-3000:] + res.stderr[-3000:]
    except subprocess.TimeoutExpired as e:  # the driver's own watchdog should come first
        log = f"mpirun did not end within {e.timeout} s"
    recs: dict = {}
    started: list = []
    for rank in range(n):
        path = Path(out) / f"rank{rank}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            rec = json.loads(line)
            if "start" in rec:
                started.append(rec["start"]) if rank == 0 else None
            else:
                recs.setdefault(rec["case"], {})[rank] = rec
    return recs, started, log


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("fault", sorted(fault_driver.FAULTS))
@pytest.mark.parametrize("call", sorted(fault_driver.CALLS))
def test_fault_gives_the_same_clear_error_on_every_rank(call, fault, n):
    recs, started, log = _run_group(call, n)
    name = f"{call}/{fault}"
    got = recs.get(name, {})
    last = started[-1] if started else None
    assert len(got) == n, f"{name}: hang or crash at {n} ranks (last case started: {last})\n{log}"
    outcomes = {(r["outcome"], r.get("type"), r.get("message")) for r in got.values()}
    assert len(outcomes) == 1, f"{name}: ranks disagree: {outcomes}"
    outcome, etype, message = outcomes.pop()
    if fault == "columns_one_rank" and n == 1:  # one rank: a valid matrix with one column less
        assert outcome == "ok", f"{name}: {etype}: {message}"
        return
    if fault == "no_rows_one_rank" and n > 1:  # valid: rank 0's rows are the whole matrix
        assert outcome == "ok", f"{name}: {etype}: {message}"
        sv = got[0]["singular_values"]
        assert all(r["singular_values"] == sv for r in got.values())
        A = np.random.default_rng(7).standard_normal((fault_driver.N_LOCAL, fault_driver.M_COLS))
        A *= 0.5 ** np.arange(fault_driver.M_COLS)  # fault_driver._data() of rank 0
        w = np.sqrt(np.linspace(1.0, 2.0, fault_driver.N_LOCAL))  # its lumped mass
        ref = np.linalg.svd(w[:, None] * A, compute_uv=False)[: fault_driver.RANK]
        np.testing.assert_allclose(sv[: fault_driver.RANK], ref, rtol=1e-8)
        return
    assert outcome == "error", f"{name}: accepted silently at {n} ranks"
    assert etype == "ValueError", f"{name}: {etype}: {message}"
    assert "\n" not in message
    assert any(all(w in message for w in words) for words in EXPECTED[fault]), message


# --- bad arguments, serial ------------------------------------------------------------------
X_GOOD = np.random.default_rng(0).standard_normal((30, 6))

BAD_X = {
    "0-d": np.float64(1.0),
    "1-d": np.ones(5),
    "3-d": np.ones((3, 3, 3)),
    "complex": X_GOOD.astype(complex),
    "no columns": np.ones((5, 0)),
    "no rows": np.ones((0, 5)),
    "text": "snapshots",
    "object": np.array([[object()]]),
}
SOLVERS = {
    "pod": lambda X, **kw: rom.pod(X, **kw),
    "pod-qr": lambda X, **kw: rom.pod(X, pod_method="qr", **kw),
    "isvd": lambda X, **kw: rom.IncrementalSVD(**kw).fit(X),
    "randomized": lambda X, **kw: rom.randomized_svd(X, **{"rank": 2, **kw}),
    "compress": lambda X, **kw: rom.compress(X, **kw),
}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("bad", sorted(BAD_X))
def test_bad_snapshot_matrix_is_refused_with_a_clear_message(solver, bad):
    with pytest.raises(ValueError) as info:
        SOLVERS[solver](BAD_X[bad])
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("rank", [0, -1, 2.5, 7])
def test_bad_rank_is_refused(solver, rank):
    """rank 0, negative, fractional or above the number of snapshots (6) is an error."""
    with pytest.raises(ValueError, match="rank"):
        SOLVERS[solver](X_GOOD, rank=rank)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_nested_lists_and_integers_are_arrays(solver):
    """Array-likes and integer dtypes are converted, as numpy would."""
    Xi = np.arange(60).reshape(12, 5) % 7
    a = SOLVERS[solver](Xi.tolist(), rank=2)
    b = SOLVERS[solver](Xi.astype(float), rank=2)
    sa = getattr(a, "singular_values", getattr(a, "singular_values_", None))
    sb = getattr(b, "singular_values", getattr(b, "singular_values_", None))
    np.testing.assert_allclose(sa, sb, rtol=1e-12)


@pytest.mark.parametrize("method", ["snapshots", "qr"])
def test_nan_is_an_error_not_zero_modes(method):
    X = X_GOOD.copy()
    X[4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rom.pod(X, pod_method=method, rank=2)
    with pytest.raises(ValueError, match="NaN"):
        rom.compress(X, rank=2)


# --- a tolerance below what the method can certify --------------------------------------
def _down_to_round_off(rng) -> np.ndarray:
    """400 x 60 with singular values 1 ... 1e-20: its tail meets every tolerance in exact
    arithmetic, but no method resolves the values below its rounding floor."""
    U, _ = np.linalg.qr(rng.standard_normal((400, 60)))
    V, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    return (U * np.logspace(0, -20, 60)) @ V.T


FLOORED = {  # each call with a tolerance of its argument, relative to ||X||_F
    "pod-snapshots": lambda X, t, c: rom.pod(X, pod_method="snapshots", rel_l2_err=t, comm=c),
    "pod-qr": lambda X, t, c: rom.pod(X, pod_method="qr", rel_l2_err=t, comm=c),
    "pod-qr-l2_err": lambda X, t, c: rom.pod(X, pod_method="qr", l2_err=t, comm=c),
    "compress-batch": lambda X, t, c: rom.compress(X, rel_l2_err=t, comm=c),
    "compress-hapod": lambda X, t, c: rom.compress(
        X, method="hapod", rel_l2_err=t, chunk=16, comm=c
    ),
    "compress-incremental": lambda X, t, c: rom.compress(
        X, method="incremental", rel_l2_err=t, chunk=16, comm=c
    ),
    "dist_hapod": lambda X, t, c: rom.dist_hapod(X, eps=t / np.sqrt(60), chunk=16, comm=c),
    "inc_hapod": lambda X, t, c: rom.inc_hapod(X, eps=t / np.sqrt(60), chunk=16, comm=c),
}


@pytest.mark.mpi
@pytest.mark.parametrize("call", sorted(FLOORED))
def test_tolerance_below_the_floor_is_reported(call, comm, rng):
    """``rel_l2_err=1e-15`` (``l2_err``/``eps`` alike, ``||X||_F = 1.08``): the bound returned
    stays an upper bound of the true error (numpy) but cannot reach the request, and a
    ToleranceWarning says so on every rank; an attainable 1e-6 is met without a warning."""
    A = _down_to_round_off(rng)
    X = distribute_rows(A, comm)
    norm = np.linalg.norm(A)
    with pytest.warns(ToleranceWarning, match="below what") as rec:
        res = FLOORED[call](X, 1e-15, comm)
    assert all("\n" not in str(w.message) for w in rec)
    U = gather_rows(res.modes, comm)
    err = np.linalg.norm(A - U @ (U.T @ A))
    assert err <= res.error_bound * (1 + 1e-6) + 1e-14 * norm
    assert res.error_bound > 1e-15 * norm  # the request was not met: the warning was due
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToleranceWarning)
        res = FLOORED[call](X, 1e-6, comm)
    U = gather_rows(res.modes, comm)
    err = np.linalg.norm(A - U @ (U.T @ A))
    assert err <= res.error_bound * (1 + 1e-6) <= 1e-6 * norm * (1 + 1e-6)


@pytest.mark.mpi
def test_randomized_refuses_a_tolerance_below_its_floor(comm, rng):
    X = distribute_rows(_down_to_round_off(rng), comm)
    with pytest.raises(ValueError, match="below what randomized_svd can certify") as exc:
        rom.compress(X, method="randomized", rel_l2_err=1e-15, comm=comm)
    assert "\n" not in str(exc.value)


def test_a_rank_cap_is_not_an_unmet_tolerance(rng):
    """``rank=`` capping the modes is what was asked: no ToleranceWarning."""
    A = _down_to_round_off(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToleranceWarning)
        res = rom.pod(A, pod_method="qr", rank=5, rel_l2_err=1e-15)
    assert res.n_modes == 5
    np.testing.assert_allclose(res.singular_values, np.logspace(0, -20, 60)[:5], rtol=1e-12)


# --- an unexpected error on one rank ----------------------------------------------------------
def test_an_unexpected_error_on_one_rank_aborts_every_rank(tmp_path):
    """Under ``python -m mpi4py`` an exception that escapes on rank 1 (not one of the library's
    collective errors) aborts the job while rank 0 waits inside ``rom.pod``'s collective
    validation: ``mpirun`` exits non-zero within seconds, with rank 1's traceback."""
    script = tmp_path / "one_rank_fails.py"
    script.write_text(
        "import numpy as np\nfrom mpi4py import MPI\nimport rom\nc = MPI.COMM_WORLD\n"
        "if c.rank == 1:\n    raise RuntimeError('injected failure on rank 1')\n"
        "rom.pod(np.ones((10, 3)), comm=c)\n"
    )
    t0 = time.monotonic()
    res = subprocess.run(
        [MPIRUN, "-n", "2", sys.executable, "-m", "mpi4py", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in res.stderr, res.stderr[-2000:]
    assert time.monotonic() - t0 < 60  # interpreter start-up included; no wait in a collective


# --- signals ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_an_mpirun_within_seconds(sig, tmp_path):
    """A rank blocked in a collective while its peer computes: the signal ends both."""
    script = tmp_path / "busy.py"
    script.write_text(
        "import time\nfrom mpi4py import MPI\nimport rom\nc = MPI.COMM_WORLD\nc.Barrier()\n"
        "if c.rank == 0:\n    print('ready', flush=True)\n    time.sleep(120)\nc.Barrier()\n"
    )
    proc = subprocess.Popen(
        [MPIRUN, "-n", "2", sys.executable, "-m", "mpi4py", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=15)
        assert time.monotonic() - t0 < 15 and proc.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"mpirun still running 15 s after {sig.name}")
