"""Weight standardization in Triton: each program standardizes ROWS output channels.

Rows (output channels) have K = prod(w.shape[1:]) elements, each row contiguous in memory
(any order inside). Three sweeps over the row: sum, centred sum of squares, write; rows are
short (K <= ~5K for common convs/linears), so sweeps two and three hit L2 and DRAM traffic stays
at read w + write w_hat; rows that fit one tile (ONE_SWEEP) are loaded once. Tiles are
[ROWS, BLOCK_K] with ROWS * BLOCK_K = _TILE elements, so that many short rows (depthwise K=9)
share a program instead of idling a wide tile. _TILE = 1024:
8 elements per thread and tensor at 4 warps; with 4096, the tall tiles of short rows spilled
in the backward (`make compile-check`; benchmarks/NOTES.md).
Math: csrc/weight_standardize/math.h (the CPU/CUDA kernels use the same formulas).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, acc_dtype, cast_to, on_input_device
from tricks_ext._dtypes import stats_dtype

_TILE = 1024


@triton.jit
def _tile(n_rows, K, ACC: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's ROWS rows of K: their indices and mask, each row's offset, the column
    offsets of one BLOCK_K sweep, and K in ACC (1 for an empty row)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    return (rows, rows < n_rows, rows.to(tl.int64)[:, None] * K, tl.arange(0, BLOCK_K)[None, :],
            tl.maximum(K, 1).to(ACC))


@triton.jit
def _gain(GAIN, rows, row_ok, HAS_GAIN: tl.constexpr, ROWS: tl.constexpr, ACC: tl.constexpr):
    """The rows' multipliers: the per-channel gain, or 1."""
    if HAS_GAIN:
        return tl.load(GAIN + rows, mask=row_ok, other=0.0).to(ACC)
    return tl.full([ROWS], 1.0, ACC)


@triton.jit
def _weight_standardize_fwd_kernel(W, OUT, GAIN, MEAN, RSTD, n_rows, K, eps,
                                   HAS_GAIN: tl.constexpr, ACC: tl.constexpr,
                                   ROWS: tl.constexpr, BLOCK_K: tl.constexpr, ONE_SWEEP: tl.constexpr):
    rows, row_ok, base, cols, kf = _tile(n_rows, K, ACC, ROWS, BLOCK_K)
    a = _gain(GAIN, rows, row_ok, HAS_GAIN, ROWS, ACC)
    # shifted by each row's first element: constant rows get an exact mean (see the C++ header)
    if ONE_SWEEP:
        # the rows fit one tile (K <= 1024, most convolutions): loaded once and the three sweeps'
        # arithmetic done on the registers, one memory round trip instead of three (the loops
        # below, running once, do the same operations)
        m = row_ok[:, None] & (cols < K)
        x = tl.load(W + base + cols, mask=m, other=0.0).to(ACC)
        pivot = tl.sum(tl.where(m & (cols == 0), x, 0.0), axis=1)[:, None]
        mean = tl.sum(pivot, axis=1) + tl.sum(tl.where(m, x - pivot, 0.0), axis=1) / kf
        d = tl.where(m, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / kf + eps)
        y = (x - mean[:, None]) * rstd[:, None] * a[:, None]
        tl.store(OUT + base + cols, cast_to(y, OUT.dtype.element_ty), mask=m)
    else:
        first = row_ok[:, None] & (cols == 0) & (cols < K)
        pivot = tl.sum(tl.load(W + base + cols, mask=first, other=0.0).to(ACC), axis=1)[:, None]
        acc = tl.zeros([ROWS, BLOCK_K], ACC)
        for k0 in range(0, K, BLOCK_K):
            c = k0 + cols
            m = row_ok[:, None] & (c < K)
            acc += tl.where(m, tl.load(W + base + c, mask=m, other=0.0).to(ACC) - pivot, 0.0)
        mean = tl.sum(pivot, axis=1) + tl.sum(acc, axis=1) / kf
        acc = tl.zeros([ROWS, BLOCK_K], ACC)
        for k0 in range(0, K, BLOCK_K):
            c = k0 + cols
            m = row_ok[:, None] & (c < K)
            d = tl.where(m, tl.load(W + base + c, mask=m, other=0.0).to(ACC) - mean[:, None], 0.0)
            acc += d * d
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / kf + eps)
        for k0 in range(0, K, BLOCK_K):
            c = k0 + cols
            m = row_ok[:, None] & (c < K)
            x = tl.load(W + base + c, mask=m, other=0.0).to(ACC)
            y = (x - mean[:, None]) * rstd[:, None] * a[:, None]
            tl.store(OUT + base + c, cast_to(y, OUT.dtype.element_ty), mask=m)
    tl.store(MEAN + rows, mean, mask=row_ok)
    tl.store(RSTD + rows, rstd, mask=row_ok)


