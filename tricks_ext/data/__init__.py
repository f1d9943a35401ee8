"""Batch transforms: Mixup/CutMix with compact mixed targets."""
