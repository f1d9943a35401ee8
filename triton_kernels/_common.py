"""Helpers shared by the Triton launchers."""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def acc_dtype(dtype: torch.dtype):
    """Accumulation type inside kernels: fp32, or fp64 for fp64 storage."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@triton.jit
def cast_to(x, DTYPE: tl.constexpr):
    """fp32 -> DTYPE with round-to-nearest-even. For bf16 the rounding is done on the bits:
    Triton's interpreter truncates in fp32 -> bf16 casts (half of random values land one ulp
    low, a bias that accumulates over optimizer steps), while the hardware cast rounds to
    nearest; the integer form gives the hardware's result in both (NaN payloads aside)."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)
