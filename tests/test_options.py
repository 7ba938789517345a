"""rom.options: the constraint table behind the estimators' option checks."""

from __future__ import annotations

import inspect
import math
import re
from ast import literal_eval as eval_literal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import rom
from rom.local.merge_clustering import ErrorConstrainedClustering
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


# --------------------------------------------------------------------------- the documented tables
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
_X = np.random.default_rng(5).standard_normal((30, 6))  # m = 6 snapshots
_X12 = np.random.default_rng(6).standard_normal((30, 12))  # n = 12 items for LocalBases


def _literal(text: str):
    """A refused example of the tables: a Python literal, or ``nan`` / ``inf``."""
    return (
        {"nan": math.nan, "inf": math.inf}[text] if text in ("nan", "inf") else eval_literal(text)
    )


def _documented() -> dict[str, list[tuple[str, object]]]:
    """``{title: [(option, refused value), ...]}`` from the "Allowed values" section."""
    section = DOC.read_text().split("\n## Allowed values\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, object]]] = {}
    for block in section.split("\n### ")[1:]:
        title, *lines = block.splitlines()
        rows = [ln.strip("|").split("|") for ln in lines if ln.startswith("| `")]
        tables[title.strip()] = [
            (cells[0].split("`")[1], _literal(v))
            for cells in rows
            for v in re.findall(r"`([^`]*)`", cells[2])
        ]
    return tables


def _on_hapods(option, value):
    """Every HAPOD function that takes ``option`` refuses ``value``."""
    fns = {
        "hapod": lambda **kw: rom.hapod([_X[:, :3], _X[:, 3:]], **kw),
        "dist_hapod": lambda **kw: rom.dist_hapod(_X, **kw),
        "inc_hapod": lambda **kw: rom.inc_hapod(_X, **kw),
    }
    takers = [n for n in fns if option in inspect.signature(getattr(rom, n)).parameters]
    assert takers, option
    for name in takers:
        with pytest.raises(ValueError, match=re.escape(option)):
            fns[name](**{"eps": 0.1, option: value})
    raise ValueError(f"{option}: refused by {takers}")


def _adaptive(option, value):
    est = rom.AdaptiveROM()
    err = option_error(SimpleNamespace(**{**kept_options(est), option: value}), est._OPTIONS)
    if err:
        raise ValueError(err)


def _isvd(option, value):
    if option == "chunk":
        rom.IncrementalSVD().fit(_X, chunk=value)
    else:
        rom.IncrementalSVD(**{option: value}).fit(_X)


def _pod(option, value):
    with pytest.raises(ValueError, match=re.escape(option)):
        rom.POD(**{option: value}).fit(_X)
    rom.pod(_X, **{option: value})


CALLS = {
    "`pod` and `POD`": _pod,
    "`IncrementalSVD`": _isvd,
    "`compress`": lambda o, v: rom.compress(_X, **{o: v}),
    "`randomized_svd`": lambda o, v: rom.randomized_svd(_X, **{"rank": 2, o: v}),
    "`hapod`, `dist_hapod`, `inc_hapod`": _on_hapods,
    "`KMedoids`": lambda o, v: rom.KMedoids(**{"n_clusters": 2, o: v}).fit(
        rom.sine_dissimilarity(_X)
    ),
    "`LocalBases`": lambda o, v: rom.LocalBases(**{"rank": 2, o: v}).fit(_X12),
    "`ErrorConstrainedClustering`": lambda o, v: ErrorConstrainedClustering(
        **{"rank": 2, "eps": 0.5, o: v}
    ).fit([_X12[:, :4], _X12[:, 4:8], _X12[:, 8:]]),
    "`AdaptiveROM`": _adaptive,
}
TABLES = _documented()
CASES = [(t, o, v) for t, rows in TABLES.items() for o, v in rows]


def test_every_estimator_has_its_table():
    assert set(TABLES) == set(CALLS)
    assert all(TABLES.values())
    assert len(CASES) == 97  # the count stated under "Totals" in docs/reliability.md


@pytest.mark.parametrize(("title", "option", "value"), CASES, ids=lambda x: repr(x)[:40])
def test_documented_refusals_are_errors_naming_the_option(title, option, value):
    with pytest.raises(ValueError, match=re.escape(option)) as info:
        CALLS[title](option, value)
    assert "\n" not in str(info.value)
