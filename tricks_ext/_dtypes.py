"""The dtype rules every layer shares (reference, ops, Triton launchers): which float dtypes the
ops take, and the dtype their statistics and accumulations run in."""
from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Statistics/accumulation dtype: fp32, or fp64 for fp64 inputs (gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def round_fp32(v: float) -> float:
    """v rounded to the nearest float32 (ties to even, subnormals and overflow to inf as IEEE),
    as a Python float. Pure Python: torch.compile traces it without a graph break, where
    ``float(torch.tensor(v, dtype=torch.float32))`` reads a tensor on the host."""
    if v == 0.0 or not math.isfinite(v):
        return float(v)
    m, e = math.frexp(v)  # v = m 2^e, 0.5 <= |m| < 1
    bits = 24 if e >= -125 else e + 149  # float32: 24 significant bits, subnormal quantum 2^-149
    r = math.ldexp(float(round(math.ldexp(m, bits))), e - bits)  # round(): ties to even
    return r if abs(r) < 2.0 ** 128 else math.copysign(math.inf, v)
