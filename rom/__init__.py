"""rom: MPI-parallel reduced-order modeling for computational mechanics.

Snapshot matrices are numpy arrays of the rows (dofs) a rank owns, plus an optional mpi4py
communicator ``comm`` (serial when ``None``). This package never imports dolfinx.
"""

from .compress import CompressionResult, compress
from .hapod import dist_hapod, hapod, inc_hapod
from .incremental_svd import IncrementalSVD
from .io import SnapshotStore, StoreError
from .parallel import blas_threads, distribute_rows, gather_rows, row_range
from .pod import POD, orthonormalize, pod, tsqr
from .randomized import randomized_svd
from .truncation import truncation_rank

__version__ = "0.1.0"

__all__ = [
    "POD",
    "IncrementalSVD",
    "compress",
    "CompressionResult",
    "hapod",
    "dist_hapod",
    "inc_hapod",
    "randomized_svd",
    "SnapshotStore",
    "StoreError",
    "pod",
    "tsqr",
    "orthonormalize",
    "truncation_rank",
    "blas_threads",
    "distribute_rows",
    "gather_rows",
    "row_range",
    "__version__",
]
