r"""Bounds on the rank-r error of a concatenation of blocks (Shamrai, arXiv:2601.11626).

For blocks :math:`A_1, \dots, A_K` (each :math:`m \times n_j`, row-distributed) and
:math:`X = [A_1 \dots A_K]`, the target is the relative best rank-:math:`r` error

.. math:: e_r(X) = \sqrt{\textstyle\sum_{i>r} \sigma_i(X)^2} \,/\, \|X\|_F ,

with :math:`\|X\|_F^2 = \sum_j \|A_j\|_F^2` free. Every upper bound below is a lower bound
:math:`L \le \sum_{i\le r} \sigma_i(X)^2` turned into
:math:`\hat e = \sqrt{\max(0, \|X\|_F^2 - L)/\|X\|_F^2} \ge e_r(X)` (docs/theory.md §4):

* :func:`weyl_bound` -- Weyl monotonicity, :math:`XX^T \succeq X_J X_J^T` for a subset
  :math:`J` of blocks, corrected form (the published form is kept for comparison only:
  it is not a bound when a block has more than :math:`r` columns);
* :func:`residual_bound` -- singular values of incremental residuals;
* :func:`estimator_bound` -- the incremental truncated Gram estimator
  (:class:`TruncatedGramEstimator`, an :class:`rom.compression.IncrementalSVD` truncated to
  :math:`r + os` modes);
* :func:`kyfan_lower_bound` -- a *lower* bound on :math:`e_r` from Ky Fan's inequality, used
  to reject merges cheaply.

Singular values are in the :math:`M` inner product when ``product=`` is given (the FE mass
matrix): :math:`\sigma_i` of :math:`M^{1/2} X`. All functions are collective over ``comm``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from mpi4py import MPI

from rom.compression import IncrementalSVD
from rom.linalg import cholesky_qr
from rom.linalg import project_out
from rom.linalg import range_basis
from rom.linalg import tsqr
from rom.options import Interval
from rom.options import keep_options
from rom.options import kept_options
from rom.options import option_error
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm

__all__ = [
    "BlockSpectrum",
    "block_spectrum",
    "block_spectra",
    "exact_error",
    "weyl_bound",
    "kyfan_lower_bound",
    "residual_bound",
    "estimator_bound",
    "IncrementalResidualBound",
    "TruncatedGramEstimator",
    "validate_blocks",
    "relative_error",
    "weyl_tail",
    "weyl_from",
    "kyfan_from",
]

#: Residual directions below ``DROP_TOL * ||A||_F`` are dropped (their energy is accounted);
#: Gram eigenvalues cannot resolve them anyway (the sqrt(u) floor, docs/theory.md §1).
DROP_TOL = 1e-7


def relative_error(total: float, head: float) -> float:
    """:math:`\\sqrt{\\max(0, total - head)/total}` (0 for an empty/zero matrix)."""
    if total <= 0.0:
        return 0.0
    return float(np.sqrt(max(0.0, total - head) / total))


# --------------------------------------------------------------------------- validation
_COUNTS = {"rank": Interval(1, None, integer=True), "oversampling": Interval(0, None, integer=True)}


def _count_error(**values) -> str | None:
    """Message for the first of ``rank=``, ``oversampling=`` that is not a valid count."""
    return option_error(SimpleNamespace(**values), {name: _COUNTS[name] for name in values})


def _block_error(A: np.ndarray, name: str, j: int, rows: int | None) -> str | None:
    """What is wrong with block ``j`` on this rank (``rows``: the first block's row count)."""
    label = f"{name}[{j}]"
    if A.ndim != 2:
        return f"{label} must be 2-D (rows x columns), got shape {A.shape}"
    if np.iscomplexobj(A) or not np.issubdtype(A.dtype, np.number):
        return f"{label} must be real numeric, got dtype {A.dtype}"
    if not np.all(np.isfinite(A)):
        return f"{label} contains NaN or Inf"
    if A.shape[1] == 0:
        return f"{label} has no columns"
    if rows is not None and A.shape[0] != rows:
        return f"{label} has {A.shape[0]} owned rows, {name}[0] has {rows}"
    return None


def _local_blocks(blocks, name: str) -> tuple[list[np.ndarray], str | None]:
    """This rank's blocks as float64 and the first problem found (``None`` when fine)."""
    try:
        seq = list(blocks)
    except TypeError:
        return [], f"{name} must be a sequence of 2-D arrays"
    if not seq:
        return [], f"{name} is empty"
    out: list[np.ndarray] = []
    for j, A in enumerate(seq):
        A = np.asarray(A)
        err = _block_error(A, name, j, out[0].shape[0] if out else None)
        if err is not None:
            return out, err
        out.append(np.asarray(A, dtype=np.float64))
    return out, None


def validate_blocks(
    blocks: Sequence[np.ndarray],
    comm: MPI.Comm | None = None,
    *,
    rank: int | None = None,
    name: str = "blocks",
    error: str | None = None,
) -> list[np.ndarray]:
    """Collectively validate a list of row-distributed blocks; return them as float64.

    Every block must be 2-D, real and finite, all blocks must have this rank's number of owned
    rows, the list must have the same length on every rank and each block the same number of
    columns on every rank; ``rank`` (when given) must be a positive integer. ``error``: the
    verdict of the caller's own checks on this rank (its options), reported first. Every rank
    raises the same :class:`ValueError` (:func:`rom.parallel.check_collective`).
    """
    comm = get_comm(comm)
    out, err = _local_blocks(blocks, name)
    if rank is not None:
        err = _count_error(rank=rank) or err
    err = error or err
    widths = None if err is not None else tuple(A.shape[1] for A in out)
    if comm.size > 1:
        # the block count and widths of rank 0 are the reference of the others
        ref = comm.bcast(widths, root=0)
        if err is None and ref is not None and widths != ref:
            err = f"{name}: the number of blocks or their widths differ between ranks"
    check_collective(err, comm)
    return out


# --------------------------------------------------------------------------- spectra
def _energy(A: np.ndarray, comm: MPI.Comm, product: Product | None) -> float:
    """:math:`\\|A\\|_M^2`, summed over ranks."""
    return float(allreduce_sum(float(np.sum(A * apply_product(product, A))), comm))


def _qr(A: np.ndarray, comm: MPI.Comm, product: Product | None, *, need_q: bool = False):
    """``(Q, R)``, ``A = QR`` with :math:`Q^TMQ = I` (TSQR; shifted Cholesky-QR3 with ``M``).

    Euclidean without ``need_q``: ``Q`` is ``None`` and ``R`` is the triangular factor of a
    TSQR that never forms ``Q`` (Householder ``R`` of the owned rows, then of their stack).
    """
    if product is not None:
        return cholesky_qr(A, product=product, comm=comm)
    if need_q:
        return tsqr(A, comm=comm)
    R = np.linalg.qr(A, mode="r")
    if comm.size > 1:
        R = np.linalg.qr(np.vstack(comm.allgather(R)), mode="r")
    return None, R


def _tail(sv2: np.ndarray, r: int) -> float:
    """:math:`\\sum_{i>r}\\sigma_i^2`, summed from the smallest term (no cancellation)."""
    return float(np.sum(np.sort(sv2[r:]))) if sv2.size > r else 0.0


@dataclass(frozen=True)
class BlockSpectrum:
    """Cached spectrum of one block, for O(1) Weyl/Ky Fan updates and cheap merges.

    Attributes
    ----------
    norm2 : float
        :math:`\\|A\\|_F^2` (M-weighted).
    sv2 : ndarray
        Squared singular values, descending.
    width : int
        Number of columns.
    factor : ndarray of shape (n_local, k)
        A matrix with :math:`FF^T = ` the top-``k`` part of :math:`AA^T` (``U_k S_k``) when the
        block was wider than ``k``, else the block itself.
    factor_tail : float
        :math:`\\|A\\|_F^2 - \\|F\\|_F^2 = \\sum_{i>k}\\sigma_i^2` (0 when ``F = A``).
    """

    norm2: float
    sv2: np.ndarray
    width: int
    factor: np.ndarray
    factor_tail: float

    def head(self, r: int) -> float:
        """:math:`h = \\sum_{i\\le r}\\sigma_i^2`."""
        return float(np.sum(self.sv2[:r]))

    def tail(self, r: int) -> float:
        """:math:`\\|A\\|_F^2 - h = \\sum_{i>r}\\sigma_i^2`, summed from the smallest term."""
        return _tail(self.sv2, r)


def block_spectrum(
    A: np.ndarray,
    *,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
    keep: int | None = None,
) -> BlockSpectrum:
    """Exact spectrum of one validated block (collective); see :class:`BlockSpectrum`.

    ``keep`` bounds the columns of the cached factor (``r + oversampling`` for the
    estimator); a wider block is replaced by ``U_k S_k``, which removes the positive
    semidefinite part :math:`\\sum_{i>k}\\sigma_i^2 u_iu_i^T` of :math:`AA^T`, so bounds
    computed from it stay upper bounds when the tail energy is counted as error.
    """
    comm = get_comm(comm)
    norm2 = _energy(A, comm, product)
    wide = keep is not None and A.shape[1] > keep
    Q, R = _qr(A, comm, product, need_q=wide)  # the singular values alone need no Q
    W, s, _ = np.linalg.svd(R, full_matrices=False)
    sv2 = s**2
    if wide:
        F, tail = Q @ (W[:, :keep] * s[:keep]), _tail(sv2, keep)
    else:
        F, tail = A, 0.0
    return BlockSpectrum(norm2=norm2, sv2=sv2, width=A.shape[1], factor=F, factor_tail=tail)


def block_spectra(
    blocks: Sequence[np.ndarray],
    *,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
    keep: int | None = None,
) -> list[BlockSpectrum]:
    """:func:`block_spectrum` of every block (validated collectively first)."""
    blocks = validate_blocks(blocks, comm)
    return [block_spectrum(A, comm=comm, product=product, keep=keep) for A in blocks]


def exact_error(
    blocks: Sequence[np.ndarray],
    *,
    rank: int,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
) -> float:
    """True :math:`e_r([A_1 \\dots A_K])` from an exact SVD (TSQR, then LAPACK on ``R``).

    The tail :math:`\\sum_{i>r}\\sigma_i^2` is summed from the singular values, not formed as
    total minus head, so it is accurate below the :math:`\\sqrt u` floor.
    """
    blocks = validate_blocks(blocks, comm, rank=rank)
    R = _qr(np.hstack(blocks), get_comm(comm), product)[1]
    sv2 = np.linalg.svd(R, compute_uv=False) ** 2
    total = float(np.sum(sv2))
    return float(np.sqrt(_tail(sv2, rank) / total)) if total > 0 else 0.0


# --------------------------------------------------------------------------- Weyl / Ky Fan
def weyl_tail(spectra: Sequence[BlockSpectrum], rank: int, *, published: bool = False) -> float:
    """Upper bound :math:`\\|X\\|_F^2 - L_W` on :math:`\\sum_{i>r}\\sigma_i(X)^2` from cached spectra.

    Corrected form: :math:`L_W` is the best of :math:`\\max_j h_j` (a single block) and
    :math:`\\|X_J\\|_F^2` for the set :math:`J` of whole blocks taken by decreasing norm
    while their total width stays :math:`\\le r` (then :math:`\\operatorname{rank} X_J \\le r`).
    Both follow from :math:`\\sigma_i(X) \\ge \\sigma_i(X_J)`. The tail is formed as a sum of
    non-negative terms (the other blocks' energies plus the chosen block's own tail), which
    avoids the cancellation of total minus head.
    ``published=True``: :math:`L_W = \\|A_1\\|_F^2` of the largest block whatever its width --
    NOT a bound when that block has more than :math:`r` columns.
    """
    order = sorted(range(len(spectra)), key=lambda j: (-spectra[j].norm2, j))
    if published:
        return float(sum(spectra[j].norm2 for j in order[1:]))
    norms2 = np.array([s.norm2 for s in spectra])
    others = [float(np.sum(np.delete(norms2, j))) for j in range(len(spectra))]
    best = min(others[j] + spectra[j].tail(rank) for j in range(len(spectra)))
    width, outside = 0, []
    for j in order:
        if width + spectra[j].width <= rank:
            width += spectra[j].width
        else:
            outside.append(spectra[j].norm2)
    return float(min(best, float(np.sum(np.sort(outside))) if width else np.inf))


def weyl_bound(
    blocks: Sequence[np.ndarray],
    *,
    rank: int,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
    published: bool = False,
) -> float:
    """Weyl-monotonicity upper bound on :math:`e_r(X)` (Shamrai, arXiv:2601.11626, bound 1).

    :math:`XX^T \\succeq X_JX_J^T` gives :math:`\\sigma_i(X) \\ge \\sigma_i(X_J)`, hence
    :math:`\\hat e_W = \\sqrt{1 - L_W/\\|X\\|_F^2} \\ge e_r(X)` with :math:`L_W` from
    :func:`weyl_tail`. ``published=True`` reproduces the published form (no guarantee; for
    benchmarks only).
    """
    blocks = validate_blocks(blocks, comm, rank=rank)
    spectra = [block_spectrum(A, comm=comm, product=product) for A in blocks]
    return weyl_from(spectra, rank, published=published)


def weyl_from(spectra: Sequence[BlockSpectrum], rank: int, *, published: bool = False) -> float:
    """Weyl upper bound from cached spectra, O(K): :math:`\\sqrt{\\text{weyl\\_tail}/\\|X\\|_F^2}`."""
    return _tail_error(spectra, weyl_tail(spectra, rank, published=published))


def kyfan_lower_bound(
    blocks: Sequence[np.ndarray],
    *,
    rank: int,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
) -> float:
    """Ky Fan *lower* bound on :math:`e_r(X)` (docs/theory.md §4, our addition).

    Ky Fan's maximum principle, :math:`\\sum_{i\\le r}\\sigma_i(X)^2 = \\max_{P}\\|PX\\|_F^2`
    over rank-:math:`r` orthogonal projectors, and :math:`\\|PX\\|_F^2 = \\sum_j\\|PA_j\\|_F^2
    \\le \\sum_j h_j` give :math:`e_r(X)^2 \\ge 1 - \\sum_j h_j/\\|X\\|_F^2`.
    """
    blocks = validate_blocks(blocks, comm, rank=rank)
    spectra = [block_spectrum(A, comm=comm, product=product) for A in blocks]
    return kyfan_from(spectra, rank)


def kyfan_from(spectra: Sequence[BlockSpectrum], rank: int) -> float:
    """Ky Fan lower bound from cached spectra, O(K): :math:`\\sqrt{\\sum_j(\\|A_j\\|_F^2-h_j)/\\|X\\|_F^2}`."""
    return _tail_error(spectra, sum(s.tail(rank) for s in spectra))


def _tail_error(spectra: Sequence[BlockSpectrum], tail: float) -> float:
    """:math:`\\sqrt{\\min(1, tail/\\|X\\|_F^2)}` with :math:`\\|X\\|_F^2 = \\sum_j \\|A_j\\|_F^2`."""
    total = float(sum(s.norm2 for s in spectra))
    return float(np.sqrt(min(1.0, max(0.0, tail) / total))) if total > 0 else 0.0


# --------------------------------------------------------------------------- residuals
class IncrementalResidualBound:
    """Bound 2 of Shamrai (arXiv:2601.11626): singular values of incremental residuals.

    Blocks are added in order; for each, :math:`R_k = (I - QQ^TM)A_k` (two passes) and its
    squared singular values are recorded, then an orthonormal basis of :math:`\\mathrm{range}\\,
    R_k` is appended to :math:`Q`. The left singular vectors of all :math:`R_k` are orthonormal
    and :math:`\\|u_{kj}^T X\\| \\ge \\sigma_j(R_k)`, so by Ky Fan the sum :math:`L_R` of the
    :math:`r` largest recorded values is :math:`\\le \\sum_{i\\le r}\\sigma_i(X)^2`. Directions
    below ``drop_tol * ||A_k||_F`` are neither recorded nor appended (which keeps the argument
    valid). Loose for nearly collinear blocks: energy inside :math:`\\mathrm{span}\\,Q` is never
    credited. Memory :math:`O(mq)`, :math:`q \\le \\operatorname{rank} X`.
    """

    def __init__(
        self,
        *,
        rank: int,
        drop_tol: float = DROP_TOL,
        comm: MPI.Comm | None = None,
        product: Product | None = None,
    ) -> None:
        keep_options(self, locals())
        self.Q_: np.ndarray | None = None
        self.recorded_ = np.zeros(0)
        self.total_ = 0.0

    def copy(self) -> IncrementalResidualBound:
        """An independent copy of the state (``Q_`` is shared: it is never modified in place)."""
        new = IncrementalResidualBound(
            rank=self.rank, drop_tol=self.drop_tol, comm=self.comm, product=self.product
        )
        new.Q_, new.recorded_, new.total_ = self.Q_, self.recorded_, self.total_
        return new

    def add(self, A: np.ndarray, *, norm2: float | None = None, tail: float = 0.0):
        """Add a (validated) block; ``norm2``/``tail`` as in :meth:`TruncatedGramEstimator.add`."""
        comm = get_comm(self.comm)
        if self.Q_ is None:
            self.Q_ = np.zeros((A.shape[0], 0))
        a2 = norm2 if norm2 is not None else _energy(A, comm, self.product)
        self.total_ += a2 + (tail if norm2 is None else 0.0)
        R, _ = project_out(self.Q_, A, product=self.product, comm=comm)
        basis = range_basis(R, product=self.product, comm=comm, drop_below=self.drop_tol**2 * a2)
        if basis.coefficients.size:
            s = np.linalg.svd(basis.coefficients, compute_uv=False)
            self.recorded_ = np.sort(np.concatenate([self.recorded_, s**2]))[::-1]
            self.Q_ = np.hstack([self.Q_, basis.basis])
        return self

    def head(self) -> float:
        """:math:`L_R`, sum of the ``rank`` largest recorded squared singular values."""
        return float(np.sum(self.recorded_[: self.rank]))

    def error(self) -> float:
        """Upper bound :math:`\\hat e_R \\ge e_r(X)`."""
        return relative_error(self.total_, self.head())


def residual_bound(
    blocks: Sequence[np.ndarray],
    *,
    rank: int,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
) -> float:
    """Incremental-residual upper bound on :math:`e_r(X)`, blocks taken in the given order.

    See :class:`IncrementalResidualBound`.
    """
    blocks = validate_blocks(blocks, comm, rank=rank)
    est = IncrementalResidualBound(rank=rank, comm=comm, product=product)
    for A in blocks:
        est.add(A)
    return est.error()


# --------------------------------------------------------------------------- estimator
class _PublishedGram:
    """The published single-pass update, for comparison only (it is not a bound).

    One projection pass :math:`Y = Q^TMA`, :math:`R = A - QY`; :math:`R = Q_RB` with an
    absolute pruning threshold (energies above :math:`10^{-24}`, by
    :func:`rom.linalg.range_basis`); the top :math:`p` eigenpairs of
    :math:`\\begin{bmatrix}\\Lambda + YY^T & YB^T\\\\ BY^T & BB^T\\end{bmatrix}` are kept, with
    no re-orthonormalization of :math:`Q`. Offers the attributes of
    :class:`rom.compression.IncrementalSVD` that :class:`TruncatedGramEstimator` reads.
    """

    def __init__(self, p: int | None, comm: MPI.Comm | None, product: Product | None):
        self.p, self.comm, self.product = p, comm, product
        self.modes_: np.ndarray | None = None
        self.singular_values_ = np.zeros(0)
        self.discarded_energy_ = 0.0
        self.total_energy_ = 0.0

    def partial_fit(self, A: np.ndarray) -> _PublishedGram:
        comm = get_comm(self.comm)
        Q = np.zeros((A.shape[0], 0)) if self.modes_ is None else self.modes_
        lam = self.singular_values_**2
        self.total_energy_ += _energy(A, comm, self.product)
        R, Y = project_out(Q, A, product=self.product, comm=comm, passes=1)
        basis = range_basis(R, product=self.product, comm=comm, drop_below=1e-24)
        QR, B = basis.basis, basis.coefficients
        p, k = lam.size, B.shape[0]
        # [[Lam + Y Y^T, Y B^T], [B Y^T, B B^T]] = C C^T
        C = np.block([[np.diag(np.sqrt(lam)), Y], [np.zeros((k, p)), B]])
        K = C @ C.T
        ev, U = np.linalg.eigh(0.5 * (K + K.T))
        ev, U = ev[::-1], U[:, ::-1]
        keep = ev.size if self.p is None else min(self.p, ev.size)
        self.discarded_energy_ += float(np.sum(np.clip(ev[keep:], 0.0, None)))
        self.singular_values_ = np.sqrt(np.clip(ev[:keep], 0.0, None))
        self.modes_ = np.hstack([Q, QR]) @ U[:, :keep]
        return self


class TruncatedGramEstimator:
    """Estimator 3 of Shamrai (arXiv:2601.11626): an incremental SVD truncated to
    :math:`p = r + os` modes (docs/theory.md §4).

    The state ``svd_`` is an :class:`rom.compression.IncrementalSVD` with ``rank=p`` and
    ``novelty_tol=drop_tol`` (Brand's update: CGS2 projection, rank-revealing factorization of
    the residual, re-orthonormalization; docs/theory.md §2.1). Its :math:`\\lambda_i =
    \\sigma_i^2` are the eigenvalues of the truncated Gram matrix :math:`\\tilde G`, and its
    running discarded energy :math:`D` holds the residual directions below
    ``drop_tol * ||A||_F`` and the core directions beyond :math:`p`. Each update replaces
    :math:`\\tilde G + AA^T` by its eigen-truncation, removing a positive semidefinite part,
    so :math:`\\tilde G \\preceq XX^T` and, in exact arithmetic,

    .. math:: \\hat e_r = \\sqrt{\\Big(\\sum_{r<i\\le p}\\lambda_i + D\\Big)/\\|X\\|_F^2}
              \\ge e_r(X),

    tight when the tail is small. ``oversampling=None`` truncates nothing (the exact
    incremental spectrum up to ``drop_tol``). ``published=True`` reproduces the published
    single-pass form (``_PublishedGram``), which may under-estimate.
    Cost per block :math:`O(m(p+n)n + (p+n)^3)`, memory :math:`O(m(r+os))`.
    """

    def __init__(
        self,
        *,
        rank: int,
        oversampling: int | None = 5,
        published: bool = False,
        drop_tol: float = DROP_TOL,
        orth_tol: float = 1e-10,
        comm: MPI.Comm | None = None,
        product: Product | None = None,
    ) -> None:
        keep_options(self, locals())
        self.svd_: IncrementalSVD | _PublishedGram | None = None
        self.factor_tail_ = 0.0

    def _new_svd(self) -> IncrementalSVD | _PublishedGram:
        p = None if self.oversampling is None else self.rank + self.oversampling
        if self.published:
            return _PublishedGram(p, self.comm, self.product)
        return IncrementalSVD(
            rank=p,
            novelty_tol=self.drop_tol,
            orth_tol=self.orth_tol,
            product=self.product,
            comm=self.comm,
            keep_coefficients=False,
        )

    def copy(self) -> TruncatedGramEstimator:
        """An independent copy (the incremental SVD updates its modes in place)."""
        new = TruncatedGramEstimator(**kept_options(self))
        # the communicator and the product are shared, every array of the state is copied
        shared = {id(self.comm): self.comm, id(self.product): self.product}
        new.svd_ = copy.deepcopy(self.svd_, shared)
        new.factor_tail_ = self.factor_tail_
        return new

    def add(self, A: np.ndarray, *, norm2: float | None = None, tail: float = 0.0):
        """Add a (validated) block ``A`` of owned rows (collective); returns ``self``.

        ``A`` may be a cached factor ``U_k S_k`` of a wider block (:class:`BlockSpectrum`):
        then ``tail`` is the energy it leaves out (added to :math:`D` and to the total), or
        ``norm2`` the exact block energy (then the tail is ``norm2 - ||A||_F^2``).
        """
        if self.svd_ is None:
            self.svd_ = self._new_svd()
        before = self._energies()[0]
        self.svd_.partial_fit(A)
        if norm2 is not None:
            tail = max(0.0, norm2 - (self._energies()[0] - before))
        self.factor_tail_ += tail
        return self

    def _energies(self) -> tuple[float, float]:
        """:math:`(\\|X\\|_F^2, D)`, the cached factors' tails (``factor_tail_``) in both."""
        t, svd = self.factor_tail_, self.svd_
        return getattr(svd, "total_energy_", 0.0) + t, getattr(svd, "discarded_energy_", 0.0) + t

    @property
    def eigenvalues(self) -> np.ndarray:
        """:math:`\\lambda`, eigenvalues of the truncated Gram matrix (descending)."""
        return np.zeros(0) if self.svd_ is None else self.svd_.singular_values_**2

    def head(self) -> float:
        """:math:`\\sum_{i\\le r}\\lambda_i`, a lower bound on :math:`\\sum_{i\\le r}\\sigma_i(X)^2`."""
        return float(np.sum(self.eigenvalues[: self.rank]))

    def error(self) -> float:
        """:math:`\\hat e_r = \\sqrt{(\\sum_{r<i\\le p}\\lambda_i + D)/\\|X\\|_F^2}`."""
        total, discarded = self._energies()
        if total <= 0.0:
            return 0.0
        tail = _tail(self.eigenvalues, self.rank) + discarded
        return float(np.sqrt(min(1.0, max(0.0, tail) / total)))


def estimator_bound(
    blocks: Sequence[np.ndarray],
    *,
    rank: int,
    oversampling: int = 5,
    comm: MPI.Comm | None = None,
    product: Product | None = None,
    published: bool = False,
) -> float:
    """Incremental truncated-Gram estimate of :math:`e_r(X)` (see
    :class:`TruncatedGramEstimator`); an upper bound in exact arithmetic unless
    ``published=True``. Blocks are added in the given order.
    """
    blocks = validate_blocks(blocks, comm, rank=rank, error=_count_error(oversampling=oversampling))
    est = TruncatedGramEstimator(
        rank=rank, oversampling=oversampling, published=published, comm=comm, product=product
    )
    for A in blocks:
        est.add(A)
    return est.error()
