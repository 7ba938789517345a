"""Distributed arrays of owned rows: communicators, reductions, collective validation.

Every routine of :mod:`rom` that works on snapshot matrices takes a numpy array holding the
rows this rank owns plus an optional ``comm`` (an ``mpi4py`` communicator). ``comm=None``
means serial and is equivalent to ``MPI.COMM_SELF``. Row-distributed products such as the
Gram matrix :math:`X^T M X = \\sum_p X_p^T (M X)_p` are formed locally and summed over ranks.

Inputs are validated *collectively* before the first collective operation: each rank checks
its own rows, the verdicts are gathered, and every rank raises the same error. A bad input
therefore never leaves some ranks waiting in a reduction (docs/mpi.md).

BLAS threads: :func:`limit_blas_per_rank`, called once by a script (the cases, the ``rom``
command, the tests), gives each rank its share of the node's cores; :func:`blas_threads`
does the same for one block of code. The library's kernels (:mod:`rom.linalg`) are plain
BLAS calls and set no thread count themselves.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.interop import from_pymor

__all__ = [
    "allreduce_max",
    "allreduce_sum",
    "apply_product",
    "blas_threads",
    "check_collective",
    "check_gram",
    "distribute_rows",
    "gather_rows",
    "get_comm",
    "gram_error",
    "gram_tolerance",
    "inner",
    "limit_blas_per_rank",
    "local_inner",
    "norms",
    "product_error",
    "replicated_sum",
    "row_range",
    "usable_cores",
    "validate_finite",
    "validate_local_rows",
]


def get_comm(comm: MPI.Comm | None) -> MPI.Comm:
    """Return ``comm``, or ``MPI.COMM_SELF`` when it is ``None`` (serial)."""
    return MPI.COMM_SELF if comm is None else comm


def _allreduce(a: np.ndarray | float, comm: MPI.Comm | None, op: MPI.Op) -> np.ndarray:
    """``op`` of ``a`` over all ranks, into a new float64 array; serial: a copy, no MPI call."""
    a = np.array(a, dtype=np.float64, order="C")
    comm = get_comm(comm)
    if comm.size == 1:
        return a
    out = np.empty_like(a)
    comm.Allreduce(a, out, op=op)
    return out


def allreduce_sum(a: np.ndarray | float, comm: MPI.Comm | None = None) -> np.ndarray:
    """Sum ``a`` over all ranks; a new float64 array (scalars give 0-d arrays).

    Serial calls return a copy without touching MPI.
    """
    return _allreduce(a, comm, MPI.SUM)


def replicated_sum(a: np.ndarray | float, comm: MPI.Comm | None = None) -> np.ndarray:
    """Sum ``a`` over all ranks, bit-identical on every rank.

    MPI does not promise that every rank of an Allreduce gets the same bits, so rank 0's sum
    is broadcast: choices made from it (clustering ties) then agree on all ranks.
    """
    out = allreduce_sum(a, comm)
    comm = get_comm(comm)
    if comm.size > 1:
        comm.Bcast(out, root=0)
    return out


def allreduce_max(a: np.ndarray | float, comm: MPI.Comm | None = None) -> np.ndarray:
    """Element-wise maximum of ``a`` over all ranks."""
    return _allreduce(a, comm, MPI.MAX)


def check_collective(
    error: str | None, comm: MPI.Comm | None = None, exc: type[Exception] = ValueError
) -> None:
    """Raise ``exc`` on every rank if any rank reports an error.

    Parameters
    ----------
    error : str or None
        This rank's verdict: ``None`` when its input is fine, else a message.
    comm : mpi4py communicator, optional
        All ranks of ``comm`` must call this function.
    exc : exception class
        Raised with the message of the lowest failing rank (prefixed with the rank when the
        communicator has more than one).
    """
    comm = get_comm(comm)
    if comm.size == 1:
        if error is not None:
            raise exc(error)
        return
    errors = comm.allgather(error)
    for rank, msg in enumerate(errors):
        if msg is not None:
            raise exc(f"{msg} (reported by rank {rank} of {comm.size})")


def _finite_error(X: np.ndarray, name: str) -> str | None:
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(np.atleast_2d(X)))
        where = ""
        if X.ndim == 2 and bad.size:
            where = f" (first at local row {bad[0, 0]}, column {bad[0, 1]})"
        return f"{name} contains NaN or Inf{where}"
    return None


def validate_finite(X: np.ndarray, name: str = "input", comm: MPI.Comm | None = None) -> None:
    """Collectively check that ``X`` holds no NaN or Inf on any rank."""
    check_collective(_finite_error(np.asarray(X), name), comm)


def validate_local_rows(
    X: Any,
    name: str = "X",
    comm: MPI.Comm | None = None,
    *,
    ncols: int | None = None,
    check_finite: bool = True,
) -> tuple[np.ndarray, int]:
    """Validate a row-distributed matrix collectively and return it as float64.

    Checks on every rank: 2-D, real, finite (unless ``check_finite=False``: callers that
    detect NaN/Inf more cheaply on a reduced quantity, e.g. a Gram matrix, and then call
    :func:`validate_finite` for the message), and the same number of columns on every rank
    (equal to ``ncols`` when given). Returns ``(X, n_rows_global)``.
    """
    comm = get_comm(comm)
    err = None
    try:
        X = np.asarray(from_pymor(X))  # a pyMOR VectorArray becomes its (n, m) array
        if X.ndim != 2:
            err = f"{name} must be 2-D (rows x columns), got shape {X.shape}"
        elif np.iscomplexobj(X):
            err = f"{name} must be real, got dtype {X.dtype}"
        else:
            X = np.asarray(X, dtype=np.float64)
            err = _finite_error(X, name) if check_finite else None
    except (TypeError, ValueError) as e:  # not convertible to an array
        err = f"{name} is not a numeric array: {e}"
    cols = X.shape[1] if err is None else -1
    if comm.size > 1:
        all_cols = comm.allgather(cols)
    else:
        all_cols = [cols]
    if err is None:
        ref = ncols if ncols is not None else max(all_cols)
        if cols != ref:
            err = f"{name} has {cols} columns on this rank, expected {ref}"
    check_collective(err, comm)
    n_rows = int(allreduce_sum(float(X.shape[0]), comm))
    return X, n_rows


def row_range(n: int, comm: MPI.Comm | None = None, rank: int | None = None) -> tuple[int, int]:
    """Contiguous block ``[start, stop)`` of ``n`` rows for a rank (balanced, rank order)."""
    comm = get_comm(comm)
    size = comm.size
    r = comm.rank if rank is None else rank
    q, rem = divmod(n, size)
    start = r * q + min(r, rem)
    return start, start + q + (1 if r < rem else 0)


def distribute_rows(X: np.ndarray, comm: MPI.Comm | None = None) -> np.ndarray:
    """This rank's contiguous block of rows of a matrix every rank holds in full."""
    start, stop = row_range(np.shape(X)[0], comm)
    return np.array(X[start:stop], copy=True)


