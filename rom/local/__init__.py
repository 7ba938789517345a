"""Local reduced bases: sine dissimilarity, clustering, concatenated-SVD bounds, local bases."""

from rom.local.bases import CLUSTERINGS, LocalBases
from rom.local.clustering import KMedoids, choose_n_clusters, kmeans_parameters, kmeans_snapshots
from rom.local.cost_model import OnlineCost, fit_online_cost
from rom.local.dissimilarity import (
    principal_angles,
    sine_dissimilarity,
    sine_dissimilarity_between,
    subspace_distance,
    trajectory_dissimilarity,
)
from rom.local.merge_clustering import ErrorConstrainedClustering

__all__ = [
    "CLUSTERINGS",
    "ErrorConstrainedClustering",
    "KMedoids",
    "LocalBases",
    "OnlineCost",
    "choose_n_clusters",
    "fit_online_cost",
    "kmeans_parameters",
    "kmeans_snapshots",
    "principal_angles",
    "sine_dissimilarity",
    "sine_dissimilarity_between",
    "subspace_distance",
    "trajectory_dissimilarity",
]
