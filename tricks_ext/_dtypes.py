"""The dtype rules every layer shares (reference, ops, Triton launchers): which float dtypes the
ops take, and the dtype their statistics and accumulations run in."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics/accumulation dtype: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
