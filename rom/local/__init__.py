"""Local reduced bases: sine dissimilarity, clustering, concatenated-SVD bounds, local bases."""

from rom.local.bases import CLUSTERINGS
from rom.local.bases import LocalBases
from rom.local.clustering import KMedoids
from rom.local.clustering import choose_n_clusters
from rom.local.clustering import kmeans_parameters
from rom.local.clustering import kmeans_snapshots
from rom.local.cost_model import OnlineCost
from rom.local.cost_model import efficiency_ratio
from rom.local.cost_model import fit_online_cost
from rom.local.dissimilarity import principal_angles
from rom.local.dissimilarity import sine_dissimilarity
from rom.local.dissimilarity import sine_dissimilarity_between
from rom.local.dissimilarity import subspace_distance
from rom.local.dissimilarity import trajectory_dissimilarity
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.selection import GLOBAL
from rom.local.selection import Selection
from rom.local.time_windows import TimeWindowBases

__all__ = [
    "CLUSTERINGS",
    "GLOBAL",
    "ErrorConstrainedClustering",
    "KMedoids",
    "LocalBases",
    "OnlineCost",
    "Selection",
    "TimeWindowBases",
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