def gather_rows(X: np.ndarray, comm: MPI.Comm | None = None) -> np.ndarray:
    """Concatenate the row blocks of all ranks in rank order; every rank gets the result."""
    comm = get_comm(comm)
    if comm.size == 1:
        return np.array(X, copy=True)
    return np.concatenate(comm.allgather(np.asarray(X)), axis=0)


def _local_size(comm: MPI.Comm) -> int:
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.size
    finally:
        node.Free()


#: Launcher variables holding the number of ranks on this node (MPICH/Hydra, Open MPI).
_LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
#: Thread-count variables that BLAS/OpenMP runtimes read when they are loaded.
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def limit_blas_per_rank(*, world_size: int | None = None) -> int | None:
    """Limit the BLAS/OpenMP pools of this process to its share of the node's cores.

    Call it once at the start of a script (the case scripts and the ``rom`` command do). Under ``mpirun -n P`` every rank would otherwise
    start a BLAS pool of all the node's cores: ``P`` spinning pools on the same cores make a
    2-rank run several times slower than a serial one, in the library and in everything else
    the rank runs (PETSc, scipy). With ``world_size > 1`` (``MPI.COMM_WORLD.size`` by
    default) the process gets ``max(1, cores // ranks_on_node)`` threads, ``ranks_on_node``
    read from the launcher (``MPI_LOCALNRANKS``, ``OMPI_COMM_WORLD_LOCAL_SIZE``; else all
    ranks are assumed on this node). Not collective. Pools already loaded are limited through
    threadpoolctl, pools loaded later through the ``*_NUM_THREADS`` variables. A thread count
    the user set in the environment (``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS``) is left
    as it is, and serial runs are left alone.

    Returns
    -------
    int or None
        The thread count set, or ``None`` when nothing was changed.
    """
    size = MPI.COMM_WORLD.size if world_size is None else int(world_size)
    if size <= 1 or any(v in os.environ for v in _THREAD_VARS[:2]):
        return None
    local = size
    for var in _LOCAL_SIZE_VARS:
        try:
            local = max(1, int(os.environ[var]))
            break
        except (KeyError, ValueError):
            continue
    ncpu = usable_cores()
    threads = max(1, (ncpu or 1) // local)
    for var in _THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # kept for the life of the process
    return threads


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def blas_threads(
    comm: MPI.Comm | None = None, *, threads: int | None = None
) -> Iterator[int | None]:
    """Limit BLAS/OpenMP threads to the cores of this rank while the block runs.

    With ``comm.size > 1`` the ranks sharing a node split its cores:
    ``threads = max(1, cpu_count // ranks_on_node)``. Serial runs are left alone.
    Oversubscription (every rank running a full BLAS thread pool) makes a 2-rank run several
    times slower than a serial one. Collective over ``comm`` when it has several ranks.
    Yields the thread count set, or ``None`` when the pools were left alone.
    """
    comm = get_comm(comm)
    if threads is None:
        if comm.size == 1:
            yield None
            return
        ncpu = usable_cores()
        threads = max(1, (ncpu or 1) // _local_size(comm))
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield threads


Product = np.ndarray | Callable[[np.ndarray], np.ndarray] | Any


def product_error(product: Product | None, n_local: int) -> str | None:
    """An error message for an inner-product matrix that cannot be SPD on ``n_local`` rows.

    Checked locally (meant for :func:`check_collective` before the first collective): a
    matrix-like ``product`` (numpy array or scipy sparse, this rank's block) must have shape
    (n_local, n_local), finite entries, be symmetric (to a relative ``1e-12``) and have a
    positive diagonal (necessary for positive definiteness). Other operators with a ``shape``
    get the shape check only; callables are not inspected.
    """
    product = from_pymor(product)  # a pyMOR Operator is checked as its matrix
    if product is None or callable(product) or not hasattr(product, "shape"):
        return None
    shape = tuple(product.shape)
    if shape != (n_local, n_local):
        return f"product has shape {shape}, expected ({n_local}, {n_local})"
    import scipy.sparse as sp

    sparse = sp.issparse(product)
    if n_local == 0 or not (sparse or isinstance(product, np.ndarray)):
        return None  # another operator type: its shape is all that is checked
    if sparse:
        product = product.tocsr()
    values = product.data if sparse else np.asarray(product)
    if not np.all(np.isfinite(values)):
        return "product contains NaN or Inf"
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    asym = abs(product - product.T)
    asym = float(asym.max()) if asym.size else 0.0
    if asym > 1e-12 * scale:
        return f"product is not symmetric (max |M - M^T| = {asym:.2e})"
    diag = product.diagonal() if sparse else np.diag(values)
    if np.any(diag <= 0):
        return "product is not positive definite (a diagonal entry is <= 0)"
    return None


#: :func:`gram_error` accepts rounding up to ``GRAM_TOL_FACTOR * max(m, 50) * u`` (relative).
GRAM_TOL_FACTOR = 100.0


def gram_tolerance(m: int) -> float:
    """Relative tolerance :math:`\\tau = 100\\,\\max(m, 50)\\,u` of :func:`gram_error`, m columns.

    Each computed entry of :math:`G = X^TMX` carries an error of at most a few
    :math:`c\\,u\\,\\|x_i\\|_M\\|x_j\\|_M` (blocked BLAS sums; :math:`c \\lesssim 10` observed for
    FE mass matrices up to :math:`10^6` rows), so :math:`\\|\\delta G\\|_2 \\le m\\max|\\delta
    G_{ij}| \\lesssim c\\,m\\,u\\,\\lambda_{max}`; the symmetric eigensolver adds about
    :math:`m\\,u\\,\\lambda_{max}`. The factor 100 covers both with room; the floor
    :math:`m \\ge 50` covers the slower growth with the row count of very tall, thin blocks.
    Exactly rank-deficient or duplicate-column data give :math:`|\\lambda_{min}| \\approx
    u\\,\\lambda_{max}`, far inside.
    """
    return GRAM_TOL_FACTOR * max(int(m), 50) * float(np.finfo(float).eps)


def gram_error(G: np.ndarray) -> str | None:
    """An error message if a Gram matrix :math:`G = X^TMX` shows that :math:`M` is not SPD.

    ``G`` is the replicated, *unsymmetrized* Gram matrix of the data actually used. With
    :math:`\\tau` = :func:`gram_tolerance` (m columns) it must satisfy

    .. math:: \\max_{ij}|G_{ij} - G_{ji}| \\le \\tau\\max_i|G_{ii}|, \\qquad
              \\lambda_{min}(\\mathrm{sym}\\,G) \\ge -\\tau\\,\\lambda_{max}(\\mathrm{sym}\\,G).

    A product symmetric with a positive diagonal may still be indefinite (e.g.
    :math:`I - \\frac{2}{n}\\mathbf{1}\\mathbf{1}^T`); :func:`product_error` cannot see that,
    this check sees it on the directions the data spans, at no extra pass over the data. A
    successful Cholesky factorization of :math:`\\mathrm{sym}\\,G` proves the eigenvalue
    condition (its backward error is below :math:`\\tau`), so the eigenvalues are computed
    only when it fails. Non-finite ``G`` returns ``None`` (the callers name NaN/Inf).
    """
    G = np.asarray(G, dtype=np.float64)
    m = G.shape[0]
    if m == 0 or not np.all(np.isfinite(G)):
        return None
    tol = gram_tolerance(m)
    scale = float(np.max(np.abs(np.diag(G))))
    asym = float(np.max(np.abs(G - G.T)))
    if asym > tol * scale:
        return (
            f"product is not symmetric on the snapshots (max |G - G^T| = {asym:.1e} > "
            f"{tol:.1e} * max |diag G| = {scale:.1e})"
        )
    S = 0.5 * (G + G.T)
    try:
        np.linalg.cholesky(S)
        return None
    except np.linalg.LinAlgError:
        lam = np.linalg.eigvalsh(S)
    if lam[0] < -tol * max(float(lam[-1]), 0.0):
        return (
            f"product is not positive semidefinite on the snapshots (Gram eigenvalue "
            f"{lam[0]:.1e} < -{tol:.1e} * largest {lam[-1]:.1e})"
        )
    return None


def check_gram(G: np.ndarray, comm: MPI.Comm | None = None) -> None:
    """Raise :func:`gram_error`'s ``ValueError`` on every rank (collective over ``comm``)."""
    check_collective(gram_error(G), comm)


def apply_product(product: Product | None, X: np.ndarray) -> np.ndarray:
    """Apply an inner-product matrix to owned rows: ``M X``.

    ``product`` is ``None`` (Euclidean, returns ``X``), a callable mapping the owned rows of
    ``X`` to the owned rows of ``M X`` (a distributed operator, e.g. from :mod:`solvers`), or
    anything supporting ``product @ X`` (numpy array, scipy sparse matrix) holding this rank's
    rows and columns (serial or block-diagonal distributed products).
    """
    if product is None:
        return X
    product = from_pymor(product)  # a pyMOR Operator becomes its matrix or action
    if callable(product) and not hasattr(product, "__matmul__"):
        out = product(X)
    else:
        out = product @ X
    return np.asarray(out, dtype=np.float64).reshape(X.shape)


def local_inner(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """This rank's part of :math:`X^T Y` for tall row blocks, shape (k, l).

    Formed as :math:`(Y^T X)^T`, the operand order OpenBLAS runs fastest for tall thin
    blocks; the result is the same product.
    """
    return (Y.T @ X).T


def inner(
    X: np.ndarray, Y: np.ndarray, comm: MPI.Comm | None = None, product: Product | None = None
) -> np.ndarray:
    """Distributed inner products :math:`X^T M Y` (summed over ranks), shape (k, l)."""
    return allreduce_sum(local_inner(X, apply_product(product, Y)), comm)


def norms(
    X: np.ndarray, comm: MPI.Comm | None = None, product: Product | None = None
) -> np.ndarray:
    """M-norms of the columns of a row-distributed matrix, shape (n_columns,)."""
    MX = apply_product(product, X)
    sq = allreduce_sum(np.einsum("ij,ij->j", X, MX), comm)
    return np.sqrt(np.maximum(sq, 0.0))
