"""rom: MPI-parallel reduced-order modeling for computational mechanics.

Snapshot matrices are numpy arrays of the rows (dofs) a rank owns, plus an optional mpi4py
communicator ``comm`` (serial when ``None``). This package never imports dolfinx.
"""

from rom import linalg, parallel
from rom.adaptive import (
    AdaptiveROM,
    CalibrationResult,
    CubatureResult,
    GappyIndicator,
    calibrate,
    empirical_cubature,
    leverage_points,
    qdeim,
)
from rom.compression import (
    POD,
    CompressionResult,
    IncrementalSVD,
    compress,
    dist_hapod,
    hapod,
    inc_hapod,
    pod,
    randomized_svd,
    truncation_rank,
)
from rom.io import SnapshotStore, StoreError
from rom.linalg import orthonormalize, tsqr
from rom.local import (
    KMedoids,
    LocalBases,
    choose_n_clusters,
    sine_dissimilarity,
    sine_dissimilarity_between,
    subspace_distance,
    trajectory_dissimilarity,
)
from rom.models import LinearAffineROM
from rom.parallel import distribute_rows, gather_rows, limit_blas_per_rank

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
    "LocalBases",
    "AdaptiveROM",
    "LinearAffineROM",
    "parallel",
    "linalg",
    "StoreError",
    "pod",
    "tsqr",
    "orthonormalize",
    "truncation_rank",
    "limit_blas_per_rank",
    "distribute_rows",
    "gather_rows",
    "__version__",
]
