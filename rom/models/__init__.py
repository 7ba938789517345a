"""Galerkin reduced models built from assembled operators."""

from rom.models.affine import AffineDecomposition, Parameters
from rom.models.galerkin import LinearAffineROM, project_operator, project_vector, space_time_error

__all__ = [
    "AffineDecomposition",
    "LinearAffineROM",
    "Parameters",
    "project_operator",
    "project_vector",
    "space_time_error",
]
