"""Soft F1 loss from logits, vs pytorch-optimizer's SoftF1Loss on the probabilities (its micro
form; the probabilities and, for labels, the one-hot targets built inside the timed call, as a
user would), eager and torch.compile.

Floor: the forward reads the logits (N x C), the backward reads them and writes dlogits:
3 x N x C x bytes, plus the dense targets read by both (2 x N x C x bytes) for the multi-label
case; labels are O(N) and the (3, C) counts negligible.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from benchmarks.peers import load_pytorch_optimizer
from tricks_ext import functional as F

OP = "soft_f1"


def cases(device: torch.device, quick: bool) -> List[Case]:
    shapes = [(32, 1000)] if quick else [(256, 1000)]
    out = []
    for n, c in shapes:
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            size = torch.tensor([], dtype=dtype).element_size()
            for multi_label in (False, True):
                name = f"soft F1 {'multi-label' if multi_label else 'labels'} {n}x{c}"
                out.append(Case(name, dtype, "fwd+bwd", (5 if multi_label else 3) * n * c * size,
                                {"logits": (n, c), "multi_label": multi_label}))
    return out


def _inputs(case: Case, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    n, c = case.params["logits"]
    logits = torch.randn(n, c, generator=gen).to(device, case.dtype).requires_grad_(True)
    if case.params["multi_label"]:
        return logits, (torch.rand(n, c, generator=gen) < 0.1).to(device, case.dtype)
    return logits, torch.randint(0, c, (n,), generator=gen).to(device)


def _theirs(compiled: bool):
    po, why = load_pytorch_optimizer()

    def setup(case: Case, device: torch.device):
        if po is None:
            raise Unavailable(why)
        loss_fn = po.SoftF1Loss()
        multi_label = case.params["multi_label"]

        def loss(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if multi_label:
                return loss_fn(torch.sigmoid(z), t)
            return loss_fn(torch.softmax(z, -1), torch.nn.functional.one_hot(t, z.shape[1]).to(z.dtype))
        run = torch.compile(loss) if compiled else loss
        logits, targets = _inputs(case, device)
        return lambda: torch.autograd.grad(run(logits, targets), logits)
    return setup


def _ours(backend: str):
    def setup(case: Case, device: torch.device):
        logits, targets = _inputs(case, device)
        return lambda: torch.autograd.grad(F.soft_f1_loss(logits, targets, "micro", backend=backend), logits)
    return setup


def providers(device: torch.device) -> List[Provider]:
    return [Provider("pytorch-optimizer SoftF1Loss, eager", _theirs(compiled=False)),
            Provider("pytorch-optimizer SoftF1Loss, torch.compile", _theirs(compiled=True))] + [
        ours(OP, b, _ours) for b in ("cpu", "cuda", "triton")]
