"""Soft-target cross-entropy in plain PyTorch: the specification of the fused loss.

Per row, loss_i = -sum_c t_ic log_softmax(z_i)_c (timm ``SoftTargetCrossEntropy`` before its
mean), with t dense, or built from labels: mixed (a, b, lam) as timm ``mixup_target``, or hard
labels a with label label_smoothing s (torch ``cross_entropy(label_smoothing=s)``; a row labelled
``ignore_index`` has loss 0). A label outside [0, C) gives that row a NaN loss and gradient. A class whose
target weight is 0 takes no part (0 * -inf counts as 0), so logits masked with -inf give
torch's label-target value; torch's dense-target path would give NaN there.
Class weights w (C,) scale every target: t_ic becomes w_c t_ic (torch ``cross_entropy(weight=w)``,
whose label-smoothing term is weighted the same way), and 'mean' over hard labels divides by the
sum of w over the labels of the rows not ignored, as torch does.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype

from tricks_ext.targets import mixed_targets


def soft_ce_rows(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float, ignore_index: int) -> Tensor:
    """Per-row losses in fp32 (fp64 for fp64 logits)."""
    acc = stats_dtype(logits.dtype)
    w = 1.0 if weight is None else weight.to(acc)
    if dense is not None:
        return -_weighted(dense.to(acc) * w, torch.log_softmax(logits.to(acc), dim=-1)).sum(-1)
    classes = logits.shape[-1]
    if b is None:
        ignored = a == ignore_index
        b, lam = a, torch.ones(a.shape, dtype=torch.float32, device=a.device)
    else:
        ignored = torch.zeros_like(a, dtype=torch.bool)
    # An ignored row takes no part, whatever its logits: loss 0 and gradient 0 even where they
    # are not finite (torch's gradient is NaN there, from its softmax).
    logp = torch.log_softmax(torch.where(ignored[:, None], 0.0, logits.to(acc)), dim=-1)
    invalid = ~ignored & ((a < 0) | (a >= classes) | (b < 0) | (b >= classes))
    safe = ignored | invalid
    zero = torch.zeros_like(a)
    t = mixed_targets(torch.where(safe, zero, a), torch.where(safe, zero, b), lam, label_smoothing, classes, acc)
    loss = -_weighted(t * w, logp).sum(-1)
    loss = torch.where(ignored, torch.zeros((), dtype=acc, device=loss.device), loss)
    # An invalid row's loss is NaN and so is its gradient (as in the kernels): NaN times the
    # row's logits, which are zeroed in the valid rows so that they see a finite 0 there.
    nan = torch.where(invalid, float("nan"), 0.0).to(acc)
    poison = torch.where(invalid[:, None], logits.to(acc), 0.0).sum(-1) * nan
    return torch.where(invalid, float("nan"), loss) + poison


def _weighted(t: Tensor, logp: Tensor) -> Tensor:
    """t * logp, 0 where t is 0 and logp = -inf (a logit masked with -inf): a class the target
    does not weigh takes no part, as in torch ``cross_entropy`` with labels. A NaN logp (a row
    holding +inf or only -inf) stays NaN."""
    return torch.where((t == 0) & (logp == -torch.inf), torch.zeros((), dtype=logp.dtype, device=logp.device), t * logp)


def reduce_rows(rows: Tensor, a: Optional[Tensor], b: Optional[Tensor], weight: Optional[Tensor], ignore_index: int,
                reduction: str, dtype: torch.dtype) -> Tensor:
    """The loss from per-row losses, in ``dtype``: 'none', 'sum', or 'mean' (torch
    ``cross_entropy``: over the rows not ignored for hard labels, a without b, each counted by its
    label's class weight; NaN when all are ignored; over all rows otherwise)."""
    if reduction == "none":
        return rows.to(dtype)
    total = rows.sum()
    if reduction == "mean":
        total = total / mean_divisor(a, b, weight, ignore_index, rows.shape[0])
    return total.to(dtype)


def mean_divisor(a: Optional[Tensor], b: Optional[Tensor], weight: Optional[Tensor], ignore_index: int,
                 rows: int) -> Union[Tensor, int]:
    """What 'mean' divides by: for hard labels (a without b) the rows not ignored, or with class
    weights the sum of their labels' weights (a label out of range counts its clamped class: its
    row's loss is NaN anyway); else all rows."""
    if a is None or b is not None:
        return rows
    kept = a != ignore_index
    if weight is None:
        return kept.sum()
    return torch.where(kept, weight[a.clamp(0, weight.shape[0] - 1)], 0).to(stats_dtype(weight.dtype)).sum()


def timm_soft_target_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """timm ``SoftTargetCrossEntropy``: mean over rows of sum(-target * log_softmax(x, -1))."""
    return torch.sum(-target * torch.log_softmax(logits, dim=-1), dim=-1).mean()
