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


def _class_weights(name: str, weight: Optional[Tensor]) -> Optional[Tensor]:
    """A loss module's class weights, checked once here (the forward does not read the device):
    a floating 1-D tensor of finite values >= 0."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or not weight.dtype.is_floating_point or weight.dim() != 1:
        raise TypeError(f"{name}: weight must be a 1-D floating tensor of C class weights, got {weight!r}")
    if not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise ValueError(f"{name}: weight must hold finite values >= 0")
    return weight.detach()


class SoftTargetCrossEntropy(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``SoftTargetCrossEntropy`` (and for ``nn.CrossEntropyLoss`` with
    integer labels): targets may be :class:`tricks_ext.data.MixedTargets`, integer labels or a
    dense (N, C) tensor; see :func:`tricks_ext.functional.soft_target_cross_entropy`.
    ``weight``: C class weights, kept as a buffer as ``nn.CrossEntropyLoss`` keeps it."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0, ignore_index: int = -100,
                 backend: Optional[str] = None, *, weight: Optional[Tensor] = None) -> None:
        super().__init__()
        name = type(self).__name__
        _check(name, reduction, "label_smoothing", label_smoothing, backend)
        if not is_int(ignore_index):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.reduction, self.label_smoothing, self.ignore_index = reduction, label_smoothing, ignore_index
        self.register_buffer("weight", _class_weights(name, weight))
        self.backend = backend

    def forward(self, logits: Tensor, targets: object) -> Tensor:
        return F.soft_target_cross_entropy(logits, targets, self.reduction, self.label_smoothing, self.ignore_index,
                                           backend=self.backend, weight=self.weight)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class SoftTargetBCE(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``BinaryCrossEntropy(smoothing, target_threshold, pos_weight=...,
    reduction=...)``: targets may be :class:`tricks_ext.data.MixedTargets`, integer labels or a
    dense (N, C) tensor; see :func:`tricks_ext.functional.soft_target_binary_cross_entropy`.
    ``pos_weight`` and the class weights ``weight`` are kept as buffers, as timm keeps them
    (timm's ``sum_classes`` is not supported)."""

    def __init__(self, smoothing: float = 0.1, target_threshold: Optional[float] = None,
                 pos_weight: Union[Tensor, float, None] = None, reduction: str = "mean",
                 backend: Optional[str] = None, *, weight: Optional[Tensor] = None) -> None:
        super().__init__()
        name = type(self).__name__
        _check(name, reduction, "smoothing", smoothing, backend)
        if smoothing >= 1.0:
            raise ValueError(f"{name}: smoothing must be in [0, 1), got {smoothing!r}")
        if pos_weight is not None and not isinstance(pos_weight, Tensor):
            pos_weight = torch.tensor(float(pos_weight))
        self.smoothing, self.target_threshold, self.reduction = float(smoothing), target_threshold, reduction
        self.register_buffer("pos_weight", pos_weight)
        self.register_buffer("weight", _class_weights(name, weight))
        self.backend = backend

    def forward(self, logits: Tensor, targets: object) -> Tensor:
        return F.soft_target_binary_cross_entropy(logits, targets, self.smoothing, self.target_threshold,
                                                  self.pos_weight, self.reduction, backend=self.backend,
                                                  weight=self.weight)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}, target_threshold={self.target_threshold}, reduction={self.reduction!r}"


class SoftF1Loss(NotScriptable, torch.nn.Module):
    """The soft F-beta loss of :func:`tricks_ext.functional.soft_f1_loss` from logits, as a
    module (pytorch-optimizer's ``SoftF1Loss(beta, eps)`` takes probabilities and is the
    ``average="micro"`` form)."""

    def __init__(self, average: str = "macro", beta: float = 1.0, eps: float = 1e-6,
                 multi_label: Optional[bool] = None, backend: Optional[str] = None) -> None:
        super().__init__()
        name = type(self).__name__
        if average not in ("macro", "micro"):
            raise ValueError(f"{name}: average must be 'macro' or 'micro', got {average!r}")
        check_backend_name(name, backend)
        self.average, self.beta, self.eps, self.multi_label, self.backend = average, beta, eps, multi_label, backend

    def forward(self, logits: Tensor, targets: object) -> Tensor:
        return F.soft_f1_loss(logits, targets, self.average, self.beta, self.eps, self.multi_label,
                              backend=self.backend)

    def extra_repr(self) -> str:
        return f"average={self.average!r}, beta={self.beta}, eps={self.eps}"
