"""Local reduced bases: sine dissimilarity, clustering, concatenated-SVD bounds, local bases."""

from rom.local.bases import LocalBases
from rom.local.clustering import KMedoids, choose_n_clusters
from rom.local.dissimilarity import (
    sine_dissimilarity,
    sine_dissimilarity_between,
    subspace_distance,
    trajectory_dissimilarity,
)
from rom.local.merge_clustering import ErrorConstrainedClustering

__all__ = [
    "ErrorConstrainedClustering",
    "KMedoids",
    "LocalBases",
    "choose_n_clusters",
    "sine_dissimilarity",
    "sine_dissimilarity_between",
    "subspace_distance",
    "trajectory_dissimilarity",
]
