"""Soft-target cross-entropy with Mixup targets, vs timm's formulas in eager PyTorch
(``mixup_target`` dense targets + ``SoftTargetCrossEntropy``; timm itself when importable) and
torch.compile of them.

Floor: the forward reads the logits (N x C), the backward reads them and writes dlogits:
3 x N x C x bytes; the compact targets (two labels and lam per row) are O(N), the class weights
of the weighted case C values. timm's soft-target losses take no class weights: the weighted
case's peer is torch's ``cross_entropy(weight=)`` on the same Mixup targets, dense.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from benchmarks.common import Case, NotForCase, Provider, Unavailable, ours
from benchmarks.peers import load_timm
from tricks_ext import functional as F
from tricks_ext.data import MixedTargets
from tricks_ext.targets import mixed_targets
from tricks_ext.reference.soft_ce import timm_soft_target_cross_entropy

OP = "soft_ce"
LAM, SMOOTHING = 0.7, 0.1


def loss_cases(label: str, quick: bool) -> List[Case]:
    """The cases of a classification loss on (N, C) logits, fwd+bwd, with the 3 N C bytes floor
    (plus the C fp32 class weights of the weighted case, at the ImageNet size)."""
    shapes = [(32, 1000, False)] if quick else [(256, 1000, False), (32, 131072, False), (256, 1000, True)]
    out = []
    for n, c, weighted in shapes:
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            size = torch.tensor([], dtype=dtype).element_size()
            name = f"{label} {'weighted ' if weighted else ''}{n}x{c}"
            out.append(Case(name, dtype, "fwd+bwd", 3 * n * c * size + (4 * c if weighted else 0),
                            {"logits": (n, c), "weighted": weighted}))
    return out


def cases(device: torch.device, quick: bool) -> List[Case]:
    return loss_cases("soft CE", quick)


def timm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """timm's Mixup loss in batch mode with lam = LAM: dense targets, then SoftTargetCrossEntropy."""
    lam = torch.full((labels.numel(),), LAM, device=labels.device)
    return timm_soft_target_cross_entropy(logits, mixed_targets(labels, labels.flip(0), lam, SMOOTHING,
                                                                logits.shape[1]))


def mixup_loss(fn, backend: str, dense: bool = False):
    """fn(logits, targets, backend=, weight=) on this benchmark's Mixup targets: compact
    (MixedTargets), or dense as timm's ``mixup_target`` builds them (built inside the timed call,
    as timm's are)."""
    def loss(logits: torch.Tensor, labels: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        lam = torch.full((labels.numel(),), LAM, device=labels.device)
        make = mixed_targets if dense else MixedTargets
        return fn(logits, make(labels, labels.flip(0), lam, SMOOTHING, logits.shape[1]), backend=backend,
                  weight=weight)
    return loss


def torch_weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """torch's cross_entropy with class weights on the Mixup targets, dense (built in the call)."""
    lam = torch.full((labels.numel(),), LAM, device=labels.device)
    targets = mixed_targets(labels, labels.flip(0), lam, SMOOTHING, logits.shape[1], logits.dtype)
    return torch.nn.functional.cross_entropy(logits, targets, weight=weight.to(logits.dtype))


def ours_providers(op: str, fn) -> List[Provider]:
    """Our backends on compact targets, and the CPU kernel on timm's dense ones."""
    return [ours(op, b, lambda b_: _runner(mixup_loss(fn, b_))) for b in ("cpu", "cuda", "triton")] + [
        ours(op, "cpu", lambda b_: _runner(mixup_loss(fn, b_, dense=True)), name_suffix=" dense targets")]


def timm_or_unavailable():
    timm, why = load_timm()
    if timm is None:
        raise Unavailable(why)
    return timm


def timm_module_loss():
    """timm's own SoftTargetCrossEntropy on mixup_target, or Unavailable."""
    timm = timm_or_unavailable()
    ce = timm.loss.SoftTargetCrossEntropy()
    return lambda z, y: ce(z, timm.data.mixup.mixup_target(y, z.shape[1], LAM, SMOOTHING))


def logits_and_labels(shape, dtype, device):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_(True)
    labels = torch.randint(0, shape[1], (shape[0],), generator=gen).to(device)
    return logits, labels


def _runner(loss, weights: Optional[bool] = None):
    """The timed call of ``loss`` on a case. ``weights``: whether ``loss`` takes class weights
    (None: it takes them when the case has them); a case it cannot run is Unavailable."""
    def setup(case: Case, device: torch.device):
        weighted = case.params.get("weighted", False)
        if weights is not None and weights != weighted:
            raise NotForCase("takes no class weights" if weighted else "a weighted-case peer")
        logits, labels = logits_and_labels(case.params["logits"], case.dtype, device)
        weight = case_weight(case, device)
        if weight is None:
            return lambda: torch.autograd.grad(loss(logits, labels), logits)
        return lambda: torch.autograd.grad(loss(logits, labels, weight), logits)
    return setup


def case_weight(case: Case, device: torch.device) -> Optional[torch.Tensor]:
    """The weighted case's class weights (fp32, in [0.5, 1.5)), None for the others."""
    if not case.params.get("weighted", False):
        return None
    return torch.rand(case.params["logits"][1], generator=torch.Generator().manual_seed(1)).to(device) + 0.5


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", lambda case, dev: _runner(timm_module_loss(), weights=False)(case, dev)),
        Provider("timm, torch.compile",
                 lambda case, dev: _runner(torch.compile(timm_module_loss()), weights=False)(case, dev)),
        Provider("timm formulas, eager", _runner(timm_loss, weights=False)),
        Provider("timm formulas, torch.compile",
                 lambda case, dev: _runner(torch.compile(timm_loss), weights=False)(case, dev)),
        Provider("torch cross_entropy weight=, eager", _runner(torch_weighted_loss, weights=True)),
        Provider("torch cross_entropy weight=, torch.compile",
                 lambda case, dev: _runner(torch.compile(torch_weighted_loss), weights=True)(case, dev)),
    ] + ours_providers(OP, F.soft_target_cross_entropy)
