"""Dropout with a counter-based mask, plain PyTorch: the specification of the dropout family.

Element i (x's contiguous order) is kept iff u_i >= p (and p < 1), u from the Philox stream
(seed, offset) of tricks_ext.reference.philox; kept elements are scaled by fp32(1 / (1 - p)).
Every backend computes the same mask, so outputs agree bit for bit.
"""
from __future__ import annotations

import torch
from torch import Tensor

from tricks_ext.reference.philox import Seed, keep_mask


def dropout_scale(p: float) -> float:
    """1 / (1 - p) (0 for p = 1); kernels multiply by its fp32 rounding."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def dropout(x: Tensor, p: float, seed: Seed, offset: Seed) -> Tensor:
    keep = keep_mask(seed, offset, x.numel(), p, x.device).view(x.shape) & (p < 1.0)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    scale = torch.tensor(dropout_scale(p), dtype=torch.float32).to(acc)
    return torch.where(keep, x.to(acc) * scale.to(x.device), torch.zeros((), dtype=acc, device=x.device)).to(x.dtype)
