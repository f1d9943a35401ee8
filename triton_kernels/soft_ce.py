"""Soft-target cross-entropy in Triton (math: csrc/soft_ce/math.h). One program per
row, or per piece of a row when there are too few rows to fill the GPU (row_pieces); the
forward streams the row once in BLOCK-wide chunks with a per-lane online log-sum-exp (so C of
128k+ needs no second pass), pieces merged by a second kernel; the backward writes dz in one
pass.
MODE: 0 dense targets, 1 mixed labels (a, b, lam), 2 hard labels (a, ignore_index); HAS_W: class
weights W (C,) scale every target (t_ic -> w_c t_ic)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, acc_dtype, cast_to, on_input_device, piece_columns, row_pieces, row_vector
from tricks_ext._dtypes import stats_dtype

DENSE, MIXED, HARD = 0, 1, 2


# Per-row statistics the forward saves for the backward: shift, log_sum, T.
STATS_COLUMNS = 3

def _split(value: float) -> Tuple[float, float]:
    """value as fp32 hi + lo: Triton passes float scalars as fp32, and fp64 logits need the
    label_smoothing to ~48 bits (hi + lo is rebuilt in the accumulation dtype in the kernels). The
    per-class share label_smoothing / C comes from the host the same way: a division in the kernel is
    a subroutine call, whose saved registers spilled 4 B of the forward at i64 sizes on sm_80
    (compile-check)."""
    hi = float(torch.tensor(value, dtype=torch.float32))
    return hi, value - hi


@triton.jit
def _rejoin(hi, lo, ACC: tl.constexpr):
    """A value passed as fp32 hi + lo (_split), rebuilt in ACC (scalar arguments are Python floats
    when interpreted, fp32 when compiled)."""
    one = tl.full([], 1.0, ACC)
    return hi * one + lo * one


def _block(classes: int) -> int:
    """Columns per sweep of a row: up to 2048. At 4096 (8 warps, 16 elements of each array per
    thread) the fp32 forward held 86 registers, 16 resident warps per SM and 59 % of the modelled
    H100 ceiling at 131072 classes (bfloat16: 76, 24 warps, 63 %); at 2048 it holds 40, 48 warps,
    86 % (make gpu-model). fp64's forward also spilled at 4096, with 8 or 16 warps (compile-check)."""
    return min(2048, max(16, triton.next_power_of_2(classes)))


def _warps(block: int) -> int:
    """Warps per row program: 8 at BLOCK = 2048 (8 elements of each array per thread), 4 below."""
    return 8 if block >= 2048 else 4


@triton.jit
def _row_target(A, B, LAM, i, C, label_smoothing, ignore_index, MODE: tl.constexpr, ACC: tl.constexpr):
    """(a, b, wa, wb, ignored, invalid) of a compact row, weights in ACC."""
    a = tl.load(A + i)
    if MODE == 1:
        b = tl.load(B + i)
        lam = tl.load(LAM + i).to(ACC)
        wa = (1.0 - label_smoothing) * lam
        wb = (1.0 - label_smoothing) * (1.0 - lam)
        ignored = a != a  # False, as a tensor
    else:
        b = a
        wa = 1.0 - label_smoothing
        wb = 0.0 * wa
        ignored = a == ignore_index
    invalid = (~ignored) & ((a < 0) | (a >= C) | (b < 0) | (b >= C))
    return a, b, wa, wb, ignored, invalid


@triton.jit
def _weighted(w, z):
    """w * z, 0 for a zero weight even where z is -inf (a masked logit)."""
    return w * tl.where(w == 0, 0.0, z)


