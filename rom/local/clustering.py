r"""k-medoids and k-center clustering on a precomputed dissimilarity matrix.

The dissimilarity is typically the sine dissimilarity of :mod:`rom.local.dissimilarity`, computed
collectively and replicated on every rank; clustering then runs redundantly on each rank and,
being deterministic, gives the same labels everywhere (docs/mpi.md).

Why medoids in the sine metric (docs/theory.md §3.2; Daniel, Casenave, Akkari,
Ryckelynck, arXiv:2108.12291): the minimax radius of a cluster :math:`C` in :math:`\delta` is its
normalized 1-width :math:`\bar d_1(C) = \inf_v\sup_{u\in C}\|u - P_v u\|/\|u\|`, so minimizing the
largest cluster radius is the K-center problem in :math:`\delta` (medoids cost at most a factor
2 against free centres). Daniel, Casenave, Akkari, Ketata, Ryckelynck (arXiv:2103.13683) show
that angle-based clustering beats classical strategies in projection error.

Objectives, for medoids :math:`m_1..m_K` and :math:`d(o) = \min_k \Delta[o, m_k]`:

``"sum"`` (k-medoids, default, robust to outliers): minimize :math:`\sum_o d(o)`. BUILD
    initialization (add the point lowering the cost most, K times), then FasterPAM eager swaps
    (Schubert & Rousseeuw, Information Systems 101, 2021; docs/theory.md §3.3): for each
    non-medoid :math:`x` the exact cost change of swapping it with every medoid is found in
    :math:`O(n)` from the nearest / second-nearest caches, and the best improving swap is
    applied at once (the caches are refreshed in :math:`O(nK)` after an accepted swap). One
    pass costs :math:`O(n^2 + s\,nK)` for :math:`s` accepted swaps, not PAM's :math:`O(Kn^2)`
    per swap; passes repeat until none changes anything (a swap-local optimum, not always the
    global one: see ``n_init``).
``"max"`` (k-center): minimize :math:`\max_o d(o)`. Farthest-first traversal (Gonzalez 1985,
    radius :math:`\le 2\cdot` optimum) started at the 1-centre of all data, then polishing
    (docs/theory.md §3.4), repeated while the largest radius decreases: (a) recentre each
    cluster at its own 1-centre medoid and reassign; (b) the single medoid swap that lowers the
    largest radius most (all :math:`K(n-K)` swaps evaluated in :math:`O(Kn^2)` from the
    nearest / second-nearest caches). Polishing only accepts strict decreases, so the result is
    never worse than plain farthest-first.

Ties go to the smallest index everywhere (the point added, the swap chosen, the medoid a point
is assigned to). Medoids are reported in increasing index order; ``labels_[i]`` is the position
in ``medoid_indices_`` of the medoid of point ``i``.

Minimum cluster size (docs/theory.md §3.4, our choice): while some cluster has fewer
than ``min_cluster_size`` members, the smallest such cluster (ties: smallest medoid index) is
dissolved, its medoid dropped and its points sent to their next-nearest medoid; the local
search then runs again with one medoid fewer. The fitted model may therefore have fewer than
``n_clusters`` clusters (``n_clusters_``; a warning is logged).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import apply_product
from rom.parallel import blas_threads
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import replicated_sum
from rom.parallel import validate_local_rows

__all__ = [
    "KMedoids",
    "choose_n_clusters",
    "kmeans_parameters",
    "kmeans_snapshots",
]

logger = logging.getLogger(__name__)

_OBJECTIVES = ("sum", "max")
_INITS = ("build", "farthest")


def _validate_dissimilarity(D, name: str = "D") -> np.ndarray:
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {D.shape}")
    if not np.all(np.isfinite(D)):
        raise ValueError(f"{name} contains NaN or Inf")
    if np.any(D < 0):
        raise ValueError(f"{name} has negative entries (min {D.min():.3e})")
    if not np.allclose(D, D.T, rtol=0.0, atol=1e-12 * max(1.0, float(D.max(initial=0.0)))):
        raise ValueError(f"{name} is not symmetric")
    return D


def _nearest_two(D: np.ndarray, med: np.ndarray):
    """Per point: index into ``med`` of the nearest medoid, distances d1 <= d2.

    ``med`` must be sorted, so ties go to the smallest medoid index (argmin takes the first).
    """
    Dm = D[:, med]
    near = np.argmin(Dm, axis=1)
    d1 = Dm[np.arange(D.shape[0]), near]
    if len(med) > 1:
        Dm2 = Dm.copy()
        Dm2[np.arange(D.shape[0]), near] = np.inf
        d2 = Dm2.min(axis=1)
    else:
        d2 = np.full(D.shape[0], np.inf)
    return near, d1, d2


def _assign(D: np.ndarray, med: np.ndarray) -> np.ndarray:
    return np.argmin(D[:, med], axis=1)


def _build(D: np.ndarray, k: int) -> np.ndarray:
    """BUILD: greedily add the point that lowers the sum of nearest distances most."""
    n = D.shape[0]
    cost_if = D.sum(axis=0)  # cost with the single medoid j
    med = [int(np.argmin(cost_if))]
    d1 = D[:, med[0]].copy()
    for _ in range(1, k):
        cost_if = np.minimum(D, d1[:, None]).sum(axis=0)
        cost_if[med] = np.inf
        med.append(int(np.argmin(cost_if)))
        d1 = np.minimum(d1, D[:, med[-1]])
    assert len(set(med)) == k <= n
    return np.sort(np.asarray(med))


def _farthest_first(D: np.ndarray, k: int) -> np.ndarray:
    """Gonzalez traversal from the 1-centre of all data (radius <= 2 * optimum)."""
    med = [int(np.argmin(D.max(axis=0)))]
    d1 = D[:, med[0]].copy()
    for _ in range(1, k):
        d = d1.copy()
        d[med] = -np.inf
        med.append(int(np.argmax(d)))
        d1 = np.minimum(d1, D[:, med[-1]])
    return np.sort(np.asarray(med))


def _fasterpam(D: np.ndarray, med: np.ndarray, max_iter: int) -> tuple[np.ndarray, int]:
    """Eager-swap local search for the sum objective. Returns (sorted medoids, passes)."""
    n, k = D.shape[0], len(med)
    med = np.sort(med)
    if k == n:
        return med, 0
    tol = 1e-14 * max(float(D.sum()), 1e-300)
    near, d1, d2 = _nearest_two(D, med)
    for it in range(1, max_iter + 1):
        changed = False
        for x in range(n):
            if x in med:
                continue
            d = D[:, x]
            closer = d < d1
            shared = float(np.sum(d[closer] - d1[closer]))
            if k == 1:  # no second-nearest medoid: the swap change is sum(d) - sum(d1)
                g = np.array([float(np.sum(d) - np.sum(d1)) - shared])
            else:
                mid = ~closer & (d < d2)
                g = np.bincount(near, weights=d2 - d1, minlength=k)  # price of removing j
                g += np.bincount(near[closer], weights=d1[closer] - d2[closer], minlength=k)
                g += np.bincount(near[mid], weights=d[mid] - d2[mid], minlength=k)
            j = int(np.argmin(g))
            if shared + g[j] < -tol:
                med = np.sort(np.where(np.arange(k) == j, x, med))
                near, d1, d2 = _nearest_two(D, med)  # refresh caches, O(nK), only on a swap
                changed = True
        if not changed:
            return med, it
    logger.warning("k-medoids swap search stopped at max_iter=%d before converging", max_iter)
    return med, max_iter


def _radius(D: np.ndarray, med: np.ndarray) -> float:
    return float(D[:, med].min(axis=1).max())


def _polish_max(D: np.ndarray, med: np.ndarray, max_iter: int) -> tuple[np.ndarray, int]:
    """Recentering + best single swap, while the largest radius strictly decreases."""
    n, k = D.shape[0], len(med)
    med = np.sort(med)
    best = _radius(D, med)
    for it in range(1, max_iter + 1):
        improved = False
        # (a) recentre every cluster at its 1-centre
        labels = _assign(D, med)
        new = med.copy()
        for c in range(k):
            members = np.flatnonzero(labels == c)
            new[c] = members[int(np.argmin(D[np.ix_(members, members)].max(axis=0)))]
        new = np.sort(new)
        r = _radius(D, new)
        if r < best:
            med, best, improved = new, r, True
        # (b) best single swap
        if k < n:
            near, d1, d2 = _nearest_two(D, med)
            # distance to the nearest medoid once medoid j is removed: (n, k)
            excl = np.repeat(d1[:, None], k, axis=1)
            excl[np.arange(n), near] = d2
            rad = np.full((n, k), np.inf)  # rad[x, j]: largest radius after swapping j -> x
            for x in range(n):
                if x in med:
                    continue
                rad[x] = np.minimum(excl, D[:, x][:, None]).max(axis=0)
            x, j = np.unravel_index(int(np.argmin(rad)), rad.shape)
            if rad[x, j] < best:
                med = np.sort(np.where(np.arange(k) == j, x, med))
                best, improved = float(rad[x, j]), True
        if not improved:
            return med, it
    logger.warning("k-center polishing stopped at max_iter=%d", max_iter)
    return med, max_iter


class KMedoids:
    r"""k-medoids (sum) or k-center (max) clustering on a precomputed dissimilarity.

    Parameters
    ----------
    n_clusters : int
        Number of medoids :math:`K \ge 1`.
    objective : {"sum", "max"}
        ``"sum"``: minimize :math:`\sum_o \min_k\Delta[o, m_k]` (BUILD + FasterPAM swaps);
        ``"max"``: minimize :math:`\max_o\min_k\Delta[o, m_k]` (farthest-first + polishing).
        See the module docstring.
    min_cluster_size : int
        Clusters smaller than this are dissolved (module docstring).
    max_iter : int
        Most swap passes (sum) or polishing rounds (max) per local search.
    init : {"build", "farthest"} or None
        Initial medoids; default ``"build"`` for the sum and ``"farthest"`` for the max
        objective.
    n_init : int
        Local searches to run: the first from ``init``, the others from medoid sets drawn by
        ``numpy.random.default_rng(seed)``; the best objective wins (ties: the earliest run).
        Swap search finds a swap-local optimum, not always the global one; restarts make
        missing it rarer.
    seed : int
        Seed of the restarts (unused when ``n_init == 1``).

    Attributes
    ----------
    medoid_indices_ : ndarray of shape (n_clusters_,)
        Medoid indices, increasing.
    labels_ : ndarray of shape (n,)
        Position in ``medoid_indices_`` of each point's nearest medoid (ties: smallest index).
    objective_value_ : float
        The sum or the max of the distances to the assigned medoids.
    cluster_widths_ : ndarray of shape (n_clusters_,)
        Largest dissimilarity of a member to its medoid.
    cluster_sizes_ : ndarray of shape (n_clusters_,)
    n_clusters_ : int
        Number of clusters found (``< n_clusters`` after dissolving small clusters).
    n_iter_ : int
        Passes of the last local search.
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        objective: str = "sum",
        min_cluster_size: int = 1,
        max_iter: int = 100,
        init: str | None = None,
        n_init: int = 1,
        seed: int = 0,
    ) -> None:
        keep_options(self, locals())

    def _check_params(self, n: int) -> None:
        """Options against ``n`` points (the data are replicated: no collective needed)."""
        err = option_error(
            self,
            {
                "n_clusters": Interval(1, n, integer=True),
                "objective": Choice(*_OBJECTIVES),
                "init": Choice(*_INITS, optional=True),
                "min_cluster_size": Interval(1, n, integer=True),
                "n_init": Interval(1, None, integer=True),
                "max_iter": Interval(1, None, integer=True),
            },
        )
        if err is not None:
            raise ValueError(err)

    def _local_search(self, D: np.ndarray, med: np.ndarray) -> tuple[np.ndarray, int]:
        if self.objective == "sum":
            return _fasterpam(D, med, self.max_iter)
        return _polish_max(D, med, self.max_iter)

    def _value(self, D: np.ndarray, med: np.ndarray) -> float:
        d = D[:, med].min(axis=1)
        return float(d.sum() if self.objective == "sum" else d.max())

    def fit(self, D: np.ndarray, y=None) -> KMedoids:
        """Cluster the points of a symmetric dissimilarity matrix ``D`` of shape (n, n)."""
        D = _validate_dissimilarity(D)
        n = D.shape[0]
        self._check_params(n)
        k = int(self.n_clusters)
        init = self.init or ("build" if self.objective == "sum" else "farthest")
        med = _build(D, k) if init == "build" else _farthest_first(D, k)
        med, n_iter = self._local_search(D, med)
        best = self._value(D, med)
        rng = np.random.default_rng(self.seed)
        for _ in range(1, int(self.n_init)):
            start = np.sort(rng.choice(n, size=k, replace=False))
            cand, it = self._local_search(D, start)
            v = self._value(D, cand)
            if v < best:
                med, n_iter, best = cand, it, v
        med, n_iter, labels, sizes = self._dissolve_small_clusters(D, med, n_iter)
        self.medoid_indices_ = med
        self.labels_ = labels
        d = D[np.arange(n), med[labels]]
        self.objective_value_ = float(d.sum() if self.objective == "sum" else d.max())
        self.cluster_sizes_ = sizes
        self.cluster_widths_ = np.array(
            [float(d[labels == c].max()) for c in range(len(med))], dtype=np.float64
        )
        self.n_clusters_ = len(med)
        self.n_iter_ = n_iter
        logger.debug(
            "KMedoids(%s): K=%d, objective %.6g, widths max %.3g",
            self.objective,
            self.n_clusters_,
            self.objective_value_,
            self.cluster_widths_.max(),
        )
        return self

    def _dissolve_small_clusters(
        self, D: np.ndarray, med: np.ndarray, n_iter: int
    ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """Drop the smallest undersized cluster and search again, until none is undersized.

        Returns ``(medoids, passes of the last search, labels, cluster sizes)``.
        """
        while True:
            labels = _assign(D, med)
            sizes = np.bincount(labels, minlength=len(med))
            small = np.flatnonzero(sizes < self.min_cluster_size)
            if small.size == 0:
                return med, n_iter, labels, sizes
            drop = small[np.argmin(sizes[small])]  # smallest cluster, then smallest medoid
            logger.warning(
                "dissolving cluster of medoid %d (%d < min_cluster_size=%d members)",
                med[drop],
                sizes[drop],
                self.min_cluster_size,
            )
            med, n_iter = self._local_search(D, np.delete(med, drop))

    def fit_predict(self, D: np.ndarray, y=None) -> np.ndarray:
        """:meth:`fit` and return ``labels_``."""
        return self.fit(D).labels_

    def predict(self, D_to_medoids: np.ndarray) -> np.ndarray:
        r"""Nearest medoid of new points.

        Parameters
        ----------
        D_to_medoids : ndarray of shape (n_new, n_clusters_)
            Dissimilarity of each new point (rows) to each medoid (columns, in the order of
            ``medoid_indices_``), e.g. from
            :func:`rom.local.dissimilarity.sine_dissimilarity_between`.

        Returns
        -------
        labels : ndarray of shape (n_new,)
            Ties go to the smallest medoid index.
        """
        if not hasattr(self, "medoid_indices_"):
            raise RuntimeError("KMedoids is not fitted; call fit first")
        A = np.asarray(D_to_medoids, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != self.n_clusters_:
            raise ValueError(
                f"D_to_medoids must have shape (n_new, {self.n_clusters_}), got {A.shape}"
            )
        if not np.all(np.isfinite(A)):
            raise ValueError("D_to_medoids contains NaN or Inf")
        return np.argmin(A, axis=1)


def choose_n_clusters(
    D: np.ndarray,
    *,
    tol: float,
    objective: str = "max",
    max_clusters: int | None = None,
    min_cluster_size: int = 1,
) -> tuple[int, KMedoids]:
    r"""Smallest :math:`K` whose largest cluster width is at most ``tol``.

    Fits :class:`KMedoids` for :math:`K = 1, 2, \dots` and stops at the first with
    :math:`\max_k \max_{i\in C_k}\Delta[i, m_k] \le` ``tol`` (docs/theory.md §3.5; in the
    sine metric the width bounds the relative error of the medoid's span on every member). If no
    :math:`K \le` ``max_clusters`` meets it, the :math:`K` with the smallest largest width is
    returned (smallest :math:`K` on ties) and a warning logged.

    Returns
    -------
    n_clusters : int
        The :math:`K` requested (the fitted model's ``n_clusters_`` may be smaller if small
        clusters were dissolved).
    model : KMedoids
        The model fitted with it.
    """
    D = _validate_dissimilarity(D)
    n = D.shape[0]
    if not (isinstance(tol, (int, float, np.floating)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    kmax = n if max_clusters is None else max_clusters
    if not isinstance(kmax, (int, np.integer)) or not 1 <= kmax <= n:
        raise ValueError(f"max_clusters must be an integer in [1, n={n}], got {max_clusters!r}")
    best = None
    for k in range(1, int(kmax) + 1):
        model = KMedoids(k, objective=objective, min_cluster_size=min_cluster_size).fit(D)
        width = float(model.cluster_widths_.max())
        if width <= tol:
            return k, model
        if best is None or width < best[0]:
            best = (width, k, model)
    logger.warning(
        "no K <= %d meets tol=%.3g; returning K=%d with largest width %.3g",
        kmax,
        tol,
        best[1],
        best[0],
    )
    return best[1], best[2]


def kmeans_parameters(params: np.ndarray, n_clusters: int, *, seed: int = 0) -> np.ndarray:
    """Baseline: Euclidean k-means on the (standardized) parameter vectors.

    Parameters are standardized column-wise (zero mean, unit variance; constant columns left
    centred) so that units do not matter; ``sklearn.cluster.KMeans`` with 10 k-means++
    restarts and ``random_state=seed``.

    Parameters
    ----------
    params : ndarray of shape (n,) or (n, n_params)
    n_clusters : int
    seed : int

    Returns
    -------
    labels : ndarray of shape (n,)
    """
    from sklearn.cluster import KMeans

    P = np.asarray(params, dtype=np.float64)
    if P.ndim == 1:
        P = P[:, None]
    if P.ndim != 2 or not np.all(np.isfinite(P)):
        raise ValueError(f"params must be a finite (n,) or (n, n_params) array, got {P.shape}")
    if not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= P.shape[0]:
        raise ValueError(f"n_clusters must be an integer in [1, {P.shape[0]}], got {n_clusters!r}")
    std = P.std(axis=0)
    Z = (P - P.mean(axis=0)) / np.where(std > 0, std, 1.0)
    km = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed)
    return km.fit_predict(Z)


def kmeans_snapshots(
    X: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    comm=None,
    product=None,
) -> np.ndarray:
    r"""Baseline: Euclidean (or :math:`M`-norm) k-means on the snapshots themselves.

    k-means only depends on the distances :math:`\|x_i - x_j\|_M`, which the Gram matrix
    :math:`G = X^T M X` (one reduction, replicated bit-identically on all ranks) determines:
    with :math:`G = Q\Lambda Q^T`, the columns of :math:`Y = \Lambda_+^{1/2} Q^T` (:math:`n`
    points in :math:`\mathbb{R}^n`) have exactly those distances. ``sklearn.cluster.KMeans``
    (10 k-means++ restarts, ``random_state=seed``) runs on :math:`Y` on every rank; nothing of
    size :math:`N_h` is gathered and the labels do not depend on the rank count (up to the
    round-off of :math:`G`).

    Parameters
    ----------
    X : ndarray of shape (n_local, n)
        Owned rows of the snapshots.
    n_clusters : int
    seed : int
    comm, product
        Communicator (collective) and inner product.

    Returns
    -------
    labels : ndarray of shape (n,)
    """
    from sklearn.cluster import KMeans

    comm = get_comm(comm)
    X, _ = validate_local_rows(X, "X", comm)
    n = X.shape[1]
    err = None
    if not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= n:
        err = f"n_clusters must be an integer in [1, {n}], got {n_clusters!r}"
    check_collective(err, comm)
    G = replicated_sum(X.T @ apply_product(product, X), comm)
    lam, Q = np.linalg.eigh(0.5 * (G + G.T))
    Y = Q * np.sqrt(np.maximum(lam, 0.0))  # rows: points, same distances as the snapshots
    km = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed)
    with blas_threads(comm):  # ranks share the cores: no oversubscribed OpenMP pools
        return km.fit_predict(Y)
