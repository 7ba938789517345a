"""Matplotlib figures shared by the ``rom`` command line, the cases and the notebooks.

Every function returns a :class:`matplotlib.figure.Figure` (drawing into ``ax`` when one is
given) and leaves saving to the caller (:func:`save`). matplotlib is imported inside the
functions, so importing this module costs nothing and works without matplotlib installed
(the ``rom`` command line selects the non-interactive ``Agg`` backend before drawing).

The figures:

* :func:`singular_values` - :math:`\\sigma_n/\\sigma_1` against :math:`n`, with the relative
  tail :math:`e_N = \\sqrt{\\sum_{n>N}\\sigma_n^2 / \\sum_n \\sigma_n^2}` (the best rank-:math:`N`
  relative error, Schmidt-Eckart-Young) on the same axes;
* :func:`errors` - error curves against the basis size :math:`N` (held-out ROM errors, the
  training projection tail);
* :func:`clusters` - cluster labels over trajectories (time against sample) or parameters;
* :func:`indicator` - an a posteriori error indicator :math:`E_k` over the time steps, with the
  true error and the enrichment threshold when known (Casenave & Akkari, MCA 24(2):41, 2019);
* :func:`field` - a nodal field on a triangle mesh (``tripcolor``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from rom.compression.truncation import tail_energies

__all__ = ["singular_values", "errors", "clusters", "indicator", "field", "save"]

logger = logging.getLogger(__name__)


def _axes(ax: Any, figsize: tuple[float, float] = (5.0, 3.5)) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def _titled(fig: Any, ax: Any, title: str | None) -> Any:
    """Optional title and tight layout; returns the figure."""
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _finish(fig: Any, ax: Any, title: str | None) -> Any:
    """Grid, legend and optional title of a log-scale curve plot; returns the figure."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _titled(fig, ax, title)


def _finite_1d(values: Any, name: str, size: int | None = None, per: str = "values") -> np.ndarray:
    """``values`` as a finite non-empty 1-D array, of ``size`` entries (one per ``per``)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    if size is not None and a.size != size:
        raise ValueError(f"{name} has {a.size} values for {size} {per}")
    return a


def _log_curve(ax: Any, x: np.ndarray, y: np.ndarray, style: str, label: str, ms: int) -> None:
    """``y`` against ``x`` on a log scale; non-positive values leave gaps."""
    ax.semilogy(x, np.where(y > 0, y, np.nan), style, ms=ms, label=label)


def singular_values(
    sv: Sequence[float] | np.ndarray,
    *,
    total_energy: float | None = None,
    ax: Any = None,
    title: str | None = "singular values",
) -> Any:
    """Normalized singular values and the relative POD tail against the index.

    Parameters
    ----------
    sv : array_like of shape (k,)
        Singular values :math:`\\sigma_1 \\ge \\dots \\ge \\sigma_k \\ge 0`.
    total_energy : float, optional
        :math:`\\|S\\|_F^2` when ``sv`` is truncated (defaults to :math:`\\sum_n\\sigma_n^2`);
        the tail then includes the discarded energy.
    ax : matplotlib Axes, optional
        Draw into these axes instead of a new figure.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = singular_values([3.0, 1.0, 0.1])
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['$\\\\sigma_n / \\\\sigma_1$', 'relative tail $e_n$']
    """
    s = _finite_1d(sv, "singular values")
    if s[0] <= 0:
        raise ValueError("the first singular value must be positive")
    total = float(np.sum(s**2)) if total_energy is None else float(total_energy)
    extra = max(total - float(np.sum(s**2)), 0.0)
    tails = np.sqrt((tail_energies(s)[1:] + extra) / total)
    n = np.arange(1, s.size + 1)
    fig, ax = _axes(ax)
    ax.semilogy(n, s / s[0], "o-", ms=3, label=r"$\sigma_n / \sigma_1$")
    positive = tails > 0
    ax.semilogy(n[positive], tails[positive], "s--", ms=3, label="relative tail $e_n$")
    ax.set_xlabel("index n")
    return _finish(fig, ax, title)


def errors(
    n: Sequence[int] | np.ndarray,
    curves: Mapping[str, Sequence[float] | np.ndarray],
    *,
    ax: Any = None,
    ylabel: str = "relative error",
    title: str | None = None,
) -> Any:
    """Error curves against the basis size :math:`N` (log scale).

    Parameters
    ----------
    n : array_like of shape (k,)
        Basis sizes.
    curves : mapping of label to array_like of shape (k,)
        E.g. ``{"held-out ROM error (max)": ..., "training POD tail": ...}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = _finite_1d(n, "basis sizes")
    if not curves:
        raise ValueError("no error curves given")
    fig, ax = _axes(ax)
    styles = ["o-", "s--", "k:", "^-.", "v-"]
    for i, (label, y) in enumerate(curves.items()):
        y = _finite_1d(y, f"curve {label!r}", n.size, "basis sizes")
        _log_curve(ax, n, y, styles[i % len(styles)], label, ms=4)
    ax.set_xlabel("basis size N")
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, title)