@triton.jit
def _finish(LOSS, STATS, A, B, LAM, i, C, mx, total_e, dot, mass, label_smoothing, ignore_index,
            N_STATS: tl.constexpr, MODE: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr):
    """Row i's loss and stats from its merged sums: the max mx, total_e = sum_c exp(z_c - mx) (0
    where mx is -inf), dot = sum_c t_c z_c and mass = sum_c t_c (targets with their class weights;
    unused for unweighted compact targets, whose mass is 1)."""
    # lse kept as mx + log_sum (kStats, row_log_sum in csrc/soft_ce/math.h)
    log_sum = tl.where((mx == float("inf")) | (mx == float("-inf")), float("nan"), tl.log(total_e))
    lse = mx + log_sum
    if MODE == 0 or HAS_W:
        total = mass
    else:
        total = lse * 0.0 + 1.0
    loss = lse * total - dot
    if MODE != 0:
        a, b, wa, wb, ignored, invalid = _row_target(A, B, LAM, i, C, label_smoothing, ignore_index, MODE, ACC)
        loss = tl.where(ignored, 0.0, tl.where(invalid, float("nan"), loss))
    tl.store(LOSS + i, loss)
    tl.store(STATS + N_STATS * i, mx)
    tl.store(STATS + N_STATS * i + 1, log_sum)
    tl.store(STATS + N_STATS * i + 2, total)


@triton.jit
def _fwd_kernel(Z, A, B, LAM, T, W, LOSS, STATS, PARTS, C_VEC, piece_sweeps, smoothing_hi, smoothing_lo, off_hi, off_lo,
                ignore_index, N_STATS: tl.constexpr, MODE: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr,
                VEC: tl.constexpr, BLOCK: tl.constexpr, SPLIT: tl.constexpr):
    """Row tl.program_id(0), or with SPLIT its piece tl.program_id(1), whose (max, sum of exp
    below it, dot, mass) go to PARTS for _merge_kernel."""
    C = C_VEC * VEC  # row_vector
    i = tl.program_id(0).to(tl.int64)
    base = i * C
    begin, end = piece_columns(C, piece_sweeps, BLOCK, SPLIT)
    label_smoothing = _rejoin(smoothing_hi, smoothing_lo, ACC)
    off = _rejoin(off_hi, off_lo, ACC)
    m = tl.full([BLOCK], float("-inf"), ACC)
    s = tl.zeros([BLOCK], ACC)
    sz = tl.zeros([BLOCK], ACC)
    st = tl.zeros([BLOCK], ACC)
    stz = tl.zeros([BLOCK], ACC)
    for c0 in range(begin, end, BLOCK):
        # 32-bit lanes off a scalar row pointer: with C past 2^31 (i64), 64-bit column indices
        # cost the registers that made sm_80 spill 4 B (compile-check)
        lanes = tl.arange(0, BLOCK)
        mask = lanes < tl.minimum(end - c0, BLOCK).to(tl.int32)
        v = tl.load(Z + base + c0 + lanes, mask=mask, other=float("-inf")).to(ACC)
        m_new = tl.maximum(m, v)
        ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # lanes still empty: no -inf - -inf
        s = s * tl.exp(m - ref) + tl.exp(v - ref)
        m = m_new
        vz = tl.where(mask, v, 0.0)
        if HAS_W:
            wv = tl.load(W + c0 + lanes, mask=mask, other=0.0).to(ACC)
            sz += _weighted(wv, vz)  # sum_c w_c z_c
        else:
            sz += vz
        if MODE == 0:
            # c0 + lanes as one term: added to the pointer one by one, sm_90 kept the row's
            # pointer on the stack (8 B spilled, fp32 weighted targets, 400 classes); the same
            # form for the logits made the weighted hard and mixed labels spill 4-8 B instead
            tv = tl.load(T + base + (c0 + lanes), mask=mask, other=0.0).to(ACC)
            if HAS_W:
                tv = tv * wv
            st += tv
            stz += _weighted(tv, vz)
    mx = tl.max(m, axis=0)
    total_e = tl.sum(s * tl.exp(m - tl.where(mx == float("-inf"), 0.0, mx)), axis=0)
    if MODE == 0:
        dot = tl.sum(stz, axis=0)
        mass = tl.sum(st, axis=0)
    else:
        dot = _weighted(off, tl.sum(sz, axis=0))
        mass = dot * 0.0
        if HAS_W:
            # sum_c w_c in a sweep of its own: one more accumulator in the row's loop spilled
            # fp64 at i64 sizes on sm_80 (compile-check); W is C values, read from L2
            sw = tl.zeros([BLOCK], ACC)
            for c0 in range(begin, end, BLOCK):
                lanes = tl.arange(0, BLOCK)
                sw += tl.load(W + c0 + lanes, mask=lanes < tl.minimum(end - c0, BLOCK).to(tl.int32), other=0.0).to(ACC)
            mass = off * tl.sum(sw, axis=0)
        if begin == 0:
            # the labels' terms, once per row (by its first piece)
            a, b, wa, wb, ignored, invalid = _row_target(A, B, LAM, i, C, label_smoothing, ignore_index, MODE, ACC)
            ok = (~ignored) & (~invalid)
            za = tl.load(Z + base + a, mask=ok, other=0.0).to(ACC)
            zb = tl.load(Z + base + b, mask=ok, other=0.0).to(ACC)
            if HAS_W:
                wa = wa * tl.load(W + a, mask=ok, other=0.0).to(ACC)
                wb = wb * tl.load(W + b, mask=ok, other=0.0).to(ACC)
                mass += wa + wb
            dot += _weighted(wa.to(ACC), za) + _weighted(wb.to(ACC), zb)
    if SPLIT:
        part = PARTS + 4 * (i * tl.num_programs(1) + tl.program_id(1))
        tl.store(part, mx)
        tl.store(part + 1, total_e)
        tl.store(part + 2, dot)
        tl.store(part + 3, mass)
    else:
        _finish(LOSS, STATS, A, B, LAM, i, C, mx, total_e, dot, mass, label_smoothing, ignore_index, N_STATS, MODE,
                HAS_W, ACC)


