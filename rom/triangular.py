r"""Triangular matrix products on tall, C-ordered row blocks, with the GIL released.

The Cholesky-QR passes of :mod:`rom.compression._pod` multiply tall arrays of owned rows by a small
inverse triangular factor, :math:`Q \leftarrow Q R^{-1}` (BLAS-3 ``trmm``, half the flops of
a general product). Row ranges of such a product run in parallel threads
(:func:`rom.parallel.split_rows`) only if the BLAS call releases the GIL. numpy's products
do; scipy's Python-level wrappers (``scipy.linalg.blas.dtrmm``) do not (measured on 2 cores,
200,000 x 400: two one-thread row halves in two threads took 0.79 s, the same as one after
the other). So :func:`trmm_rows` calls the Fortran ``dtrmm`` that scipy exports for Cython
(:mod:`scipy.linalg.cython_blas`; its function pointers sit in the capsules that Cython's
``cimport`` reads, ``__pyx_capi__``) through a :mod:`ctypes` prototype, and ctypes releases
the GIL for the call: the two halves then take 0.42 s, as fast as one BLAS-threaded call.
The pointer is looked up once per process (a cached constant, not state).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

__all__ = ["trmm_rows"]

_INT_MAX = 2**31 - 1  # cython_blas takes C ints: rows per call and the row stride

# void dtrmm(char *side, char *uplo, char *transa, char *diag, int *m, int *n, double *alpha,
#            double *a, int *lda, double *b, int *ldb)   (Fortran BLAS, arguments by reference)
_DTRMM = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 11))


def _capsule_pointer(capsule) -> int:
    """The C pointer inside a PyCapsule (its name is the Cython signature string).

    Private prototypes: the shared ``ctypes.pythonapi`` functions are not reconfigured."""
    api = ctypes.pythonapi
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", api))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", api)
    )
    return get_pointer(capsule, get_name(capsule))


@functools.cache
def _dtrmm():
    """ctypes function for scipy's Cython-level ``dtrmm``, or ``None`` where unavailable."""
    try:
        from scipy.linalg import cython_blas

        return _DTRMM(_capsule_pointer(cython_blas.__pyx_capi__["dtrmm"]))
    except (ImportError, AttributeError, KeyError, ValueError, OSError):
        return None


def trmm_rows(B: np.ndarray, U: np.ndarray) -> np.ndarray:
    r"""In place :math:`B \leftarrow B\,U` for a C-ordered row block :math:`B` (n x k) and an
    upper triangular :math:`U` (k x k; its strictly lower part is ignored).

    In Fortran's column-major view the C-ordered :math:`B` is :math:`B^T` and a C-ordered
    :math:`U` is the lower triangular :math:`U^T`, so this is ``dtrmm('L', 'L', 'N', 'N')``:
    :math:`B^T \leftarrow U^T B^T`. The call releases the GIL, so row ranges of one array can
    be multiplied in parallel threads. Where scipy's Cython BLAS cannot be reached, it falls
    back to ``scipy.linalg.blas.dtrmm`` (same result; it holds the GIL).

    Parameters
    ----------
    B : ndarray of shape (n, k), float64, writeable
        Rows contiguous and aligned (``B.strides[1] == 8``, row stride a positive multiple
        of 8 bytes), e.g. a row slice or a leading column block of a C-ordered array.
        Other layouts raise ``ValueError`` (the BLAS call would read and write past them).
    U : ndarray of shape (k, k), real
        Cast to float64.

    Returns
    -------
    ndarray
        ``B`` itself.
    """
    n, k = B.shape
    if U.shape != (k, k):
        raise ValueError(f"trmm_rows: U has shape {U.shape}, expected ({k}, {k})")
    if np.iscomplexobj(U):
        raise ValueError("trmm_rows: U must be real")
    if n == 0 or k == 0:
        return B
    row_stride = B.strides[0] if n > 1 else 8 * k
    if (
        B.dtype != np.float64
        or not B.flags.aligned
        or (k > 1 and B.strides[1] != 8)
        or row_stride < 8 * k
        or row_stride % 8
        or row_stride // 8 > _INT_MAX
    ):
        raise ValueError(
            "trmm_rows: B must be an aligned float64 array with contiguous rows "
            f"(dtype {B.dtype}, strides {B.strides})"
        )
    if not B.flags.writeable:
        raise ValueError("trmm_rows: B is read-only")
    Uc = np.ascontiguousarray(U, dtype=np.float64)
    f = _dtrmm()
    if f is None:
        import scipy.linalg as sla

        res = sla.blas.dtrmm(
            1.0, np.asfortranarray(np.triu(Uc)), B.T, side=0, lower=0, trans_a=1, overwrite_b=1
        )
        if not np.shares_memory(res, B):  # f2py copied a strided block
            B[...] = res.T
        return B
    chars = [ctypes.c_char(c) for c in (b"L", b"L", b"N", b"N")]
    m_, lda, ldb = ctypes.c_int(k), ctypes.c_int(k), ctypes.c_int(row_stride // 8)
    alpha = ctypes.c_double(1.0)
    for i in range(0, n, _INT_MAX):
        rows = min(_INT_MAX, n - i)
        n_ = ctypes.c_int(rows)
        f(
            *(ctypes.byref(c) for c in chars),
            ctypes.byref(m_),
            ctypes.byref(n_),
            ctypes.byref(alpha),
            ctypes.c_void_p(Uc.ctypes.data),
            ctypes.byref(lda),
            ctypes.c_void_p(B[i:].ctypes.data),
            ctypes.byref(ldb),
        )
    return B
