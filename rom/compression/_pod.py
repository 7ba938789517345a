"""Batch proper orthogonal decomposition (POD) of row-distributed snapshot matrices.

Given snapshots :math:`S = [s_1, \\dots, s_m]` (rows distributed over ranks) and an SPD inner
product :math:`M` (``product=``; Euclidean by default), the POD modes are the left
:math:`M`-singular vectors of :math:`S`: :math:`S = U \\Sigma V^T` with :math:`U^T M U = I`,
:math:`V^T V = I`. The rank-:math:`N` POD space minimizes
:math:`\\sum_i \\|s_i - P_N s_i\\|_M^2 = \\sum_{n>N} \\sigma_n^2` (Schmidt-Eckart-Young).

Two methods (``pod_method``; docs/theory.md §1 and docs/concepts.md):

``pod_method="snapshots"`` (fast)
    Method of snapshots: :math:`G = S^T M S = \\sum_p S_p^T (MS)_p` (one reduction of an
    :math:`m\\times m` matrix), :math:`G = V \\Lambda V^T`, :math:`\\sigma_n = \\sqrt{\\lambda_n}`,
    :math:`U = S V_N \\Sigma_N^{-1}`. The eigenvalues carry an absolute error of about
    :math:`u\\,\\sigma_1^2`, so singular values below :math:`\\sqrt{u}\\,\\sigma_1 \\approx 10^{-8}
    \\sigma_1` are noise: modes below ``1e-7 * sigma_1`` are never returned by this method.
``pod_method="qr"`` (accurate)
    :math:`M`-orthonormal QR :math:`S = QR` by rank-revealing shifted Cholesky-QR3
    (:func:`rom.linalg.cholesky_qr`: three Gram products and triangular products, one
    reduction each), then
    the SVD of the small :math:`R = U_R \\Sigma V^T` gives :math:`U = Q U_R`. Singular values are
    resolved down to about :math:`u\\sqrt{11\\,m\\,(nm + m(m+1))}\\,\\sigma_1 \\approx
    u\\,m\\sqrt{11 n}\\,\\sigma_1` (:math:`5 \\cdot 10^{-13}` for 500 x 30, :math:`1.3 \\cdot
    10^{-10}` for 200,000 x 400): the shift :math:`s` of the first pass scales a value
    :math:`\\sigma` to :math:`\\sigma/\\sqrt{s}`, and the second pass drops directions below its
    rank-revealing threshold :math:`m u`. That is far below the :math:`\\sqrt{u}` floor of the
    method of snapshots. Householder :func:`rom.linalg.tsqr` (Euclidean case) resolves values
    down to about :math:`m\\,u\\,\\sigma_1`.

In both methods the modes are checked: if :math:`\\max|U^T M U - I| >` ``orth_tol`` they are
re-orthonormalized and the small SVD is redone (:func:`rom.linalg.reorthonormalize`), so
returned modes are :math:`M`-orthonormal to ``orth_tol``. Signs follow
:func:`rom.linalg.sign_flips` on the right singular vectors (largest-magnitude entry
positive), making results identical (to round-off) at any rank count.

``pod_method="auto"`` takes the method of snapshots where its tail is far above its floor
(the truncation error the rules give, from the eigenvalues of :math:`G`, at least
:math:`100\\sqrt{m}\\cdot 10^{-7}\\sigma_1`) and the accurate method otherwise; both start
from the same :math:`G`, so the choice costs one small eigenvalue problem. Where it takes
the method of snapshots, the bound is that method's eigenvalue tail: accurate to its
rounding (about :math:`m\\,u\\,\\mathrm{tr}\\,G` in energy, a relative :math:`10^{-6}` or
less at the threshold), not a strict upper bound; ``"qr"`` gives one up to round-off.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from mpi4py import MPI

from rom.compression._result import CompressionResult
from rom.compression._result import FittedModes
from rom.compression.truncation import ToleranceWarning
from rom.compression.truncation import truncation_rank
from rom.compression.truncation import validate_truncation
from rom.compression.truncation import warn_unmet_tolerance
from rom.linalg import cholesky_qr_deferred
from rom.linalg import gram_matrix
from rom.linalg import reorthonormalize
from rom.linalg import sign_flips
from rom.linalg import tail_energies
from rom.options import keep_options
from rom.options import kept_options
from rom.parallel import Product
from rom.parallel import allreduce_sum
from rom.parallel import apply_product
from rom.parallel import check_collective
from rom.parallel import get_comm
from rom.parallel import product_error
from rom.parallel import validate_finite
from rom.parallel import validate_local_rows

__all__ = ["pod", "POD"]

logger = logging.getLogger(__name__)

_SNAPSHOTS_FLOOR = 1e-7  # sqrt(u) floor of the method of snapshots, with a safety factor
#: The accurate method bounds the part its factorization drops without a tall product when
#: that bound is at most this share of the truncation error it expects (``_expected_error``).
_LOST_SHARE = 1e-3


def _validate(X, comm, product, pod_method, rules, orth_tol):
    # NaN/Inf are detected on the replicated Gram/R factor (free), see _check_finite_result
    X, n_rows = validate_local_rows(X, "snapshot matrix", comm, check_finite=False)
    err = "snapshot matrix has no columns" if X.shape[1] == 0 else None
    err = err or ("snapshot matrix has no rows (on any rank)" if n_rows == 0 else None)
    err = err or validate_truncation(**rules, n_columns=X.shape[1])
    if err is None and pod_method not in ("snapshots", "qr", "auto"):
        err = f"pod_method must be 'snapshots', 'qr' or 'auto', got {pod_method!r}"
    if err is None and not (orth_tol > 0):
        err = f"orth_tol must be > 0, got {orth_tol!r}"
    err = err or product_error(product, X.shape[0])
    check_collective(err, comm)
    return X, n_rows


def _gram(X, product, comm) -> np.ndarray:
    """:math:`X^TMX` with the product checked; NaN/Inf named on every rank."""
    try:
        G = gram_matrix(X, product=product, comm=comm, check=True)
    except ValueError:
        validate_finite(X, "snapshot matrix", comm)  # a NaN, rather than the product, first
        raise
    _check_finite_result(G, X, comm)
    return G


def _check_finite_result(G: np.ndarray, X: np.ndarray, comm) -> None:
    """NaN/Inf in any rank's rows propagate into the replicated ``G``: every rank sees it and
    runs the (collective) scan that names the first bad entry."""
    if not np.all(np.isfinite(G)):
        validate_finite(X, "snapshot matrix", comm)
        check_collective("snapshot matrix gives a non-finite Gram matrix (overflow?)", comm)


def _rank(
    sv_all: np.ndarray, n_reliable: int, total: float, rules: dict, unresolved: float = 0.0
) -> int:
    """Truncation rank among the ``n_reliable`` resolved values; the unresolved ones (and the
    ``unresolved`` energy of a factorization residual) count as discarded energy."""
    extra = float(tail_energies(sv_all)[n_reliable]) + unresolved
    return truncation_rank(sv_all[:n_reliable], total_energy=total, extra_tail=extra, **rules)


def _method_of_snapshots(X, G, rules):
    """:math:`G = X^TMX = V\\Lambda V^T`, :math:`U = XV_N\\Sigma_N^{-1}`."""
    total = float(np.trace(G))
    lam, V = np.linalg.eigh(G)
    lam, V = lam[::-1], V[:, ::-1]
    sv_all = np.sqrt(np.maximum(lam, 0.0))
    n_reliable = int(np.count_nonzero(sv_all > _SNAPSHOTS_FLOOR * sv_all[0]))
    N = _rank(sv_all, n_reliable, total, rules)
    if rules["rtol"] is not None and rules["rtol"] < _SNAPSHOTS_FLOOR:  # tolerances: in pod()
        warnings.warn(
            f"pod(pod_method='snapshots'): rtol={rules['rtol']:.3g} is below what it can "
            "resolve (singular values below 1e-7*sigma_1); use pod_method='qr' for tighter "
            "tolerances",
            ToleranceWarning,
            stacklevel=3,
        )
    Vn = V[:, :N] * sign_flips(V[:, :N])  # signs fixed here, not on the tall modes
    U = X @ (Vn / sv_all[:N])
    return U, sv_all[:N].copy(), Vn, total, float(tail_energies(sv_all)[N])


def _gram_tail(G: np.ndarray, rules: dict) -> tuple[float, float, float]:
    """``(tail, sigma_1^2, total)`` from the eigenvalues of :math:`G`: the energy
    :math:`\\sum_{n>N}\\lambda_n` the rules would discard, the largest eigenvalue, the trace."""
    lam = np.clip(np.linalg.eigvalsh(G)[::-1], 0.0, None)
    sv = np.sqrt(lam)
    total = float(np.sum(lam))
    N = truncation_rank(sv, total_energy=total, **rules)
    return float(tail_energies(sv)[N]), float(lam[0]), total


def _expected_error(spectrum: tuple[float, float, float], m: int, n: float) -> float:
    """A lower estimate of the truncation error :math:`(\\sum_{n>N}\\sigma_n^2)^{1/2}` the
    rules give, from :func:`_gram_tail` of :math:`G = X^TX` (:math:`m` columns): the sum over
    the tail is off by at most :math:`m(n + 10m)\\,u\\,\\mathrm{tr}\\,G`, which is subtracted."""
    tail, _, total = spectrum
    slack = m * (n + 10 * m) * np.finfo(float).eps * total
    return float(np.sqrt(max(tail - slack, 0.0)))


def _auto_method(spectrum: tuple[float, float, float], m: int) -> str:
    """``"snapshots"`` when the truncation error the rules give is at least
    :math:`100\\sqrt{m}` times the method of snapshots' resolution :math:`10^{-7}\\sigma_1`
    (its tail energy then lies :math:`10^4` times above that of :math:`m` values at that
    floor), ``"qr"`` otherwise."""
    tail, top, _ = spectrum
    floor = 100.0 * math.sqrt(m) * _SNAPSHOTS_FLOOR * math.sqrt(top)
    return "snapshots" if math.sqrt(tail) >= floor else "qr"


def _accurate(X, G, product, comm, rules, spectrum=None):
    """:math:`X = QR + E` (shifted Cholesky-QR3), :math:`R = U_R\\Sigma V^T`, :math:`U = QU_R`.

    :math:`E` holds the directions the rank-revealing passes left out (near the method's
    floor); its norm :math:`\\ell` comes from the factorization (``lost`` of
    :func:`rom.linalg.cholesky_qr_deferred`: formed explicitly, or, with :math:`M = I`, a
    rigorous bound without a tall product when that is at most ``_LOST_SHARE`` of the
    expected truncation error; if the truncation then discards less than expected, so that
    :math:`\\ell > ` ``_LOST_SHARE`` :math:`e_N`, the factorization is redone with the
    explicit norm). The tail reported is :math:`(e_N + \\ell)^2 \\ge \\|X - UU^TMX\\|_M^2`,
    :math:`e_N = (\\sum_{n>N}\\sigma_n^2)^{1/2}`, and a tolerance rule :math:`\\tau` is
    applied to that same quantity: :math:`e_N^2 + 2\\tau\\ell - \\ell^2 \\le \\tau^2`."""
    negligible = 0.0
    if product is None:
        n = allreduce_sum(float(X.shape[0]), comm)
        spectrum = _gram_tail(G, rules) if spectrum is None else spectrum
        negligible = _LOST_SHARE * _expected_error(spectrum, X.shape[1], n)
    while True:
        try:
            Q, R, Finv, lost = cholesky_qr_deferred(
                X, product=product, comm=comm, gram=G, negligible=negligible
            )
        except (np.linalg.LinAlgError, ValueError):
            # NaN/Inf reach every rank through the replicated Gram matrix: name them
            validate_finite(X, "snapshot matrix", comm)
            raise
        _check_finite_result(R, X, comm)
        Uc, sv_all, Vt = np.linalg.svd(R, full_matrices=False)
        total = float(np.sum(R * R)) + lost**2
        floor = max(R.shape) * np.finfo(float).eps * (sv_all[0] if sv_all.size else 0.0)
        N = _rank(
            sv_all,
            int(np.count_nonzero(sv_all > floor)),
            total,
            rules,
            _lost_share(lost, rules, total),
        )
        e_N = math.sqrt(float(tail_energies(sv_all)[N]))
        if negligible == 0.0 or lost <= _LOST_SHARE * e_N:  # replicated: all ranks agree
            break
        negligible = 0.0  # the bound would dominate the tail: form the norm explicitly
    sg = sign_flips(Vt[:N].T)
    U = Q @ (Finv @ (Uc[:, :N] * sg))  # the last Cholesky-QR pass, on N columns only
    return U, sv_all[:N].copy(), Vt[:N].T * sg, total, float((e_N + lost) ** 2)


def _lost_share(lost: float, rules: dict, total: float) -> float:
    """The extra tail energy under which a tolerance :math:`\\tau` holds for :math:`(e_N +
    \\ell)^2`: :math:`2\\tau\\ell - \\ell^2` (:math:`\\ell^2` without a tolerance rule; every
    mode kept if :math:`\\ell \\ge \\tau`)."""
    tau = rules["l2_err"]
    if rules["rel_l2_err"] is not None:
        tau = rules["rel_l2_err"] * math.sqrt(max(total, 0.0))
    if tau is None or lost == 0.0:
        return lost**2
    return 2.0 * tau * lost - lost**2 if lost < tau else math.inf


def pod(
    X: np.ndarray,
    *,
    product: Product | None = None,
    comm: MPI.Comm | None = None,
    pod_method: str = "snapshots",
    rank: int | None = None,
    rtol: float | None = None,
    l2_err: float | None = None,
    rel_l2_err: float | None = None,
    orth_tol: float = 1e-12,
) -> CompressionResult:
    """POD of a row-distributed snapshot matrix.

    Parameters
    ----------
    X : ndarray of shape (n_local, m)
        This rank's rows of the snapshot matrix (one column per snapshot).
    product : operator, optional
        Inner product :math:`M` (mass or energy matrix) applied to owned rows, see
        :func:`rom.parallel.apply_product`. Euclidean when ``None``.
    comm : mpi4py communicator, optional
        Serial when ``None``.
    pod_method : {"snapshots", "qr", "auto"}
        Fast method of snapshots, or accurate Cholesky-QR + SVD of R (module docstring), or
        the choice between them from the eigenvalues of :math:`X^TMX` (computed by both
        anyway): the method of snapshots when the truncation error the rules give is at
        least :math:`100\\sqrt{m}` times its resolution :math:`10^{-7}\\sigma_1`, the
        accurate method otherwise (module docstring: the bound is then accurate to the
        method's rounding, not strict). ``details["pod_method"]`` says which ran. The choice is
        made on replicated data (the same on every rank); at another rank count a case
        within rounding of the threshold may take the other method.
    rank, rtol, l2_err, rel_l2_err : optional
        Truncation rules of :mod:`rom.compression.truncation` (e.g. ``rel_l2_err=eps`` keeps
        the smallest :math:`N` with :math:`\\sum_{n>N}\\sigma_n^2 \\le \\varepsilon^2
        \\|X\\|_M^2`). Without any rule all numerically nonzero modes are kept.
    orth_tol : float
        Modes satisfy :math:`\\max|U^T M U - I| \\le` ``orth_tol`` (checked,
        re-orthonormalized). ``math.inf`` skips the check: for a caller that uses only
        :math:`U\\Sigma = XV_N` (the inner nodes of a HAPOD), whose value does not depend on
        the orthonormality of :math:`U`.

    Returns
    -------
    CompressionResult
        ``method="batch"``; ``error_bound`` is the tail :math:`\\sqrt{\\sum_{n>N}
        \\sigma_n^2}` (including values the method could not resolve), summed from the
        smallest; ``details`` holds ``"right_singular_vectors"`` (shape (m, N)), ``"n_rows"``
        (global) and ``"pod_method"``.

    Warns
    -----
    ToleranceWarning
        When ``l2_err`` / ``rel_l2_err`` asks for less than the method can resolve: the
        :math:`\\sqrt{u}\\,\\sigma_1` floor of ``"snapshots"``, the much lower floor of
        ``"qr"`` (module docstring). The modes and the bound are still returned; the bound
        then exceeds the request.
    """
    comm = get_comm(comm)
    rules = dict(rank=rank, rtol=rtol, l2_err=l2_err, rel_l2_err=rel_l2_err)
    X, n_rows = _validate(X, comm, product, pod_method, rules, orth_tol)
    m = X.shape[1]
    G = _gram(X, product, comm)
    spectrum = _gram_tail(G, rules) if pod_method == "auto" else None  # one eigvalsh of G
    if pod_method == "auto":
        pod_method = _auto_method(spectrum, m)
    if pod_method == "snapshots":
        U, sv, V, total, tail = _method_of_snapshots(X, G, rules)
    else:
        U, sv, V, total, tail = _accurate(X, G, product, comm, rules, spectrum)
    if np.isfinite(orth_tol):
        rep = reorthonormalize(U, sv, product=product, comm=comm, orth_tol=orth_tol)
        U, sv, V = rep.modes, rep.singular_values, V @ rep.right
        sg = sign_flips(V)  # after a repair only: the signs were folded into the small factors
        if np.any(sg < 0):
            U, V = U * sg, V * sg
    logger.debug("pod(%s): kept %d of %d, tail %.3e of %.3e", pod_method, len(sv), m, tail, total)
    res = _pod_result(U, sv, V, total, tail, n_rows, pod_method)
    warn_unmet_tolerance(
        f"pod(pod_method={pod_method!r})",
        res.error_bound,
        res.total_energy,
        n_modes=len(sv),
        rank=rank,
        l2_err=l2_err,
        rel_l2_err=rel_l2_err,
        hint=(
            " (singular values below 1e-7*sigma_1); use pod_method='qr' for tighter tolerances"
            if pod_method == "snapshots"
            else ""
        ),
    )
    return res


def _pod_result(U, sv, V, total, tail, n_rows, pod_method) -> CompressionResult:
    return CompressionResult(
        modes=U,
        singular_values=sv,
        error_bound=float(np.sqrt(max(tail, 0.0))),
        total_energy=float(total),
        n_snapshots=V.shape[0],
        method="batch",
        details={"right_singular_vectors": V, "n_rows": n_rows, "pod_method": pod_method},
    )


class POD(FittedModes):
    """POD estimator (scikit-learn style) on row-distributed snapshots.

    Parameters
    ----------
    pod_method : {"snapshots", "qr"}
        See :func:`pod`.
    rank, rtol, l2_err, rel_l2_err : optional
        Truncation rules (:mod:`rom.compression.truncation`).
    product : operator, optional
        Inner product :math:`M` on owned rows (Euclidean when ``None``).
    comm : mpi4py communicator, optional
        Serial when ``None``.
    orth_tol : float
        Required :math:`M`-orthonormality of the modes.

    Attributes
    ----------
    modes_ : ndarray of shape (n_local, n_components_)
        This rank's rows of the :math:`M`-orthonormal POD modes.
    singular_values_ : ndarray of shape (n_components_,)
    n_components_ : int
    total_energy_ : float
        :math:`\\|X\\|_M^2 = \\sum_n \\sigma_n^2` over all singular values.
    error_bound_ : float
        :math:`\\sqrt{\\sum_{n>N}\\sigma_n^2}`, the Frobenius projection error of the fitted data.
    right_singular_vectors_ : ndarray of shape (n_samples, n_components_)
    n_samples_seen_ : int
    n_features_ : int
        Global number of rows (dofs).

    Examples
    --------
    >>> import numpy as np
    >>> from rom import POD
    >>> X = np.outer(np.linspace(0, 1, 50), [1.0, 2.0, 3.0])
    >>> est = POD(rtol=1e-6).fit(X)
    >>> est.n_components_
    1
    >>> bool(np.allclose(est.inverse_transform(est.transform(X)), X))
    True
    """

    _FIT_HINT = "fit(X)"

    def __init__(
        self,
        *,
        pod_method: str = "snapshots",
        rank: int | None = None,
        rtol: float | None = None,
        l2_err: float | None = None,
        rel_l2_err: float | None = None,
        product: Product | None = None,
        comm: MPI.Comm | None = None,
        orth_tol: float = 1e-12,
    ) -> None:
        keep_options(self, locals())

    def fit(self, X: np.ndarray) -> POD:
        """Compute the POD of the snapshots ``X`` (n_local, n_samples); returns ``self``."""
        res = pod(X, **kept_options(self))  # the options are pod's keywords
        self.modes_ = res.modes
        self.singular_values_ = res.singular_values
        self.n_components_ = res.n_modes
        self.total_energy_ = res.total_energy
        self.error_bound_ = res.error_bound
        self.right_singular_vectors_ = res.details["right_singular_vectors"]
        self.n_samples_seen_ = res.n_snapshots
        self.n_features_ = res.details["n_rows"]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Reduced coordinates :math:`U^T M X`, shape (n_components, n_columns) (collective)."""
        self._check_fitted()
        X, _ = validate_local_rows(X, "X", self.comm)
        check_collective(
            None
            if X.shape[0] == self.modes_.shape[0]
            else f"X has {X.shape[0]} local rows, the modes have {self.modes_.shape[0]}",
            self.comm,
        )
        return allreduce_sum(self.modes_.T @ apply_product(self.product, X), self.comm)

    def projection_error(self, X: np.ndarray, *, relative: bool = True) -> float:
        """:math:`\\|X - U U^T M X\\|_M` (Frobenius), divided by :math:`\\|X\\|_M` if relative."""
        R = X - self.inverse_transform(self.transform(X))
        num = float(allreduce_sum(np.sum(R * apply_product(self.product, R)), self.comm))
        if not relative:
            return float(np.sqrt(max(num, 0.0)))
        den = float(allreduce_sum(np.sum(X * apply_product(self.product, X)), self.comm))
        return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else 0.0
