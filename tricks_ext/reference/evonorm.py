"""EvoNorm-S0 in plain PyTorch (arXiv 2004.02967; timm ``EvoNorm2dS0``): the specification of
the fused op. Statistics and math in fp32 (fp64 for fp64 x), the result cast to x's dtype."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype


def evonorm_s0(x: Tensor, v: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float,
               apply_act: bool = True) -> Tensor:
    """y = weight * x * sigmoid(v x) / sqrt(var_ng + eps) + bias, var over each sample's group of
    C / groups channels and all spatial positions (biased, centred); ``apply_act=False``:
    y = weight * x + bias. x (N, C, ...)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    acc = stats_dtype(x.dtype)
    xa = x.to(acc)
    w, b = weight.to(acc).view(shape), bias.to(acc).view(shape)
    if not apply_act:
        return (xa * w + b).to(x.dtype)
    num = xa * torch.sigmoid(xa * v.to(acc).view(shape))
    grouped = xa.reshape(x.shape[0], groups, (x.shape[1] // groups) * math.prod(x.shape[2:]))
    std = (grouped.var(dim=-1, unbiased=False, keepdim=True) + eps).sqrt()
    y = (num.reshape(grouped.shape) / std).reshape(x.shape)
    return (y * w + b).to(x.dtype)

