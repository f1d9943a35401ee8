"""Batch transforms: Mixup/CutMix with compact mixed targets."""
from tricks_ext.data.mixup import MixParams, Mixup
from tricks_ext.targets import MixedTargets

__all__ = ["MixedTargets", "MixParams", "Mixup"]
