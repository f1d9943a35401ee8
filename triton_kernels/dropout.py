"""Dropout with a regenerated mask in Triton: y = residual + gate * x * keep / (1 - p)
(residual and gate optional), keep of element i from element i // GROUP of the Philox stream
read through ``stream_uniform`` (GROUP 1: dropout; elements per sample: drop path);
seed and offset are loaded from a tensor, so neither is a compile-time constant."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from tricks_ext._dtypes import stats_dtype
from tricks_ext.triton_kernels._common import EXACT, acc_dtype, cast_to, on_input_device

BLOCK = 1024


@triton.jit
def stream_uniform(seed, offset, idx):
    """u (fp32) of elements ``idx`` (int64 block) of the Philox stream (seed, offset): counter
    offset + idx // 4, word idx % 4 of tl.randint4x (csrc/dropout/math.h)."""
    w0, w1, w2, w3 = tl.randint4x(seed, offset + idx // 4)
    r = idx % 4
    word = tl.where(r == 0, w0, tl.where(r == 1, w1, tl.where(r == 2, w2, w3)))
    return tl.random.uint_to_uniform_float(word)


@triton.jit
def _dropout_apply_kernel(X, RES, GATE, Y, SEED_OFFSET, n, p, scale, group, HAS_RES: tl.constexpr, HAS_GATE: tl.constexpr,
                          ACC: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    seed = tl.load(SEED_OFFSET)
    offset = tl.load(SEED_OFFSET + 1)
    keep = (stream_uniform(seed, offset, idx // group) >= p) & (p < 1.0)
    x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    y = tl.where(keep, x * scale, 0.0)
    if HAS_GATE:
        y = tl.load(GATE).to(ACC) * y
    if HAS_RES:
        y = tl.load(RES + idx, mask=mask, other=0.0).to(ACC) + y
    tl.store(Y + idx, cast_to(y, Y.dtype.element_ty), mask=mask)


@on_input_device
def dropout_apply(x: torch.Tensor, residual: Optional[torch.Tensor], gate: Optional[torch.Tensor],
                  seed_offset: torch.Tensor, p: float, scale: float, group: int) -> torch.Tensor:
    """Contiguous ``x`` (and ``residual``); ``gate`` one acc-dtype element; ``seed_offset``
    int64 [2] on x's device."""
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        _dropout_apply_kernel[(triton.cdiv(n, BLOCK),)](
            x, residual if residual is not None else x, gate if gate is not None else seed_offset, y, seed_offset,
            n, float(p), float(scale), group, HAS_RES=residual is not None, HAS_GATE=gate is not None,
            ACC=acc_dtype(x.dtype), BLOCK=BLOCK, **EXACT)
    return y


@triton.jit
def _dropout_apply_bwd_kernel(G, X, GATE, DX, PARTIALS, SEED_OFFSET, n, p, scale, group, HAS_X: tl.constexpr,
                              HAS_GATE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    # every load before the mask is drawn and dx stored, so they are in flight together (x loaded
    # after the store waited a round trip of its own; scripts/gpu_model.py)
    g = tl.load(G + idx, mask=mask, other=0.0).to(ACC)
    if HAS_X:
        x = tl.load(X + idx, mask=mask, other=0.0).to(ACC)
    if HAS_GATE:
        gate = tl.load(GATE).to(ACC)
    seed = tl.load(SEED_OFFSET)
    offset = tl.load(SEED_OFFSET + 1)
    keep = (stream_uniform(seed, offset, idx // group) >= p) & (p < 1.0)
    d = tl.where(keep, g * scale, 0.0)
    dx = d
    if HAS_GATE:
        dx = gate * d
    tl.store(DX + idx, cast_to(dx, DX.dtype.element_ty), mask=mask)
    if HAS_X:
        # a dropped element adds 0 whatever x is (gate_term in csrc/dropout/math.h)
        tl.store(PARTIALS + pid, tl.sum(tl.where(mask & keep, x * d, 0.0), axis=0))


@on_input_device
def dropout_apply_bwd(grad: torch.Tensor, x: Optional[torch.Tensor], gate: Optional[torch.Tensor],
                      seed_offset: torch.Tensor, p: float, scale: float, group: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(dx, partials): dx = gate * dropout(grad); with x, one partial sum of x * dropout(grad)
    per BLOCK elements (the caller sums them)."""
    dx = torch.empty_like(grad)
    n = grad.numel()
    acc = stats_dtype(grad.dtype)
    partials = torch.empty(triton.cdiv(n, BLOCK) if x is not None else 0, dtype=acc, device=grad.device)
    if n:
        _dropout_apply_bwd_kernel[(triton.cdiv(n, BLOCK),)](
            grad, x if x is not None else grad, gate if gate is not None else seed_offset, dx,
            partials if x is not None else dx, seed_offset, n, float(p), float(scale), group,
            HAS_X=x is not None, HAS_GATE=gate is not None,
            ACC=acc_dtype(grad.dtype), BLOCK=BLOCK, num_warps=_bwd_warps(grad.dtype), **EXACT)
    return dx, partials


def _bwd_warps(dtype: torch.dtype) -> int:
    """8 warps for fp64 (4 elements a thread): with 4, sm_80's ptxas spills 8 B of the fp64
    backward (compile-check); 4 otherwise (Triton's default)."""
    return 8 if dtype == torch.float64 else 4
