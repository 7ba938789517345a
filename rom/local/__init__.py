"""Local reduced bases: sine dissimilarity, clustering, concatenated-SVD bounds, local bases."""

from rom.local.bases import CLUSTERINGS, LocalBases
from rom.local.clustering import KMedoids, choose_n_clusters, kmeans_parameters, kmeans_snapshots
from rom.local.cost_model import OnlineCost, efficiency_ratio, fit_online_cost
from rom.local.dissimilarity import (
    principal_angles,
    sine_dissimilarity,
    sine_dissimilarity_between,
    subspace_distance,
    trajectory_dissimilarity,
)
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.selection import GLOBAL, Selection

__all__ = [
    "CLUSTERINGS",
    "GLOBAL",
    "ErrorConstrainedClustering",
    "KMedoids",
    "LocalBases",
    "OnlineCost",
    "Selection",
    "choose_n_clusters",
    "efficiency_ratio",
    "fit_online_cost",
    "kmeans_parameters",
    "kmeans_snapshots",
    "principal_angles",
    "sine_dissimilarity",
    "sine_dissimilarity_between",
    "subspace_distance",
    "trajectory_dissimilarity",
]
