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

__all__ = ["from_pymor", "is_pymor"]


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
