r"""Local reduced bases: one POD basis per cluster of snapshots, online selection, efficiency.

A dictionary of local bases (docs/theory.md §3.2-§3.6). The
training items -- single snapshots, or whole trajectories when ``groups`` is given -- are
partitioned into clusters :math:`C_1..C_K`, and each cluster gets its own :math:`M`-orthonormal
POD basis :math:`\Psi_k` of size :math:`N_k` (by ``rank`` or the energy rule
:math:`\sum_{n>N_k}\sigma_n(S_k)^2 \le \varepsilon^2\|S_k\|_M^2`, :mod:`rom.compression.truncation`).

Clusterings (``clustering=``):

``"sine-kmedoids"`` / ``"sine-kcenter"``
    :class:`rom.local.clustering.KMedoids` (sum / max objective) on the sine dissimilarity
    :math:`\delta(u, v) = \sqrt{1 - \langle u,v\rangle_M^2/(\|u\|_M^2\|v\|_M^2)}`
    (:func:`rom.local.dissimilarity.sine_dissimilarity`). The minimax radius of a cluster in
    :math:`\delta` is its normalized 1-width, so clustering in :math:`\delta` targets the
    normalized Kolmogorov widths of the clusters (Daniel, Casenave, Akkari, Ryckelynck,
    arXiv:2108.12291; Daniel, Casenave, Akkari, Ketata, Ryckelynck, arXiv:2103.13683).
``"kmeans-parameters"``
    Euclidean k-means on the standardized parameters
    (:func:`rom.local.clustering.kmeans_parameters`).
``"kmeans-snapshots"``
    Euclidean (:math:`M`-norm) k-means on the items
    (:func:`rom.local.clustering.kmeans_snapshots`).
``"merge"``
    Error-constrained merging (:class:`rom.local.merge_clustering.ErrorConstrainedClustering`,
    Shamrai, arXiv:2601.11626; docs/theory.md §4): the number of clusters follows from ``rank`` and ``rel_l2_err``
    (``n_clusters`` is ignored).

Trajectories (``groups``): every group must have the same number :math:`T` of columns (in order
of appearance); an item is then the space-time field :math:`U = (u^1..u^T)` with
:math:`\langle U, V\rangle = \sum_t \langle u^t, v^t\rangle_M`, so :math:`\delta(U, V)` is the
relative error of approximating trajectory :math:`U` by a multiple of :math:`V` (our choice: a
whole trajectory goes to one cluster, so a time-dependent ROM runs with one basis).

Online selection (:meth:`LocalBases.select`, docs/theory.md §3.5): (1) nearest medoid in
:math:`\delta` given a field (for clusterings without medoids, each cluster's 1-medoid in
:math:`\delta` stands in); (2) lowest projection error
:math:`\arg\min_k \|U - \Psi_k\Psi_k^T M U\|_M / \|U\|_M` (Amsallem & Haasdonk, AMSES 3:6, 2016);
(3) given only :math:`\mu`, the cluster of the nearest training parameter (standardized).
Rule (1) can misroute silently; :meth:`LocalBases.route` scores the nearest medoids by
projection error, against a trust threshold fitted by leave-one-out, with a fall-back to the
global basis (:mod:`rom.local.selection`).

A priori efficiency (:meth:`LocalBases.efficiency_estimate`, docs/theory.md §3.6):
:func:`rom.local.cost_model.efficiency_ratio` at the in-sample sizes (leave-one-out sizes
would also charge misassignment; the case measures it on held-out parameters instead), with
the cost model :func:`rom.local.cost_model.fit_online_cost`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from rom.compression import CompressionResult
from rom.compression import pod
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.local._items import canonical_labels
from rom.local._items import group_items
from rom.local._items import stacked_product
from rom.local.clustering import KMedoids
from rom.local.clustering import kmeans_parameters
from rom.local.clustering import kmeans_snapshots
from rom.local.cost_model import efficiency_ratio
from rom.local.dissimilarity import sine_dissimilarity
from rom.local.merge_clustering import ErrorConstrainedClustering
from rom.local.selection import GLOBAL
from rom.local.selection import Selection
from rom.local.selection import fit_trust
from rom.local.selection import medoid_dissimilarities
from rom.local.selection import nearest_parameter_cluster
from rom.local.selection import overlap_items
from rom.local.selection import relative_errors
from rom.local.selection import route_field
from rom.local.selection import threshold_for
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import norms
from rom.parallel import validate_local_rows

__all__ = ["LocalBases", "CLUSTERINGS"]

logger = logging.getLogger(__name__)

CLUSTERINGS = ("sine-kmedoids", "sine-kcenter", "kmeans-parameters", "kmeans-snapshots", "merge")
_SELECTIONS = ("medoid", "projection")


class LocalBases:
    r"""Local POD bases of clusters of snapshots or trajectories (module docstring).

    Parameters
    ----------
    clustering : str
        One of :data:`CLUSTERINGS`.
    n_clusters : int
        :math:`K` (ignored by ``"merge"``).
    rank : int, optional
        Basis size cap per cluster (for ``"merge"``: the target rank :math:`r`).
    rel_l2_err : float, optional
        Energy tolerance :math:`\varepsilon` per cluster (for ``"merge"``: its ``eps``).
        At least one of ``rank`` and ``rel_l2_err``.
    product : operator, optional
        Inner product :math:`M` on owned rows (Euclidean when ``None``).
    comm : mpi4py communicator, optional
        Serial when ``None``; every method is collective.
    compressor : callable
        ``compressor(X, product=, comm=)`` returning a
        :class:`rom.compression.CompressionResult` with all modes (default
        :func:`rom.compression.pod`); truncation is applied here.
    seed : int
        Seed of the k-means clusterings and k-medoids restarts.
    min_cluster_size : int
        For the k-medoids clusterings (:class:`rom.local.clustering.KMedoids`).
    merge_options : dict, optional
        Extra keyword arguments of :class:`rom.local.merge_clustering.ErrorConstrainedClustering`.
    fallback : bool
        Keep the global POD basis (``global_basis_``) and fit the trust threshold
        ``threshold_`` by leave-one-out for :meth:`route` (:mod:`rom.local.selection`).
    trust_factor : float
        :math:`f \ge 1` in :math:`\tau = f \max_i e^{(-i)}_i` (with ``fallback``).
    overlap : float
        :math:`\omega \ge 0`: each basis is also trained on the boundary items of
        neighbouring clusters (:func:`rom.local.selection.overlap_items`); 0: none.

    Attributes
    ----------
    labels_ : ndarray of shape (n_items,)
        Cluster of each item (clusters numbered by their smallest item).
    column_labels_ : ndarray of shape (n_columns,)
        Cluster of each training column.
    n_clusters_ : int
    cluster_sizes_ : ndarray of shape (n_clusters_,)
        Items per cluster :math:`n_k`.
    medoid_indices_ : ndarray of shape (n_clusters_,)
        Item index of each cluster's medoid in :math:`\delta` (sum objective within the
        cluster unless the clustering provides its own medoids).
    medoids_ : list of ndarray of shape (n_local, T)
        Owned rows of the medoid items (``T = 1`` for snapshot items).
    dissimilarity_ : ndarray of shape (n_items, n_items)
        Sine dissimilarity of the items (replicated).
    modes_ : list of ndarray
        All POD modes of each cluster (owned rows).
    singular_values_ : list of ndarray
        All :math:`M`-singular values of each cluster.
    energies_ : ndarray of shape (n_clusters_,)
        :math:`\|S_k\|_M^2`.
    bases_ : list of ndarray of shape (n_local, N_k)
        The local bases after truncation.
    basis_sizes_ : ndarray of shape (n_clusters_,)
    global_singular_values_ : ndarray
        Singular values of one POD of all the data.
    global_energy_ : float
    global_basis_size_ : int
        Global POD size under the same truncation rule.
    params_ : ndarray of shape (n_items, p) or None
    overlap_items_ : list of ndarray
        Items of other clusters added to each cluster's training set (``overlap``).
    global_basis_ : ndarray of shape (n_local, N_1) or None
        The truncated global POD basis (``fallback`` only).
    loo_errors_ : ndarray of shape (n_items,) or None
        Leave-one-out error of each item on its own cluster (NaN for singleton clusters;
        ``fallback`` only).
    threshold_ : float or None
        Trust threshold :math:`\tau` (``inf`` when every cluster is a singleton).
    """

    def __init__(
        self,
        *,
        clustering: str = "sine-kmedoids",
        n_clusters: int = 2,
        rank: int | None = None,
        rel_l2_err: float | None = None,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
        compressor: Callable[..., CompressionResult] = pod,
        seed: int = 0,
        min_cluster_size: int = 1,
        merge_options: dict[str, Any] | None = None,
        fallback: bool = False,
        trust_factor: float = 1.0,
        overlap: float = 0.0,
    ) -> None:
        keep_options(self, locals())

    # ------------------------------------------------------------------ validation
    def _option_error(self) -> str | None:
        err = option_error(
            self,
            {
                "clustering": Choice(*CLUSTERINGS),
                "n_clusters": Interval(1, None, integer=True),
                "trust_factor": Interval(1.0, None),
                "overlap": Interval(0.0, None),
            },
        )
        if err is not None:
            return err
        if self.rank is None and self.rel_l2_err is None:
            return "give rank= or rel_l2_err= (the local basis size rule)"
        err = validate_truncation(rank=self.rank, rel_l2_err=self.rel_l2_err)
        if err is not None:
            return err
        if self.clustering == "merge":
            if self.rank is None or self.rank < 1 or self.rel_l2_err is None:
                return "clustering='merge' needs rank >= 1 and rel_l2_err (its target r, eps)"
            if not 0.0 < float(self.rel_l2_err) < 1.0:
                return f"clustering='merge' needs rel_l2_err in (0, 1), got {self.rel_l2_err}"
        return None

    # ------------------------------------------------------------------ fit
    def fit(
        self, X: np.ndarray, params: np.ndarray | None = None, *, groups: np.ndarray | None = None
    ) -> LocalBases:
        """Cluster the items of ``X`` and compute one POD basis per cluster.

        Parameters
        ----------
        X : ndarray of shape (n_local, n)
            Owned rows of the training snapshots.
        params : ndarray of shape (n, p) or (n_items, p), optional
            Parameters of each column (or each item); needed by ``"kmeans-parameters"`` and by
            :meth:`select` with ``mu``. For groups, the first column's row is the item's.
        groups : ndarray of shape (n,), optional
            Trajectory id of each column: cluster whole trajectories (module docstring).

        Returns
        -------
        self
        """
        comm = get_comm(self.comm)
        check_collective(self._option_error(), comm)
        X, _ = validate_local_rows(X, "X", comm)
        items, P = self._fit_inputs(X.shape[1], params, groups, comm)
        self._T = T = len(items[0])
        self._n_local = X.shape[0]
        self.params_ = P
        self._items_cols = items
        Y = self._stack(X, items)
        prod = stacked_product(self.product, self._n_local, T)
        D = sine_dissimilarity(Y, product=prod, comm=comm)
        self.dissimilarity_ = D
        raw, raw_medoids = self._cluster(X, Y, D, P, items, prod, comm)
        self._record_clusters(X, D, np.asarray(raw, dtype=np.int64), raw_medoids, items)
        self._fit_bases(X, comm)
        self._fit_trust(X, comm)
        logger.info(
            "LocalBases(%s): K=%d, populations %s, sizes %s (global %d)",
            self.clustering,
            self.n_clusters_,
            self.cluster_sizes_.tolist(),
            self.basis_sizes_.tolist(),
            self.global_basis_size_,
        )
        return self

    def _fit_inputs(
        self, n: int, params: Any, groups: Any, comm: MPI.Comm
    ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Items (column sets) and item parameters, validated collectively."""
        items, err = group_items(n, groups)
        P = None
        if err is None and params is not None:
            P = np.asarray(params, dtype=np.float64)
            P = P[:, None] if P.ndim == 1 else P
            if P.ndim != 2 or P.shape[0] not in (n, len(items)) or not np.all(np.isfinite(P)):
                err = f"params must be finite of shape ({n}, p) or ({len(items)}, p), got {P.shape}"
            elif P.shape[0] == n and len(items) != n:
                P = P[[c[0] for c in items]]
        if err is None and self.clustering == "kmeans-parameters" and P is None:
            err = "clustering='kmeans-parameters' needs params"
        if err is None and self.clustering != "merge" and self.n_clusters > len(items):
            err = f"n_clusters={self.n_clusters} exceeds the number of items ({len(items)})"
        check_collective(err, comm)
        return items, P

    def _record_clusters(self, X, D, raw, raw_medoids, items) -> None:
        """Canonical labels, populations and medoids (item indices and snapshots)."""
        labels = canonical_labels(raw)
        K = int(labels.max()) + 1
        medoids = []
        for k in range(K):
            members = np.flatnonzero(labels == k)
            if raw_medoids is not None:  # KMedoids: raw label = position of the medoid
                medoids.append(int(raw_medoids[raw[members[0]]]))
            else:  # the cluster's 1-medoid in delta (sum objective; ties: smallest index)
                sub = D[np.ix_(members, members)]
                medoids.append(int(members[np.argmin(sub.sum(axis=0))]))
        self.labels_ = labels
        self.n_clusters_ = K
        self.cluster_sizes_ = np.bincount(labels, minlength=K)
        self.medoid_indices_ = np.array(medoids, dtype=np.int64)
        self.medoids_ = [X[:, items[m]].copy() for m in medoids]
        self.column_labels_ = np.empty(X.shape[1], dtype=np.int64)
        for i, cols in enumerate(items):
            self.column_labels_[cols] = labels[i]
        self.overlap_items_ = (
            overlap_items(D, labels, self.medoid_indices_, float(self.overlap))
            if self.overlap > 0
            else [np.zeros(0, dtype=np.int64) for _ in range(K)]
        )

    def _training_columns(self, k: int) -> np.ndarray:
        """Columns of cluster ``k``'s training set: its members and its overlap items."""
        extra = [self._items_cols[i] for i in self.overlap_items_[k]]
        return np.sort(np.concatenate([np.flatnonzero(self.column_labels_ == k), *extra]))

    def _fit_bases(self, X: np.ndarray, comm: MPI.Comm) -> None:
        """One POD basis per cluster, and the global POD for the efficiency estimate."""
        K = self.n_clusters_
        self.modes_, self.singular_values_, self.bases_ = [], [], []
        energies = []
        for k in range(K):
            Xk = X[:, self._training_columns(k)]
            r = self.compressor(Xk, product=self.product, comm=comm)
            modes, sv = r.modes, r.singular_values
            energy = float(np.sum(norms(Xk, comm, self.product) ** 2))
            Nk = truncation_rank(
                sv, rank=self.rank, rel_l2_err=self.rel_l2_err, total_energy=energy
            )
            self.modes_.append(modes)
            self.singular_values_.append(np.asarray(sv))
            self.bases_.append(modes[:, :Nk])
            energies.append(energy)
        self.energies_ = np.array(energies)
        self.basis_sizes_ = np.array([B.shape[1] for B in self.bases_], dtype=np.int64)
        if K == 1:  # same data: reuse, so that eta(K=1) = 1 exactly
            gmodes, gsv = self.modes_[0], self.singular_values_[0]
            genergy = float(self.energies_[0])
        else:
            r = self.compressor(X, product=self.product, comm=comm)
            gmodes, gsv = r.modes, r.singular_values
            genergy = float(np.sum(norms(X, comm, self.product) ** 2))
        self.global_singular_values_ = np.asarray(gsv)
        self.global_energy_ = genergy
        self.global_basis_size_ = int(
            truncation_rank(gsv, rank=self.rank, rel_l2_err=self.rel_l2_err, total_energy=genergy)
        )
        self.global_basis_ = gmodes[:, : self.global_basis_size_] if self.fallback else None

    def _fit_trust(self, X: np.ndarray, comm: MPI.Comm) -> None:
        """Leave-one-out errors and the trust threshold (``fallback`` only)."""
        self.loo_errors_, self.threshold_, self._loo_columns = (
            fit_trust(
                X,
                self.modes_,
                self._items_cols,
                [self._training_columns(k) for k in range(self.n_clusters_)],
                self.labels_,
                rank=self.rank,
                rel_l2_err=self.rel_l2_err,
                product=self.product,
                trust_factor=self.trust_factor,
                comm=comm,
            )
            if self.fallback
            else (None, None, None)
        )

    def threshold_for(self, m: int) -> float | None:
        r"""Trust threshold :math:`\tau(m)` for a field given by its first ``m`` columns
        (:mod:`rom.local.selection`; ``threshold_`` is :math:`\tau(T)`; None without
        ``fallback``)."""
        self._check_fitted()
        if self._loo_columns is None:
            return None
        if not 1 <= int(m) <= self._T:
            raise ValueError(f"m must be in [1, {self._T}], got {m}")
        return threshold_for(self._loo_columns, self.trust_factor, int(m))

    def _stack(self, X: np.ndarray, items: list[np.ndarray]) -> np.ndarray:
        """Items as columns of the time-major stacked matrix, shape (T n_local, n_items)."""
        return np.column_stack([X[:, cols].T.reshape(-1) for cols in items])

    def _cluster(self, X, Y, D, P, items, prod, comm):
        """Labels (n_items,) and medoid item indices (or None) of the chosen clustering."""
        K = int(self.n_clusters)
        if self.clustering in ("sine-kmedoids", "sine-kcenter"):
            km = KMedoids(
                K,
                objective="sum" if self.clustering == "sine-kmedoids" else "max",
                min_cluster_size=self.min_cluster_size,
                seed=self.seed,
            ).fit(D)
            return km.labels_, [int(m) for m in km.medoid_indices_]
        if self.clustering == "kmeans-parameters":
            return kmeans_parameters(P, K, seed=self.seed), None
        if self.clustering == "kmeans-snapshots":
            return kmeans_snapshots(Y, K, seed=self.seed, comm=comm, product=prod), None
        ecc = ErrorConstrainedClustering(
            rank=int(self.rank),
            eps=float(self.rel_l2_err),
            product=self.product,
            comm=self.comm,
            **(self.merge_options or {}),
        ).fit([X[:, cols] for cols in items])
        return ecc.labels_, None

    # ------------------------------------------------------------------ online
    def _check_fitted(self) -> None:
        if not hasattr(self, "bases_"):
            raise RuntimeError("LocalBases is not fitted; call fit first")

    def sizes_for(self, rel_l2_err: float) -> tuple[np.ndarray, int]:
        r"""Local sizes :math:`N_k(\varepsilon)` and the global size :math:`N_1(\varepsilon)`.

        Smallest sizes with :math:`\sum_{n>N}\sigma_n^2 \le \varepsilon^2 \|S\|_M^2`, from the
        stored spectra (no ``rank`` cap; capped by the number of computed modes).
        """
        self._check_fitted()
        err = validate_truncation(rel_l2_err=rel_l2_err)
        if err is not None:
            raise ValueError(err)
        local = np.array(
            [
                truncation_rank(sv, rel_l2_err=rel_l2_err, total_energy=e)
                for sv, e in zip(self.singular_values_, self.energies_, strict=True)
            ],
            dtype=np.int64,
        )
        glob = truncation_rank(
            self.global_singular_values_, rel_l2_err=rel_l2_err, total_energy=self.global_energy_
        )
        return local, int(glob)

    def basis(self, k: int, n: int | None = None) -> np.ndarray:
        """The first ``n`` modes of cluster ``k`` (default: the truncated basis ``bases_[k]``).

        ``k = -1`` (:data:`rom.local.selection.GLOBAL`): the global basis (``fallback``).
        """
        self._check_fitted()
        if k == GLOBAL and self.global_basis_ is not None and n is None:
            return self.global_basis_
        if not 0 <= k < self.n_clusters_:
            raise ValueError(f"cluster index must be in [0, {self.n_clusters_}), got {k}")
        return self.bases_[k] if n is None else self.modes_[k][:, : int(n)]

    def projection_errors(self, X: np.ndarray, *, n: int | None = None) -> np.ndarray:
        r"""Relative errors :math:`\|x_j - \Psi_k\Psi_k^T M x_j\|_M/\|x_j\|_M`, shape (K, n_cols).

        ``n`` uses the first ``n`` modes of every cluster instead of ``bases_``. Zero columns
        give 0. Collective.
        """
        self._check_fitted()
        comm = get_comm(self.comm)
        X, _ = validate_local_rows(X, "X", comm)
        xn = norms(X, comm, self.product)
        MX = apply_product(self.product, X)
        out = np.empty((self.n_clusters_, X.shape[1]))
        for k in range(self.n_clusters_):
            B = self.basis(k, n)
            R = X - B @ allreduce_sum(B.T @ MX, comm)
            out[k] = norms(R, comm, self.product) / np.where(xn > 0, xn, 1.0)
        return out

    def projection_error(
        self, X: np.ndarray, *, labels: np.ndarray | None = None, n: int | None = None
    ) -> np.ndarray:
        """Relative projection error of each column on its cluster's basis, shape (n_cols,).

        ``labels`` (n_cols,) gives the cluster of each column; without it each column takes the
        basis with the lowest error (selection rule (2)). Collective.
        """
        E = self.projection_errors(X, n=n)
        if labels is None:
            return E.min(axis=0)
        lab = np.asarray(labels)
        if lab.shape != (E.shape[1],) or lab.min() < 0 or lab.max() >= self.n_clusters_:
            raise ValueError(
                f"labels must be {E.shape[1]} cluster indices in [0, {self.n_clusters_})"
            )
        return E[lab, np.arange(E.shape[1])]

    def select(
        self,
        u: np.ndarray | None = None,
        mu: np.ndarray | None = None,
        *,
        method: str = "medoid",
    ) -> int:
        r"""Cluster for a new field ``u`` (owned rows) or parameter ``mu`` (module docstring).

        Parameters
        ----------
        u : ndarray of shape (n_local,) or (n_local, m), optional
            A snapshot (or a trajectory, ``m = T`` columns, when fitted with ``groups``).
            Collective.
        mu : ndarray of shape (p,), optional
            Used when ``u`` is None: the cluster of the nearest training item in standardized
            parameters (ties: smallest index).
        method : {"medoid", "projection"}
            With ``u``: nearest medoid in :math:`\delta` (``u`` must have the medoids' ``T``
            columns), or lowest projection error over all columns of ``u``.

        Returns
        -------
        k : int
        """
        self._check_fitted()
        if method not in _SELECTIONS:
            raise ValueError(f"method must be one of {_SELECTIONS}, got {method!r}")
        if u is None:
            return nearest_parameter_cluster(self.params_, self.labels_, mu)
        comm = get_comm(self.comm)
        U = np.asarray(u, dtype=np.float64)
        U = U[:, None] if U.ndim == 1 else U
        err = None
        if U.ndim != 2 or U.shape[0] != self._n_local:
            err = f"u must have {self._n_local} owned rows, got shape {np.shape(u)}"
        elif method == "medoid" and U.shape[1] != self._T:
            err = f"medoid selection needs u with T={self._T} columns, got {U.shape[1]}"
        check_collective(err, comm)
        if method == "projection":
            U, _ = validate_local_rows(U, "u", comm)
            return int(np.argmin(relative_errors(U, self.bases_, self.product, comm)))
        return int(np.argmin(medoid_dissimilarities(U, self.medoids_, self.product, comm)))

    def route(self, u: np.ndarray, *, n_candidates: int = 3) -> Selection:
        r"""Checked selection: nearest medoids scored by projection error, with fall-back.

        The rules, their cost and the trust threshold are in :mod:`rom.local.selection`
        (Amsallem & Haasdonk 2016; Daniel et al., arXiv:2103.13683). Collective.

        Parameters
        ----------
        u : ndarray of shape (n_local,) or (n_local, m)
            A representative field: a snapshot, or the first :math:`m \le T` fields of a
            trajectory (e.g. the initial condition or first full-order step) when fitted with
            ``groups``; the medoids are compared on their first ``m`` columns.
        n_candidates : int
            Number of nearest medoids scored first.

        Returns
        -------
        Selection
            ``cluster`` (-1: the global basis, ``basis(-1)``), the ``rule`` that chose it and
            the errors computed; identical on every rank.
        """
        self._check_fitted()
        return route_field(
            u,
            self.medoids_,
            self.bases_,
            self.global_basis_,
            product=self.product,
            threshold=self.threshold_for,
            n_candidates=n_candidates,
            comm=self.comm,
        )

    def efficiency_estimate(
        self,
        rel_l2_err: float | None = None,
        *,
        cost: Callable[[int], float] | None = None,
        selection_cost: float = 0.0,
    ) -> float:
        r""":math:`\eta(K)` (:func:`rom.local.cost_model.efficiency_ratio`) at given sizes.

        Parameters
        ----------
        rel_l2_err : float, optional
            :math:`\varepsilon` for the sizes :math:`N_k(\varepsilon)`, :math:`N_1(\varepsilon)`
            (:meth:`sizes_for`); default ``self.rel_l2_err``, or the fitted sizes
            (``basis_sizes_``, ``global_basis_size_``) when only ``rank`` was given.
        cost : callable, optional
            :math:`c(N)`, the cost of one reduced solve; default :math:`N^3` (dense LU).
        selection_cost : float
            :math:`c_{sel}(K)` in the units of ``cost`` (default 0: selection by the nearest
            training parameter, :math:`O(n p)`, negligible). Not charged when :math:`K = 1`.

        Returns
        -------
        eta : float
            < 1 when local bases are expected to pay off; exactly 1 for :math:`K = 1`.
        """
        self._check_fitted()
        eps = self.rel_l2_err if rel_l2_err is None else rel_l2_err
        if eps is None:
            local, glob = self.basis_sizes_, self.global_basis_size_
        else:
            local, glob = self.sizes_for(eps)
        return efficiency_ratio(self.cluster_sizes_, local, glob, cost, selection_cost)
