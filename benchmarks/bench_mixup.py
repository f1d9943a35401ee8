"""Mixup / CutMix mixing and the soft-target cross-entropy, vs timm's formulas in eager PyTorch
(timm ``Mixup`` + ``mixup_target`` + ``SoftTargetCrossEntropy``, written out as timm computes
them: timm itself is used when importable) and torch.compile of the loss.

Floors: mixing reads the batch and writes the mixed batch (2 x bytes(x)); the loss forward
reads the logits, backward reads them and writes dlogits (3 x N x C x bytes; the compact
targets are O(N)). "mixup+loss" = mixing + loss forward + backward.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from tricks_ext import functional as F
from tricks_ext.data import MixedTargets
from tricks_ext.reference.mixup import mixed_targets
from tricks_ext.reference.soft_ce import timm_soft_target_cross_entropy

OP = "mixup"
LAM, SMOOTHING = 0.7, 0.1


def cases(device: torch.device, quick: bool) -> List[Case]:
    batch, classes = (32, 1000) if quick else (256, 1000)
    image = (batch, 3, 224, 224)
    img_bytes = torch.Size(image).numel() * 4
    out = [Case(f"mixing {batch}x3x224x224", torch.float32, "fwd", 2 * img_bytes, {"image": image}),
           Case(f"mixup+loss {batch}x3x224x224, C={classes}", torch.float32, "fwd+bwd",
                2 * img_bytes + 3 * batch * classes * 4, {"image": image, "logits": (batch, classes)})]
    loss_shapes = [(batch, classes)] if quick else [(batch, classes), (32, 131072)]
    for shape in loss_shapes:
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            size = torch.tensor([], dtype=dtype).element_size()
            out.append(Case(f"soft CE {shape[0]}x{shape[1]}", dtype, "fwd+bwd", 3 * shape[0] * shape[1] * size,
                            {"logits": shape}))
    return out


def _inputs(case: Case, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.params["image"], generator=gen).to(device) if "image" in case.params else None
    n, c = case.params["logits"] if "logits" in case.params else (x.shape[0], 1000)
    logits = torch.randn(n, c, generator=gen).to(device, case.dtype).requires_grad_(True)
    labels = torch.randint(0, c, (n,), generator=gen).to(device)
    return x, logits, labels


def _timm_mix(x):
    return x * LAM + x.flip(0) * (1.0 - LAM)  # timm _mix_batch, out of place


def _timm_loss(logits, labels):
    lam = torch.full((labels.numel(),), LAM, device=labels.device)
    target = mixed_targets(labels, labels.flip(0), lam, SMOOTHING, logits.shape[1])
    return timm_soft_target_cross_entropy(logits, target)


def _timm_classes():
    try:
        from timm.loss import SoftTargetCrossEntropy
        from timm.data.mixup import mixup_target
    except Exception as exc:  # timm missing, or its torchvision import failing
        raise Unavailable(f"timm is not importable: {type(exc).__name__}: {exc}")
    return SoftTargetCrossEntropy(), mixup_target


def _runner(mix, loss):
    def setup(case: Case, device: torch.device):
        x, logits, labels = _inputs(case, device)
        if case.name.startswith("mixing"):
            return lambda: mix(x)
        if case.name.startswith("soft CE"):
            return lambda: torch.autograd.grad(loss(logits, labels), logits)
        return lambda: (mix(x), torch.autograd.grad(loss(logits, labels), logits))
    return setup


def _timm_setup(case: Case, device: torch.device):
    ce, mixup_target = _timm_classes()
    return _runner(_timm_mix, lambda z, y: ce(z, mixup_target(y, z.shape[1], LAM, SMOOTHING)))(case, device)


def _compiled_setup(case: Case, device: torch.device):
    return _runner(torch.compile(_timm_mix), torch.compile(_timm_loss))(case, device)


def _ours(backend: str, inplace: bool = False):
    def mix(x):
        n = x.shape[0]
        coef = torch.tensor([[LAM, 1.0 - LAM]]).expand(n, 2)
        return F.mixup(x, coef, inplace=inplace, backend=backend)

    def loss(logits, labels):
        lam = torch.full((labels.numel(),), LAM, device=labels.device)
        targets = MixedTargets(labels, labels.flip(0), lam, SMOOTHING, logits.shape[1])
        return F.soft_target_cross_entropy(logits, targets, backend=backend)

    def setup(case: Case, device: torch.device):
        if inplace and case.name.startswith("soft CE"):
            raise Unavailable("in place applies to the mixing cases only")
        return _runner(mix, loss)(case, device)
    return setup


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("timm", _timm_setup),
        Provider("timm formulas, eager", _runner(_timm_mix, _timm_loss)),
        Provider("timm formulas, torch.compile", _compiled_setup),
    ] + [ours(OP, b, _ours) for b in ("cpu", "cuda", "triton")] + [
        ours(OP, b, lambda b_: _ours(b_, inplace=True), name_suffix=" in-place") for b in ("cpu", "cuda")]
