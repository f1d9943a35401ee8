"""Loss modules over tricks_ext.functional."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from tricks_ext import functional as F
from tricks_ext._backend import check_backend_name
from tricks_ext._checks import check_unit, is_int
from tricks_ext.nn._script import NotScriptable


def _check(name: str, reduction: str, smoothing_name: str, smoothing: float, backend: Optional[str]) -> None:
    """The loss modules' constructor checks: reduction, the smoothing in [0, 1], the backend."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be one of mean, sum, none, got {reduction!r}")
    check_unit(name, smoothing_name, smoothing)
    check_backend_name(name, backend)


class SoftTargetCrossEntropy(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``SoftTargetCrossEntropy`` (and for ``nn.CrossEntropyLoss`` with
    integer labels): targets may be :class:`tricks_ext.data.MixedTargets`, integer labels or a
    dense (N, C) tensor; see :func:`tricks_ext.functional.soft_target_cross_entropy`."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100,
                 backend: Optional[str] = None) -> None:
        super().__init__()
        name = type(self).__name__
        _check(name, reduction, "label_smoothing", label_smoothing, backend)
        if not is_int(ignore_index):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.reduction, self.label_smoothing, self.ignore_index = reduction, label_smoothing, ignore_index
        self.backend = backend

    def forward(self, logits: Tensor, targets: object) -> Tensor:
        return F.soft_target_cross_entropy(logits, targets, self.reduction, self.label_smoothing, self.ignore_index,
                                           backend=self.backend)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class SoftTargetBCE(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``BinaryCrossEntropy(smoothing, target_threshold, pos_weight=...,
    reduction=...)``: targets may be :class:`tricks_ext.data.MixedTargets`, integer labels or a
    dense (N, C) tensor; see :func:`tricks_ext.functional.soft_target_binary_cross_entropy`.
    ``pos_weight`` is kept as a buffer, as timm keeps it (timm's per-class ``weight`` and
    ``sum_classes`` are not supported)."""

    def __init__(self, smoothing: float = 0.1, target_threshold: Optional[float] = None,
                 pos_weight: Union[Tensor, float, None] = None, reduction: str = "mean",
                 backend: Optional[str] = None) -> None:
        super().__init__()
        name = type(self).__name__
        _check(name, reduction, "smoothing", smoothing, backend)
        if smoothing >= 1.0:
            raise ValueError(f"{name}: smoothing must be in [0, 1), got {smoothing!r}")
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            pos_weight = torch.tensor(float(pos_weight))
        self.smoothing, self.target_threshold, self.reduction = float(smoothing), target_threshold, reduction
        self.register_buffer("pos_weight", pos_weight)
        self.backend = backend

    def forward(self, logits: Tensor, targets: object) -> Tensor:
        return F.soft_target_binary_cross_entropy(logits, targets, self.smoothing, self.target_threshold,
                                                  self.pos_weight, self.reduction, backend=self.backend)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, target_threshold={self.target_threshold}, reduction={self.reduction!r}"
