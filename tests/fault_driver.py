"""One-rank faults against the compression API, run under ``mpirun`` by ``test_faults.py``.

Each case builds a small row-distributed problem, injects one fault (on one rank or on all),
calls one public function and writes one JSON line per case to ``DIR/rank<r>.jsonl``::

    {"case": ..., "rank": r, "outcome": "error" | "ok", "type": ..., "message": ...}

A case that hangs never prints: ``faulthandler`` ends the process after ``--timeout`` seconds
and the test reports the last case that started. Usage::

    mpirun -n 2 python -m mpi4py tests/fault_driver.py --out DIR [--timeout 20] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys

import numpy as np
import scipy.sparse as sp
from mpi4py import MPI

import rom

COMM = MPI.COMM_WORLD
N_LOCAL, M_COLS, RANK = 40, 8, 3


def _data(seed: int = 7) -> np.ndarray:
    """Owned rows of a matrix with a decaying spectrum, different on every rank."""
    rng = np.random.default_rng(seed + 101 * COMM.rank)
    A = rng.standard_normal((N_LOCAL, M_COLS))
    return A * (0.5 ** np.arange(M_COLS))


def _mass(n: int = N_LOCAL) -> sp.csr_matrix:
    """A lumped (diagonal, positive) mass matrix on this rank's rows."""
    return sp.diags(np.linspace(1.0, 2.0, n)).tocsr()


def _last_rank() -> bool:
    return COMM.rank == COMM.size - 1


# --- faults: each returns (X, product) for this rank -------------------------------------
def f_product_shape_one_rank():
    return _data(), _mass(N_LOCAL + 1) if _last_rank() else _mass()


def f_nan_one_rank():
    X = _data()
    if _last_rank():
        X[3, 2] = np.nan
    return X, _mass()


def f_inf_all_ranks():
    X = _data()
    X[0, 0] = np.inf
    return X, _mass()


def f_columns_one_rank():
    X = _data()
    return (X[:, :-1] if _last_rank() else X), _mass()


def f_no_rows_one_rank():
    """The last rank owns no rows: valid with other ranks, no matrix at all at one rank."""
    n = 0 if _last_rank() else N_LOCAL
    return _data()[:n], _mass(n)


def f_product_negative_all():
    return _data(), -_mass()


def f_product_negative_one_rank():
    return _data(), (-_mass() if _last_rank() else _mass())


def f_product_not_symmetric():
    rng = np.random.default_rng(3)
    B = sp.csr_matrix(np.triu(rng.uniform(0.5, 1.5, (N_LOCAL, N_LOCAL)), 1))
    return _data(), (_mass() + 3.0 * B).tocsr()


def f_product_indefinite():
    """Symmetric with a positive diagonal, but I - (2/n) 1 1^T has the eigenvalue -1 on the
    constant vector, and the data (offset fields) make X^T M X indefinite."""
    n = N_LOCAL
    return 1.0 + 0.1 * _data(), sp.csr_matrix(np.eye(n) - (2.0 / n) * np.ones((n, n)))


def f_product_nan():
    M = _mass().tolil()
    M[1, 1] = np.nan
    return _data(), M.tocsr()


FAULTS = {name[2:]: fn for name, fn in globals().items() if name.startswith("f_")}

# --- the public functions under test -------------------------------------------------------
CALLS = {
    "pod-qr": lambda X, M: rom.pod(X, product=M, comm=COMM, pod_method="qr", rank=RANK),
    "pod-snapshots": lambda X, M: rom.pod(
        X, product=M, comm=COMM, pod_method="snapshots", rank=RANK
    ),
    "isvd-fit": lambda X, M: rom.IncrementalSVD(rank=RANK, product=M, comm=COMM).fit(X, chunk=3),
    "compress-incremental": lambda X, M: rom.compress(
        X, method="incremental", product=M, comm=COMM, rank=RANK, chunk=3
    ),
    "compress-hapod": lambda X, M: rom.compress(
        X, method="hapod", product=M, comm=COMM, rel_l2_err=1e-2, chunk=3
    ),
    "randomized": lambda X, M: rom.randomized_svd(X, rank=RANK, product=M, comm=COMM, seed=0),
}


def cases() -> list[tuple[str, str, str]]:
    return [(f"{c}/{f}", c, f) for c in CALLS for f in FAULTS]


def run(only: list[str] | None, timeout: float, out: str) -> None:
    log = open(f"{out}/rank{COMM.rank}.jsonl", "w")  # one file per rank: lines never interleave
    for name, call, fault in cases():
        if only and name not in only:
            continue
        print(json.dumps({"start": name}), file=log, flush=True)
        faulthandler.dump_traceback_later(timeout, exit=True)
        X, M = FAULTS[fault]()
        rec = {"case": name, "rank": COMM.rank}
        try:
            res = CALLS[call](X, M)
            sv = getattr(res, "singular_values", getattr(res, "singular_values_", None))
            rec.update(outcome="ok", singular_values=[float(v) for v in sv])
        except Exception as e:  # the test compares what every rank saw
            rec.update(outcome="error", type=type(e).__name__, message=str(e))
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(rec), file=log, flush=True)
        COMM.Barrier()  # a case that left ranks out of step shows up as a hang here


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--only", nargs="*", help="case names (CALL/FAULT)")
    ap.add_argument("--call", help="run every fault against this call only")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=".", help="folder for the per-rank result files")
    a = ap.parse_args()
    if a.list:
        print("\n".join(name for name, _, _ in cases()))
        sys.exit(0)
    rom.limit_blas_per_rank()
    only = a.only or ([f"{a.call}/{f}" for f in FAULTS] if a.call else None)
    run(only, a.timeout, a.out)
