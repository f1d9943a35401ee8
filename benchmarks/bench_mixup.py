"""Mixup / CutMix mixing, alone and with its loss, against timm like for like: timm 1.0 mixes
in place (``Mixup._mix_batch``: ``x_flipped = x.flip(0).mul_(1 - lam); x.mul_(lam).add_(x_flipped)``),
so our in-place op is timed against timm's own ``Mixup`` (when importable) and against that
in-place loop written out, eager and under torch.compile; our out-of-place op against the out-of-place formula
``x * lam + x.flip(0) * (1 - lam)``, eager and under torch.compile. The loss is timm's
``mixup_target`` + ``SoftTargetCrossEntropy`` (bench_soft_ce.py).

Floors: mixing reads the batch and writes the mixed batch (2 x bytes(x)); "mixup+loss" adds the
loss forward + backward (3 x N x C x bytes, see bench_soft_ce.py).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_soft_ce import (LAM, SMOOTHING, logits_and_labels, mixup_loss, timm_loss,
                                      timm_or_unavailable)
from benchmarks.common import Case, Provider, ours
from tricks_ext import functional as F

OP = "mixup_apply"


def cases(device: torch.device, quick: bool) -> List[Case]:
    batch, classes = (32, 1000) if quick else (256, 1000)
    image = (batch, 3, 224, 224)
    img_bytes = torch.Size(image).numel() * 4
    return [Case(f"mixing {batch}x3x224x224", torch.float32, "fwd", 2 * img_bytes, {"image": image}),
            Case(f"mixup+loss {batch}x3x224x224, C={classes}", torch.float32, "fwd+bwd",
                 2 * img_bytes + 3 * batch * classes * 4, {"image": image, "logits": (batch, classes)})]


def _out_of_place_mix(x):
    return x * LAM + x.flip(0) * (1.0 - LAM)


def _timm_inplace_mix(x):
    """timm 1.0 Mixup._mix_batch's mixing lines, in place on x."""
    x_flipped = x.flip(0).mul_(1.0 - LAM)
    return x.mul_(LAM).add_(x_flipped)


def _timm_mixup(case: Case, device: torch.device):
    """timm's own Mixup (mode 'batch', lam fixed at LAM instead of its numpy draw), in place;
    with the loss, its __call__ (mixing + mixup_target) and SoftTargetCrossEntropy."""
    timm = timm_or_unavailable()
    classes = case.params["logits"][1] if "logits" in case.params else 1000
    m = timm.data.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch", label_smoothing=SMOOTHING,
                        num_classes=classes)
    m._params_per_batch = lambda: (LAM, False)
    x = torch.randn(case.params["image"], generator=torch.Generator().manual_seed(1)).to(device)
    if "logits" not in case.params:
        return lambda: m._mix_batch(x)
    logits, labels = logits_and_labels(case.params["logits"], case.dtype, device)
    ce = timm.loss.SoftTargetCrossEntropy()

    def step():
        _, target = m(x, labels)
        return torch.autograd.grad(ce(logits, target), logits)
    return step


def _runner(mix, loss):
    def setup(case: Case, device: torch.device):
        x = torch.randn(case.params["image"], generator=torch.Generator().manual_seed(1)).to(device)
        if "logits" not in case.params:
            return lambda: mix(x)
        logits, labels = logits_and_labels(case.params["logits"], case.dtype, device)
        return lambda: (mix(x), torch.autograd.grad(loss(logits, labels), logits))
    return setup


def _ours(backend: str, inplace: bool = False):
    coefs = {}  # built once per device and batch: a tensor from host data inside the timed call syncs

    def mix(x):
        key = (x.device, x.shape[0])
        if key not in coefs:
            coefs[key] = torch.tensor([[LAM, 1.0 - LAM]], device=x.device).expand(x.shape[0], 2)
        return F.mixup(x, coefs[key], inplace=inplace, backend=backend)
    return _runner(mix, mixup_loss(F.soft_target_cross_entropy, backend))


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm Mixup, in place", _timm_mixup),
        Provider("timm in-place loop, eager", _runner(_timm_inplace_mix, timm_loss)),
        Provider("timm in-place loop, torch.compile",
                 lambda case, dev: _runner(torch.compile(_timm_inplace_mix), torch.compile(timm_loss))(case, dev)),
        Provider("out-of-place formula, eager", _runner(_out_of_place_mix, timm_loss)),
        Provider("out-of-place formula, torch.compile",
                 lambda case, dev: _runner(torch.compile(_out_of_place_mix), torch.compile(timm_loss))(case, dev)),
    ] + [ours(OP, b, _ours) for b in ("cpu", "cuda", "triton")] + [
        ours(OP, b, lambda b_: _ours(b_, inplace=True), name_suffix=" in-place") for b in ("cpu", "cuda")]
