"""Soft-target binary cross-entropy with Mixup targets, vs timm's BinaryCrossEntropy on
``mixup_target``'s dense targets (its Mixup recipe with ``--bce-loss``), eager and torch.compile.

Floor: the forward reads the logits (N x C), the backward reads them and writes dlogits:
3 x N x C x bytes; the compact targets (two labels and lam per row) are O(N).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_soft_ce import LAM, SMOOTHING, _runner, loss_cases, timm_or_unavailable
from benchmarks.common import Case, Provider, ours
from tricks_ext import functional as F
from tricks_ext.data import MixedTargets

OP = "soft_bce"


def cases(device: torch.device, quick: bool) -> List[Case]:
    return loss_cases("soft BCE", quick)


def timm_loss():
    """timm's own BinaryCrossEntropy on mixup_target (batch mode, lam = LAM), or Unavailable."""
    timm = timm_or_unavailable()
    bce = timm.loss.BinaryCrossEntropy()
    return lambda z, y: bce(z, timm.data.mixup.mixup_target(y, z.shape[1], LAM, SMOOTHING))


def ours_loss(backend: str):
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lam = torch.full((labels.numel(),), LAM, device=labels.device)
        targets = MixedTargets(labels, labels.flip(0), lam, SMOOTHING, logits.shape[1])
        return F.soft_target_binary_cross_entropy(logits, targets, backend=backend)
    return loss


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", lambda case, dev: _runner(timm_loss())(case, dev)),
        Provider("timm, torch.compile", lambda case, dev: _runner(torch.compile(timm_loss()))(case, dev)),
    ] + [ours(OP, b, lambda b_: _runner(ours_loss(b_))) for b in ("cpu", "cuda", "triton")]
