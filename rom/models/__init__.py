"""Galerkin reduced models built from assembled operators."""

from rom.models.affine import AffineDecomposition
from rom.models.affine import Parameters
from rom.models.galerkin import LinearAffineROM
from rom.models.galerkin import project_operator
from rom.models.galerkin import project_vector
from rom.models.galerkin import space_time_error

__all__ = [
    "AffineDecomposition",
    "LinearAffineROM",
    "Parameters",
    "project_operator",
    "project_vector",
    "space_time_error",
]
