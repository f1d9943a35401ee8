"""Helpers shared by the Triton launchers."""
from __future__ import annotations

import torch
import triton.language as tl


def acc_dtype(dtype: torch.dtype):
    """Accumulation type inside kernels: fp32, or fp64 for fp64 storage."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32
