"""compress(): every method on arrays and on the HDF5 store (streamed), against LAPACK; the
out-of-core memory budget (tracemalloc, serial); clear errors.

References: numpy.linalg.svd of the gathered matrix; the true projection error computed with
numpy; tracemalloc's peak for the memory budget. Round-off slack on bounds: 1e-12 ||S||_F.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from rom.compression import CompressionResult
from rom.compression import compress
from rom.io import SnapshotStore
from rom.parallel import distribute_rows
from rom.parallel import gather_rows
from rom.parallel import row_range

SLACK = 1e-12


def lowrank(rng, n, m, r=12, decay=6):
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((m, r)))
    return (U * np.logspace(0, -decay, r)) @ V.T


def proj_error(A, U, w=None):
    W = np.ones((A.shape[0], 1)) if w is None else w[:, None]
    R = A - U @ ((U * W).T @ A)
    return float(np.sqrt(np.sum(R * R * W)))


def write_store(path, A, comm, *, append_cols=10):
    lo, hi = row_range(A.shape[0], comm)
    keys = np.arange(lo, hi, dtype=np.int64)
    store = SnapshotStore.create(path, {"u": keys}, comm=comm, overwrite=True)
    for j in range(0, A.shape[1], append_cols):
        store.append({"u": A[lo:hi, j : j + append_cols]})
    store.close()
    return SnapshotStore.open(path, "r", comm=comm)


OPTIONS = {
    "batch": {"rel_l2_err": 1e-4},
    "incremental": {"rel_l2_err": 1e-4},
    "hapod": {"rel_l2_err": 1e-4},
    "randomized": {"rank": 10},
    "randomized-tol": {"rel_l2_err": 1e-4},  # the adaptive range finder
}
METHOD = {"randomized-tol": "randomized"}


def check_result(res, A, comm, key, w=None):
    method = METHOD.get(key, key)
    assert isinstance(res, CompressionResult)
    assert res.method == method and res.n_snapshots == A.shape[1]
    U = gather_rows(res.modes, comm)
    W = np.ones((A.shape[0], 1)) if w is None else w[:, None]
    k = U.shape[1]
    assert np.abs((U * W).T @ U - np.eye(k)).max() <= 1e-12
    norm = float(np.sqrt(np.sum(A * A * W)))
    err = proj_error(A, U, w)
    sref = np.linalg.svd(np.sqrt(W) * A, compute_uv=False)
    if key == "randomized":
        assert res.error_bound is None
        assert err <= 1.05 * math.sqrt(np.sum(sref[k:] ** 2))
    else:
        assert err <= res.error_bound + SLACK * norm
        assert res.error_bound <= 1e-4 * norm * (1 + 1e-10)
    # singular values: exact for batch, within the bound for the approximations (Weyl:
    # |sigma_i(S) - sigma_i(S~)| <= ||S - S~||_2), leading ones for randomized
    if key == "randomized":
        np.testing.assert_allclose(res.singular_values[:5], sref[:5], rtol=1e-9)
    else:
        atol = 1e-10 * sref[0] if method == "batch" else res.error_bound + SLACK * norm
        np.testing.assert_allclose(res.singular_values, sref[:k], rtol=0, atol=atol)
    assert "total" in res.details["timings"]
    np.testing.assert_allclose(res.total_energy, norm**2, rtol=1e-10)


@pytest.mark.mpi
@pytest.mark.parametrize("method", list(OPTIONS))
@pytest.mark.parametrize("weighted", [False, True])
def test_methods_on_arrays(comm, rng, method, weighted):
    n, m = 160, 75
    A = lowrank(rng, n, m)
    w = 1.0 + 0.3 * np.cos(np.arange(n)) if weighted else None
    product = None
    if weighted:
        wl = distribute_rows(w, comm)
        product = lambda X: wl[:, None] * X  # noqa: E731
    res = compress(
        distribute_rows(A, comm),
        method=METHOD.get(method, method),
        chunk=11,
        product=product,
        comm=comm,
        **OPTIONS[method],
    )
    check_result(res, A, comm, method, w)


@pytest.mark.mpi
@pytest.mark.partition
@pytest.mark.parametrize("method", list(OPTIONS))
def test_methods_stream_from_store(comm, rng, shared_tmp_path, method):
    n, m = 140, 57
    A = lowrank(rng, n, m)
    store = write_store(shared_tmp_path / f"snap-{method}.h5", A, comm)
    try:
        res = compress(
            store, method=METHOD.get(method, method), chunk=8, comm=comm, **OPTIONS[method]
        )
    finally:
        store.close()
    check_result(res, A, comm, method)
    # same result as from the in-memory rows (streaming changes nothing but the memory)
    ref = compress(
        distribute_rows(A, comm),
        method=METHOD.get(method, method),
        chunk=8,
        comm=comm,
        **OPTIONS[method],
    )
    np.testing.assert_allclose(res.singular_values, ref.singular_values, rtol=1e-12)


@pytest.mark.parametrize(
    "method,opts",
    [
        ("incremental", {"rank": 6}),
        ("randomized", {"rank": 6, "oversampling": 4, "power_iterations": 1}),
    ],
)
def test_out_of_core_peak_memory_under_budget(tmp_path, rng, method, opts):
    n, m, r = 25_000, 200, 6  # 40 MB of snapshots
    budget = 12 * 2**20
    Ur, _ = np.linalg.qr(rng.standard_normal((n, r)))
    store = SnapshotStore.create(tmp_path / "big.h5", {"u": np.arange(n)})
    for _ in range(0, m, 25):  # never more than 5 MB of snapshots in memory while writing
        store.append({"u": Ur @ (rng.standard_normal((r, 25)) * np.logspace(0, -3, r)[:, None])})
    store.close()
    del Ur
    store = SnapshotStore.open(tmp_path / "big.h5", "r")
    assert n * m * 8 >= 3 * budget
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        res = compress(store, method=method, chunk=8, **opts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    assert peak <= budget, f"peak {peak / 2**20:.1f} MiB > budget {budget / 2**20:.0f} MiB"
    assert res.modes.shape == (n, 6)
    # the data has rank 6: the modes reproduce a column read back from the store
    with SnapshotStore.open(tmp_path / "big.h5", "r") as st:
        col = st.read(columns=np.array([0, 137]))
    U = res.modes
    assert np.linalg.norm(col - U @ (U.T @ col)) <= 1e-10 * np.linalg.norm(col)


@pytest.mark.mpi
def test_errors_are_clear(comm):
    X = np.ones((5, 3))
    with pytest.raises(ValueError, match="method must be one of"):
        compress(X, method="svd", comm=comm)
    with pytest.raises(ValueError, match="does not take"):
        compress(X, method="randomized", rank=2, eps=1.0, comm=comm)
    with pytest.raises(ValueError, match="needs rank="):
        compress(X, method="randomized", comm=comm)
    with pytest.raises(ValueError, match="exactly one of eps"):
        compress(X, method="hapod", comm=comm)
    Y = X.copy()
    if comm.rank == comm.size - 1:
        Y[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        compress(Y, method="incremental", comm=comm)
