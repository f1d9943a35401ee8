"""Dropout with a counter-based mask, plain PyTorch: the specification of the dropout family.

Element i (x's contiguous order) is kept iff u_i >= p (and p < 1), u from the Philox stream
(seed, offset) of tricks_ext.reference.philox; kept elements are scaled by fp32(1 / (1 - p)).
Every backend computes the same mask, so outputs agree bit for bit.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext.reference.philox import Seed, keep_mask


def dropout_scale(p: float) -> float:
    """1 / (1 - p) (0 for p = 1); kernels multiply by its fp32 rounding."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def dropout(x: Tensor, p: float, seed: Seed, offset: Seed) -> Tensor:
    return dropout_add(x, None, p, seed, offset)


def dropout_add(x: Tensor, residual: Optional[Tensor], p: float, seed: Seed, offset: Seed,
                gate: Optional[Tensor] = None) -> Tensor:
    """residual + gate * dropout(x) (ReZero with a learnable scalar gate, arXiv 2003.04887);
    residual and gate optional. Math in fp32 (fp64 for fp64 x)."""
    keep = keep_mask(seed, offset, x.numel(), p, x.device).view(x.shape) & (p < 1.0)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    scale = torch.tensor(dropout_scale(p), dtype=torch.float32).to(device=x.device, dtype=acc)
    y = torch.where(keep, x.to(acc) * scale, torch.zeros((), dtype=acc, device=x.device))
    if gate is not None:
        y = gate.to(acc).reshape(()) * y
    if residual is not None:
        y = residual.to(acc) + y
    return y.to(x.dtype)
