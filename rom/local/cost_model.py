"""Cost model of one reduced solve, fitted to timings, for the a priori efficiency estimate.

:meth:`rom.local.bases.LocalBases.efficiency_estimate` takes it as ``cost=`` (docs/theory.md
§3.6).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize

__all__ = ["OnlineCost", "efficiency_ratio", "fit_online_cost"]


@dataclass(frozen=True)
class OnlineCost:
    r"""Cost model :math:`c(N) = \sum_{i=0}^{3} c_i N^i` of one reduced solve, in seconds.

    Attributes
    ----------
    coefficients : ndarray of shape (4,)
        :math:`c_0..c_3`, non-negative, so :math:`c` is non-decreasing in :math:`N`.
    """

    coefficients: np.ndarray

    def __call__(self, N: int | float) -> float:
        return float(np.polyval(self.coefficients[::-1], float(N)))


def fit_online_cost(sizes: Sequence[int], seconds: Sequence[float]) -> OnlineCost:
    r"""Fit :math:`c(N) = c_0 + c_1N + c_2N^2 + c_3N^3` with :math:`c_i \ge 0` to timings.

    Non-negative least squares on the relative residuals :math:`(c(N_j) - t_j)/t_j`, so
    that small and large solves weigh alike; the cost model of
    :meth:`rom.local.bases.LocalBases.efficiency_estimate` (``cost=``). Not collective: time
    the solves on every rank (or take the maximum over ranks) and pass the same numbers
    everywhere.

    Parameters
    ----------
    sizes : sequence of int
        Basis sizes :math:`N_j \ge 1` (at least two distinct).
    seconds : sequence of float
        Measured time :math:`t_j > 0` of one reduced solve at :math:`N_j`.

    Examples
    --------
    >>> c = fit_online_cost([1, 10, 20, 40], [2e-4 + 1e-8 * n**3 for n in (1, 10, 20, 40)])
    >>> bool(abs(c(30) / (2e-4 + 1e-8 * 30**3) - 1) < 1e-6)
    True
    """
    N = np.asarray(sizes, dtype=np.float64).ravel()
    t = np.asarray(seconds, dtype=np.float64).ravel()
    if N.size != t.size or np.unique(N).size < 2:
        raise ValueError(f"need timings at two or more sizes, got sizes {N} and {t.size} times")
    if not (np.all(np.isfinite(N)) and np.all(N >= 1) and np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError("sizes must be >= 1 and times finite and positive")
    A = np.vander(N, 4, increasing=True) / t[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    x, _ = scipy.optimize.nnls(A / scale, np.ones_like(t))
    return OnlineCost(coefficients=x / scale)


def efficiency_ratio(
    populations: Sequence[int],
    local_sizes: Sequence[int],
    global_size: int,
    cost: Callable[[int], float] | None = None,
    selection_cost: float = 0.0,
) -> float:
    r"""A priori ratio of local to global online cost (docs/theory.md §3.6).

    .. math::

        \eta(K) = \frac{\sum_k (n_k/n)\, c(N_k) + c_{sel}(K)}{c(N_1)},

    :math:`n_k` the cluster populations, :math:`N_k` the local and :math:`N_1` the global
    basis sizes, :math:`c` the cost of one reduced solve (default :math:`N^3`); local bases
    pay off iff :math:`\eta < 1`. :math:`c_{sel}` is not charged for :math:`K = 1`, so
    :math:`\eta(1) = 1` when :math:`N_1 = N_k`.
    """
    c = (lambda N: float(N) ** 3) if cost is None else cost
    n = np.asarray(populations, dtype=np.float64)
    w = n / n.sum()
    num = float(sum(wk * c(int(N)) for wk, N in zip(w, local_sizes, strict=True)))
    if len(n) > 1:
        num += float(selection_cost)
    den = c(int(global_size))
    return num / den if den > 0 else 1.0
