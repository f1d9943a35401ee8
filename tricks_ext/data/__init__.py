"""Batch transforms: Mixup/CutMix with compact mixed targets."""
from tricks_ext.data.mixup import MixedTargets, MixParams, Mixup

__all__ = ["MixedTargets", "MixParams", "Mixup"]
