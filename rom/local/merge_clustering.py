r"""Error-constrained greedy clustering of blocks (Shamrai, arXiv:2601.11626).

Blocks :math:`A_j` (for us: the weighted snapshots of simulation :math:`j`) are merged into
clusters whose concatenation has a relative best rank-:math:`r` error
:math:`e_r \le \varepsilon`; a merge is accepted only while a predictor from :mod:`rom.local.bounds`
says so, and a final exact SVD per cluster certifies it (docs/theory.md §4)::

    avail <- blocks by ||A_j||_F descending (ties by index);  fails <- 0
    while avail:
        seed <- avail[0], plus following blocks while the total width <= r     # error 0
        cand <- rest of avail by ascending ||A_j||_F ('norm')
                or ascending ||(I - QQ^T M) A_j||_F, Q a basis of the seed ('residual')
        acc  <- longest prefix of cand with predict(seed + prefix) <= eps (stop at first failure)
        fails <- fails + 1 if acc is empty else 0
        emit cluster seed + acc; remove it from avail
        if fails >= patience: every remaining block becomes a singleton; stop
    certify each cluster by an exact SVD; while e_r > eps, split off the last accepted block

Predictors: ``"estimator"`` (accept if the corrected Weyl bound is :math:`\le\varepsilon`,
reject if the Ky Fan lower bound is :math:`>\varepsilon`, else the CGS2 truncated-Gram
estimator decides), ``"weyl"``, ``"residual"`` and the baseline ``"exact"`` (the exact
spectrum of every candidate merge, updated incrementally: the estimator's incremental SVD
without truncation). ``published=True`` swaps in the published Weyl and single-pass
estimator forms (benchmarks only: they are not bounds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

from rom.linalg import gram_matrix
from rom.linalg import range_basis
from rom.local.bounds import DROP_TOL
from rom.local.bounds import BlockSpectrum
from rom.local.bounds import IncrementalResidualBound
from rom.local.bounds import TruncatedGramEstimator
from rom.local.bounds import block_spectrum
from rom.local.bounds import exact_error
from rom.local.bounds import kyfan_from
from rom.local.bounds import validate_blocks
from rom.local.bounds import weyl_from
from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import option_error
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import get_comm

__all__ = ["ErrorConstrainedClustering", "clustering_metrics", "cluster_errors"]

logger = logging.getLogger(__name__)

_OPTIONS = {
    "rank": Interval(1, None, integer=True),
    "eps": Interval(0, 1, closed="neither"),
    "predictor": Choice("estimator", "weyl", "residual", "exact"),
    "ordering": Choice("norm", "residual"),
    "patience": Interval(1, None, integer=True),
    "oversampling": Interval(0, None, integer=True),
}


def cluster_errors(
    blocks: Sequence[np.ndarray],
    clusters: Sequence[Sequence[int]],
    *,
    rank: int,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
) -> np.ndarray:
    """True relative rank-``rank`` error of every cluster's concatenation (exact SVD).

    Singletons are reported as 0: a single block is stored uncompressed (see
    :func:`clustering_metrics`). Collective; each cluster is validated by :func:`exact_error`.
    """
    out = np.zeros(len(clusters))
    for c, members in enumerate(clusters):
        if len(members) > 1:
            group = [blocks[j] for j in members]
            out[c] = exact_error(group, rank=rank, comm=comm, product=product)
    return out


def clustering_metrics(
    widths: Sequence[int],
    clusters: Sequence[Sequence[int]],
    errors: Sequence[float],
    *,
    n_rows: int,
    rank: int,
    eps: float,
) -> dict:
    r"""Metrics of docs/theory.md §4 for a clustering of blocks.

    A cluster with :math:`K_n` columns stores :math:`p_c = K_n m` numbers as a singleton and
    :math:`\min(r(m + K_n), K_n m)` otherwise; compression ratio
    :math:`CR = m\sum_j n_j / \sum_c p_c`. The error statistics are over non-singleton clusters
    that compress (:math:`r < K_n m/(m + K_n)`); ``violations`` counts clusters with error
    :math:`> \varepsilon`.
    """
    m = n_rows
    stored, errs = 0, []
    n_nonsingle = 0
    for members, e in zip(clusters, errors):
        kn = int(sum(widths[j] for j in members))
        if len(members) == 1:
            stored += kn * m
            continue
        n_nonsingle += 1
        stored += min(rank * (m + kn), kn * m)
        if rank * (m + kn) < kn * m:
            errs.append(float(e))
    errs_a = np.array(errs)
    return {
        "n_clusters": len(clusters),
        "n_nonsingletons": n_nonsingle,
        "compression_ratio": float(m * sum(widths) / stored) if stored else 1.0,
        "mean_error": float(errs_a.mean()) if errs_a.size else 0.0,
        "std_error": float(errs_a.std()) if errs_a.size else 0.0,
        "max_error": float(max(errors)) if len(errors) else 0.0,
        "violations": int(sum(1 for e in errors if e > eps)),
    }


class ErrorConstrainedClustering:
    """Greedy merging of blocks under a certified rank-``r`` error ``eps``.

    Parameters
    ----------
    rank : int
        Target rank :math:`r` of each cluster's basis.
    eps : float
        Tolerance on the relative Frobenius error :math:`e_r` of each cluster, in (0, 1).
    predictor : {"estimator", "weyl", "residual", "exact"}
        Merge test (see the module docstring). ``"exact"`` is the exact-SVD baseline.
    ordering : {"norm", "residual"}
        Order in which candidates are tried after a seed.
    patience : int
        Stop after this many consecutive clusters that accepted nothing; the remaining blocks
        become singletons.
    certify : bool
        Split off last-accepted blocks while a cluster's exact error exceeds ``eps``.
    published : bool
        Use the published (non-guaranteed) Weyl and single-pass estimator forms.
    oversampling : int
        Extra columns :math:`os` of the estimator (:math:`p = r + os`).
    product : operator, optional
        Inner-product matrix :math:`M` on owned rows (Euclidean when ``None``).
    comm : mpi4py communicator, optional
        Blocks are row-distributed over ``comm`` (serial when ``None``).

    Attributes
    ----------
    labels_ : ndarray of shape (K,)
        Cluster index of every block.
    clusters_ : list of list of int
        Block indices of each cluster (seed first, then accepted blocks in order).
    certified_errors_ : ndarray of shape (n_clusters,)
        Exact :math:`e_r` of each cluster (0 for singletons, stored uncompressed).
    metrics_ : dict
        :func:`clustering_metrics` plus ``n_evaluations`` (candidate merges predicted),
        ``n_weyl_accepts``/``n_kyfan_rejects`` (decided without the estimator), ``n_splits``,
        ``precertify_violations`` (clusters the predictor accepted with exact error > eps), and times in seconds: ``spectra_time`` (per-block SVDs),
        ``predict_time`` (all candidate predictions), ``cluster_time`` (the greedy loop,
        spectra included), ``certify_time``.

    References
    ----------
    Shamrai, arXiv:2601.11626 (error-constrained clustering; bounds in corrected form as in
    docs/theory.md §4).
    """

    def __init__(
        self,
        *,
        rank: int,
        eps: float,
        predictor: str = "estimator",
        ordering: str = "norm",
        patience: int = 10,
        certify: bool = True,
        published: bool = False,
        oversampling: int = 5,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
    ) -> None:
        keep_options(self, locals())

    # ------------------------------------------------------------------ validation
    # ------------------------------------------------------------------ predictors
    def _new_state(self):
        """Incremental predictor state for one cluster (None for Weyl)."""
        if self.predictor in ("estimator", "exact"):
            # "exact": the same incremental SVD without truncation
            return TruncatedGramEstimator(
                rank=self.rank,
                oversampling=self.oversampling if self.predictor == "estimator" else None,
                published=self.published and self.predictor == "estimator",
                comm=self.comm,
                product=self.product,
            )
        if self.predictor == "residual":
            return IncrementalResidualBound(rank=self.rank, comm=self.comm, product=self.product)
        return None

    def _add(self, state, spec: BlockSpectrum):
        if state is not None:
            state.add(spec.factor, tail=spec.factor_tail)
        return state

    def _predict(self, members: list[int], state, j: int) -> tuple[float, object]:
        """Predicted error of ``members + [j]``; returns (error, new state or None).

        ``None`` as the state of an accepted merge means "not formed yet" (a Weyl accept);
        :meth:`_grow` forms it when the merge is taken.
        """
        specs = [self._spectra[i] for i in members] + [self._spectra[j]]
        if self.predictor == "weyl":
            return weyl_from(specs, self.rank, published=self.published), None
        if self.predictor == "estimator":
            w = weyl_from(specs, self.rank, published=self.published)
            if w <= self.eps:
                self._n_weyl_accept += 1
                return w, None
            if kyfan_from(specs, self.rank) > self.eps:
                self._n_kyfan_reject += 1
                return np.inf, state
        new = self._add(state.copy(), self._spectra[j])
        return new.error(), new

    # ------------------------------------------------------------------ fit
    def fit(
        self, blocks: Sequence[np.ndarray], *, spectra: Sequence[BlockSpectrum] | None = None
    ) -> ErrorConstrainedClustering:
        """Cluster ``blocks`` (each of shape (n_local, n_j), row-distributed); returns self.

        ``spectra``, optional: the blocks' :func:`rom.local.bounds.block_spectra` (same product),
        to share one set of per-block SVDs between several fits (predictors, orderings,
        tolerances) instead of recomputing them; ``metrics_["spectra_time"]`` is then 0.
        Steps: :meth:`_validate`, :meth:`_block_spectra`, :meth:`_greedy`, :meth:`_certify`,
        :meth:`_record`.
        """
        blocks = self._validate(blocks, spectra)
        t0 = time.perf_counter()
        self._spectra, t_spec = self._block_spectra(blocks, spectra)
        self._n_weyl_accept = self._n_kyfan_reject = 0
        self._n_eval, self._t_pred = 0, 0.0
        widths = [A.shape[1] for A in blocks]
        clusters, n_seed = self._greedy(widths)
        t_cluster = time.perf_counter() - t0
        t1 = time.perf_counter()
        errors, n_splits, n_pre = self._certify(blocks, clusters, n_seed)
        times = {
            "spectra_time": t_spec,
            "predict_time": self._t_pred,
            "cluster_time": t_cluster,
            "certify_time": time.perf_counter() - t1,
        }
        self._record(blocks, clusters, errors, n_splits=n_splits, n_pre=n_pre, times=times)
        del self._spectra
        return self

    def _spectra_error(self, blocks, spectra) -> str | None:
        """What is wrong with the ``spectra`` given to :meth:`fit` (``None`` when fine)."""
        if spectra is None:
            return None
        if len(spectra) != len(blocks):
            return f"spectra has {len(spectra)} entries for {len(blocks)} blocks"
        for sp, A in zip(spectra, blocks, strict=True):
            shape = np.shape(A)
            if (
                not isinstance(sp, BlockSpectrum)
                or len(shape) != 2
                or sp.width != shape[1]
                or sp.factor.shape[0] != shape[0]
            ):
                return "spectra do not match the blocks (BlockSpectrum of each block expected)"
        return None

    def _validate(self, blocks, spectra) -> list[np.ndarray]:
        """Options, ``spectra`` and blocks, checked collectively in one verdict per rank."""
        err = option_error(self, _OPTIONS)
        if err is None:
            err = self._spectra_error(blocks, spectra)
        return validate_blocks(blocks, self.comm, rank=self.rank, error=err)

    def _block_spectra(self, blocks, spectra) -> tuple[list[BlockSpectrum], float]:
        """The given spectra (time 0), or every block's :func:`block_spectrum` and its time."""
        if spectra is not None:
            return list(spectra), 0.0
        t0 = time.perf_counter()
        keep = self.rank + self.oversampling if self.predictor == "estimator" else None
        out = [block_spectrum(A, comm=self.comm, product=self.product, keep=keep) for A in blocks]
        return out, time.perf_counter() - t0

    def _greedy(self, widths: list[int]) -> tuple[list[list[int]], list[int]]:
        """The greedy loop of the module docstring: clusters and their seed sizes."""
        avail = sorted(range(len(widths)), key=lambda j: (-self._spectra[j].norm2, j))
        clusters: list[list[int]] = []
        n_seed: list[int] = []
        fails = 0
        while avail:
            seed = self._seed(avail, widths)
            members = self._grow(seed, self._order_candidates(seed, avail[len(seed) :]))
            fails = fails + 1 if len(members) == len(seed) else 0
            clusters.append(members)
            n_seed.append(len(seed))
            taken = set(members)
            avail = [j for j in avail if j not in taken]
            if fails >= self.patience:
                clusters.extend([j] for j in avail)
                n_seed.extend(1 for _ in avail)
                break
        return clusters, n_seed

    def _seed(self, avail: list[int], widths: list[int]) -> list[int]:
        """The first available block plus the following ones while the width stays ``<= r``."""
        seed, width = [avail[0]], widths[avail[0]]
        for j in avail[1:]:
            if width + widths[j] > self.rank:
                break
            seed.append(j)
            width += widths[j]
        return seed

    def _grow(self, seed: list[int], cand: list[int]) -> list[int]:
        """The seed plus the longest prefix of ``cand`` whose predictions stay within eps."""
        members = list(seed)
        state = self._new_state()
        for i in seed:
            self._add(state, self._spectra[i])
        for j in cand:
            tp = time.perf_counter()
            e, new = self._predict(members, state, j)
            if new is None and state is not None and e <= self.eps:
                new = self._add(state.copy(), self._spectra[j])  # Weyl-accepted
            self._t_pred += time.perf_counter() - tp
            self._n_eval += 1
            if not e <= self.eps:
                break
            members.append(j)
            state = new
        return members

    def _certify(self, blocks, clusters, n_seed) -> tuple[list[float], int, int]:
        """Exact errors; with ``certify``, split off last-accepted blocks while over eps.

        Returns ``(errors, n_splits, n_pre)``, ``n_pre`` the clusters over eps before
        certification. ``clusters`` is updated in place.
        """
        kw = dict(rank=self.rank, comm=self.comm, product=self.product)
        errors = list(cluster_errors(blocks, clusters, **kw))
        n_pre = int(sum(1 for e in errors if e > self.eps))
        n_splits = 0
        if not self.certify:
            return errors, n_splits, n_pre
        for c in range(len(clusters)):  # split-off singletons are appended: never over eps
            while errors[c] > self.eps and len(clusters[c]) > n_seed[c]:
                clusters.append([clusters[c].pop()])
                errors.append(0.0)
                n_splits += 1
                errors[c] = float(cluster_errors(blocks, [clusters[c]], **kw)[0])
        return errors, n_splits, n_pre

    def _record(self, blocks, clusters, errors, *, n_splits, n_pre, times) -> None:
        """Set ``labels_``, ``clusters_``, ``certified_errors_`` and ``metrics_``."""
        labels = np.empty(len(blocks), dtype=np.int64)
        for c, members in enumerate(clusters):
            labels[members] = c
        widths = [A.shape[1] for A in blocks]
        n_rows = int(allreduce_sum(float(blocks[0].shape[0]), self.comm))
        metrics = clustering_metrics(
            widths, clusters, errors, n_rows=n_rows, rank=self.rank, eps=float(self.eps)
        )
        metrics.update(
            n_evaluations=self._n_eval,
            n_weyl_accepts=self._n_weyl_accept,
            n_kyfan_rejects=self._n_kyfan_reject,
            n_splits=n_splits,
            precertify_violations=n_pre,
            **times,
        )
        self.labels_ = labels
        self.clusters_ = clusters
        self.certified_errors_ = np.asarray(errors, dtype=float)
        self.metrics_ = metrics
        logger.info(
            "error-constrained clustering: %d clusters (%d non-singleton), CR %.2f, %d splits",
            metrics["n_clusters"],
            metrics["n_nonsingletons"],
            metrics["compression_ratio"],
            n_splits,
        )

    def _order_candidates(self, seed: list[int], rest: list[int]) -> list[int]:
        """``rest`` by ascending :math:`\\|A_j\\|_F` (``"norm"``) or ascending residual
        :math:`\\|A_j\\|_F^2 - \\|Q^TMF_j\\|_F^2` against a basis :math:`Q` of the seed's
        range (``"residual"``); ties by index."""
        spectra = self._spectra
        if self.ordering == "norm" or not rest:
            return sorted(rest, key=lambda j: (spectra[j].norm2, j))
        comm = get_comm(self.comm)
        S = np.hstack([spectra[i].factor for i in seed])
        # orthonormal basis of the seed (rank-revealing, relative drop at the sqrt(u) floor)
        total = sum(spectra[i].norm2 for i in seed)
        Q = range_basis(S, product=self.product, comm=comm, drop_below=DROP_TOL**2 * total).basis
        res = []
        for start in range(0, len(rest), 64):  # chunks: never copy all blocks at once
            chunk = rest[start : start + 64]
            F = np.hstack([spectra[j].factor for j in chunk])
            P = gram_matrix(Q, F, product=self.product, comm=comm)
            offsets = np.cumsum([0] + [spectra[j].factor.shape[1] for j in chunk[:-1]])
            proj = np.add.reduceat(np.sum(P**2, axis=0), offsets)
            res += [max(0.0, spectra[j].norm2 - proj[k]) for k, j in enumerate(chunk)]
        return [j for _, j in sorted(zip(res, rest), key=lambda t: (t[0], t[1]))]
