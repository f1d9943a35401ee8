"""A whole model: one training step (forward, loss, backward) of a small timm ResNetV2-D with
EvoNorm2dS0 and DropPath, as timm builds it (eager and under torch.compile), against the same
model after tricks_ext.patch.

Floor: a step reads every parameter in the forward and the backward and writes its gradient,
3 x parameter bytes (a bound far below the activations' traffic; shown for completeness).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from benchmarks.peers import load_timm

OP = "patch"
BATCH, SIZE = 16, 64
ARCH = dict(layers=[1, 1, 1, 1], channels=(128, 256, 512, 1024), num_classes=100, drop_path_rate=0.1)


def _model(device: torch.device):
    timm, why = load_timm()
    if timm is None:
        raise Unavailable(why)
    torch.manual_seed(0)
    return timm.create_model("resnetv2_50d_evos", pretrained=False, **ARCH).to(device)


def cases(device: torch.device, quick: bool) -> List[Case]:
    try:
        params = sum(p.numel() for p in _model(torch.device("meta")).parameters())
    except Unavailable:
        params = 0
    return [Case(f"resnetv2_50d_evos small, train step, batch {BATCH}x3x{SIZE}x{SIZE}", torch.float32, "fwd+bwd",
                 3 * 4 * params, {})]


def _step(patch_backend, compile_it: bool = False):
    def setup(case: Case, device: torch.device):
        model = _model(device).train()
        if patch_backend is not None:
            import tricks_ext
            tricks_ext.patch(model, backend=patch_backend)
        forward = torch.compile(model) if compile_it else model
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen).to(device)
        y = torch.randint(0, ARCH["num_classes"], (BATCH,), generator=gen).to(device)

        def step():
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(forward(x), y).backward()
        return step
    return setup


def providers(device: torch.device) -> List[Provider]:
    return [Provider("timm, unpatched", _step(None)),
            Provider("timm, unpatched, torch.compile", _step(None, compile_it=True))] + \
        [ours("evonorm_s0", b, lambda b_: _step(b_), name_suffix=" (patched)") for b in ("cpu", "cuda", "triton")] + \
        [ours("evonorm_s0", b, lambda b_: _step(b_, compile_it=True), name_suffix=" (patched), torch.compile")
         for b in ("cpu", "cuda", "triton")]
