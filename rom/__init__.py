"""rom: MPI-parallel reduced-order modeling for computational mechanics.

Snapshot matrices are numpy arrays of the rows (dofs) a rank owns, plus an optional mpi4py
communicator ``comm`` (serial when ``None``). This package never imports dolfinx.
"""

from .clustering import KMedoids, choose_n_clusters
from .compress import CompressionResult, compress
from .dissimilarity import (
    sine_dissimilarity,
    sine_dissimilarity_between,
    subspace_distance,
    trajectory_dissimilarity,
)
from .ecm import CubatureResult, empirical_cubature
from .hapod import dist_hapod, hapod, inc_hapod
from .incremental_svd import IncrementalSVD
from .indicator import CalibrationResult, GappyIndicator, calibrate
from .io import SnapshotStore, StoreError
from . import parallel
from .parallel import blas_threads, distribute_rows, gather_rows, limit_blas_per_rank, row_range
from .pod import POD, orthonormalize, pod, tsqr
from .qdeim import leverage_points, qdeim
from .randomized import randomized_svd
from .truncation import truncation_rank

__version__ = "0.1.0"

# Under mpirun, each rank's BLAS pool gets its share of the cores (DESIGN.md section 2).
parallel.limit_blas_per_rank()

__all__ = [
    "POD",
    "IncrementalSVD",
    "compress",
    "CompressionResult",
    "hapod",
    "dist_hapod",
    "inc_hapod",
    "randomized_svd",
    "sine_dissimilarity",
    "sine_dissimilarity_between",
    "subspace_distance",
    "trajectory_dissimilarity",
    "KMedoids",
    "choose_n_clusters",
    "empirical_cubature",
    "CubatureResult",
    "qdeim",
    "leverage_points",
    "GappyIndicator",
    "calibrate",
    "CalibrationResult",
    "SnapshotStore",
    "StoreError",
    "pod",
    "tsqr",
    "orthonormalize",
    "truncation_rank",
    "blas_threads",
    "limit_blas_per_rank",
    "distribute_rows",
    "gather_rows",
    "row_range",
    "__version__",
]
