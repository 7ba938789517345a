"""Compression of snapshot matrices: batch POD, incremental SVD, HAPOD, randomized SVD.

Every method takes this rank's rows plus ``comm`` and the same truncation options
(``rank``, ``rtol``, ``l2_err``, ``rel_l2_err``; see :mod:`rom.compression.truncation`).
"""

from rom.compression._compress import METHODS
from rom.compression._compress import compress
from rom.compression._hapod import Chunk
from rom.compression._hapod import column_chunks
from rom.compression._hapod import dist_hapod
from rom.compression._hapod import hapod
from rom.compression._hapod import inc_hapod
from rom.compression._pod import POD
from rom.compression._pod import pod
from rom.compression._result import CompressionResult
from rom.compression.incremental_svd import IncrementalSVD
from rom.compression.randomized import randomized_svd
from rom.compression.truncation import ToleranceWarning
from rom.compression.truncation import tail_energies
from rom.compression.truncation import truncation_rank

__all__ = [
    "METHODS",
    "POD",
    "Chunk",
    "CompressionResult",
    "IncrementalSVD",
    "ToleranceWarning",
    "column_chunks",
    "compress",
    "dist_hapod",
    "hapod",
    "inc_hapod",
    "pod",
    "randomized_svd",
    "tail_energies",
    "truncation_rank",
]
