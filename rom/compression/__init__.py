"""Compression of snapshot matrices: batch POD, incremental SVD, HAPOD, randomized SVD.

Every method takes this rank's rows plus ``comm`` and the same truncation options
(``rank``, ``rtol``, ``l2_err``, ``rel_l2_err``; see :mod:`rom.compression.truncation`).
"""

from rom.compression._compress import METHODS, compress
from rom.compression._hapod import Chunk, column_chunks, dist_hapod, hapod, inc_hapod
from rom.compression._pod import POD, pod
from rom.compression._result import CompressionResult
from rom.compression.incremental_svd import IncrementalSVD
from rom.compression.randomized import randomized_svd
from rom.compression.truncation import tail_energies, truncation_rank

__all__ = [
    "METHODS",
    "POD",
    "Chunk",
    "CompressionResult",
    "IncrementalSVD",
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