def clusters(
    labels: Sequence[int] | np.ndarray,
    *,
    parameters: np.ndarray | None = None,
    parameter_names: Sequence[str] = (),
    sample: Sequence[int] | np.ndarray | None = None,
    time: Sequence[float] | np.ndarray | None = None,
    medoids: Sequence[int] | None = None,
    ax: Any = None,
    title: str | None = "clusters",
) -> Any:
    """Cluster labels of the snapshots, over trajectories or over the parameters.

    Parameters
    ----------
    labels : array_like of int, shape (m,)
        Cluster of each snapshot.
    parameters : ndarray of shape (m, p), optional
        Snapshot parameters.
    parameter_names : sequence of str
        Axis labels for the parameters.
    sample : array_like of int, shape (m,), optional
        Trajectory (sample) id of each snapshot.
    time : array_like of shape (m,), optional
        Time of each snapshot (NaN: use the position in its trajectory).
    medoids : sequence of int, optional
        Snapshot indices of the cluster centres (drawn as open circles).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The layout follows the data: when snapshots come in trajectories (repeated sample ids),
    time against sample id, which shows how each trajectory is split over time; otherwise
    the first two parameters (:math:`p \\ge 2`), the first parameter against the snapshot
    index (:math:`p = 1`), or the label against the snapshot index.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError("labels must be a non-empty 1-D integer array")
    x, y, xl, yl = _cluster_axes(lab, parameters, list(parameter_names), sample, time)
    fig, ax = _axes(ax)
    sc = ax.scatter(x, y, c=lab, cmap="tab10", s=14, vmin=-0.5, vmax=max(9.5, lab.max() + 0.5))
    if medoids is not None:
        med = np.asarray(medoids, dtype=np.int64)
        ax.scatter(
            x[med], y[med], facecolors="none", edgecolors="k", marker="o", s=90, label="medoids"
        )
        ax.legend(fontsize=8)
    fig.colorbar(sc, ax=ax, label="cluster")
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    return _titled(fig, ax, title)


def _cluster_axes(
    lab: np.ndarray, parameters: Any, names: list[str], sample: Any, time: Any
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Abscissa, ordinate and their labels of :func:`clusters` (layout in its Notes)."""
    m = lab.size
    idx = np.arange(m, dtype=float)
    P = np.zeros((m, 0)) if parameters is None else np.asarray(parameters, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != m:
        raise ValueError(f"parameters must have shape ({m}, p), got {P.shape}")
    s = None if sample is None else np.asarray(sample, dtype=np.int64)
    if s is not None and s.shape != (m,):
        raise ValueError(f"sample must have shape ({m},), got {s.shape}")
    if s is not None and np.unique(s).size < m:
        t = np.full(m, np.nan) if time is None else np.asarray(time, dtype=np.float64)
        if t.shape != (m,):
            raise ValueError(f"time must have shape ({m},), got {t.shape}")
        if not np.all(np.isfinite(t)):  # position within the trajectory
            t = np.zeros(m)
            for sid in np.unique(s):
                where = np.flatnonzero(s == sid)
                t[where] = np.arange(where.size)
            xl = "step in trajectory"
        else:
            xl = "time"
        x, y, yl = t, s.astype(float), "sample (trajectory)"
    elif P.shape[1] >= 2:
        x, y = P[:, 0], P[:, 1]
        xl, yl = (names[0], names[1]) if len(names) >= 2 else ("mu_0", "mu_1")
    elif P.shape[1] == 1:
        x, y = idx, P[:, 0]
        xl, yl = "snapshot", (names[0] if names else "mu_0")
    else:
        x, y = idx, lab.astype(float)
        xl, yl = "snapshot", "cluster"
    return x, y, xl, yl


def indicator(
    values: Sequence[float] | np.ndarray,
    *,
    error: Sequence[float] | np.ndarray | None = None,
    tol: float | None = None,
    time: Sequence[float] | np.ndarray | None = None,
    ax: Any = None,
    title: str | None = "error indicator",
) -> Any:
    """An error indicator :math:`E_k` over the time steps, with the true error if known.

    Parameters
    ----------
    values : array_like of shape (K,)
        Indicator :math:`E_k` (Casenave & Akkari 2019: relative residual of the Gappy-POD
        reconstruction of a dual quantity).
    error : array_like of shape (K,), optional
        The true relative error of the ROM at the same steps.
    tol : float, optional
        The enrichment threshold (horizontal line).
    time : array_like of shape (K,), optional
        Abscissa (default: the step index).

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = _finite_1d(values, "indicator values")
    per = "indicator values"
    t = np.arange(v.size, dtype=float) if time is None else _finite_1d(time, "time", v.size, per)
    fig, ax = _axes(ax)
    _log_curve(ax, t, v, "o-", "indicator $E_k$", ms=3)
    if error is not None:
        _log_curve(ax, t, _finite_1d(error, "error", v.size, per), "s--", "true error", ms=3)
    if tol is not None:
        ax.axhline(float(tol), color="r", lw=1, label=f"tol = {float(tol):g}")
    ax.set_xlabel("time step" if time is None else "time")
    return _finish(fig, ax, title)


def field(
    points: np.ndarray,
    cells: np.ndarray,
    values: np.ndarray,
    *,
    ax: Any = None,
    label: str = "",
    title: str | None = None,
    cmap: str = "inferno",
    vmin: float | None = None,
    vmax: float | None = None,
) -> Any:
    """A nodal field on a 2-D triangle mesh (``tripcolor``, Gouraud shading).

    Parameters
    ----------
    points : ndarray of shape (n_nodes, >= 2)
    cells : ndarray of shape (n_cells, 3) of int
    values : ndarray of shape (n_nodes,)
        Nodal values in the order of ``points``.
    vmin, vmax : float, optional
        Color limits (shared limits make several fields comparable).

    Returns
    -------
    matplotlib.figure.Figure
    """
    pts = np.asarray(points, dtype=np.float64)
    tri = np.asarray(cells)
    val = np.asarray(values, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError("field plots need 2-D points and triangle cells (n_cells, 3)")
    if val.shape != (pts.shape[0],):
        raise ValueError(f"values must have shape ({pts.shape[0]},), got {val.shape}")
    fig, ax = _axes(ax, figsize=(6.0, 3.5))
    tpc = ax.tripcolor(
        pts[:, 0], pts[:, 1], tri, val, shading="gouraud", cmap=cmap, vmin=vmin, vmax=vmax
    )
    fig.colorbar(tpc, ax=ax, label=label, shrink=0.7)
    ax.set_aspect("equal")
    return _titled(fig, ax, title)


def save(fig: Any, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Save a figure (PNG, PDF, SVG from the suffix) and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    logger.info("wrote %s", path)
