"""EvoNorm-S0 at ResNet-50 stage shapes (N = 64 on CUDA; N = 8 on CPU, the CPU target's
batch), vs the reference in eager PyTorch, the reference under torch.compile, and timm's
``EvoNorm2dS0`` (the real layer, with the same v, weight and bias), eager and under torch.compile.

Floor: forward reads x and writes y (2 x bytes(x)); forward + backward also reads x and dy and
writes dx (5 x bytes(x)); the per-(n, g) statistics and (C,) parameters are negligible.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from benchmarks.peers import load_timm
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


def _inputs(case: Case, device: torch.device):
    """x, [v, weight, bias] and dy, the same for every provider of a case."""
    n, c, h, w = case.params["shape"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.params["shape"], generator=gen).to(device, case.dtype)
    params = [torch.ones(c, device=device) + 0.1 * torch.randn(c, generator=gen).to(device) for _ in range(3)]
    dy = torch.randn(case.params["shape"], generator=gen).to(device, case.dtype)
    return x, params, dy


def _runner(fn):
    def setup(case: Case, device: torch.device):
        x, params, dy = _inputs(case, device)
        if case.mode == "fwd":
            return lambda: fn(x, *params)
        leaves = [x.requires_grad_(True)] + [p.requires_grad_(True) for p in params]
        return lambda: torch.autograd.grad(fn(*leaves), leaves, dy)
    return setup


def _eager(x, v, w, b):
    return reference(x, v, w, b, GROUPS, 1e-5)


def _compiled(case: Case, device: torch.device):
    return _runner(torch.compile(_eager))(case, device)


def _timm(compile_it: bool):
    """timm's layer holding the case's v, weight and bias; fwd+bwd differentiates x and them."""
    def setup(case: Case, device: torch.device):
        timm, why = load_timm()
        if timm is None:
            raise Unavailable(why)
        x, params, dy = _inputs(case, device)
        layer = timm.layers.EvoNorm2dS0(case.params["shape"][1], groups=GROUPS, eps=1e-5).to(device)
        with torch.no_grad():
            for theirs, mine in zip((layer.v, layer.weight, layer.bias), params):
                theirs.copy_(mine)
        forward = torch.compile(layer) if compile_it else layer
        if case.mode == "fwd":
            return lambda: forward(x)
        leaves = [x.requires_grad_(True), layer.v, layer.weight, layer.bias]
        return lambda: torch.autograd.grad(forward(x), leaves, dy)
    return setup


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("reference, eager", _runner(_eager)),
        Provider("reference, torch.compile", _compiled),
        Provider("timm EvoNorm2dS0", _timm(False)),
        Provider("timm EvoNorm2dS0, torch.compile", _timm(True)),
    ] + [ours(OP, b, lambda b_: _runner(lambda x, v, w, bb: F.evonorm_s0(x, v, w, bb, GROUPS, backend=b_)))
         for b in ("cpu", "cuda", "triton")]
