"""Soft-target binary cross-entropy with Mixup targets, vs timm's BinaryCrossEntropy on
``mixup_target``'s dense targets (its Mixup recipe with ``--bce-loss``), eager and torch.compile.

Floor: the forward reads the logits (N x C), the backward reads them and writes dlogits:
3 x N x C x bytes; the compact targets (two labels and lam per row) are O(N), the class weights
of the weighted case C values (timm's ``weight=``, as ours).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_soft_ce import (LAM, SMOOTHING, case_weight, logits_and_labels, loss_cases, ours_providers,
                                      timm_or_unavailable)
from benchmarks.common import Case, Provider
from tricks_ext import functional as F

OP = "soft_bce"


def cases(device: torch.device, quick: bool) -> List[Case]:
    return loss_cases("soft BCE", quick)


def timm_runner(compiled: bool):
    """timm's own BinaryCrossEntropy on mixup_target (batch mode, lam = LAM), built with the
    case's class weights (timm's ``weight=``), eager or torch.compile'd; or Unavailable."""
    def setup(case: Case, device: torch.device):
        timm = timm_or_unavailable()
        bce = timm.loss.BinaryCrossEntropy(weight=case_weight(case, device))

        def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return bce(z, timm.data.mixup.mixup_target(y, z.shape[1], LAM, SMOOTHING))
        run = torch.compile(loss) if compiled else loss
        logits, labels = logits_and_labels(case.params["logits"], case.dtype, device)
        return lambda: torch.autograd.grad(run(logits, labels), logits)
    return setup


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", timm_runner(compiled=False)),
        Provider("timm, torch.compile", timm_runner(compiled=True)),
    ] + ours_providers(OP, F.soft_target_binary_cross_entropy)
