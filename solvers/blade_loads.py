"""Thermal loads of the blade case (``cases/adaptive_blade.py``, ``benchmarks/bench_adaptive.py``).

A temperature field on the unit block,

.. math::

    T(x, t) = 20 + \\theta(t)\\,A\\bigl(1 + g(x_1 - \\tfrac12)\\bigr)
        + \\sum_j \\theta_j(t)\\, S_j\\, e^{-|x - c_j(t)|^2 / r_j},

with a uniform part and hot spots, each with its time profile. Three disjoint sets:

* **training** loads: ramps :math:`\\theta = \\min(t/t_{hold}, 1)`, :math:`t_{hold} = 1`, a
  spot at :math:`a = (0.7, 0.5)` and a weak one at :math:`b = (0.25, 0.75)`
  (:func:`sample_loads` with ``kind="training"``);
* **calibration** loads: the same form from a wider envelope (a strong second spot at a random
  place in the upper part of the block, holds from :math:`t = 0.4` on), seeded separately
  (``kind="calibration"``);
* **test** loads (:data:`TEST_LOADS`): six kinds none of the others contain: thermal cycling,
  a hot spot elsewhere, a travelling hot spot, a fast ramp then cool-down, a higher amplitude,
  a long hold (creep). They were fixed before any measurement and are never used to train or
  calibrate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

import numpy as np

__all__ = [
    "SPOT_A",
    "SPOT_B",
    "TEST_LOADS",
    "ThermalLoad",
    "relative_errors",
    "sample_loads",
]

SPOT_A, SPOT_B = (0.7, 0.5), (0.25, 0.75)


def ramp(hold: float) -> Callable[[float], float]:
    """:math:`\\theta(t) = \\min(t / t_{hold}, 1)`."""
    return lambda t: min(float(t) / hold, 1.0)


def piecewise(points: list[tuple[float, float]]) -> Callable[[float], float]:
    """Piecewise linear :math:`\\theta` through ``(t, value)`` points (constant beyond)."""
    ts, vs = zip(*points, strict=True)
    return lambda t: float(np.interp(float(t), ts, vs))


@dataclass(frozen=True)
class ThermalLoad:
    """One thermal load; ``temperature`` is the callable ``T(x (3, m), t)`` of
    ``solvers.mechanics``.

    ``spots``: tuples ``(S, r, center, profile)`` with ``center`` a point or a callable of
    ``t``; ``profile`` None uses the load's ``theta``.
    """

    name: str
    A: float
    g: float
    theta: Callable[[float], float]
    spots: tuple = field(default_factory=tuple)

    def temperature(self, x: np.ndarray, t: float) -> np.ndarray:
        th = self.theta(t)
        T = 20.0 + th * self.A * (1 + self.g * (x[0] - 0.5))
        for S, r, center, profile in self.spots:
            c = center(t) if callable(center) else center
            w = th if profile is None else profile(t)
            T = T + w * S * np.exp(-((x[0] - c[0]) ** 2 + (x[1] - c[1]) ** 2) / r)
        return T

    def describe(self) -> str:
        return self.name


def _family(name: str, A: float, g: float, S1: float, S2: float, hold: float) -> ThermalLoad:
    return ThermalLoad(name, A, g, ramp(hold), ((S1, 0.04, SPOT_A, None), (S2, 0.03, SPOT_B, None)))


def sample_loads(n: int, kind: str, seed: int) -> list[ThermalLoad]:
    """``n`` seeded loads of the training or calibration family (module docstring).

    Training: :math:`A \\in [200, 350]`, :math:`g \\in [0, 0.6]`, :math:`S_1 \\in [50, 200]`,
    :math:`S_2 \\in [0, 60]` at :math:`b`, :math:`t_{hold} = 1`. Calibration: the same
    :math:`A, g, S_1`, :math:`t_{hold} \\in [0.4, 1]`; every other load as the training
    (:math:`S_2 \\in [0, 60]` at :math:`b`), the others :math:`S_2 \\in [0, 250]` at a random centre in the upper part of the
    block (:math:`x_1 \\in [0.1, 0.9]`, :math:`x_2 \\in [0.55, 0.9]`) with
    :math:`r_2 \\in [0.02, 0.04]`: loads the training basis does not span, so that the
    calibration sees both accurate steps and what extrapolation does to the error.
    """
    if kind not in ("training", "calibration"):
        raise ValueError(f"kind must be 'training' or 'calibration', got {kind!r}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        A, g, S1 = 200 + 150 * rng.random(), 0.6 * rng.random(), 50 + 150 * rng.random()
        if kind == "training" or i % 2 == 0:
            spot2 = (60 * rng.random(), 0.03, SPOT_B, None)
            hold = 1.0 if kind == "training" else 0.4 + 0.6 * rng.random()
        else:
            centre = (0.1 + 0.8 * rng.random(), 0.55 + 0.35 * rng.random())
            spot2 = (250 * rng.random(), 0.02 + 0.02 * rng.random(), centre, None)
            hold = 0.4 + 0.6 * rng.random()
        spots = ((S1, 0.04, SPOT_A, None), spot2)
        out.append(ThermalLoad(f"{kind}-{i}", A, g, ramp(hold), spots))
    return out


def _travel(t: float) -> tuple[float, float]:
    s = min(max(float(t), 0.0), 1.0)
    return (0.2 + 0.6 * s, 0.2 + 0.6 * s)


#: The held-out test loads, by name (fixed before measuring).
TEST_LOADS: dict[str, ThermalLoad] = {
    "cycling": ThermalLoad(
        "cycling",
        300.0,
        0.3,
        piecewise([(0.0, 0.0), (1 / 3, 1.0), (2 / 3, 0.2), (1.0, 1.0)]),
        ((120.0, 0.04, SPOT_A, None), (30.0, 0.03, SPOT_B, None)),
    ),
    "spot-elsewhere": ThermalLoad(
        "spot-elsewhere",
        260.0,
        0.2,
        ramp(1.0),
        ((100.0, 0.04, SPOT_A, None), (220.0, 0.02, (0.5, 0.15), None)),
    ),
    "travelling-spot": ThermalLoad(
        "travelling-spot",
        250.0,
        0.2,
        ramp(0.3),
        ((200.0, 0.02, _travel, None),),
    ),
    "fast-ramp-cool": ThermalLoad(
        "fast-ramp-cool",
        320.0,
        0.4,
        piecewise([(0.0, 0.0), (0.15, 1.0), (0.5, 1.0), (1.0, 0.0)]),
        ((150.0, 0.04, SPOT_A, None), (40.0, 0.03, SPOT_B, None)),
    ),
    "high-amplitude": _family("high-amplitude", 450.0, 0.5, 260.0, 50.0, 1.0),
    "long-hold": _family("long-hold", 340.0, 0.3, 180.0, 40.0, 0.15),
}


def relative_errors(fom, U: np.ndarray, P: np.ndarray, ref, *, columns=None):
    """Errors of a run against a full-order trajectory ``ref``, relative to the trajectory's
    largest norm (collective): :math:`\\|u_k - u^h_k\\|_M / \\max_j \\|u^h_j\\|_M` and the same for
    :math:`p` in :math:`L^2(\\Omega)` (quadrature weights).

    ``U`` (n_owned, m) and ``P`` (n_qp_local, m) are compared with the columns ``columns`` of
    ``ref`` (default all). Returns ``(e_u, e_p)``, each of shape (m,).
    """
    from rom.parallel import allreduce_sum

    comm = fom.comm
    cols = slice(None) if columns is None else np.asarray(columns)

    def mnorm(X):
        return np.sqrt(np.maximum(allreduce_sum(np.einsum("ij,ij->j", X, fom.mass(X)), comm), 0))

    def wnorm(X):
        return np.sqrt(np.maximum(allreduce_sum((X**2).T @ fom.qp_weights, comm), 0))

    return (
        mnorm(U - ref.u[:, cols]) / max(mnorm(ref.u).max(), 1e-300),
        wnorm(P - ref.p[:, cols]) / max(wnorm(ref.p).max(), 1e-300),
    )
