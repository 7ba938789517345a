r"""Checked online selection of a local basis: candidates, projection error, trust, fall-back.

Nearest-medoid selection (docs/theory.md §3.5 (1)) looks only at :math:`K` dissimilarities;
a field in the Voronoi cell of medoid :math:`k` can still be far from every member of
cluster :math:`k` and close to the members of another cluster, and the selection then
returns a basis that cannot represent it, without any sign of it. :meth:`LocalBases.route
<rom.local.bases.LocalBases.route>` checks the choice a posteriori at the cost of a few
projections (Amsallem & Haasdonk, AMSES 3:6, 2016; docs/theory.md §3.5 (2)):

1. candidates: the ``n_candidates`` medoids nearest to :math:`u` in :math:`\delta`
   (Daniel et al., arXiv:2103.13683), each scored by the relative projection error
   :math:`e_k(u) = \|U - \Psi_k\Psi_k^T M U\|_M / \|U\|_M` on its basis; the smallest wins
   (rule ``"candidates"``), at cost :math:`O(n \sum_{k\in\text{cand}} N_k)`;
2. with a trust threshold :math:`\tau` (``fallback=True`` at fit): if no candidate has
   :math:`e_k(u) \le \tau`, every other cluster is scored too (rule ``"widened"`` if one
   then passes);
3. if none passes, the global POD basis :math:`\Psi_0` (fitted alongside) is taken when
   :math:`e_0(u) < \min_k e_k(u)` (rule ``"global"``); otherwise the best local basis is
   returned marked ``"untrusted"``.

The threshold comes from the training data only, by leave-one-out: for each training item
:math:`i` of a cluster with at least two items, :math:`\Psi_k^{(-i)}` is the POD basis of
the cluster without item :math:`i` (same truncation rule) and

.. math::

    \tau = f \max_i \frac{\|U_i - \Psi_k^{(-i)}\Psi_k^{(-i)T} M U_i\|_M}{\|U_i\|_M},

with :math:`f` = ``trust_factor``: a new field whose best local error exceeds what every
training item achieved on its own cluster without itself is outside what the clusters have
shown they represent. For trajectory items routed from their first :math:`m < T` fields the
threshold compares like with like: :math:`\tau(m)` is the same maximum over the first
:math:`m` fields of each left-out item (:math:`\tau(T) = \tau`), since the first fields of a
trajectory are in general easier to represent than the whole of it. :math:`\Psi_k^{(-i)}` lies in the span of the cluster's POD modes
:math:`\Phi`, so with :math:`C = \Phi^T M S_k` (one projection) it follows from the
eigenvectors :math:`W` of :math:`C C^T - C_i C_i^T` (replicated, :math:`r\times r`):
:math:`\|U_i\|_M^2 - \|W_N^T C_i\|_F^2` is the squared error (plus the part of
:math:`U_i` outside the span of :math:`\Phi`).

Overlapping clusters (``overlap=`` :math:`\omega > 0` at fit): cluster :math:`k`'s basis is
also trained on every item :math:`i` of another cluster with
:math:`\delta(U_i, m_k) \le (1 + \omega)\,\delta(U_i, m_{\ell(i)})`, the items on the
boundary between the two clusters (:math:`m` the medoids, :math:`\ell(i)` the item's
cluster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from rom.compression.truncation import truncation_rank
from rom.local._items import stacked_product
from rom.local.dissimilarity import sine_dissimilarity_between
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import validate_local_rows

__all__ = ["GLOBAL", "Selection", "leave_one_out_errors", "overlap_items", "threshold_for"]

#: cluster index of the global basis in a :class:`Selection`
GLOBAL = -1


@dataclass(frozen=True)
class Selection:
    """Outcome of :meth:`rom.local.bases.LocalBases.route`.

    Attributes
    ----------
    cluster : int
        Chosen local basis, or :data:`GLOBAL` (-1) for the global basis.
    rule : str
        ``"candidates"``, ``"widened"``, ``"global"`` or ``"untrusted"`` (module docstring).
    error : float
        Relative projection error of the field on the chosen basis.
    candidates : tuple of int
        The nearest medoids tried first, nearest first.
    errors : ndarray of shape (K,)
        Relative projection error on each local basis that was scored (NaN if not scored).
    global_error : float
        Error on the global basis (NaN if not scored).
    threshold : float or None
        The trust threshold :math:`\\tau(m)` for the ``m`` fields routed (None without
        ``fallback``).
    """

    cluster: int
    rule: str
    error: float
    candidates: tuple[int, ...]
    errors: np.ndarray
    global_error: float
    threshold: float | None


def overlap_items(D: np.ndarray, labels: np.ndarray, medoids: np.ndarray, omega: float):
    r"""Items added to each cluster's training set by overlap :math:`\omega`.

    Item :math:`i` of cluster :math:`\ell(i)` joins cluster :math:`k \ne \ell(i)` when
    :math:`\delta(U_i, m_k) \le (1+\omega)\,\delta(U_i, m_{\ell(i)})`.

    Returns
    -------
    extra : list of ndarray
        Item indices added to each cluster (ascending).
    """
    Dm = D[:, medoids]  # (n_items, K)
    own = Dm[np.arange(len(labels)), labels]
    K = len(medoids)
    return [np.flatnonzero((labels != k) & (Dm[:, k] <= (1.0 + omega) * own)) for k in range(K)]


def leave_one_out_errors(
    X: np.ndarray,
    modes: np.ndarray,
    member_cols: list[np.ndarray],
    cluster_cols: np.ndarray,
    *,
    rank: int | None,
    rel_l2_err: float | None,
    product,
    comm: MPI.Comm,
) -> np.ndarray:
    r"""Relative error of each member on its cluster's POD basis fitted without it.

    Parameters
    ----------
    X : ndarray of shape (n_local, n)
        Training columns (owned rows).
    modes : ndarray of shape (n_local, r)
        All :math:`M`-orthonormal POD modes :math:`\Phi` of the cluster's training set.
    member_cols : list of ndarray
        Columns of ``X`` of each member item to leave out.
    cluster_cols : ndarray
        Columns of ``X`` of the cluster's whole training set (members and overlap).
    rank, rel_l2_err : optional
        The truncation rule of the local bases.

    Returns
    -------
    err2 : ndarray of shape (len(member_cols), T)
        Squared error of each field of each left-out member on the basis without it.
    energy : ndarray of shape (len(member_cols), T)
        :math:`\|u\|_M^2` of each field (the relative error over the first :math:`m` fields
        is :math:`\sqrt{\sum_{t<m} e_t^2 / \sum_{t<m}\|u^t\|_M^2}`). Identical on every
        rank (module docstring for the method).
    """
    S = X[:, cluster_cols]
    C = allreduce_sum(modes.T @ apply_product(product, S), comm)  # (r, n_k)
    sq = allreduce_sum(np.einsum("ij,ij->j", S, apply_product(product, S)), comm)
    outside = np.maximum(sq - np.einsum("ij,ij->j", C, C), 0.0)  # energy outside span(Phi)
    pos = {int(c): j for j, c in enumerate(cluster_cols)}
    G = C @ C.T
    T = len(member_cols[0]) if len(member_cols) else 0
    err2, energy = np.empty((len(member_cols), T)), np.empty((len(member_cols), T))
    for i, cols in enumerate(member_cols):
        j = np.array([pos[int(c)] for c in cols])
        Ci = C[:, j]
        lam, W = np.linalg.eigh(G - Ci @ Ci.T)
        lam, W = np.maximum(lam[::-1], 0.0), W[:, ::-1]
        rest = np.ones(len(cluster_cols), dtype=bool)
        rest[j] = False
        N = truncation_rank(
            np.sqrt(lam),
            rank=rank,
            rel_l2_err=rel_l2_err,
            total_energy=float(lam.sum() + outside[rest].sum()),
        )
        energy[i] = sq[j]
        err2[i] = np.maximum(sq[j] - np.sum((W[:, :N].T @ Ci) ** 2, axis=0), 0.0)
    return err2, energy


def _relative(err2: np.ndarray, energy: np.ndarray, m: int) -> np.ndarray:
    """Relative errors over the first ``m`` fields of each row (0 where the energy is 0)."""
    e, t = err2[:, :m].sum(axis=1), energy[:, :m].sum(axis=1)
    return np.sqrt(np.divide(e, t, out=np.zeros_like(e), where=t > 0))


def relative_errors(U: np.ndarray, bases: list[np.ndarray], product, comm) -> np.ndarray:
    """Space-time relative projection error of ``U`` on each basis (collective)."""
    MU = apply_product(product, U)
    total = float(allreduce_sum(np.sum(U * MU), comm))
    out = np.empty(len(bases))
    for k, B in enumerate(bases):
        C = allreduce_sum(B.T @ MU, comm)
        # ||U - B C||^2 = ||U||^2 - ||C||^2 for M-orthonormal B; the difference form
        # cancels, so the residual is formed explicitly
        R = U - B @ C
        e2 = float(allreduce_sum(np.sum(R * apply_product(product, R)), comm))
        out[k] = np.sqrt(e2 / total) if total > 0 else 0.0
    return out


def choose(order: np.ndarray, score, n_candidates: int, threshold, score_global) -> Selection:
    """The rules of the module docstring, given the medoid order and scoring callbacks.

    ``score(ks)`` returns the errors of clusters ``ks``; ``score_global()`` that of the
    global basis (or None when there is none). Collective through the callbacks.
    """
    K = len(order)
    errors = np.full(K, np.nan)
    cand = order[: max(1, min(int(n_candidates), K))]
    errors[cand] = score(cand)
    best = int(cand[np.argmin(errors[cand])])
    info = {"candidates": tuple(int(k) for k in cand), "threshold": threshold, "errors": errors}
    if threshold is None or errors[best] <= threshold:
        return Selection(best, "candidates", float(errors[best]), global_error=np.nan, **info)
    rest = order[len(cand) :]
    if len(rest):
        errors[rest] = score(rest)
        best = int(np.nanargmin(errors))
        if errors[best] <= threshold:
            return Selection(best, "widened", float(errors[best]), global_error=np.nan, **info)
    g = score_global()
    g = np.nan if g is None else float(g)
    if not np.isnan(g) and g < errors[best]:
        return Selection(GLOBAL, "global", g, global_error=g, **info)
    return Selection(best, "untrusted", float(errors[best]), global_error=g, **info)


def fit_trust(
    X: np.ndarray,
    modes: list[np.ndarray],
    items: list[np.ndarray],
    training: list[np.ndarray],
    labels: np.ndarray,
    *,
    rank: int | None,
    rel_l2_err: float | None,
    product,
    trust_factor: float,
    comm: MPI.Comm,
) -> tuple[np.ndarray, float, tuple]:
    """Leave-one-out errors of the training items, the threshold, and the per-field squared
    errors and energies of :func:`threshold_for`.

    ``modes[k]`` are cluster ``k``'s modes, fitted on the columns ``training[k]`` of ``X``;
    ``items[i]`` are the columns of item ``i`` and ``labels[i]`` its cluster."""
    T = len(items[0])
    err2 = np.full((len(labels), T), np.nan)
    energy = np.full((len(labels), T), np.nan)
    for k, cols in enumerate(training):
        members = np.flatnonzero(labels == k)
        if len(members) < 2:  # nothing left to fit without it
            continue
        err2[members], energy[members] = leave_one_out_errors(
            X,
            modes[k],
            [items[i] for i in members],
            cols,
            rank=rank,
            rel_l2_err=rel_l2_err,
            product=product,
            comm=comm,
        )
    loo = np.full(len(labels), np.nan)
    fitted = np.isfinite(err2[:, 0])
    loo[fitted] = _relative(err2[fitted], energy[fitted], T)
    return loo, threshold_for((err2, energy), trust_factor, T), (err2, energy)


def threshold_for(columns: tuple, trust_factor: float, m: int) -> float:
    r""":math:`\tau(m)`: ``trust_factor`` times the largest leave-one-out error over the first
    ``m`` fields of the training items (``inf`` when every cluster is a singleton)."""
    err2, energy = columns
    fitted = np.isfinite(err2[:, 0])
    if not fitted.any():
        return np.inf
    return float(trust_factor * _relative(err2[fitted], energy[fitted], m).max())


def medoid_dissimilarities(U: np.ndarray, medoids: list[np.ndarray], product, comm) -> np.ndarray:
    """Sine dissimilarity of the field ``U`` (n_local, m) to the first ``m`` columns of each
    medoid, stacked time-major (collective)."""
    n_local, m = U.shape
    Ym = np.column_stack([M[:, :m].T.reshape(-1) for M in medoids])
    prod = stacked_product(product, n_local, m)
    return sine_dissimilarity_between(U.T.reshape(-1, 1), Ym, product=prod, comm=comm)[0]


def nearest_parameter_cluster(params: np.ndarray | None, labels: np.ndarray, mu) -> int:
    """The cluster of the training item nearest to ``mu`` in standardized parameters (ties:
    the smallest index)."""
    if mu is None:
        raise ValueError("give a field u or a parameter mu")
    if params is None:
        raise ValueError("selection by mu needs params at fit")
    m = np.asarray(mu, dtype=np.float64).ravel()
    if m.shape != (params.shape[1],) or not np.all(np.isfinite(m)):
        raise ValueError(f"mu must be finite with {params.shape[1]} entries, got {m.shape}")
    std = params.std(axis=0)
    d = np.sum(((params - m) / np.where(std > 0, std, 1.0)) ** 2, axis=1)
    return int(labels[int(np.argmin(d))])


def route_field(
    u: np.ndarray,
    medoids: list[np.ndarray],
    bases: list[np.ndarray],
    global_basis: np.ndarray | None,
    *,
    product,
    threshold: Callable[[int], float | None],
    n_candidates: int,
    comm: MPI.Comm | None,
) -> Selection:
    """:meth:`rom.local.bases.LocalBases.route` (collective): ``medoids[k]`` is cluster
    ``k``'s medoid trajectory (n_local, T), ``bases[k]`` its basis, ``threshold(m)`` the trust
    threshold of a field of ``m`` columns."""
    comm = get_comm(comm)
    n_local, T = medoids[0].shape
    U = np.asarray(u, dtype=np.float64)
    U = U[:, None] if U.ndim == 1 else U
    err = None
    if U.ndim != 2 or U.shape[0] != n_local or not 1 <= U.shape[1] <= T:
        err = f"u must have {n_local} owned rows and 1..{T} columns, got {U.shape}"
    elif int(n_candidates) < 1:
        err = f"n_candidates must be >= 1, got {n_candidates}"
    check_collective(err, comm)
    U, _ = validate_local_rows(U, "u", comm)
    m = U.shape[1]
    order = np.argsort(medoid_dissimilarities(U, medoids, product, comm), kind="stable")

    def score(ks):
        return relative_errors(U, [bases[k] for k in ks], product, comm)

    def score_global():
        if global_basis is None:
            return None
        return relative_errors(U, [global_basis], product, comm)[0]

    return choose(order, score, n_candidates, threshold(m), score_global)
