"""Conversion of pyMOR objects at the library's input validation (optional ``pymor`` extra).

pyMOR is never imported here: objects are recognized by the module of a base class, so
``import rom`` stays free of it. A pyMOR ``VectorArray`` of length :math:`m` in a space of
dimension :math:`n` becomes the (n, m) array of its vectors as columns (``to_numpy()``, the
owned rows when each rank holds its own rows); a pyMOR ``Operator`` used as an inner product
becomes its assembled matrix when it has one (``assemble().matrix``), otherwise a callable
applying it to the columns of an array (``apply``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["affine_from_pymor", "from_pymor", "is_pymor"]


def is_pymor(obj: Any, kind: str) -> bool:
    """Whether ``obj`` is a pyMOR ``kind`` (``"VectorArray"`` or ``"Operator"``)."""
    return any(c.__name__ == kind and c.__module__.startswith("pymor.") for c in type(obj).__mro__)


def _operator(op: Any) -> Any:
    if op.parametric:
        raise TypeError(
            "a parametric pyMOR Operator cannot be an inner product; pass op.assemble(mu)"
        )
    if op.source != op.range:
        raise TypeError("a pyMOR Operator used as a product must map a space to itself")
    assembled = op.assemble()
    matrix = getattr(assembled, "matrix", None)
    if matrix is not None:
        return matrix
    space = op.source

    def apply(X: np.ndarray) -> np.ndarray:
        return assembled.apply(space.from_numpy(np.asarray(X, dtype=np.float64))).to_numpy()

    return apply


def from_pymor(obj: Any) -> Any:
    """``obj`` as this library takes it: pyMOR arrays and operators converted, rest unchanged.

    Raises
    ------
    TypeError
        For a pyMOR array or operator that cannot be converted, saying what to pass instead.
    """
    if is_pymor(obj, "VectorArray"):
        try:
            return np.asarray(obj.to_numpy())  # complex arrays are refused by the caller
        except NotImplementedError as e:  # e.g. arrays of external solvers
            raise TypeError(
                "this pyMOR VectorArray has no to_numpy(); pass a numpy array (n_local, m)"
            ) from e
    if is_pymor(obj, "Operator"):
        return _operator(obj)
    return obj


def _term(op: Any) -> Any:
    """A non-parametric pyMOR term as an array: matrix, load vector(s) or functional(s)."""
    op = op.assemble()
    if getattr(op, "matrix", None) is not None and op.source.dim != 1 and op.range.dim != 1:
        return op.matrix
    if op.source.dim == 1:  # a vector operator: the load vector
        return op.as_range_array().to_numpy()[:, 0]
    return op.as_source_array().to_numpy()  # functionals: (n, n_out)


def _coefficient(c: Any, time_dependent: bool) -> Any:
    """A pyMOR coefficient (number or ParameterFunctional) as a number or callable."""
    if not is_pymor(c, "ParameterFunctional"):
        return float(c)
    from pymor.parameters.base import Mu

    if time_dependent:
        return lambda mu, t: float(np.ravel(c.evaluate(Mu(mu).at_time(t)))[0])
    return lambda mu: float(np.ravel(c.evaluate(Mu(mu)))[0])


def affine_from_pymor(op: Any) -> Any:
    """A pyMOR ``LincombOperator`` (or non-parametric operator) as an
    :class:`rom.models.AffineDecomposition`.

    Terms are assembled once (matrices as scipy sparse or numpy, vector operators as load
    vectors, functionals as (n, n_out) arrays); coefficients stay pyMOR's parameter
    functionals, called with ``mu`` given as a mapping ``name -> value`` (a pyMOR ``Mu`` or a
    dict) or a flat array in the order of ``op.parameters``. A coefficient depending on pyMOR's
    time parameter ``t`` makes the decomposition time dependent (called as ``theta(mu, t)``).
    """
    from rom.models.affine import AffineDecomposition
    from rom.models.affine import Parameters

    if not is_pymor(op, "Operator"):
        raise TypeError(f"expected a pyMOR Operator, got {type(op).__name__}")
    ops, coeffs = (op.operators, op.coefficients) if hasattr(op, "coefficients") else ([op], [1])
    if any(o.parametric for o in ops):
        raise TypeError("terms of the pyMOR operator must be non-parametric (a LincombOperator)")
    dims = {k: v for k, v in op.parameters.items() if k != "t"}
    time_dependent = "t" in op.parameters
    return AffineDecomposition(
        [_term(o) for o in ops],
        [_coefficient(c, time_dependent) for c in coeffs],
        parameters=Parameters(dims) if dims else None,
        time_dependent=time_dependent,
    )
