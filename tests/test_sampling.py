"""Latin-hypercube sampling: stratified, inside the box, reproducible."""

import numpy as np
import pytest

from rom.sampling import latin_hypercube


def test_each_parameter_has_one_point_per_bin():
    ranges = np.array([[5.0, 50.0], [0.5, 5.0], [10.0, 200.0]])
    n = 17
    P = latin_hypercube(ranges, n, seed=3)
    assert P.shape == (n, 3)
    for j, (lo, hi) in enumerate(ranges):
        bins = np.floor((P[:, j] - lo) / (hi - lo) * n).astype(int)
        np.testing.assert_array_equal(np.sort(bins), np.arange(n))


def test_same_seed_same_points_other_seed_other_points():
    r = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(latin_hypercube(r, 5, seed=1), latin_hypercube(r, 5, seed=1))
    assert not np.allclose(latin_hypercube(r, 5, seed=1), latin_hypercube(r, 5, seed=2))


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="low <= high"):
        latin_hypercube(np.array([[1.0, 0.0]]), 3)
    with pytest.raises(ValueError, match="n must be"):
        latin_hypercube(np.array([[0.0, 1.0]]), 0)


def test_log_scale_is_stratified_in_log_space():
    ranges = np.array([[1.0, 100.0], [0.0, 1.0]])
    n = 10
    P = latin_hypercube(ranges, n, seed=5, log_scale=[True, False])
    bins = np.floor(np.log10(P[:, 0]) / 2.0 * n).astype(int)
    np.testing.assert_array_equal(np.sort(bins), np.arange(n))
    assert np.all((P[:, 0] >= 1.0) & (P[:, 0] <= 100.0))
    with pytest.raises(ValueError, match="low > 0"):
        latin_hypercube(np.array([[0.0, 1.0]]), 3, log_scale=[True])
