"""Soft-target binary cross-entropy with Mixup targets, vs timm's BinaryCrossEntropy on
``mixup_target``'s dense targets (its Mixup recipe with ``--bce-loss``), eager and torch.compile.

Floor: the forward reads the logits (N x C), the backward reads them and writes dlogits:
3 x N x C x bytes; the compact targets (two labels and lam per row) are O(N).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_soft_ce import LAM, SMOOTHING, _runner, loss_cases, ours_providers, timm_or_unavailable
from benchmarks.common import Case, Provider
from tricks_ext import functional as F

OP = "soft_bce"


def cases(device: torch.device, quick: bool) -> List[Case]:
    return loss_cases("soft BCE", quick)


def timm_loss():
    """timm's own BinaryCrossEntropy on mixup_target (batch mode, lam = LAM), or Unavailable."""
    timm = timm_or_unavailable()
    bce = timm.loss.BinaryCrossEntropy()
    return lambda z, y: bce(z, timm.data.mixup.mixup_target(y, z.shape[1], LAM, SMOOTHING))


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", lambda case, dev: _runner(timm_loss())(case, dev)),
        Provider("timm, torch.compile", lambda case, dev: _runner(torch.compile(timm_loss()))(case, dev)),
    ] + ours_providers(OP, F.soft_target_binary_cross_entropy)
