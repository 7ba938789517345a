"""Parameter sampling for training and test sets."""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

__all__ = ["latin_hypercube"]


def latin_hypercube(
    ranges: np.ndarray, n: int, *, seed: int = 0, log_scale: np.ndarray | None = None
) -> np.ndarray:
    """Seeded Latin-hypercube sample of a box of parameters.

    Parameters
    ----------
    ranges : array_like of shape (p, 2)
        ``[low, high]`` of each parameter.
    n : int
        Number of points.
    seed : int
        The same seed gives the same points on every rank and every run.
    log_scale : array_like of bool, shape (p,), optional
        Parameters sampled uniformly in :math:`\\log` (stratified in log space), for ranges
        spanning decades (conductivities, heat-transfer coefficients). Needs ``low > 0``.

    Returns
    -------
    ndarray of shape (n, p)
        Each column is stratified: exactly one point in each of the ``n`` equal bins of its
        range (McKay, Beckman and Conover, 1979).
    """
    ranges = np.asarray(ranges, dtype=np.float64)
    if ranges.ndim != 2 or ranges.shape[1] != 2 or np.any(ranges[:, 1] < ranges[:, 0]):
        raise ValueError(f"ranges must be (p, 2) with low <= high, got {ranges.tolist()}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    logs = np.zeros(len(ranges), bool) if log_scale is None else np.asarray(log_scale, bool)
    if logs.shape != (len(ranges),) or np.any(ranges[logs, 0] <= 0):
        raise ValueError("log_scale must have one flag per parameter, with low > 0 where set")
    lo = np.where(logs, np.log(np.where(logs, ranges[:, 0], 1.0)), ranges[:, 0])
    hi = np.where(logs, np.log(np.where(logs, ranges[:, 1], 1.0)), ranges[:, 1])
    unit = qmc.LatinHypercube(d=ranges.shape[0], seed=np.random.default_rng(seed)).random(int(n))
    pts = lo + unit * (hi - lo)
    pts[:, logs] = np.exp(pts[:, logs])
    return pts
