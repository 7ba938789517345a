"""Synthetic snapshot data with known structure: exact 1-D linear advection.

The protocol of docs/theory.md §4 (after the PDEBench experiment of Shamrai,
arXiv:2601.11626): :math:`u_t + \\beta u_x = 0` on the periodic interval :math:`[0, 1)`, exact
solution :math:`u(x, t) = u_0((x - \\beta t) \\bmod 1)`, sampled at cell centres
:math:`x_i = (i + 1/2)/n_{cells}` and times :math:`t_j = j\\,\\Delta t`. The initial profiles
are PDEBench-like (our choice, the paper does not state them):
:math:`u_0(x) = \\sum_{l=1,2} A_l \\sin(2\\pi n_l x + \\varphi_l)`, :math:`n_l \\in \\{1..8\\}`,
:math:`A_l \\sim U(0, 1)`, :math:`\\varphi_l \\sim U(0, 2\\pi)`; with probability 0.1 the
absolute value is taken, with probability 0.1 the profile is multiplied by the indicator of a
random sub-interval; :math:`\\beta` is drawn from {0.1, 0.2, 0.4, 0.7, 1, 2, 4}.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ADVECTION_SPEEDS", "advection_sample", "advection_blocks"]

ADVECTION_SPEEDS = (0.1, 0.2, 0.4, 0.7, 1.0, 2.0, 4.0)


def _initial_profile(rng: np.random.Generator):
    n = rng.integers(1, 9, size=2)
    amp = rng.uniform(0.0, 1.0, size=2)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=2)
    take_abs = rng.uniform() < 0.1
    use_window = rng.uniform() < 0.1
    a, b = np.sort(rng.uniform(0.0, 1.0, size=2))

    def u0(x: np.ndarray) -> np.ndarray:
        u = sum(amp[k] * np.sin(2.0 * np.pi * n[k] * x + phase[k]) for k in range(2))
        if take_abs:
            u = np.abs(u)
        if use_window:
            u = u * ((x >= a) & (x <= b))
        return u

    return u0


def advection_sample(
    rng: np.random.Generator, *, n_cells: int = 1024, n_times: int = 201, dt: float = 0.01
) -> np.ndarray:
    """One exact advection trajectory, array of shape ``(n_times, n_cells)``.

    Row ``j`` is :math:`u(x_i, t_j) = u_0((x_i - \\beta t_j) \\bmod 1)`.
    """
    u0 = _initial_profile(rng)
    beta = ADVECTION_SPEEDS[int(rng.integers(len(ADVECTION_SPEEDS)))]
    x = (np.arange(n_cells) + 0.5) / n_cells
    t = np.arange(n_times) * dt
    return u0(np.mod(x[None, :] - beta * t[:, None], 1.0))


def advection_blocks(
    n_samples: int,
    *,
    seed: int = 23,
    n_cells: int = 1024,
    n_times: int = 201,
    dt: float = 0.01,
    block_cols: int = 67,
) -> list[np.ndarray]:
    """``n_samples`` advection trajectories, each reshaped row-major to a block.

    Each ``(n_times, n_cells)`` sample is flattened in C order and reshaped to
    ``(n_times * n_cells // block_cols, block_cols)`` (the default 201 x 1024 gives 3072 x 67,
    the layout of docs/theory.md §4; our choice, not confirmed in the paper).
    Deterministic for a given ``seed``; samples come in random order by construction.
    """
    size = n_times * n_cells
    if n_samples < 0 or block_cols < 1 or size % block_cols:
        raise ValueError(
            f"advection_blocks: n_times*n_cells = {size} must be divisible by block_cols = "
            f"{block_cols}, and n_samples >= 0 (got {n_samples})"
        )
    rng = np.random.default_rng(seed)
    return [
        advection_sample(rng, n_cells=n_cells, n_times=n_times, dt=dt).reshape(-1, block_cols)
        for _ in range(n_samples)
    ]
