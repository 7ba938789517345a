"""Structured O-grid mesh of a cooled turbine-blade cross-section (pure numpy, no gmsh).

Geometry (chord 1, nondimensional). With the angle :math:`\\theta \\in [0, 2\\pi)` running
counter-clockwise from the trailing edge (:math:`\\theta = 0`) over the suction side to the
leading edge (:math:`\\theta = \\pi`) and back along the pressure side:

* outer (hot-gas) curve, a cambered, thickened ellipse with a rounded leading edge,

  .. math::

      x_o(\\theta) = \\tfrac12 (1 + \\cos\\theta), \\quad
      y_o(\\theta) = c(x_o) + \\sin\\theta \\, \\bigl(t_0 + t_1 (1 - x_o)\\bigr),
      \\quad c(x) = 4 m x (1 - x);

* inner (cooling-channel) curve, a cambered ellipse following the same camber line,

  .. math::

      x_i(\\theta) = x_c + a \\cos\\theta, \\quad y_i(\\theta) = c(x_i) + b \\sin\\theta .

The O-grid maps the logical square :math:`(s, r) \\in [0, 1) \\times [0, 1]` (``s`` periodic)
to :math:`X(s, r) = (1 - r)\\, X_i(2\\pi s) + r\\, X_o(2\\pi s)`. ``size`` cells along ``r``,
``n_s = s_factor * size`` along ``s``; each quad is split into two triangles along its shorter
diagonal. The radial grid is uniform on each side of a node placed exactly at ``r = r_coat``, so
the coating layer :math:`r > r_{coat}` is resolved exactly at every size (the grid is uniform,
and refinement halves every cell, when ``(1 - r_coat) * size`` is an integer).
Node ``(i_r, i_s)`` has input index ``i_r * n_s + i_s`` (``i_r = 0``: cooling boundary,
``i_r = size``: hot-gas boundary); quad ``(i_r, i_s)`` gives cells
``2 (i_r n_s + i_s)`` and ``2 (i_r n_s + i_s) + 1``. The number of nodes is
``n_s (size + 1)``: about ``8 size^2`` (``size = 12``: ~1.2e3; ``size = 354``: ~1e6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BladeGeometry", "BladeMesh", "blade_mesh", "grid_layout"]


@dataclass(frozen=True)
class BladeGeometry:
    """Shape parameters of the blade section (outer profile and elliptic cooling channel)."""

    camber: float = 0.06  # m: maximum camber at mid-chord
    t0: float = 0.05  # half-thickness factor at the trailing edge
    t1: float = 0.12  # extra half-thickness factor towards the leading edge
    channel_center: float = 0.40  # x_c
    channel_a: float = 0.26  # semi-axis along the chord
    channel_b: float = 0.045  # semi-axis across

    def camber_line(self, x: np.ndarray) -> np.ndarray:
        """:math:`c(x) = 4 m x (1 - x)`."""
        return 4.0 * self.camber * x * (1.0 - x)

    def outer(self, theta: np.ndarray) -> np.ndarray:
        """Points of the hot-gas (outer) curve, shape (n, 2)."""
        theta = np.asarray(theta, dtype=np.float64)
        x = 0.5 * (1.0 + np.cos(theta))
        y = self.camber_line(x) + np.sin(theta) * (self.t0 + self.t1 * (1.0 - x))
        return np.stack([x, y], axis=-1)

    def inner(self, theta: np.ndarray) -> np.ndarray:
        """Points of the cooling-channel (inner) curve, shape (n, 2)."""
        theta = np.asarray(theta, dtype=np.float64)
        x = self.channel_center + self.channel_a * np.cos(theta)
        y = self.camber_line(x) + self.channel_b * np.sin(theta)
        return np.stack([x, y], axis=-1)

    @property
    def leading_edge(self) -> np.ndarray:
        """The leading-edge point :math:`X_o(\\pi) = (0, 0)`."""
        return self.outer(np.pi)


@dataclass(frozen=True)
class BladeMesh:
    """Output of :func:`blade_mesh`: nodes, triangles and the O-grid indexing."""

    points: np.ndarray  # (n_nodes, 2) float64, input order
    cells: np.ndarray  # (n_cells, 3) int64 node indices
    n_s: int  # cells (= nodes) around
    n_r: int  # cells across
    n_r_coat: int  # radial cell layers in the coating (the outermost ones)
    r: np.ndarray  # (n_r + 1,) radial grid

    def node_layer(self, nodes: np.ndarray) -> np.ndarray:
        """Radial index ``i_r`` of input nodes."""
        return np.asarray(nodes, dtype=np.int64) // self.n_s

    def cell_layer(self, cells: np.ndarray) -> np.ndarray:
        """Radial index ``i_r`` of input cells."""
        return np.asarray(cells, dtype=np.int64) // (2 * self.n_s)

    def is_coating_cell(self, cells: np.ndarray) -> np.ndarray:
        """True for input cells in the coating layer :math:`r > r_{coat}`."""
        return self.cell_layer(cells) >= self.n_r - self.n_r_coat


def grid_layout(size: int, *, s_factor: int = 8, r_coat: float = 0.85) -> tuple[int, int, int]:
    """``(n_s, n_r, n_r_coat)`` of :func:`blade_mesh` without building it (validates inputs)."""
    size = int(size)
    if size < 2 or int(s_factor) < 3:
        raise ValueError(f"need size >= 2 and s_factor >= 3, got size={size}, s_factor={s_factor}")
    if not 0.0 < r_coat < 1.0:
        raise ValueError(f"r_coat must be in (0, 1), got {r_coat}")
    n_coat = int(np.clip(round((1.0 - r_coat) * size), 1, size - 1))
    return int(s_factor) * size, size, n_coat


def _radial_grid(n_r: int, r_coat: float) -> tuple[np.ndarray, int]:
    n_coat = grid_layout(n_r, r_coat=r_coat)[2]
    r = np.concatenate(
        [np.linspace(0.0, r_coat, n_r - n_coat + 1), np.linspace(r_coat, 1.0, n_coat + 1)[1:]]
    )
    return r, n_coat


def blade_mesh(
    size: int,
    *,
    s_factor: int = 8,
    r_coat: float = 0.85,
    geometry: BladeGeometry | None = None,
) -> BladeMesh:
    """O-grid triangulation of the blade section between the channel and the outer profile.

    Parameters
    ----------
    size : int
        Number of cells across the wall (along ``r``), at least 2.
    s_factor : int
        Cells around the blade per cell across: ``n_s = s_factor * size``.
    r_coat : float
        Logical radius of the coating interface, in (0, 1).
    geometry : BladeGeometry, optional
        Shape parameters (defaults).

    Returns
    -------
    BladeMesh
        Points in input order (index ``i_r * n_s + i_s``), triangles, and grid sizes.
    """
    n_s, n_r, _ = grid_layout(size, s_factor=s_factor, r_coat=r_coat)
    geo = BladeGeometry() if geometry is None else geometry
    r, n_coat = _radial_grid(n_r, r_coat)
    theta = 2.0 * np.pi * np.arange(n_s) / n_s
    xi, xo = geo.inner(theta), geo.outer(theta)
    points = ((1.0 - r)[:, None, None] * xi[None] + r[:, None, None] * xo[None]).reshape(-1, 2)

    ir, js = np.meshgrid(np.arange(n_r), np.arange(n_s), indexing="ij")
    a = ir * n_s + js
    b = ir * n_s + (js + 1) % n_s
    c = b + n_s
    d = a + n_s
    # split each quad along its shorter diagonal (avoids obtuse angles in the sheared cells)
    ac = np.linalg.norm(points[a] - points[c], axis=-1)
    bd = np.linalg.norm(points[b] - points[d], axis=-1)
    short_ac = (ac <= bd)[..., None]
    first = np.where(short_ac, np.stack([a, b, c], axis=-1), np.stack([a, b, d], axis=-1))
    second = np.where(short_ac, np.stack([a, c, d], axis=-1), np.stack([b, c, d], axis=-1))
    cells = np.stack([first, second], axis=2).reshape(-1, 3).astype(np.int64)

    p = points[cells]
    signed = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
        p[:, 1, 1] - p[:, 0, 1]
    )
    if not (np.all(signed > 0) or np.all(signed < 0)):
        raise ValueError("blade geometry gives inverted or degenerate O-grid cells")
    return BladeMesh(points=points, cells=cells, n_s=n_s, n_r=n_r, n_r_coat=n_coat, r=r)
