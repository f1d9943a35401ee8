"""Weight standardization: per output channel (w - mean) / sqrt(var + eps), vs the reference and
timm StdConv2d's weight path (batch_norm on the weight), each eager and under torch.compile.

Floor: fwd reads w and writes w_hat (2 x bytes(w)); bwd reads grad and w and writes dw
(3 x bytes(w)); so fwd+bwd = 5 x bytes(w). Per-channel statistics (8 B/channel) are noise.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as TF

from benchmarks.common import Case, Provider, ours, unary_runner
from tricks_ext import functional as F
from tricks_ext.reference import weight_standardize as reference

OP = "weight_standardize"
EPS = 1e-6

# (label, shape): ResNet-50 conv weights (stem, 3x3 per stage, the largest 1x1), a ConvNeXt
# depthwise 7x7 and a GPT-2 MLP weight.
SHAPES = [
    ("r50 stem 7x7", (64, 3, 7, 7)),
    ("r50 s1 3x3", (64, 64, 3, 3)),
    ("r50 s2 3x3", (128, 128, 3, 3)),
    ("r50 s3 3x3", (256, 256, 3, 3)),
    ("r50 s4 3x3", (512, 512, 3, 3)),
    ("r50 s4 1x1", (2048, 512, 1, 1)),
    ("convnext dw 7x7", (768, 1, 7, 7)),
    ("gpt2 mlp", (3072, 768)),
]
QUICK = {"r50 s3 3x3", "r50 s4 3x3", "gpt2 mlp"}


def cases(device: torch.device, quick: bool) -> List[Case]:
    out = []
    dtypes = [torch.float32] if quick else [torch.float32, torch.bfloat16]
    for label, shape in SHAPES:
        if quick and label not in QUICK:
            continue
        numel = 1
        for s in shape:
            numel *= s
        for dtype in dtypes:
            nbytes = numel * torch.tensor([], dtype=dtype).element_size()
            for mode, passes in (("fwd", 2), ("fwd+bwd", 5)):
                out.append(Case(f"{label} {'x'.join(map(str, shape))}", dtype, mode, passes * nbytes,
                                {"shape": shape}))
    return out


def _runner(fn):
    return unary_runner(fn, scale=0.05)


def _ours(backend: str) -> Provider:
    return ours(OP, backend, lambda b: _runner(lambda w: F.weight_standardize(w, EPS, backend=b)))


def _compiled(case: Case, device: torch.device):
    return _runner(torch.compile(lambda w: reference(w, EPS)))(case, device)


def _batch_norm_weight(w):
    """timm StdConv2d.forward's weight path (timm/layers/std_conv.py): batch_norm over the
    weight viewed as (1, O, K), which is what every timm StdConv2d runs."""
    o = w.shape[0]
    return TF.batch_norm(w.reshape(1, o, -1), None, None, training=True, momentum=0.0, eps=EPS).reshape_as(w)


def providers(device: torch.device) -> List[Provider]:
    # The `torch` backend is the reference itself, so it is timed once, as "reference".
    return [
        Provider("reference", _runner(lambda w: reference(w, EPS))),
        Provider("reference+compile", _compiled),
        Provider("batch_norm (timm StdConv2d's weight path)", _runner(_batch_norm_weight)),
        Provider("batch_norm (timm StdConv2d's weight path), torch.compile",
                 lambda case, dev: _runner(torch.compile(_batch_norm_weight))(case, dev)),
        _ours("cpu"),
        _ours("cuda"),
        _ours("triton"),
    ]
