"""EvoNorm-S0 at ResNet-50 stage shapes (N = 64 on CUDA; N = 8 on CPU, the CPU target's
batch), vs the reference in eager PyTorch, the reference under torch.compile, and timm
``EvoNorm2dS0`` when importable.

Floor: forward reads x and writes y (2 x bytes(x)); forward + backward also reads x and dy and
writes dx (5 x bytes(x)); the per-(n, g) statistics and (C,) parameters are negligible.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from tricks_ext import functional as F
from tricks_ext.reference.evonorm import evonorm_s0 as reference

OP = "evonorm_s0"
GROUPS = 32
STAGES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]


def cases(device: torch.device, quick: bool) -> List[Case]:
    n = 64 if device.type == "cuda" else 8
    stages = STAGES[:1] if quick else STAGES
    out = []
    for c, hw in stages:
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            nbytes = n * c * hw * hw * torch.tensor([], dtype=dtype).element_size()
            for mode, passes in (("fwd", 2), ("fwd+bwd", 5)):
                out.append(Case(f"N={n} {c}x{hw}x{hw}", dtype, mode, passes * nbytes, {"shape": (n, c, hw, hw)}))
    return out


def _runner(fn):
    def setup(case: Case, device: torch.device):
        n, c, h, w = case.params["shape"]
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(case.params["shape"], generator=gen).to(device, case.dtype)
        params = [torch.ones(c, device=device) + 0.1 * torch.randn(c, generator=gen).to(device) for _ in range(3)]
        if case.mode == "fwd":
            return lambda: fn(x, *params)
        leaves = [x.requires_grad_(True)] + [p.requires_grad_(True) for p in params]
        dy = torch.randn(case.params["shape"], generator=gen).to(device, case.dtype)
        return lambda: torch.autograd.grad(fn(*leaves), leaves, dy)
    return setup


def _eager(x, v, w, b):
    return reference(x, v, w, b, GROUPS, 1e-5)


def _compiled(case: Case, device: torch.device):
    return _runner(torch.compile(_eager))(case, device)


def _timm(case: Case, device: torch.device):
    try:
        from timm.layers import EvoNorm2dS0
    except Exception as exc:  # timm missing, or its torchvision import failing
        raise Unavailable(f"timm is not importable: {type(exc).__name__}: {exc}")
    layer = EvoNorm2dS0(case.params["shape"][1], groups=GROUPS).to(device)
    return _runner(lambda x, v, w, b: layer(x))(case, device)


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("reference, eager", _runner(_eager)),
        Provider("reference, torch.compile", _compiled),
        Provider("timm EvoNorm2dS0", _timm),
    ] + [ours(OP, b, lambda b_: _runner(lambda x, v, w, bb: F.evonorm_s0(x, v, w, bb, GROUPS, backend=b_)))
         for b in ("cpu", "cuda", "triton")]