@triton.jit
def _weight_standardize_bwd_kernel(GO, W, GAIN, MEAN, RSTD, GW, GGAIN, n_rows, K,
                                   HAS_GAIN: tl.constexpr, ACC: tl.constexpr,
                                   ROWS: tl.constexpr, BLOCK_K: tl.constexpr, ONE_SWEEP: tl.constexpr):
    rows, row_ok, base, cols, kf = _tile(n_rows, K, ACC, ROWS, BLOCK_K)
    mean = tl.load(MEAN + rows, mask=row_ok, other=0.0).to(ACC)
    rstd = tl.load(RSTD + rows, mask=row_ok, other=0.0).to(ACC)
    a = _gain(GAIN, rows, row_ok, HAS_GAIN, ROWS, ACC)
    if ONE_SWEEP:  # as in the forward: grad and w loaded once
        m = row_ok[:, None] & (cols < K)
        g = tl.load(GO + base + cols, mask=m, other=0.0).to(ACC)
        what = (tl.load(W + base + cols, mask=m, other=0.0).to(ACC) - mean[:, None]) * rstd[:, None]
        s1k = tl.sum(g, axis=1) / kf
        s2_row = tl.sum(g * what, axis=1)
        s2k = s2_row / kf
        d = (a * rstd)[:, None] * (g - s1k[:, None] - what * s2k[:, None])
        tl.store(GW + base + cols, cast_to(d, GW.dtype.element_ty), mask=m)
    else:
        s1 = tl.zeros([ROWS, BLOCK_K], ACC)
        s2 = tl.zeros([ROWS, BLOCK_K], ACC)
        for k0 in range(0, K, BLOCK_K):
            c = k0 + cols
            m = row_ok[:, None] & (c < K)
            g = tl.load(GO + base + c, mask=m, other=0.0).to(ACC)
            x = tl.load(W + base + c, mask=m, other=0.0).to(ACC)
            s1 += g
            s2 += g * ((x - mean[:, None]) * rstd[:, None])
        s1k = tl.sum(s1, axis=1) / kf
        s2_row = tl.sum(s2, axis=1)
        s2k = s2_row / kf
        for k0 in range(0, K, BLOCK_K):
            c = k0 + cols
            m = row_ok[:, None] & (c < K)
            g = tl.load(GO + base + c, mask=m, other=0.0).to(ACC)
            x = tl.load(W + base + c, mask=m, other=0.0).to(ACC)
            what = (x - mean[:, None]) * rstd[:, None]
            d = (a * rstd)[:, None] * (g - s1k[:, None] - what * s2k[:, None])
            tl.store(GW + base + c, cast_to(d, GW.dtype.element_ty), mask=m)
    tl.store(GGAIN + rows, s2_row, mask=row_ok)


def _tiles(rows: int, K: int) -> Tuple[int, int, int]:
    block_k = min(triton.next_power_of_2(max(K, 1)), _TILE)
    n_rows = max(1, min(_TILE // block_k, triton.next_power_of_2(max(rows, 1))))
    return n_rows, block_k, triton.cdiv(rows, n_rows)


def _row_len(w: torch.Tensor) -> int:
    return w.numel() // w.shape[0] if w.shape[0] else 0


@on_input_device
def weight_standardize_fwd(w: torch.Tensor, eps: float, gain: Optional[torch.Tensor]
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w_hat, mean, rstd) for a row-dense ``w``; ``gain`` is (O,) in the stats dtype or None."""
    rows, K = w.shape[0], _row_len(w)
    out = torch.empty_like(w)
    mean = torch.empty(rows, dtype=stats_dtype(w.dtype), device=w.device)
    rstd = torch.empty_like(mean)
    if rows:
        block_rows, block_k, grid = _tiles(rows, K)
        _weight_standardize_fwd_kernel[(grid,)](
            w, out, gain if gain is not None else mean, mean, rstd, rows, K, float(eps),
            HAS_GAIN=gain is not None, ACC=acc_dtype(w.dtype), ROWS=block_rows, BLOCK_K=block_k,
            ONE_SWEEP=K <= block_k, **FUSED)
    return out, mean, rstd


@on_input_device
def weight_standardize_bwd(grad_out: torch.Tensor, w: torch.Tensor, gain: Optional[torch.Tensor],
                           mean: torch.Tensor, rstd: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(grad_w, grad_gain) with grad_gain[o] = sum_k grad_out * w_hat (before gain)."""
    rows, K = w.shape[0], _row_len(w)
    if grad_out.stride() != w.stride():  # the kernel walks w's memory order
        grad_out = torch.empty_like(w).copy_(grad_out)
    grad_w = torch.empty_like(w)
    grad_gain = torch.empty(rows, dtype=stats_dtype(w.dtype), device=w.device)
    if rows:
        block_rows, block_k, grid = _tiles(rows, K)
        _weight_standardize_bwd_kernel[(grid,)](
            grad_out, w, gain if gain is not None else mean, mean, rstd, grad_w, grad_gain, rows, K,
            HAS_GAIN=gain is not None, ACC=acc_dtype(w.dtype), ROWS=block_rows, BLOCK_K=block_k,
            ONE_SWEEP=K <= block_k, **FUSED)
    return grad_w, grad_gain
