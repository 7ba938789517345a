"""Declarative checks of estimator options: one constraint table per estimator.

An estimator lists its options and what each may be, e.g.::

    _OPTIONS = {
        "tol": Interval(0, 1, closed="neither"),
        "max_iter": Interval(1, None, integer=True),
        "method": Choice("fast", "accurate"),
    }

and :func:`option_error` reads the attributes of that name and returns the message of the
first option that breaks its constraint (``None`` when all hold), ready for
:func:`rom.parallel.check_collective`. Booleans are not numbers here.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Choice", "Interval", "keep_options", "kept_options", "option_error"]

_CLOSED = ("both", "left", "right", "neither")


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (ends excluded per ``closed``; ``None``: unbounded).

    ``integer`` asks for an integer, ``optional`` also admits ``None``. NaN never passes.
    """

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    integer: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        if self.closed not in _CLOSED:
            raise ValueError(f"closed must be one of {_CLOSED}, got {self.closed!r}")

    def admits(self, value: Any) -> bool:
        if value is None:
            return self.optional
        kinds = (int, np.integer) if self.integer else (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        above = self.low is None or (value >= self.low if left else value > self.low)
        below = self.high is None or (value <= self.high if right else value < self.high)
        return bool(above and below)

    def describe(self) -> str:
        """The rule as the end of "<name> must ...", e.g. ``"lie in (0, 1)"``."""
        kind = "integer" if self.integer else "number"
        if self.high is None and self.low == 0:
            sign = "non-negative" if self.closed in ("both", "left") else "positive"
            text = f"be a {sign} {kind}"
        elif self.high is None and self.low == 1 and self.integer and self.closed != "right":
            text = "be a positive integer"
        else:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            left = "[" if self.closed in ("both", "left") and self.low is not None else "("
            right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
            text = f"{'be an integer in' if self.integer else 'lie in'} {left}{lo}, {hi}{right}"
        return f"be None or {text.removeprefix('be ')}" if self.optional else text


@dataclass(frozen=True)
class Choice:
    """One of a few given values (``optional``: or ``None``)."""

    options: tuple[Any, ...]
    optional: bool = False

    def __init__(self, *options: Any, optional: bool = False) -> None:
        object.__setattr__(self, "options", tuple(options))
        object.__setattr__(self, "optional", optional)

    def admits(self, value: Any) -> bool:
        return (value is None and self.optional) or (value is not None and value in self.options)

    def describe(self) -> str:
        """The rule as the end of "<name> must ...", e.g. ``"be one of ('a', 'b')"``."""
        return f"be one of {self.options}" + (" or None" if self.optional else "")


def option_error(owner: Any, constraints: Mapping[str, Interval | Choice]) -> str | None:
    """Message for the first attribute of ``owner`` that breaks its constraint, else ``None``.

    Examples
    --------
    >>> class Estimator:
    ...     tol, method = 2.0, "fast"
    >>> option_error(Estimator(), {"tol": Interval(0, 1), "method": Choice("fast", "slow")})
    'tol must lie in [0, 1], got 2.0'
    """
    for name, constraint in constraints.items():
        value = getattr(owner, name)
        if not constraint.admits(value):
            return f"{name} must {constraint.describe()}, got {value!r}"
    return None


def keep_options(owner: Any, arguments: Mapping[str, Any]) -> None:
    """Store constructor arguments unchanged as attributes of the same names.

    The scikit-learn convention: ``__init__`` keeps its options as given and ``fit`` validates
    them (:func:`option_error`). ``arguments`` is ``locals()`` taken as the first statement of
    ``__init__``, so it holds exactly the parameters; ``self`` and names starting with ``_``
    are skipped.
    """
    for name, value in arguments.items():
        if name != "self" and not name.startswith("_"):
            setattr(owner, name, value)


def kept_options(owner: Any) -> dict[str, Any]:
    """The options :func:`keep_options` stored, by name (scikit-learn's ``get_params``).

    They are the named parameters of ``type(owner).__init__``, read back from the attributes:
    ``type(owner)(**kept_options(owner))`` builds an unfitted copy, and an estimator whose
    options are a function's keywords calls it with ``f(X, **kept_options(self))``.
    """
    parameters = inspect.signature(type(owner).__init__).parameters.values()
    return {
        p.name: getattr(owner, p.name)
        for p in parameters
        if p.name != "self"
        and not p.name.startswith("_")
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
