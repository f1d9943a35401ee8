"""Weight standardization, plain PyTorch: the specification in code.

Matches timm ``StdConv2d`` / ``ScaledStdConv2d`` (arXiv 1903.10520, NF-Nets): per output
channel o, over all other dims, w_hat = (w - mean) / sqrt(biased var + eps), then
times gain[o] * scale when given. Statistics in fp32 (fp64 for fp64 weights).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype


def weight_standardize(w: Tensor, eps: float = 1e-6, gain: Optional[Tensor] = None,
                       scale: Optional[float] = None) -> Tensor:
    acc = stats_dtype(w.dtype)
    x = w.to(acc)
    var, mean = torch.var_mean(x, dim=tuple(range(1, w.dim())), correction=0, keepdim=True)
    y = (x - mean) * torch.rsqrt(var + eps)
    a = per_channel_multiplier(w, gain, scale)
    if a is not None:
        y = y * a.reshape(-1, *([1] * (w.dim() - 1)))
    return y.to(w.dtype)


def per_channel_multiplier(w: Tensor, gain: Optional[Tensor], scale: Optional[float]) -> Optional[Tensor]:
    """gain * scale as an (O,) tensor in the statistics dtype, or None when both are absent."""
    acc = stats_dtype(w.dtype)
    a = None if gain is None else gain.reshape(-1).to(acc)
    if scale is not None:
        a = torch.full((w.shape[0],), float(scale), dtype=acc, device=w.device) if a is None else a * scale
    return a
