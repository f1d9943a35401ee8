"""Soft F1 sums in Triton (math: csrc/soft_f1/math.h). Forward: for softmax a program per row
writes the row's (shift, log_sum) (online log-sum-exp); then a program per (block of classes,
chunk of rows) walks the chunk's rows and writes its three sums to the chunk's partial row,
summed over the chunks here (no atomics: deterministic). Backward: a program per row.
LABELS: targets are labels (else dense); MULTI_LABEL: sigmoid (else the row's softmax)."""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from tricks_ext._dtypes import stats_dtype
from tricks_ext.triton_kernels._common import FUSED, acc_dtype, cast_to, on_input_device, row_vector


def _block(classes: int, dtype: torch.dtype) -> int:
    """Columns per sweep of a row (stats, backward): up to 2048 with 8 warps, 8 per thread;
    1024 for fp64, whose softmax backward spilled 4 B at 2048 on sm_90 (compile-check)."""
    return min(1024 if dtype == torch.float64 else 2048, max(16, triton.next_power_of_2(classes)))


# Classes per program of the forward's column sums: 128 lanes (4 warps), a row's 128 classes
# read per step (512 B of fp32: coalesced), FWD_ROWS rows a step (8 loads a thread).
BLOCK_C = 128
FWD_ROWS = 8