# Pieces per step of _merge_kernel's sweeps over a row's parts (up to ROW_PROGRAMS of them): one
# per thread of its 4 warps.
MERGE_BLOCK = 128


@triton.jit
def _merge_kernel(A, B, LAM, LOSS, STATS, PARTS, C_VEC, pieces, smoothing_hi, smoothing_lo, ignore_index,
                  N_STATS: tl.constexpr, MODE: tl.constexpr, HAS_W: tl.constexpr, ACC: tl.constexpr,
                  VEC: tl.constexpr, BLOCK: tl.constexpr):
    """Row tl.program_id(0)'s loss and stats from its pieces' (max, sum, dot, mass): the max over
    the pieces, then their sums rescaled to it."""
    C = C_VEC * VEC
    i = tl.program_id(0).to(tl.int64)
    row = PARTS + 4 * i * pieces
    m = tl.full([BLOCK], float("-inf"), ACC)
    for k0 in range(0, pieces, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        m = tl.maximum(m, tl.load(row + 4 * k, mask=k < pieces, other=float("-inf")))
    mx = tl.max(m, axis=0)
    ref = tl.where(mx == float("-inf"), 0.0, mx)
    total_e = tl.zeros([BLOCK], ACC)
    dot = tl.zeros([BLOCK], ACC)
    mass = tl.zeros([BLOCK], ACC)
    for k0 in range(0, pieces, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        have = k < pieces
        part = row + 4 * k
        total_e += tl.load(part + 1, mask=have, other=0.0) * tl.exp(tl.load(part, mask=have, other=float("-inf")) - ref)
        dot += tl.load(part + 2, mask=have, other=0.0)
        mass += tl.load(part + 3, mask=have, other=0.0)
    _finish(LOSS, STATS, A, B, LAM, i, C, mx, tl.sum(total_e, axis=0), tl.sum(dot, axis=0), tl.sum(mass, axis=0),
            _rejoin(smoothing_hi, smoothing_lo, ACC), ignore_index, N_STATS, MODE, HAS_W, ACC)


@triton.jit
def _bwd_kernel(G, G_STRIDE, Z, A, B, LAM, T, W, STATS, DZ, C_VEC, piece_sweeps, smoothing_hi, smoothing_lo, off_hi,
                off_lo, ignore_index, N_STATS: tl.constexpr, MODE: tl.constexpr, HAS_W: tl.constexpr,
                ACC: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr, SPLIT: tl.constexpr):
    C = C_VEC * VEC  # row_vector
    i = tl.program_id(0).to(tl.int64)
    base = i * C
    begin, end = piece_columns(C, piece_sweeps, BLOCK, SPLIT)
    label_smoothing = _rejoin(smoothing_hi, smoothing_lo, ACC)
    off = _rejoin(off_hi, off_lo, ACC)
    g = tl.load(G + i * G_STRIDE)
    shift = tl.load(STATS + N_STATS * i)
    log_sum = tl.load(STATS + N_STATS * i + 1)
    total = tl.load(STATS + N_STATS * i + 2)
    if MODE != 0:
        a, b, wa, wb, ignored, invalid = _row_target(A, B, LAM, i, C, label_smoothing, ignore_index, MODE, ACC)
    for c0 in range(begin, end, BLOCK):
        # 32-bit lanes off scalar offsets, as in the forward: with 64-bit columns the weighted
        # fp64 backward spilled 8 B at i64 sizes on sm_80. c0 + lanes as one term: added to the
        # pointer one by one, the fp16 one spilled 8 B on sm_90 with unaligned rows (compile-check)
        lanes = tl.arange(0, BLOCK)
        mask = lanes < tl.minimum(end - c0, BLOCK).to(tl.int32)
        v = tl.load(Z + base + (c0 + lanes), mask=mask, other=0.0).to(ACC)
        p = tl.exp((v - shift) - log_sum)
        if MODE == 0:
            t = tl.load(T + base + (c0 + lanes), mask=mask, other=0.0).to(ACC)
        else:
            t = off + tl.where(lanes == _lane_of(a, c0, BLOCK), wa, 0.0).to(ACC) + \
                tl.where(lanes == _lane_of(b, c0, BLOCK), wb, 0.0).to(ACC)
        if HAS_W:
            d = g * (p * total - t * tl.load(W + c0 + lanes, mask=mask, other=0.0).to(ACC))
        elif MODE == 0:
            d = g * (p * total - t)
        else:
            d = g * (p - t.to(ACC))
        if MODE != 0:
            d = tl.where(ignored, 0.0, tl.where(invalid, float("nan"), d))
        tl.store(DZ + base + (c0 + lanes), cast_to(d, DZ.dtype.element_ty), mask=mask)


@triton.jit
def _lane_of(label, c0, BLOCK: tl.constexpr):
    """The lane of column ``label`` in the sweep starting at column c0, as int32; -1 when it lies
    outside the sweep (a label of any int64 value)."""
    rel = label - c0
    return tl.where((rel >= 0) & (rel < BLOCK), rel, -1).to(tl.int32)


def _args(logits, a, b, lam, dense, weight):
    mode = DENSE if dense is not None else (MIXED if b is not None else HARD)
    dummy = logits
    return mode, tuple(dummy if t is None else t for t in (a, b, lam, dense, weight))


# The ops' reduction codes (csrc/soft_ce/prepare.h: kNone, kSum, kMean).
NONE, SUM, MEAN = 0, 1, 2


def _mean_divisor(a: Optional[torch.Tensor], b: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                  ignore_index: int, rows: int, acc: torch.dtype, device: torch.device) -> torch.Tensor:
    """'mean''s divisor: when the targets are hard labels (torch cross_entropy), the rows not
    ignored, or the sum of their labels' class weights (a label out of range counts its clamped
    class: its row is NaN anyway); else N; on the device (no sync)."""
    if a is None or b is not None:
        return torch.tensor(float(rows), dtype=acc, device=device)
    kept = a != ignore_index
    if weight is None:
        return torch.count_nonzero(kept).to(acc)
    return torch.where(kept, weight[a.clamp(0, weight.shape[0] - 1)], 0).to(acc).sum()


def row_grads(grad: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor], weight: Optional[torch.Tensor],
              ignore_index: int, reduction: int, rows: int) -> torch.Tensor:
    """dL/dloss_i in the statistics dtype: (N,) for 'none', else a 0-dim tensor (divided by
    'mean''s divisor) that every row shares."""
    g = grad.to(stats_dtype(grad.dtype))
    if reduction != MEAN:
        return g.contiguous()
    return g / _mean_divisor(a, b, weight, ignore_index, rows, g.dtype, g.device)


def dense_target_grad(grad: torch.Tensor, logits: torch.Tensor, weight: Optional[torch.Tensor], stats: torch.Tensor,
                      reduction: int) -> torch.Tensor:
    """The gradient for dense targets, d loss_i / d t_ic = w_c (lse_i - z_ic), from the forward's
    stats (lse = shift + log_sum); tensor ops, not a kernel: targets rarely need a gradient."""
    g = row_grads(grad, None, None, None, 0, reduction, logits.shape[0])
    g = g[:, None] if g.dim() else g
    d = stats[:, :1] + stats[:, 1:2] - logits.to(stats.dtype)
    if weight is not None:
        d = d * weight.to(stats.dtype)
    return (d * g).to(logits.dtype)


@on_input_device
def soft_ce_fwd(logits: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor], lam: Optional[torch.Tensor],
                dense: Optional[torch.Tensor], weight: Optional[torch.Tensor], label_smoothing: float, ignore_index: int,
                reduction: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``tricks_ext::soft_ce_fwd`` in Triton: (the loss reduced by ``reduction`` in the logits'
    dtype, stats (N, STATS_COLUMNS): shift, log_sum, T in the statistics dtype)."""
    rows, classes = logits.shape
    acc = stats_dtype(logits.dtype)
    loss = torch.empty(rows, dtype=acc, device=logits.device)
    stats = torch.empty(rows, STATS_COLUMNS, dtype=acc, device=logits.device)
    mode, pointers = _args(logits, a, b, lam, dense, weight)
    block, vec = _block(classes), row_vector(classes, logits.dtype)
    pieces, piece_sweeps = row_pieces(rows, classes, block)
    # per piece of a split row: its max, the sum of exp below it, dot and mass (_fwd_kernel)
    parts = torch.empty(rows, pieces, 4, dtype=acc, device=logits.device) if pieces > 1 else loss
    common = dict(N_STATS=STATS_COLUMNS, MODE=mode, HAS_W=weight is not None, ACC=acc_dtype(logits.dtype), VEC=vec,
                  **FUSED)
    if rows:
        _fwd_kernel[(rows, pieces)](logits, *pointers, loss, stats, parts, classes // vec, piece_sweeps,
                                    *_split(label_smoothing), *_split(label_smoothing / classes), int(ignore_index),
                                    BLOCK=block, SPLIT=pieces > 1, num_warps=_warps(block), **common)
    if rows and pieces > 1:
        # parts for the absent label pointers: the logits would be C times the bytes it may touch
        _merge_kernel[(rows,)](*(parts if t is None else t for t in (a, b, lam)), loss, stats, parts, classes // vec, pieces, *_split(label_smoothing),
                               int(ignore_index), BLOCK=MERGE_BLOCK, num_warps=4, **common)
    if reduction == NONE:
        return loss.to(logits.dtype), stats
    total = torch.sum(loss)
    if reduction == MEAN:
        total = total / _mean_divisor(a, b, weight, ignore_index, rows, acc, logits.device)
    return total.to(logits.dtype), stats


@on_input_device
def soft_ce_bwd(grad: torch.Tensor, logits: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor],
                lam: Optional[torch.Tensor], dense: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                stats: torch.Tensor, label_smoothing: float, ignore_index: int, reduction: int) -> torch.Tensor:
    """``tricks_ext::soft_ce_bwd`` in Triton: dlogits from dL/dloss (the forward's shape)."""
    rows, classes = logits.shape
    g = row_grads(grad, a, b, weight, ignore_index, reduction, rows)
    dz = torch.empty_like(logits)
    mode, pointers = _args(logits, a, b, lam, dense, weight)
    block, vec = _block(classes), row_vector(classes, logits.dtype)
    pieces, piece_sweeps = row_pieces(rows, classes, block)
    if rows:
        _bwd_kernel[(rows, pieces)](g, 1 if g.dim() else 0, logits, *pointers, stats, dz, classes // vec, piece_sweeps,
                                    *_split(label_smoothing), *_split(label_smoothing / classes), int(ignore_index),
                                    N_STATS=STATS_COLUMNS, MODE=mode, HAS_W=weight is not None,
                                    ACC=acc_dtype(logits.dtype), VEC=vec, BLOCK=block, SPLIT=pieces > 1,
                                    num_warps=_warps(block), **FUSED)
    return dz
