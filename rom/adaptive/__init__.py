"""Adaptive hyper-reduction: empirical cubature, QDEIM points, the hyper-reduced model, the
error indicator and indicator-triggered enrichment."""

from rom.adaptive.cubature import CubatureResult, empirical_cubature
from rom.adaptive.enrichment import AdaptiveROM, AdaptiveRun
from rom.adaptive.hyperreduced import HyperReducedModel, build_hyperreduced
from rom.adaptive.indicator import CalibrationResult, GappyIndicator, calibrate
from rom.adaptive.points import leverage_points, qdeim

__all__ = [
    "AdaptiveROM",
    "AdaptiveRun",
    "CalibrationResult",
    "CubatureResult",
    "GappyIndicator",
    "HyperReducedModel",
    "build_hyperreduced",
    "calibrate",
    "empirical_cubature",
    "leverage_points",
    "qdeim",
]
