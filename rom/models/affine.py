"""Named parameters and affine parameter decompositions.

An affine decomposition represents a parameter-dependent quantity (matrix, load vector or
output functional) as

.. math::

    X(\\mu, t) = \\sum_{q=1}^{Q} \\theta_q(\\mu, t)\\, X_q ,

with parameter-independent terms :math:`X_q` and scalar coefficient functions
:math:`\\theta_q`. Only the coefficients are evaluated online; the terms are projected once.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["AffineDecomposition", "Parameters"]


class Parameters:
    """Ordered named parameter components, e.g. ``Parameters({"diffusion": 4, "top": 1})``.

    A parameter value :math:`\\mu` is given either as a mapping ``name -> value`` (each value of
    its declared size) or as one flat array, the components concatenated in declaration order.
    """

    def __init__(self, dims: Mapping[str, int]) -> None:
        self.dims = {str(k): int(v) for k, v in dims.items()}
        if any(v < 1 for v in self.dims.values()):
            raise ValueError(f"parameter sizes must be >= 1, got {self.dims}")

    @property
    def size(self) -> int:
        """Total number of scalar components."""
        return sum(self.dims.values())

    def parse(self, mu: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
        """The value as a dict ``name -> float64 array of its size`` (validated, finite)."""
        if isinstance(mu, Mapping) or hasattr(mu, "keys"):  # dicts, pyMOR's Mu
            if set(mu.keys()) != set(self.dims):
                raise ValueError(
                    f"expected parameters {sorted(self.dims)}, got {sorted(mu.keys())}"
                )
            out = {k: np.asarray(mu[k], dtype=np.float64).ravel() for k in self.dims}
        else:
            flat = np.asarray(mu, dtype=np.float64).ravel()
            if flat.size != self.size:
                raise ValueError(f"expected {self.size} parameter values, got {flat.size}")
            bounds = np.cumsum([0, *self.dims.values()])
            out = {k: flat[a:b] for k, a, b in zip(self.dims, bounds[:-1], bounds[1:])}
        for k, v in out.items():
            if v.size != self.dims[k]:
                raise ValueError(f"parameter {k!r} needs {self.dims[k]} values, got {v.size}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"parameter {k!r} contains NaN or Inf")
        return out

    def to_array(self, mu: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """The value as one flat array in declaration order."""
        return np.concatenate(list(self.parse(mu).values()))


Coefficient = float | Callable[..., float]


class AffineDecomposition:
    """:math:`X(\\mu, t) = \\sum_q \\theta_q(\\mu, t) X_q` (module doc).

    Parameters
    ----------
    terms : sequence
        The terms :math:`X_q` (arrays, sparse matrices or callables acting on owned rows).
    coefficients : callable or sequence, optional
        Either one callable returning all :math:`(\\theta_q)_q`, or one entry per term, each a
        number or a callable. Callables receive ``mu`` (parsed to a dict when ``parameters`` is
        given) and, when ``time_dependent``, the time ``t`` as second argument. Without
        coefficients they must be given explicitly at evaluation.
    parameters : Parameters, optional
        Parses ``mu`` before it reaches the callables.
    time_dependent : bool
        Whether the coefficients depend on time: callables are called as ``theta(mu, t)``.
    """

    def __init__(
        self,
        terms: Sequence[Any],
        coefficients: Callable[..., Any] | Sequence[Coefficient] | None = None,
        *,
        parameters: Parameters | None = None,
        time_dependent: bool = False,
    ) -> None:
        self.terms = list(terms)
        if not callable(coefficients) and coefficients is not None:
            coefficients = list(coefficients)
            if len(coefficients) != len(self.terms):
                raise ValueError(
                    f"{len(self.terms)} terms but {len(coefficients)} coefficient functions"
                )
        self.coefficients = coefficients
        self.parameters = parameters
        self.time_dependent = bool(time_dependent)

    @classmethod
    def from_pairs(
        cls, pairs: Sequence[tuple[Any, Coefficient]], **kwargs: Any
    ) -> AffineDecomposition:
        """From ``[(X_1, theta_1), (X_2, theta_2), ...]``."""
        return cls([p[0] for p in pairs], [p[1] for p in pairs], **kwargs)

    def __len__(self) -> int:
        return len(self.terms)

    def with_terms(self, terms: Sequence[Any]) -> AffineDecomposition:
        """Same coefficients, new terms (e.g. projected ones)."""
        if len(terms) != len(self.terms):
            raise ValueError(f"expected {len(self.terms)} terms, got {len(terms)}")
        return AffineDecomposition(
            terms,
            self.coefficients,
            parameters=self.parameters,
            time_dependent=self.time_dependent,
        )

    def _call(self, fn: Callable[..., Any], mu: Any, t: float | None) -> Any:
        return fn(mu, t) if self.time_dependent else fn(mu)

    def evaluate(self, mu: Any = None, t: float | None = None, *, given: Any = None) -> np.ndarray:
        """Coefficients :math:`(\\theta_q(\\mu, t))_q`, validated; ``given`` overrides them."""
        if given is None:
            c = self.coefficients
            if c is None or (mu is None and (callable(c) or any(map(callable, c)))):
                raise ValueError("give mu (with coefficient functions set) or the coefficients")
            if self.time_dependent and t is None:
                raise ValueError("time-dependent coefficients need a time t")
            m = self.parameters.parse(mu) if self.parameters is not None else mu
            if callable(self.coefficients):
                given = self._call(self.coefficients, m, t)
            else:
                given = [self._call(c, m, t) if callable(c) else c for c in self.coefficients]
        theta = np.asarray(given, dtype=np.float64).ravel()
        if theta.shape != (len(self.terms),):
            raise ValueError(f"expected {len(self.terms)} coefficients, got {theta.size}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("parameter coefficients contain NaN or Inf")
        return theta

    def combine(self, theta: np.ndarray) -> Any:
        """:math:`\\sum_q \\theta_q X_q` for array terms and given coefficients."""
        return sum(c * x for c, x in zip(theta, self.terms, strict=True))
