"""Owned-row helpers, collective validation and BLAS thread limits."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from rom import parallel as par

pytestmark = [pytest.mark.mpi, pytest.mark.partition]


def test_row_range_partitions_every_row_once(comm):
    for n in (0, 1, 2, 7, 100):
        ranges = [par.row_range(n, comm, rank=r) for r in range(comm.size)]
        covered = np.concatenate([np.arange(a, b) for a, b in ranges])
        np.testing.assert_array_equal(covered, np.arange(n))
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_distribute_and_gather_roundtrip(comm, rng):
    A = rng.standard_normal((23, 4))
    np.testing.assert_array_equal(par.gather_rows(par.distribute_rows(A, comm), comm), A)


def test_error_on_one_rank_raises_on_all(comm):
    msg = "bad input" if comm.rank == comm.size - 1 else None
    with pytest.raises(ValueError, match="bad input"):
        par.check_collective(msg, comm)


def test_validate_local_rows_catches_nan_and_column_mismatch(comm, rng):
    X = rng.standard_normal((10, 3))
    if comm.rank == 0:
        X[4, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf.*row 4, column 1"):
        par.validate_local_rows(X, "S", comm)
    Y = rng.standard_normal((5, 3 if comm.rank else 2))
    if comm.size > 1:
        with pytest.raises(ValueError, match="columns"):
            par.validate_local_rows(Y, "S", comm)
    _, n = par.validate_local_rows(rng.standard_normal((5, 3)), "S", comm)
    assert n == 5 * comm.size


def test_inner_products_sum_over_ranks(comm, rng):
    A = rng.standard_normal((31, 3))
    B = rng.standard_normal((31, 2))
    w = rng.uniform(1, 2, 31)
    wl = par.distribute_rows(w, comm)
    G = par.inner(
        par.distribute_rows(A, comm),
        par.distribute_rows(B, comm),
        comm,
        product=lambda X: wl[:, None] * X,
    )
    np.testing.assert_allclose(G, A.T @ (w[:, None] * B), rtol=1e-13)
    nrm = par.norms(par.distribute_rows(A, comm), comm)
    np.testing.assert_allclose(nrm, np.linalg.norm(A, axis=0), rtol=1e-13)


def test_blas_threads_limited_per_rank_under_mpi(comm):
    def blas_threads_now():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    ncpu = len(os.sched_getaffinity(0))
    with par.blas_threads(comm):
        inside = blas_threads_now()
    if comm.size > 1:
        # ranks share this node: each gets its share of the cores, at least one thread
        assert inside and all(t == max(1, ncpu // comm.size) for t in inside)
    else:
        assert inside == blas_threads_now()  # serial runs are left alone


@pytest.mark.mpi
def test_every_rank_runs_blas_on_its_share_of_the_cores(comm):
    """Importing rom under mpirun limits each rank's BLAS pools for the whole process, also
    outside the library's own calls (oversubscribed pools make 2 ranks several times slower)."""
    ncpu = len(os.sched_getaffinity(0))
    user_set = any(
        v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    ) and os.environ.get("OPENBLAS_NUM_THREADS") != str(max(1, ncpu // comm.size))
    threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert threads
    if comm.size > 1 and not user_set:
        share = max(1, ncpu // comm.size)
        assert all(t <= share for t in threads), threads
        assert os.environ["OPENBLAS_NUM_THREADS"] == str(share)  # for pools loaded later
    # the rule itself: serial runs are left alone, P ranks on a node share its cores
    assert par.limit_blas_per_rank(world_size=1) is None


def test_product_error_names_what_cannot_be_an_spd_block():
    import scipy.sparse as sp

    M = sp.diags(np.linspace(1.0, 2.0, 5)).tocsr()
    assert par.product_error(None, 5) is None
    assert par.product_error(M, 5) is None
    assert par.product_error(M.toarray(), 5) is None
    assert par.product_error(lambda X: X, 5) is None  # callables are not inspected
    assert "shape" in par.product_error(M, 6)
    bad = M.toarray()
    bad[0, 0] = np.nan
    assert "NaN" in par.product_error(bad, 5)
    bad = M.toarray()
    bad[0, 1] = 0.5
    assert "symmetric" in par.product_error(sp.csr_matrix(bad), 5)
    assert "positive" in par.product_error(-M, 5)