def _chunk_rows(classes: int) -> int:
    """Rows per chunk: soft_f1/math.h's chunk_rows (about 64K elements)."""
    return max(1, (1 << 16) // max(classes, 1))


@triton.jit
def _probability(v, shift, log_sum, MULTI_LABEL: tl.constexpr):
    if MULTI_LABEL:
        return 1.0 / (1.0 + tl.exp(-v))
    else:
        return tl.exp((v - shift) - log_sum)


@triton.jit
def _target(A, T, i, base, cols, mask, C, LABELS: tl.constexpr, ACC: tl.constexpr):
    """t of the columns ``cols`` of row i: dense, or the one-hot of the label (NaN for a label
    out of range)."""
    if LABELS:
        a = tl.load(A + i)
        invalid = (a < 0) | (a >= C)
        return tl.where(invalid, float("nan"), tl.where(cols == a, 1.0, 0.0)).to(ACC)
    else:
        return tl.load(T + base + cols, mask=mask, other=0.0).to(ACC)


@triton.jit
def _dp(G, A, T, i, base, cols, mask, C, LABELS: tl.constexpr, ACC: tl.constexpr):
    """dL/dp of the columns ``cols`` of row i: g_tp t + g_sp (G: dL/dsums, (3, C))."""
    return (tl.load(G + cols, mask=mask, other=0.0) * _target(A, T, i, base, cols, mask, C, LABELS, ACC) +
            tl.load(G + C + cols, mask=mask, other=0.0))


@triton.jit
def _row_stats(Z, base, C, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """(shift, log_sum) of the softmax of the row at ``base``: NaN log_sum for a row of +inf
    or all -inf."""
    m = tl.full([BLOCK], float("-inf"), ACC)
    s = tl.zeros([BLOCK], ACC)
    for c0 in range(0, C, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        v = tl.load(Z + base + cols, mask=cols < C, other=float("-inf")).to(ACC)
        m_new = tl.maximum(m, v)
        ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - ref) + tl.exp(v - ref)
        m = m_new
    mx = tl.max(m, axis=0)
    total = tl.sum(s * tl.exp(m - tl.where(mx == float("-inf"), 0.0, mx)), axis=0)
    bad = (mx == float("inf")) | (mx == float("-inf"))
    return tl.where(bad, 0.0, mx), tl.where(bad, float("nan"), tl.log(total))


@triton.jit
def _stats_kernel(Z, STATS, C_VEC, ACC: tl.constexpr, VEC: tl.constexpr, BLOCK: tl.constexpr):
    C = C_VEC * VEC  # row_vector
    i = tl.program_id(0).to(tl.int64)
    shift, log_sum = _row_stats(Z, i * C, C, ACC, BLOCK)
    tl.store(STATS + 2 * i, shift)
    tl.store(STATS + 2 * i + 1, log_sum)


@triton.jit
def _fwd_kernel(Z, A, T, STATS, PARTIAL, N, C_VEC, CHUNK_ROWS, LABELS: tl.constexpr, MULTI_LABEL: tl.constexpr,
                ACC: tl.constexpr, VEC: tl.constexpr, ROWS: tl.constexpr, BLOCK_C: tl.constexpr):
    C = C_VEC * VEC  # row_vector
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    chunk = tl.program_id(1).to(tl.int64)
    r0 = chunk * CHUNK_ROWS
    r1 = tl.minimum(r0 + CHUNK_ROWS, N)
    tp = tl.zeros([ROWS, BLOCK_C], ACC)
    sp = tl.zeros([ROWS, BLOCK_C], ACC)
    st = tl.zeros([ROWS, BLOCK_C], ACC)
    for i0 in range(r0, r1, ROWS):
        # ROWS rows a step, so that a thread has ROWS loads in flight (one at ROWS = 1 left
        # bf16 at 80 % of the H100 ceiling in gpu-model); rows past the chunk repeat its last
        # row (in bounds) and add nothing
        rows = i0 + tl.arange(0, ROWS)
        keep = (rows < r1)[:, None]
        i = tl.minimum(rows, r1 - 1)[:, None]
        base = i * C
        mask = (cols < C)[None, :]
        v = tl.load(Z + base + cols[None, :], mask=mask, other=0.0).to(ACC)
        if MULTI_LABEL:
            p = _probability(v, 0.0, 0.0, MULTI_LABEL)
        else:
            p = _probability(v, tl.load(STATS + 2 * i), tl.load(STATS + 2 * i + 1), MULTI_LABEL)
        t = _target(A, T, i, base, cols[None, :], mask, C, LABELS, ACC)
        tp += tl.where(keep, t * p, 0.0)
        sp += tl.where(keep, p, 0.0)
        st += tl.where(keep, t, 0.0)
    out = PARTIAL + chunk * 3 * C
    col_ok = cols < C
    tl.store(out + cols, tl.sum(tp, axis=0), mask=col_ok)
    tl.store(out + C + cols, tl.sum(sp, axis=0), mask=col_ok)
    tl.store(out + 2 * C + cols, tl.sum(st, axis=0), mask=col_ok)


@triton.jit
def _bwd_kernel(G, Z, A, T, DZ, C_VEC, LABELS: tl.constexpr, MULTI_LABEL: tl.constexpr, ACC: tl.constexpr,
                VEC: tl.constexpr, BLOCK: tl.constexpr):
    C = C_VEC * VEC  # row_vector
    i = tl.program_id(0).to(tl.int64)
    base = i * C
    if MULTI_LABEL:
        shift = tl.zeros([], ACC)
        log_sum = tl.zeros([], ACC)
        dot = tl.zeros([], ACC)
    else:
        shift, log_sum = _row_stats(Z, base, C, ACC, BLOCK)
        acc = tl.zeros([BLOCK], ACC)
        for c0 in range(0, C, BLOCK):
            cols = c0 + tl.arange(0, BLOCK)
            mask = cols < C
            v = tl.load(Z + base + cols, mask=mask, other=0.0).to(ACC)
            dp = _dp(G, A, T, i, base, cols, mask, C, LABELS, ACC)
            acc += tl.where(mask, dp * _probability(v, shift, log_sum, MULTI_LABEL), 0.0)
        dot = tl.sum(acc, axis=0)
    for c0 in range(0, C, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        mask = cols < C
        v = tl.load(Z + base + cols, mask=mask, other=0.0).to(ACC)
        dp = _dp(G, A, T, i, base, cols, mask, C, LABELS, ACC)
        p = _probability(v, shift, log_sum, MULTI_LABEL)
        if MULTI_LABEL:
            d = dp * p * (1.0 - p)
        else:
            d = p * (dp - dot)
        tl.store(DZ + base + cols, cast_to(d, DZ.dtype.element_ty), mask=mask)


def _warps(block: int) -> int:
    return 8 if block >= 2048 else 4


@on_input_device
def soft_f1_sums(logits: torch.Tensor, a: Optional[torch.Tensor], dense: Optional[torch.Tensor],
                 multi_label: bool) -> torch.Tensor:
    """``tricks_ext::soft_f1_sums`` in Triton: (3, C) sum_i t p, sum_i p, sum_i t."""
    rows, classes = logits.shape
    acc = stats_dtype(logits.dtype)
    chunk = _chunk_rows(classes)
    chunks = triton.cdiv(rows, chunk)
    partial = torch.zeros(chunks, 3, classes, dtype=acc, device=logits.device)
    stats = torch.empty(rows, 2, dtype=acc, device=logits.device)
    block, vec = _block(classes, logits.dtype), row_vector(classes, logits.dtype)
    if rows:
        if not multi_label:
            _stats_kernel[(rows,)](logits, stats, classes // vec, ACC=acc_dtype(logits.dtype), VEC=vec, BLOCK=block,
                                   num_warps=_warps(block), **FUSED)
        _fwd_kernel[(triton.cdiv(classes, BLOCK_C), chunks)](
            logits, logits if a is None else a, logits if dense is None else dense, stats, partial, rows,
            classes // vec, chunk, LABELS=a is not None, MULTI_LABEL=bool(multi_label), ACC=acc_dtype(logits.dtype),
            VEC=vec, ROWS=FWD_ROWS, BLOCK_C=BLOCK_C, num_warps=4, **FUSED)
    return partial.sum(0)


@on_input_device
def soft_f1_sums_bwd(grad: torch.Tensor, logits: torch.Tensor, a: Optional[torch.Tensor],
                     dense: Optional[torch.Tensor], multi_label: bool) -> torch.Tensor:
    """``tricks_ext::soft_f1_sums_bwd`` in Triton: dlogits from dL/dsums (3, C)."""
    rows, classes = logits.shape
    g = grad.to(stats_dtype(logits.dtype)).contiguous()
    dz = torch.empty_like(logits)
    block, vec = _block(classes, logits.dtype), row_vector(classes, logits.dtype)
    if rows:
        _bwd_kernel[(rows,)](g, logits, logits if a is None else a, logits if dense is None else dense, dz, classes // vec,
                             LABELS=a is not None, MULTI_LABEL=bool(multi_label), ACC=acc_dtype(logits.dtype),
                             VEC=vec, BLOCK=block, num_warps=_warps(block), **FUSED)
    return dz
