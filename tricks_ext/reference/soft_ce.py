"""Soft-target cross-entropy in plain PyTorch: the specification of the fused loss.

Per row, loss_i = -sum_c t_ic log_softmax(z_i)_c (timm ``SoftTargetCrossEntropy`` before its
mean), with t dense, or built from labels: mixed (a, b, lam) as timm ``mixup_target``, or hard
labels a with label smoothing s (torch ``cross_entropy(label_smoothing=s)``; a row labelled
``ignore_index`` has loss 0). A label outside [0, C) gives that row a NaN loss.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from tricks_ext.reference.mixup import mixed_targets


def soft_ce_rows(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], smoothing: float, ignore_index: int) -> Tensor:
    """Per-row losses in fp32 (fp64 for fp64 logits)."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(logits.to(acc), dim=-1)
    if dense is not None:
        return -(dense.to(acc) * logp).sum(-1)
    classes = logits.shape[-1]
    if b is None:
        ignored = a == ignore_index
        b, lam = a, torch.ones(a.shape, dtype=torch.float32, device=a.device)
    else:
        ignored = torch.zeros_like(a, dtype=torch.bool)
    invalid = ~ignored & ((a < 0) | (a >= classes) | (b < 0) | (b >= classes))
    safe = ignored | invalid
    zero = torch.zeros_like(a)
    t = mixed_targets(torch.where(safe, zero, a), torch.where(safe, zero, b), lam, smoothing, classes)
    loss = -(t.to(acc) * logp).sum(-1)
    loss = torch.where(ignored, torch.zeros((), dtype=acc, device=loss.device), loss)
    return torch.where(invalid, torch.full((), float("nan"), dtype=acc, device=loss.device), loss)


def reduce_rows(rows: Tensor, a: Optional[Tensor], b: Optional[Tensor], ignore_index: int, reduction: str,
                dtype: torch.dtype) -> Tensor:
    """The loss from per-row losses, in ``dtype``: 'none', 'sum', or 'mean' (torch
    ``cross_entropy``: over the rows not ignored for hard labels, a without b; NaN when all
    are; over all rows otherwise)."""
    if reduction == "none":
        return rows.to(dtype)
    total = rows.sum()
    if reduction == "mean":
        total = total / mean_divisor(a, b, ignore_index, rows.shape[0])
    return total.to(dtype)


def mean_divisor(a: Optional[Tensor], b: Optional[Tensor], ignore_index: int, rows: int) -> Union[Tensor, int]:
    """What 'mean' divides by: the rows not ignored for hard labels (a without b), else all rows."""
    return (a != ignore_index).sum() if a is not None and b is None else rows


def timm_soft_target_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """timm ``SoftTargetCrossEntropy``: mean over rows of sum(-target * log_softmax(x, -1))."""
    return torch.sum(-target * torch.log_softmax(logits, dim=-1), dim=-1).mean()
