"""rom.options: the constraint table behind the estimators' option checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rom.options import Choice
from rom.options import Interval
from rom.options import keep_options
from rom.options import kept_options
from rom.options import option_error


@pytest.mark.parametrize(
    ("constraint", "admitted", "refused"),
    [
        (Interval(0, 1, closed="neither"), [0.5, 1e-12], [0, 1, math.nan, True, "0.5", None]),
        (Interval(0, 1, closed="left", optional=True), [None, 0, 0.99], [1, -1e-300, math.nan]),
        (Interval(0, None), [0, 3, math.inf, np.float32(2)], [-1, math.nan, False]),
        (Interval(1, None, integer=True), [1, np.int64(7)], [0, 1.0, True, None]),
        (Interval(1, 4, integer=True), [1, 4], [0, 5, 2.5]),
        (Choice("a", "b", optional=True), ["a", None], ["c", 0]),
    ],
)
def test_constraints_admit_exactly_their_values(constraint, admitted, refused):
    assert all(constraint.admits(v) for v in admitted)
    assert not any(constraint.admits(v) for v in refused)


def test_option_error_names_the_first_broken_option_and_its_rule():
    class Estimator:
        tol, max_iter, method = 0.5, 0, "slow"

    table = {
        "tol": Interval(0, 1, closed="neither"),
        "max_iter": Interval(1, None, integer=True),
        "method": Choice("fast"),
    }
    assert option_error(Estimator(), table) == "max_iter must be a positive integer, got 0"
    Estimator.max_iter = 3
    assert option_error(Estimator(), table) == "method must be one of ('fast',), got 'slow'"
    Estimator.method = "fast"
    assert option_error(Estimator(), table) is None
    with pytest.raises(ValueError, match="closed must be one of"):
        Interval(0, 1, closed="open")


def test_kept_options_read_back_what_keep_options_stored():
    """The constructor's named parameters, as given; ``type(e)(**kept_options(e))`` rebuilds."""

    class Estimator:
        def __init__(self, rank, *, tol=0.5, product=None, _private=1, **extra):
            keep_options(self, locals())
            self.fitted_ = True

    product = object()
    est = Estimator(3, tol=0.25, product=product, other=2)
    options = kept_options(est)
    assert options == {"rank": 3, "tol": 0.25, "product": product}
    assert options["product"] is product
    assert kept_options(Estimator(**options)) == options
