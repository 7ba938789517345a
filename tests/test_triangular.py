"""GIL-free triangular products on row blocks (rom.triangular) against numpy's dense product."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from rom import triangular


@pytest.mark.parametrize("n,k", [(1, 1), (1, 5), (7, 1), (300, 17), (2000, 64)])
def test_trmm_rows_equals_dense_product_with_upper_triangle(rng, n, k):
    """B <- B U uses U's upper triangle only (the strictly lower part is ignored)."""
    B = rng.standard_normal((n, k))
    U = rng.standard_normal((k, k))  # a full matrix: its lower part must not enter
    ref = B @ np.triu(U)
    out = triangular.trmm_rows(B, U)
    assert out is B
    np.testing.assert_allclose(B, ref, rtol=0, atol=1e-13 * max(1.0, np.abs(ref).max()))


def test_trmm_rows_on_row_and_column_slices_touches_nothing_else(rng):
    """A row range and a leading column block of a C-ordered array (row stride > 8 k) are
    multiplied in place; the other rows and columns keep their values."""
    A = rng.standard_normal((60, 30))
    A0 = A.copy()
    U = np.triu(rng.standard_normal((20, 20)))
    triangular.trmm_rows(A[10:40, :20], U)
    np.testing.assert_allclose(A[10:40, :20], A0[10:40, :20] @ U, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(A[:10], A0[:10])
    np.testing.assert_array_equal(A[40:], A0[40:])
    np.testing.assert_array_equal(A[10:40, 20:], A0[10:40, 20:])


def test_trmm_rows_fallback_without_cython_blas_gives_the_same_result(rng, monkeypatch):
    """Where scipy's Cython BLAS cannot be reached, scipy.linalg.blas.dtrmm does the work (also
    on a strided block, which f2py copies: the result must still land in B)."""
    A = rng.standard_normal((50, 12))
    U = rng.standard_normal((8, 8))
    ref = A[:, :8] @ np.triu(U)
    rest = A[:, 8:].copy()
    monkeypatch.setattr(triangular, "_dtrmm", lambda: None)
    triangular.trmm_rows(A[:, :8], U)
    np.testing.assert_allclose(A[:, :8], ref, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(A[:, 8:], rest)


def test_trmm_rows_rejects_bad_layouts_and_shapes(rng):
    U = np.eye(4)
    with pytest.raises(ValueError, match="shape"):
        triangular.trmm_rows(np.zeros((5, 3)), U)
    with pytest.raises(ValueError, match="contiguous rows"):
        triangular.trmm_rows(np.asfortranarray(rng.standard_normal((5, 4))), U)
    with pytest.raises(ValueError, match="float64"):
        triangular.trmm_rows(np.zeros((5, 4), dtype=np.float32), U)
    # one row with strided columns: BLAS would take k packed doubles (and write past the row)
    A = np.arange(12.0).reshape(3, 4)
    with pytest.raises(ValueError, match="contiguous rows"):
        triangular.trmm_rows(A[-1:, ::-1], U)
    with pytest.raises(ValueError, match="contiguous rows"):
        triangular.trmm_rows(A[:1, ::2], np.eye(2))
    np.testing.assert_array_equal(A, np.arange(12.0).reshape(3, 4))
    # a field of a structured array: row stride not a multiple of 8 bytes, unaligned
    rec = np.zeros(5, dtype=[("a", "i4"), ("b", "f8", (4,))])
    with pytest.raises(ValueError, match="contiguous rows"):
        triangular.trmm_rows(rec["b"], U)
    with pytest.raises(ValueError, match="real"):
        triangular.trmm_rows(np.zeros((5, 4)), U.astype(complex))
    frozen = np.ones((5, 4))
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        triangular.trmm_rows(frozen, U)
    np.testing.assert_array_equal(frozen, 1.0)


def test_trmm_rows_releases_the_gil(rng):
    """While one thread is inside the product, another thread keeps running Python code: the
    point of the module (scipy.linalg.blas.dtrmm holds the GIL, so row ranges in threads
    would run one after the other)."""
    from threadpoolctl import threadpool_limits

    if triangular._dtrmm() is None:
        pytest.fail("scipy.linalg.cython_blas.dtrmm is not reachable: trmm_rows holds the GIL")
    B = rng.standard_normal((100_000, 200))
    U = np.triu(rng.standard_normal((200, 200)))
    stamps = []
    stop = threading.Event()

    def count():  # timestamps of a Python loop, one per 256 iterations
        c = 0
        while not stop.is_set():
            c += 1
            if c & 255 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=count)
    t.start()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            t0 = time.perf_counter()
            triangular.trmm_rows(B, U)  # about 0.1 s of one-thread BLAS work
            t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    # A GIL held for the call lets the loop run only near its edges (within a 5 ms switch
    # interval of t0 or t1); count the stamps well inside the call.
    margin = 4 * sys.getswitchinterval()
    assert t1 - t0 > 3 * margin, "the product was too quick to tell"
    inside = [s for s in stamps if t0 + margin < s < t1 - margin]
    assert len(inside) > 10
