"""Adaptive hyper-reduction: empirical cubature, QDEIM points, the hyper-reduced model, the
error indicator and indicator-triggered enrichment."""

from rom.adaptive.cubature import CubatureResult, empirical_cubature
from rom.adaptive.enrichment import AdaptiveROM, AdaptiveRun, FullState
from rom.adaptive.hyperreduced import (
    ConstitutiveLaw,
    HyperReducedModel,
    ReducedState,
    ReducedStepInfo,
    build_hyperreduced,
    internal_force_cubature,
)
from rom.adaptive.indicator import CalibrationResult, GappyIndicator, calibrate
from rom.adaptive.points import gather_at_points, global_offset, leverage_points, qdeim

__all__ = [
    "AdaptiveROM",
    "AdaptiveRun",
    "CalibrationResult",
    "ConstitutiveLaw",
    "CubatureResult",
    "FullState",
    "GappyIndicator",
    "HyperReducedModel",
    "ReducedState",
    "ReducedStepInfo",
    "build_hyperreduced",
    "calibrate",
    "empirical_cubature",
    "gather_at_points",
    "global_offset",
    "internal_force_cubature",
    "leverage_points",
    "qdeim",
]
