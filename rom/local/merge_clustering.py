r"""Error-constrained greedy clustering of blocks (Shamrai, arXiv:2601.11626).

Blocks :math:`A_j` (for us: the weighted snapshots of simulation :math:`j`) are merged into
clusters whose concatenation has a relative best rank-:math:`r` error
:math:`e_r \le \varepsilon`; a merge is accepted only while a predictor from :mod:`rom.local.bounds`
says so, and a final exact SVD per cluster certifies it (``METHODS.md`` section 4)::

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
spectrum of every candidate merge, updated incrementally: a Gram matrix in an orthonormal basis
of the cluster's range). ``published=True`` swaps in the published Weyl and single-pass
estimator forms (benchmarks only: they are not bounds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

from rom.local.bounds import (
    DROP_TOL,
    BlockSpectrum,
    IncrementalResidualBound,
    TruncatedGramEstimator,
    _exact_sv2,
    _project_out,
    _range_basis,
    _tail,
    _tail_error,
    block_spectrum,
    kyfan_from,
    validate_blocks,
    weyl_tail,
)
from rom.parallel import Product, allreduce_sum, apply_product, get_comm

__all__ = ["ErrorConstrainedClustering", "clustering_metrics", "cluster_errors"]

logger = logging.getLogger(__name__)

_PREDICTORS = ("estimator", "weyl", "residual", "exact")
_ORDERINGS = ("norm", "residual")


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
    :func:`clustering_metrics`). Blocks are assumed validated.
    """
    comm = get_comm(comm)
    out = np.zeros(len(clusters))
    for c, members in enumerate(clusters):
        if len(members) > 1:
            sv2 = _exact_sv2(np.hstack([blocks[j] for j in members]), comm, product)
            total = float(np.sum(sv2))
            out[c] = np.sqrt(_tail(sv2, rank) / total) if total > 0 else 0.0
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
    r"""Metrics of ``METHODS.md`` section 4 for a clustering of blocks.

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


class _ExactGram:
    """Exact incremental spectrum of a growing cluster, for the ``"exact"`` baseline.

    Keeps an :math:`M`-orthonormal basis :math:`Q` of the cluster's range (not rotated) and
    :math:`C = Q^TMXX^TMQ`, whose eigenvalues are the :math:`\\sigma_i(X)^2`; a block is added
    by CGS2 and a bordered :math:`C`, like :class:`rom.local.bounds.TruncatedGramEstimator` without
    truncation. Residual directions below ``DROP_TOL * ||A||_F`` (the sqrt(u) floor) are dropped
    and their energy counted as error. Cost per candidate :math:`O(mkn + (k+n)^3)`, cheaper
    than a fresh SVD of the concatenation.
    """

    def __init__(self, rank: int, comm, product) -> None:
        self.rank, self.comm, self.product = rank, comm, product
        self.Q = None
        self.C = np.zeros((0, 0))
        self.dropped = 0.0
        self.total = 0.0

    def copy(self) -> _ExactGram:
        new = _ExactGram(self.rank, self.comm, self.product)
        new.Q, new.C, new.dropped, new.total = self.Q, self.C, self.dropped, self.total
        return new

    def add(self, A: np.ndarray, *, norm2: float) -> _ExactGram:
        comm = get_comm(self.comm)
        if self.Q is None:
            self.Q = np.zeros((A.shape[0], 0))
        R, Y = _project_out(self.Q, A, comm, self.product, 2)
        QR, B, dropped = _range_basis(R, comm, self.product, DROP_TOL**2 * norm2)
        k = self.C.shape[0]
        C = np.empty((k + B.shape[0],) * 2)
        C[:k, :k] = self.C + Y @ Y.T
        C[:k, k:] = Y @ B.T
        C[k:, :k] = C[:k, k:].T
        C[k:, k:] = B @ B.T
        self.Q, self.C = np.hstack([self.Q, QR]), C
        self.dropped += dropped
        self.total += norm2
        return self

    def error(self) -> float:
        ev = np.sort(np.clip(np.linalg.eigvalsh(self.C), 0.0, None))[::-1]
        tail = float(np.sum(np.sort(ev[self.rank :]))) + self.dropped
        return float(np.sqrt(min(1.0, tail / self.total))) if self.total > 0 else 0.0


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
    ``METHODS.md`` section 4).
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
        self.rank = rank
        self.eps = eps
        self.predictor = predictor
        self.ordering = ordering
        self.patience = patience
        self.certify = certify
        self.published = published
        self.oversampling = oversampling
        self.product = product
        self.comm = comm

    # ------------------------------------------------------------------ validation
    def _option_error(self) -> str | None:
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.rank) or self.rank < 1:
            return f"rank must be a positive integer, got {self.rank!r}"
        if not isinstance(self.eps, (int, float, np.floating)) or not (0.0 < self.eps < 1.0):
            return f"eps must be a relative tolerance in (0, 1), got {self.eps!r}"
        if self.predictor not in _PREDICTORS:
            return f"predictor must be one of {_PREDICTORS}, got {self.predictor!r}"
        if self.ordering not in _ORDERINGS:
            return f"ordering must be one of {_ORDERINGS}, got {self.ordering!r}"
        if not is_int(self.patience) or self.patience < 1:
            return f"patience must be a positive integer, got {self.patience!r}"
        if not is_int(self.oversampling) or self.oversampling < 0:
            return f"oversampling must be a non-negative integer, got {self.oversampling!r}"
        return None

    # ------------------------------------------------------------------ predictors
    def _new_state(self):
        """Incremental predictor state for one cluster (None for Weyl/exact)."""
        if self.predictor == "estimator":
            return TruncatedGramEstimator(
                rank=self.rank,
                oversampling=self.oversampling,
                published=self.published,
                comm=self.comm,
                product=self.product,
            )
        if self.predictor == "residual":
            return IncrementalResidualBound(rank=self.rank, comm=self.comm, product=self.product)
        if self.predictor == "exact":
            return _ExactGram(self.rank, self.comm, self.product)
        return None

    def _add(self, state, spec: BlockSpectrum):
        if state is not None:
            state.add(spec.factor, norm2=spec.norm2)
        return state

    def _predict(self, members: list[int], state, j: int) -> tuple[float, object]:
        """Predicted error of ``members + [j]``; returns (error, new state)."""
        specs = [self._spectra[i] for i in members] + [self._spectra[j]]
        if self.predictor == "weyl":
            return _tail_error(specs, weyl_tail(specs, self.rank, published=self.published)), None
        if self.predictor == "estimator":
            w = _tail_error(specs, weyl_tail(specs, self.rank, published=self.published))
            if w <= self.eps:
                self._n_weyl_accept += 1
                return w, None  # state rebuilt lazily below
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
        """
        comm = get_comm(self.comm)
        err = self._option_error()
        if err is None and spectra is not None:
            if len(spectra) != len(blocks):
                err = f"spectra has {len(spectra)} entries for {len(blocks)} blocks"
            elif any(
                not isinstance(sp, BlockSpectrum)
                or sp.width != np.shape(A)[1]
                or sp.factor.shape[0] != np.shape(A)[0]
                for sp, A in zip(spectra, blocks, strict=True)
            ):
                err = "spectra do not match the blocks (BlockSpectrum of each block expected)"
        if comm.size > 1:
            errs = comm.allgather(err)
            err = next((e for e in errs if e is not None), None)
        if err is not None:
            raise ValueError(err)
        blocks = validate_blocks(blocks, self.comm, rank=self.rank)
        r, eps = self.rank, float(self.eps)
        K = len(blocks)
        t0 = time.perf_counter()
        keep = r + self.oversampling if self.predictor == "estimator" else None
        if spectra is not None:
            self._spectra = list(spectra)
        else:
            self._spectra = [
                block_spectrum(A, comm=self.comm, product=self.product, keep=keep) for A in blocks
            ]
        t_spec = 0.0 if spectra is not None else time.perf_counter() - t0
        widths = [A.shape[1] for A in blocks]
        self._n_weyl_accept = self._n_kyfan_reject = 0
        n_eval, t_pred = 0, 0.0

        avail = sorted(range(K), key=lambda j: (-self._spectra[j].norm2, j))
        clusters: list[list[int]] = []
        n_seed: list[int] = []
        fails = 0
        while avail:
            seed, width = [avail[0]], widths[avail[0]]
            for j in avail[1:]:
                if width + widths[j] > r:
                    break
                seed.append(j)
                width += widths[j]
            rest = avail[len(seed) :]
            cand = self._order_candidates(seed, rest)
            members = list(seed)
            state = None
            if self.predictor in ("estimator", "residual", "exact"):
                state = self._new_state()
                for i in seed:
                    self._add(state, self._spectra[i])
            for j in cand:
                tp = time.perf_counter()
                e, new = self._predict(members, state, j)
                if self.predictor == "estimator" and new is None and e <= eps:
                    new = self._add(state.copy(), self._spectra[j])  # Weyl-accepted
                t_pred += time.perf_counter() - tp
                n_eval += 1
                if not e <= eps:
                    break
                members.append(j)
                state = new
            fails = fails + 1 if len(members) == len(seed) else 0
            clusters.append(members)
            n_seed.append(len(seed))
            taken = set(members)
            avail = [j for j in avail if j not in taken]
            if fails >= self.patience:
                clusters.extend([j] for j in avail)
                n_seed.extend(1 for _ in avail)
                break
        t_cluster = time.perf_counter() - t0

        t1 = time.perf_counter()
        errors = list(
            cluster_errors(blocks, clusters, rank=r, comm=self.comm, product=self.product)
        )
        n_splits = 0
        n_pre_violations = int(sum(1 for e in errors if e > eps))
        if self.certify:
            c = 0
            while c < len(clusters):
                while errors[c] > eps and len(clusters[c]) > n_seed[c]:
                    j = clusters[c].pop()
                    clusters.append([j])
                    n_seed.append(1)
                    errors.append(0.0)
                    n_splits += 1
                    errors[c] = float(
                        cluster_errors(
                            blocks, [clusters[c]], rank=r, comm=self.comm, product=self.product
                        )[0]
                    )
                c += 1
        t_cert = time.perf_counter() - t1

        labels = np.empty(K, dtype=np.int64)
        for c, members in enumerate(clusters):
            labels[members] = c
        n_rows = int(allreduce_sum(float(blocks[0].shape[0]), self.comm))
        metrics = clustering_metrics(widths, clusters, errors, n_rows=n_rows, rank=r, eps=eps)
        metrics.update(
            n_evaluations=n_eval,
            n_weyl_accepts=self._n_weyl_accept,
            n_kyfan_rejects=self._n_kyfan_reject,
            n_splits=n_splits,
            precertify_violations=n_pre_violations,
            spectra_time=t_spec,
            predict_time=t_pred,
            cluster_time=t_cluster,
            certify_time=t_cert,
        )
        self.labels_ = labels
        self.clusters_ = clusters
        self.certified_errors_ = np.asarray(errors, dtype=float)
        self.metrics_ = metrics
        del self._spectra
        logger.info(
            "error-constrained clustering: %d clusters (%d non-singleton), CR %.2f, %d splits",
            metrics["n_clusters"],
            metrics["n_nonsingletons"],
            metrics["compression_ratio"],
            n_splits,
        )
        return self

    def _order_candidates(self, seed: list[int], rest: list[int]) -> list[int]:
        spectra = self._spectra
        if self.ordering == "norm" or not rest:
            return sorted(rest, key=lambda j: (spectra[j].norm2, j))
        comm = get_comm(self.comm)
        S = np.hstack([spectra[i].factor for i in seed])
        # orthonormal basis of the seed (rank-revealing, relative drop at the sqrt(u) floor)
        total = sum(spectra[i].norm2 for i in seed)
        Q, _, _ = _range_basis(S, comm, self.product, DROP_TOL**2 * total)
        res = []
        for start in range(0, len(rest), 64):  # chunks: never copy all blocks at once
            chunk = rest[start : start + 64]
            F = np.hstack([spectra[j].factor for j in chunk])
            P = allreduce_sum(Q.T @ apply_product(self.product, F), comm)
            offsets = np.cumsum([0] + [spectra[j].factor.shape[1] for j in chunk[:-1]])
            proj = np.add.reduceat(np.sum(P**2, axis=0), offsets)
            res += [max(0.0, spectra[j].norm2 - proj[k]) for k, j in enumerate(chunk)]
        return [j for _, j in sorted(zip(res, rest), key=lambda t: (t[0], t[1]))]
