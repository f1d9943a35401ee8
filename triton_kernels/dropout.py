"""Dropout with a regenerated mask in Triton: y = x * keep / (1 - p), keep from the Philox
stream read through ``stream_uniform`` (triton_kernels/philox.py); seed and offset are loaded
from a tensor, so neither is a compile-time constant."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import cast_to
from tricks_ext.triton_kernels.philox import stream_uniform

BLOCK = 1024


@triton.jit
def _dropout_apply_kernel(X, Y, SEED_OFFSET, n, p, scale, ACC: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    seed = tl.load(SEED_OFFSET)
    offset = tl.load(SEED_OFFSET + 1)
    keep = (stream_uniform(seed, offset, idx) >= p) & (p < 1.0)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    y = tl.where(keep, x * scale, 0.0)
    tl.store(Y + idx, cast_to(y, Y.dtype.element_ty), mask=mask)


def dropout_apply(x: torch.Tensor, seed_offset: torch.Tensor, p: float, scale: float) -> torch.Tensor:
    """Contiguous ``x``; ``seed_offset`` int64 [2] on x's device."""
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        _dropout_apply_kernel[(triton.cdiv(n, BLOCK),)](
            x, y, seed_offset, n, float(p), float(scale),
            ACC=tl.float64 if x.dtype == torch.float64 else tl.float32, BLOCK=BLOCK)
    return y
