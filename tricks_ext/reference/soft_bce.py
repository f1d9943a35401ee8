"""Soft-target binary cross-entropy in plain PyTorch: the specification of the fused loss.

timm ``BinaryCrossEntropy`` (torch ``binary_cross_entropy_with_logits`` against one-hot, mixed
or dense targets), per element of logits z and target t:
``loss = (1 - t) z + lw (log1p(exp(-|z|)) + max(-z, 0))`` with ``lw = 1 + (pos_weight - 1) t``.
Targets: dense (N, C); hard labels a as timm's smoothed one-hot (off s/C, on 1 - s + s/C); mixed
(a, b, lam) as timm ``mixup_target`` (label_smoothing s of the mix). ``target_threshold``: t becomes
``t > target_threshold`` (1 or 0). Class weights w (C,) scale each element's loss (torch's
``weight=`` broadcast over the rows). A label outside [0, C) makes its row's losses and gradients
NaN. 'mean' averages over the N * C elements.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype
from tricks_ext.targets import mixed_targets


def soft_bce_targets(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                     dense: Optional[Tensor], label_smoothing: float, target_threshold: Optional[float]) -> Tensor:
    """The dense (N, C) targets in fp32 (fp64 for fp64 logits), thresholded; rows with an invalid
    label get their label clamped (they are poisoned with NaN by :func:`soft_bce_elements`)."""
    acc = stats_dtype(logits.dtype)
    if dense is not None:
        t = dense.to(acc)
    else:
        classes = logits.shape[-1]
        if b is None:
            b, lam = a, torch.ones(a.shape, dtype=torch.float32, device=a.device)
        safe = lambda v: v.clamp(0, classes - 1)  # noqa: E731
        t = mixed_targets(safe(a), safe(b), lam, label_smoothing, classes, acc)
    if target_threshold is not None:
        t = (t > target_threshold).to(acc)
    return t


def invalid_rows(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor]) -> Tensor:
    """Rows whose label (or partner label) is outside [0, C)."""
    classes = logits.shape[-1]
    if a is None:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    b = a if b is None else b
    return (a < 0) | (a >= classes) | (b < 0) | (b >= classes)


def soft_bce_elements(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                      dense: Optional[Tensor], pos_weight: Optional[Tensor], weight: Optional[Tensor],
                      label_smoothing: float, target_threshold: Optional[float]) -> Tensor:
    """Per-element losses (N, C) in fp32 (fp64 for fp64 logits)."""
    acc = stats_dtype(logits.dtype)
    z = logits.to(acc)
    t = soft_bce_targets(logits, a, b, lam, dense, label_smoothing, target_threshold)
    lw = 1.0 if pos_weight is None else 1.0 + (pos_weight.to(acc) - 1.0) * t
    loss = (1.0 - t) * z + lw * (torch.log1p(torch.exp(-z.abs())) + torch.clamp(-z, min=0.0))
    if weight is not None:
        loss = loss * weight.to(acc)
    invalid = invalid_rows(logits, a, b)[:, None]
    # NaN loss and NaN gradient on an invalid row, 0 added elsewhere even where z is not finite
    poison = torch.where(invalid, z, 0.0) * torch.where(invalid, float("nan"), 0.0).to(acc)
    return torch.where(invalid, float("nan"), loss) + poison


def reduce_elements(elements: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    """'none' (N, C), 'sum', or 'mean' over all N * C elements, in ``dtype``."""
    if reduction == "none":
        return elements.to(dtype)
    total = elements.sum()
    if reduction == "mean":
        total = total / elements.numel()
    return total.to(dtype)
