"""WSConv2d (weight standardization + cuDNN/oneDNN conv) at the ResNet-50 3x3 shapes vs a plain
nn.Conv2d (the WS overhead) and timm's StdConv2d formula (F.batch_norm on the weight), eager and
under torch.compile.

Floor: the convolution's activations, read x and write y (fwd; the weight is small next to
them); fwd+bwd adds read dy, write dx: the GB/s column is then an activation throughput, and
the figure that matters is the time against the plain convolution.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as TF

from benchmarks.common import Case, Provider, ours
from tricks_ext import nn as tnn

OP = "weight_standardize"
SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]


def cases(device: torch.device, quick: bool) -> List[Case]:
    n = 64 if device.type == "cuda" else 8
    out = []
    for c, hw in (SHAPES[-1:] if quick else SHAPES):
        for dtype in ([torch.float32] if quick or device.type != "cuda" else [torch.float32, torch.bfloat16]):
            act = n * c * hw * hw * torch.tensor([], dtype=dtype).element_size()
            for mode, passes in (("fwd", 2), ("fwd+bwd", 4)):
                out.append(Case(f"N={n} conv3x3 {c}->{c} {hw}x{hw}", dtype, mode, passes * act,
                                {"shape": (n, c, hw, hw)}))
    return out


def _runner(make_conv, compile_it: bool = False):
    def setup(case: Case, device: torch.device):
        n, c, h, w = case.params["shape"]
        torch.manual_seed(0)
        module = make_conv(c).to(device, case.dtype)
        conv = torch.compile(module) if compile_it else module
        x = torch.randn(case.params["shape"], device=device).to(case.dtype)
        if case.mode == "fwd":
            return lambda: conv(x)
        x.requires_grad_(True)
        leaves = [x] + list(module.parameters())
        dy = torch.randn(case.params["shape"], device=device).to(case.dtype)
        return lambda: torch.autograd.grad(conv(x), leaves, dy)
    return setup


class _TimmStdConv2d(torch.nn.Conv2d):
    """timm StdConv2d.forward."""

    def forward(self, x):
        w = TF.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                          eps=1e-6).reshape_as(self.weight)
        return TF.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("nn.Conv2d (no WS)", _runner(lambda c: torch.nn.Conv2d(c, c, 3, padding=1, bias=False))),
        Provider("timm StdConv2d formula", _runner(lambda c: _TimmStdConv2d(c, c, 3, padding=1, bias=False))),
        Provider("timm StdConv2d formula, torch.compile",
                 _runner(lambda c: _TimmStdConv2d(c, c, 3, padding=1, bias=False), compile_it=True)),
    ] + [ours(OP, b, lambda b_: _runner(lambda c: tnn.WSConv2d(c, c, 3, padding=1, bias=False, backend=b_)))
         for b in ("cpu", "cuda", "triton")]
