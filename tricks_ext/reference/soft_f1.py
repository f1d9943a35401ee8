"""Soft F1 in plain PyTorch: the specification of the fused loss.

From logits z (N, C): probabilities p = sigmoid(z) (multi-label) or softmax(z) over the row
(multi-class), targets t dense (N, C) or one-hot of labels a (a label outside [0, C) makes its
row's targets NaN, so the loss is NaN, as the kernels give it without a host sync). Per class c
the soft counts over the batch are TP_c = sum_i t_ic p_ic, FP_c = sum_i (1 - t_ic) p_ic and
FN_c = sum_i t_ic (1 - p_ic), and

    P = TP / (TP + FP + eps),  R = TP / (TP + FN + eps),
    F = (1 + beta^2) P R / (beta^2 P + R + eps),

a ratio whose denominator is 0 (possible only at eps = 0) counting as 0, as pytorch-optimizer's
NaN-to-0 does for finite inputs (a NaN input stays NaN here),

per class for ``average="macro"`` (the loss 1 - mean_c F_c), or on the counts summed over the
classes for ``"micro"`` (1 - F). pytorch-optimizer's ``SoftF1Loss(beta, eps)`` on p is the micro
form (its P and R exchange names, the same F at beta = 1).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype


def soft_f1_probabilities(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor],
                          multi_label: bool) -> tuple:
    """(p, t) in fp32 (fp64 for fp64 logits)."""
    acc = stats_dtype(logits.dtype)
    z = logits.to(acc)
    p = torch.sigmoid(z) if multi_label else torch.softmax(z, dim=-1)
    if dense is not None:
        return p, dense.to(acc)
    classes = logits.shape[-1]
    invalid = (a < 0) | (a >= classes)
    t = torch.nn.functional.one_hot(a.clamp(0, classes - 1), classes).to(acc)
    return p, torch.where(invalid[:, None], float("nan"), t)


def soft_f1_sums(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], multi_label: bool) -> Tensor:
    """(3, C): per class sum_i t p, sum_i p and sum_i t, in the statistics dtype."""
    p, t = soft_f1_probabilities(logits, a, dense, multi_label)
    return torch.stack(((t * p).sum(0), p.sum(0), t.sum(0)))


def soft_f1_loss(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], average: str, beta: float, eps: float,
                 multi_label: bool) -> Tensor:
    """The loss, straight from its definition (counts as above), in the logits' dtype."""
    p, t = soft_f1_probabilities(logits, a, dense, multi_label)
    tp, fp, fn = (t * p).sum(0), ((1 - t) * p).sum(0), (t * (1 - p)).sum(0)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision = _ratio(tp, tp + fp + eps)
    recall = _ratio(tp, tp + fn + eps)
    f = _ratio((1 + beta ** 2) * precision * recall, beta ** 2 * precision + recall + eps)
    return (1 - f.mean()).to(logits.dtype)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den is 0 (with a finite gradient there)."""
    zero = den == 0
    return torch.where(zero, 0.0, num / torch.where(zero, 1.0, den))
