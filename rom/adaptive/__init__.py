"""Adaptive hyper-reduction: empirical cubature, QDEIM points, the hyper-reduced model, the
error indicator, indicator-triggered enrichment and a dictionary of local adaptive models."""

from rom.adaptive.cubature import CubatureResult
from rom.adaptive.cubature import empirical_cubature
from rom.adaptive.cubature import internal_force_cubature
from rom.adaptive.dictionary import DictionaryRun
from rom.adaptive.dictionary import LocalAdaptiveROMs
from rom.adaptive.enrichment import AdaptiveROM
from rom.adaptive.history import AdaptiveRun
from rom.adaptive.history import FullState
from rom.adaptive.hyperreduced import ConstitutiveLaw
from rom.adaptive.hyperreduced import HyperReducedModel
from rom.adaptive.hyperreduced import ReducedState
from rom.adaptive.hyperreduced import ReducedStepInfo
from rom.adaptive.hyperreduced import build_hyperreduced
from rom.adaptive.indicator import CalibrationResult
from rom.adaptive.indicator import GappyIndicator
from rom.adaptive.indicator import calibrate
from rom.adaptive.points import gather_at_points
from rom.adaptive.points import global_offset
from rom.adaptive.points import leverage_points
from rom.adaptive.points import qdeim
from rom.adaptive.signals import SIGNALS
from rom.adaptive.signals import SampledResidual

__all__ = [
    "AdaptiveROM",
    "AdaptiveRun",
    "CalibrationResult",
    "ConstitutiveLaw",
    "CubatureResult",
    "DictionaryRun",
    "FullState",
    "GappyIndicator",
    "HyperReducedModel",
    "LocalAdaptiveROMs",
    "ReducedState",
    "ReducedStepInfo",
    "SIGNALS",
    "SampledResidual",
    "build_hyperreduced",
    "calibrate",
    "empirical_cubature",
    "gather_at_points",
    "global_offset",
    "internal_force_cubature",
    "leverage_points",
    "qdeim",
]
