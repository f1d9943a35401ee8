"""dropout_add (ReZero form): y = residual + gate * dropout(x), vs the eager chain
F.dropout + mul + add (which stores a mask for backward) and its torch.compile.

Floor: fwd reads x, residual and writes y (3 x bytes(x)); bwd reads grad and x and writes dx
(dresidual is grad itself; dgate reduces grad * dropout(x)): 3 x bytes(x); fwd+bwd = 6 x.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as TF

from benchmarks.common import Case, Provider, ours
from tricks_ext import functional as F

OP = "dropout_apply"
P = 0.1
SHAPES = [("mlp 8192x4096", (8192, 4096)), ("vit-b tokens 256x197x768", (256, 197, 768))]
QUICK_SHAPES = [("mlp 1024x4096", (1024, 4096))]


def cases(device: torch.device, quick: bool) -> List[Case]:
    out = []
    for label, shape in (QUICK_SHAPES if quick else SHAPES):
        numel = torch.Size(shape).numel()
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            nbytes = numel * torch.tensor([], dtype=dtype).element_size()
            for mode, passes in (("fwd", 3), ("fwd+bwd", 6)):
                out.append(Case(label, dtype, mode, passes * nbytes, {"shape": shape}))
    return out


def _runner(fn):
    """Times fn(x, residual, gate), or forward + backward into x, residual and gate."""
    def setup(case: Case, device: torch.device):
        shape = case.params["shape"]
        x = torch.randn(shape, device=device).to(case.dtype)
        res = torch.randn(shape, device=device).to(case.dtype)
        gate = torch.tensor(0.5, device=device)
        if case.mode == "fwd":
            return lambda: fn(x, res, gate)
        leaves = [t.requires_grad_(True) for t in (x, res, gate)]
        grad = torch.randn(shape, device=device).to(case.dtype)
        return lambda: torch.autograd.grad(fn(*leaves), leaves, grad)
    return setup


def _eager(x, res, gate):
    return res + gate.to(x.dtype) * TF.dropout(x, P, training=True)


def _compiled(case: Case, device: torch.device):
    return _runner(torch.compile(_eager))(case, device)


def providers(device: torch.device) -> List[Provider]:
    # The reference (`torch` backend) computes Philox with int64 tensor ops: a specification,
    # ~100x slower than any kernel, so it is left out of the timing.
    return [
        Provider("eager dropout+mul+add", _runner(_eager)),
        Provider("eager, torch.compile", _compiled),
    ] + [ours(OP, b, lambda b_: _runner(lambda x, r, g: F.dropout_add(x, r, P, gate=g, backend=b_)))
         for b in ("cpu", "cuda", "triton")]
