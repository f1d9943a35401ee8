"""Mixup / CutMix mixing, alone and with its loss, vs timm's formulas in eager PyTorch (timm
``Mixup`` + ``mixup_target`` + ``SoftTargetCrossEntropy``, written out as timm computes them:
timm itself is used when importable) and torch.compile.

Floors: mixing reads the batch and writes the mixed batch (2 x bytes(x)); "mixup+loss" adds the
loss forward + backward (3 x N x C x bytes, see bench_soft_ce.py).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_soft_ce import LAM, logits_and_labels, ours_loss, timm_loss, timm_module_loss
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


def _timm_mix(x):
    return x * LAM + x.flip(0) * (1.0 - LAM)  # timm _mix_batch, out of place


def _runner(mix, loss):
    def setup(case: Case, device: torch.device):
        x = torch.randn(case.params["image"], generator=torch.Generator().manual_seed(1)).to(device)
        if "logits" not in case.params:
            return lambda: mix(x)
        logits, labels = logits_and_labels(case.params["logits"], case.dtype, device)
        return lambda: (mix(x), torch.autograd.grad(loss(logits, labels), logits))
    return setup


def _ours(backend: str, inplace: bool = False):
    def mix(x):
        coef = torch.tensor([[LAM, 1.0 - LAM]]).expand(x.shape[0], 2)
        return F.mixup(x, coef, inplace=inplace, backend=backend)
    return _runner(mix, ours_loss(backend))


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", lambda case, dev: _runner(_timm_mix, timm_module_loss())(case, dev)),
        Provider("timm formulas, eager", _runner(_timm_mix, timm_loss)),
        Provider("timm formulas, torch.compile",
                 lambda case, dev: _runner(torch.compile(_timm_mix), torch.compile(timm_loss))(case, dev)),
    ] + [ours(OP, b, _ours) for b in ("cpu", "cuda", "triton")] + [
        ours(OP, b, lambda b_: _ours(b_, inplace=True), name_suffix=" in-place") for b in ("cpu", "cuda")]
