"""Concatenated-SVD bounds (rom.local.bounds) against numpy.linalg.svd of the concatenation.

Tolerance: bounds are compared with the exact error up to 1e-7 absolute, the sqrt(u) floor of
Gram-based quantities (docs/theory.md §1); rank-count independence to 1e-10 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from mpi4py import MPI

from rom.local import bounds
from rom.parallel import distribute_rows
from rom.synthetic import advection_blocks

FLOOR = 1e-7
HYP = settings(derandomize=True, deadline=None, max_examples=25, database=None)


def true_error(blocks, r, weights=None):
    X = np.hstack(blocks)
    if weights is not None:
        X = np.sqrt(weights)[:, None] * X
    s = np.linalg.svd(X, compute_uv=False)
    return float(np.sqrt(np.sum(s[r:] ** 2) / np.sum(s**2)))


def make_blocks(seed, m, widths, kind):
    """Global blocks (same on every rank): Gaussian, graded spectra, or transport snapshots."""
    rng = np.random.default_rng(seed)
    out = []
    x = (np.arange(m) + 0.5) / m
    for n in widths:
        if kind == "gaussian":
            out.append(rng.standard_normal((m, n)))
        elif kind == "graded":
            U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
            V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
            s = np.logspace(0, -rng.uniform(1, 6), min(m, n))
            out.append(rng.uniform(0.5, 3) * (U * s) @ V.T)
        else:  # nearly collinear transport trajectories: a bump moving slowly
            c0, speed, w = rng.uniform(0, 1), rng.uniform(0.005, 0.03), rng.uniform(0.08, 0.2)
            t = np.arange(n)
            d = np.mod(x[:, None] - c0 - speed * t[None, :] + 0.5, 1.0) - 0.5
            out.append(np.exp(-((d / w) ** 2)))
    return out


block_sets = st.tuples(
    st.integers(0, 2**31 - 1),
    st.integers(6, 24),
    st.lists(st.integers(1, 9), min_size=1, max_size=4),
    st.integers(1, 6),
    st.sampled_from(["gaussian", "graded", "transport"]),
)


def local(blocks, comm):
    return [distribute_rows(A, comm) for A in blocks]


@pytest.mark.mpi
@pytest.mark.partition
@HYP
@given(case=block_sets)
def test_upper_bounds_never_below_true_error(case):
    comm = MPI.COMM_WORLD  # not the fixture: Hypothesis reruns the body
    seed, m, widths, r, kind = case
    blocks = make_blocks(seed, m, widths, kind)
    e = true_error(blocks, r)
    loc = local(blocks, comm)
    for name, f in [
        ("weyl", bounds.weyl_bound),
        ("residual", bounds.residual_bound),
        ("estimator", bounds.estimator_bound),
    ]:
        ub = f(loc, rank=r, comm=comm)
        assert ub >= e - FLOOR, (name, ub, e, case)
        assert ub <= 1.0 + 1e-12
    # reversed block order: still bounds (they depend on the order, the truth does not)
    assert bounds.residual_bound(loc[::-1], rank=r, comm=comm) >= e - FLOOR
    assert bounds.estimator_bound(loc[::-1], rank=r, comm=comm) >= e - FLOOR
    assert abs(bounds.exact_error(loc, rank=r, comm=comm) - e) <= 1e-10


@pytest.mark.mpi
@pytest.mark.partition
@HYP
@given(case=block_sets)
def test_kyfan_never_above_true_error(case):
    comm = MPI.COMM_WORLD
    seed, m, widths, r, kind = case
    blocks = make_blocks(seed, m, widths, kind)
    assert (
        bounds.kyfan_lower_bound(local(blocks, comm), rank=r, comm=comm)
        <= true_error(blocks, r) + 1e-12
    )


def test_weyl_correct_form_uses_top_r_energy_of_wide_block(rng):
    # one block, wider than r: Weyl with J = {A_1} is exactly the block's own tail
    A = rng.standard_normal((20, 9))
    s = np.linalg.svd(A, compute_uv=False)
    expected = np.sqrt(np.sum(s[3:] ** 2) / np.sum(s**2))
    assert bounds.weyl_bound([A], rank=3) == pytest.approx(expected, rel=1e-12)


def test_published_weyl_form_is_not_a_bound(rng):
    """The published form takes ||A_1||_F^2 of the largest block as the top-r energy.

    With A_1 = 3*I (8 columns, flat spectrum) and r = 2, ||A_1||_F^2 = 72 exceeds the true
    top-2 energy 18 of the concatenation, so the "bound" falls below the true error; this is
    why rom.local.bounds uses sum_{i<=r} sigma_i(A_J)^2 instead.
    """
    A1 = 3.0 * np.eye(8)
    A2 = 0.1 * rng.standard_normal((8, 2))
    r = 2
    e = true_error([A1, A2], r)
    published = bounds.weyl_bound([A1, A2], rank=r, published=True)
    assert published < 0.5 * e  # a violation by a wide margin, not rounding
    assert bounds.weyl_bound([A1, A2], rank=r) >= e - FLOOR


@pytest.mark.mpi
@pytest.mark.partition
def test_estimator_tracks_true_error_on_transport_blocks(comm):
    blocks = advection_blocks(12, seed=5, n_cells=64)  # 192 x 67 blocks
    r = 67
    ratios = []
    loose = []
    for g in range(8):
        group = [blocks[g], blocks[g + 1], blocks[(g + 4) % 12]]
        e = true_error(group, r)
        loc = local(group, comm)
        est = bounds.estimator_bound(loc, rank=r, comm=comm)
        assert est >= e - FLOOR
        ratios.append(est / e)
        loose.append(bounds.weyl_bound(loc, rank=r, comm=comm) / e)
    assert np.median(ratios) <= 1.05
    # Weyl is the loose reference the estimator improves on (docs/theory.md §4)
    assert np.median(loose) > 2.0


@pytest.mark.mpi
@pytest.mark.partition
def test_estimator_state_tight_after_every_block_and_copies_independent(comm):
    # the estimator's state after each block against numpy's SVD of the blocks so far: an
    # upper bound (up to the sqrt(u) floor) within 10 %; the untruncated state (the "exact"
    # merge predictor) equals the exact error; a copy that takes the next block leaves the
    # original (whose modes the incremental SVD updates in place) untouched
    blocks = advection_blocks(5, seed=11, n_cells=64)  # 192 x 67 blocks
    r = 67
    est = bounds.TruncatedGramEstimator(rank=r, comm=comm)
    untruncated = bounds.TruncatedGramEstimator(rank=r, oversampling=None, comm=comm)
    for k, A in enumerate(blocks):
        loc = distribute_rows(A, comm)
        if k:
            before, modes = est.error(), est.svd_.modes_.copy()
            trial = est.copy()
            trial.add(loc)
            assert est.error() == before
            np.testing.assert_array_equal(est.svd_.modes_, modes)
        est.add(loc)
        untruncated.add(loc)
        if k:
            assert trial.error() == est.error()
        e = true_error(blocks[: k + 1], r)
        assert e - FLOOR <= est.error() <= 1.1 * e + FLOOR, (k, est.error(), e)
        assert untruncated.error() == pytest.approx(e, abs=FLOOR)
        assert est.svd_.singular_values_.size <= r + 5


@pytest.mark.mpi
@pytest.mark.partition
def test_bounds_with_mass_matrix_equal_weighted_euclidean(comm, rng):
    m, r = 18, 3
    w = rng.uniform(0.5, 2.0, m)
    blocks = [rng.standard_normal((m, n)) for n in (4, 2, 5)]
    wl = distribute_rows(w, comm)
    loc = local(blocks, comm)
    prod = lambda X: wl[:, None] * X  # noqa: E731  (diagonal mass matrix on owned rows)
    weighted = [np.sqrt(w)[:, None] * A for A in blocks]
    e = true_error(blocks, r, weights=w)
    assert bounds.exact_error(loc, rank=r, comm=comm, product=prod) == pytest.approx(e, rel=1e-10)
    for f in (bounds.weyl_bound, bounds.residual_bound, bounds.estimator_bound):
        ref = f(weighted, rank=r)
        assert f(loc, rank=r, comm=comm, product=prod) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.mpi
@pytest.mark.partition
def test_bounds_independent_of_rank_count(comm, rng):
    blocks = [rng.standard_normal((30, n)) @ np.diag(np.logspace(0, -2, n)) for n in (5, 7, 3)]
    loc = local(blocks, comm)
    for f in (
        bounds.weyl_bound,
        bounds.residual_bound,
        bounds.estimator_bound,
        bounds.kyfan_lower_bound,
        bounds.exact_error,
    ):
        assert f(loc, rank=4, comm=comm) == pytest.approx(f(blocks, rank=4), rel=1e-10)


@pytest.mark.mpi
def test_invalid_blocks_raise_on_every_rank(comm, rng):
    A = distribute_rows(rng.standard_normal((12, 3)), comm)
    bad = A.copy()
    if comm.rank == comm.size - 1:
        bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        bounds.estimator_bound([A, bad], rank=2, comm=comm)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        bounds.residual_bound([A], rank=0, comm=comm)
    with pytest.raises(ValueError, match="owned rows"):
        bounds.weyl_bound([A, np.zeros((A.shape[0] + 1, 2))], rank=2, comm=comm)
    with pytest.raises(ValueError, match="empty"):
        bounds.exact_error([], rank=2, comm=comm)
