"""Dropout with a counter-based mask, plain PyTorch: the specification of the dropout family.

Element i (x's contiguous order) is kept iff u_{i // group} >= p (and p < 1), u from the Philox
stream (seed, offset) defined below; kept elements are scaled by fp32(1 / (1 - p)). group = 1 is
dropout; group = numel / N (one draw per sample of dim 0) is drop path (stochastic depth).
Every backend computes the same mask, so outputs agree bit for bit.

The stream: Philox4x32-10 (tricks_ext/_philox.py, checked against Random123's known answers).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype
from tricks_ext._philox import Seed, uniform

def keep_mask(seed: Seed, offset: Seed, numel: int, p: float, device: torch.device = torch.device("cpu")) -> Tensor:
    """Boolean keep mask of the dropout family: u >= p."""
    return uniform(seed, offset, numel, device) >= p


def dropout_scale(p: float) -> float:
    """1 / (1 - p) (0 for p = 1); kernels multiply by its fp32 rounding."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def dropout(x: Tensor, p: float, seed: Seed, offset: Seed) -> Tensor:
    return dropout_add(x, None, None, seed, offset, p)


def drop_path(x: Tensor, p: float, seed: Seed, offset: Seed, scale_by_keep: bool = True,
              residual: Optional[Tensor] = None) -> Tensor:
    """Per-sample dropout (timm ``drop_path``): sample n of dim 0 is kept iff u_n >= p, scaled by
    1 / (1 - p) when ``scale_by_keep``; plus ``residual`` when given."""
    group = x.numel() // x.shape[0] if x.numel() else 1
    return dropout_add(x, residual, None, seed, offset, p, None if scale_by_keep else 1.0, group)


def dropout_add(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed: Seed, offset: Seed, p: float,
                scale: Optional[float] = None, group: int = 1) -> Tensor:
    """residual + gate * dropout(x) (ReZero with a learnable scalar gate, arXiv 2003.04887), the
    arguments of the ``dropout_apply`` op (its seed_offset as seed, offset); residual and gate
    optional; ``scale`` of kept elements defaults to 1 / (1 - p); ``group`` consecutive elements
    share one draw. Math in fp32 (fp64 for fp64 x)."""
    draws = keep_mask(seed, offset, -(-x.numel() // group), p, x.device)
    keep = draws.repeat_interleave(group)[:x.numel()].view(x.shape) & (p < 1.0)
    acc = stats_dtype(x.dtype)
    scale = dropout_scale(p) if scale is None else scale
    scale = torch.tensor(scale, dtype=torch.float32).to(device=x.device, dtype=acc)
    y = torch.where(keep, x.to(acc) * scale, torch.zeros((), dtype=acc, device=x.device))
    if gate is not None:
        y = gate.to(acc).reshape(()) * y
    if residual is not None:
        y = residual.to(acc) + y
    return y.to(x.dtype)
