"""rom: MPI-parallel reduced-order modeling for computational mechanics.

Snapshot matrices are numpy arrays of the rows (dofs) a rank owns, plus an optional mpi4py
communicator ``comm`` (serial when ``None``). This package never imports dolfinx.
"""

from rom import linalg
from rom import parallel
from rom.adaptive import AdaptiveROM
from rom.adaptive import CalibrationResult
from rom.adaptive import CubatureResult
from rom.adaptive import GappyIndicator
from rom.adaptive import LocalAdaptiveROMs
from rom.adaptive import calibrate
from rom.adaptive import empirical_cubature
from rom.adaptive import leverage_points
from rom.adaptive import qdeim
from rom.compression import POD
from rom.compression import CompressionResult
from rom.compression import IncrementalSVD
from rom.compression import compress
from rom.compression import dist_hapod
from rom.compression import hapod
from rom.compression import inc_hapod
from rom.compression import pod
from rom.compression import randomized_svd
from rom.compression import truncation_rank
from rom.io import SnapshotStore
from rom.io import StoreError
from rom.linalg import orthonormalize
from rom.linalg import tsqr
from rom.local import KMedoids
from rom.local import LocalBases
from rom.local import choose_n_clusters
from rom.local import sine_dissimilarity
from rom.local import sine_dissimilarity_between
from rom.local import subspace_distance
from rom.local import trajectory_dissimilarity
from rom.models import LinearAffineROM
from rom.parallel import distribute_rows
from rom.parallel import gather_rows
from rom.parallel import limit_blas_per_rank

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
    "LocalAdaptiveROMs",
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
