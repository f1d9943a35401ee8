"""Dropout with a regenerated mask vs torch's dropout (which stores a mask for backward).

Floor: fwd reads x and writes y (2 x bytes(x)); bwd reads grad and writes dx (2 x bytes(x));
fwd+bwd = 4 x bytes(x). Our kernels keep 16 bytes for backward (the seed/offset pair).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as TF

from benchmarks.common import Case, Provider, ours, unary_runner
from tricks_ext import functional as F

OP = "dropout"
P = 0.1
SHAPES = [("mlp 8192x4096", (8192, 4096)), ("vit-b tokens 256x197x768", (256, 197, 768))]
QUICK_SHAPES = [("mlp 1024x4096", (1024, 4096))]


def cases(device: torch.device, quick: bool) -> List[Case]:
    out = []
    for label, shape in (QUICK_SHAPES if quick else SHAPES):
        numel = torch.Size(shape).numel()
        for dtype in ([torch.float32] if quick else [torch.float32, torch.bfloat16]):
            nbytes = numel * torch.tensor([], dtype=dtype).element_size()
            for mode, passes in (("fwd", 2), ("fwd+bwd", 4)):
                out.append(Case(f"{label}", dtype, mode, passes * nbytes, {"shape": shape}))
    return out


_runner = unary_runner


def _ours(backend: str) -> Provider:
    return ours(OP, backend, lambda b: _runner(lambda x: F.dropout(x, P, backend=b)))


def _torch_compiled(case: Case, device: torch.device):
    return _runner(torch.compile(lambda x: TF.dropout(x, P, training=True)))(case, device)


def providers(device: torch.device) -> List[Provider]:
    # The reference (`torch` backend) computes Philox with int64 tensor ops: a specification,
    # ~100x slower than any kernel, so it is left out of the timing.
    return [
        Provider("torch F.dropout", _runner(lambda x: TF.dropout(x, P, training=True))),
        Provider("torch F.dropout+compile", _torch_compiled),
        _ours("cpu"),
        _ours("cuda"),
        _ours("triton"),
    ]
