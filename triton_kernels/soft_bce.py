"""Soft-target binary cross-entropy in Triton (math: csrc/soft_bce/math.h). One program per
row, or per piece of a row when there are too few rows to fill the GPU (row_pieces), sweeping
it in BLOCK-wide chunks: the forward writes the elements' losses (reduction 'none') or sums
them (one fp32 / fp64 value per piece), the backward writes dz in one pass.
MODE: 0 dense targets, 1 mixed labels (a, b, lam), 2 hard labels (a); HAS_W: class weights W (C,)
scale each element's loss and gradient."""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from tricks_ext._dtypes import stats_dtype
from tricks_ext.triton_kernels._common import FUSED, acc_dtype, cast_to, on_input_device, piece_columns, row_pieces, row_vector
from tricks_ext.triton_kernels.soft_ce import DENSE, HARD, MEAN, MIXED, NONE, _rejoin, _split


def _block(classes: int, dtype: torch.dtype) -> int:
    """Columns per sweep: up to 1024 (4 warps, 8 elements of each array per thread), 512 for
    fp64, whose kernels with pos_weight, class weights and a threshold spilled 4-8 B at 1024 on
    sm_80 and sm_90 (compile-check)."""
    return min(512 if dtype == torch.float64 else 1024, max(16, triton.next_power_of_2(classes)))


@triton.jit
def _log1p(x):
    """log(1 + x) for x in [0, 1] with Goldberg's factor x / (u - 1) (exact subtraction), which
    restores the bits of x that u = 1 + x rounded away: at |z| = 20, log(1 + exp(-|z|)) alone
    is 0 instead of 2e-9 (the whole loss of a class with target 1)."""
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * (x / tl.where(u == 1.0, 1.0, u - 1.0)))


@triton.jit
def _targets(Z, A, B, LAM, T, PW, i, base, cols, mask, C, label_smoothing, off, target_threshold,
             MODE: tl.constexpr, HAS_PW: tl.constexpr, HAS_THRESHOLD: tl.constexpr, ACC: tl.constexpr):
    """(z, t, lw, invalid) of the chunk ``cols`` of row i, in ACC."""
    z = tl.load(Z + base + cols, mask=mask, other=0.0).to(ACC)
    if MODE == 0:
        t = tl.load(T + base + cols, mask=mask, other=0.0).to(ACC)
        invalid = i < 0  # False, as a tensor
    else:
        a = tl.load(A + i)
        if MODE == 1:
            b = tl.load(B + i)
            lam = tl.load(LAM + i).to(ACC)
        else:
            b = a
            lam = tl.full([], 1.0, ACC)
        wa = (1.0 - label_smoothing) * lam
        wb = (1.0 - label_smoothing) * (1.0 - lam)
        if MODE == 2:
            wb = wb * 0.0
        t = off + tl.where(cols == a, wa, 0.0).to(ACC) + tl.where(cols == b, wb, 0.0).to(ACC)
        invalid = (a < 0) | (a >= C) | (b < 0) | (b >= C)
    if HAS_THRESHOLD:
        t = tl.where(t > target_threshold, 1.0, 0.0).to(ACC)
    if HAS_PW:
        lw = 1.0 + (tl.load(PW + cols, mask=mask, other=1.0).to(ACC) - 1.0) * t
    else:
        lw = t * 0.0 + 1.0
    return z, t, lw, invalid


@triton.jit
def _weighted(x, W, cols, mask, HAS_W: tl.constexpr, ACC: tl.constexpr):
    """x times the class weights of ``cols`` (x without them). Loaded after the element's
    divisions: a weight live across fp64 division calls spilled 8 B on sm_90 (compile-check)."""
    if HAS_W:
        return x * tl.load(W + cols, mask=mask, other=0.0).to(ACC)
    else:
        return x


@triton.jit
def _row(C, smoothing_hi, smoothing_lo, off_hi, off_lo, ACC: tl.constexpr):
    """This program's row, its offset, and the smoothing and its per-class share in ACC."""
    i = tl.program_id(0).to(tl.int64)
    return i, i * C, _rejoin(smoothing_hi, smoothing_lo, ACC), _rejoin(off_hi, off_lo, ACC)


@triton.jit
def _fwd_kernel(Z, A, B, LAM, T, PW, W, LOSS, C_VEC, piece_sweeps, smoothing_hi, smoothing_lo, off_hi, off_lo,
                target_threshold, MODE: tl.constexpr, HAS_PW: tl.constexpr, HAS_W: tl.constexpr,
                HAS_THRESHOLD: tl.constexpr, PER_ELEMENT: tl.constexpr, ACC: tl.constexpr, VEC: tl.constexpr,
                BLOCK: tl.constexpr, SPLIT: tl.constexpr):
    """Row tl.program_id(0)'s piece tl.program_id(1): its elements' losses, or their sum at
    LOSS[row * pieces + piece]."""
    C = C_VEC * VEC  # row_vector
    i, base, label_smoothing, off = _row(C, smoothing_hi, smoothing_lo, off_hi, off_lo, ACC)
    begin, end = piece_columns(C, piece_sweeps, BLOCK, SPLIT)
    acc = tl.zeros([BLOCK], ACC)
    for c0 in range(begin, end, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        mask = cols < end
        z, t, lw, invalid = _targets(Z, A, B, LAM, T, PW, i, base, cols, mask, C, label_smoothing, off,
                                     target_threshold, MODE, HAS_PW, HAS_THRESHOLD, ACC)
        loss = (1.0 - t) * z + lw * (_log1p(tl.exp(-tl.abs(z))) + tl.maximum(-z, 0.0))
        loss = _weighted(loss, W, cols, mask, HAS_W, ACC)
        loss = tl.where(invalid, float("nan"), loss)
        if PER_ELEMENT:
            tl.store(LOSS + base + cols, cast_to(loss, LOSS.dtype.element_ty), mask=mask)
        else:
            acc += tl.where(mask, loss, 0.0)
    if not PER_ELEMENT:
        tl.store(LOSS + i * tl.num_programs(1) + tl.program_id(1), tl.sum(acc, axis=0))


@triton.jit
def _bwd_kernel(G, Z, A, B, LAM, T, PW, W, DZ, C_VEC, piece_sweeps, smoothing_hi, smoothing_lo, off_hi, off_lo,
                target_threshold, MODE: tl.constexpr, HAS_PW: tl.constexpr, HAS_W: tl.constexpr,
                HAS_THRESHOLD: tl.constexpr, PER_ELEMENT: tl.constexpr, ACC: tl.constexpr, VEC: tl.constexpr,
                BLOCK: tl.constexpr, SPLIT: tl.constexpr):
    C = C_VEC * VEC  # row_vector
    i, base, label_smoothing, off = _row(C, smoothing_hi, smoothing_lo, off_hi, off_lo, ACC)
    begin, end = piece_columns(C, piece_sweeps, BLOCK, SPLIT)
    if not PER_ELEMENT:
        g = tl.load(G).to(ACC)
    for c0 in range(begin, end, BLOCK):
        cols = c0 + tl.arange(0, BLOCK)
        mask = cols < end
        z, t, lw, invalid = _targets(Z, A, B, LAM, T, PW, i, base, cols, mask, C, label_smoothing, off,
                                     target_threshold, MODE, HAS_PW, HAS_THRESHOLD, ACC)
        e = tl.exp(-tl.abs(z))
        sig_neg = tl.where(z >= 0, e, 1.0) / (1.0 + e)  # one division (a libdevice call in fp64)
        d = _weighted((1.0 - t) - lw * sig_neg, W, cols, mask, HAS_W, ACC)
        if PER_ELEMENT:
            d = d * tl.load(G + base + cols, mask=mask, other=0.0).to(ACC)
        else:
            d = d * g
        d = tl.where(invalid, float("nan"), d)
        tl.store(DZ + base + cols, cast_to(d, DZ.dtype.element_ty), mask=mask)


def _inputs(logits, a, b, lam, dense, pos_weight, weight):
    """(MODE, the target, pos_weight and weight pointers with the logits standing in for absent
    ones)."""
    mode = DENSE if dense is not None else (MIXED if b is not None else HARD)
    return mode, tuple(logits if t is None else t for t in (a, b, lam, dense, pos_weight, weight))


def _pieces(logits):
    """(pieces per row, sweeps per piece): row_pieces at this dtype's BLOCK."""
    rows, classes = logits.shape
    return row_pieces(rows, classes, _block(classes, logits.dtype))


def _scalars(logits, label_smoothing, target_threshold):
    classes = logits.shape[1]
    return (classes // row_vector(classes, logits.dtype), _pieces(logits)[1], *_split(label_smoothing),
            *_split(label_smoothing / classes), 0.0 if target_threshold is None else float(target_threshold))


def _constexprs(logits, mode, pos_weight, weight, target_threshold, per_element):
    return dict(MODE=mode, HAS_PW=pos_weight is not None, HAS_W=weight is not None,
                HAS_THRESHOLD=target_threshold is not None, PER_ELEMENT=per_element, ACC=acc_dtype(logits.dtype),
                VEC=row_vector(logits.shape[1], logits.dtype), BLOCK=_block(logits.shape[1], logits.dtype),
                SPLIT=_pieces(logits)[0] > 1, num_warps=4, **FUSED)


def loss_grad(grad: torch.Tensor, logits: torch.Tensor, reduction: int) -> torch.Tensor:
    """dL/dloss: the elements' (N, C) for 'none', else one value in the statistics dtype (divided
    by N * C for 'mean')."""
    if reduction == NONE:
        return grad.contiguous()
    g = grad.to(stats_dtype(logits.dtype))
    return g / logits.numel() if reduction == MEAN else g


def dense_target_grad(grad: torch.Tensor, logits: torch.Tensor, pos_weight: Optional[torch.Tensor],
                      weight: Optional[torch.Tensor], target_threshold: Optional[float], reduction: int) -> torch.Tensor:
    """The gradient for dense targets, d loss / d t = w (-z + (pos_weight - 1) softplus(-z)); 0
    through a target_threshold (a step). Tensor ops, not a kernel: targets rarely need a gradient."""
    acc = stats_dtype(logits.dtype)
    z = logits.to(acc)
    d = -z if pos_weight is None else -z + (pos_weight.to(acc) - 1) * torch.nn.functional.softplus(-z)
    if weight is not None:
        d = d * weight.to(acc)
    if target_threshold is not None:
        d = torch.zeros_like(d)
    return (d * loss_grad(grad, logits, reduction).to(acc)).to(logits.dtype)


@on_input_device
def soft_bce_fwd(logits: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor],
                 lam: Optional[torch.Tensor], dense: Optional[torch.Tensor], pos_weight: Optional[torch.Tensor],
                 weight: Optional[torch.Tensor], label_smoothing: float, target_threshold: Optional[float],
                 reduction: int) -> torch.Tensor:
    """``tricks_ext::soft_bce_fwd`` in Triton: the loss in the logits' dtype, (N, C) for
    reduction 'none', else reduced ('mean' divides the sum of the N * C elements by N * C)."""
    rows, pieces = logits.shape[0], _pieces(logits)[0]
    per_element = reduction == NONE
    loss = (torch.empty_like(logits) if per_element
            else torch.empty(rows * pieces, dtype=stats_dtype(logits.dtype), device=logits.device))
    mode, inputs = _inputs(logits, a, b, lam, dense, pos_weight, weight)
    if rows:
        _fwd_kernel[(rows, pieces)](logits, *inputs, loss, *_scalars(logits, label_smoothing, target_threshold),
                                    **_constexprs(logits, mode, pos_weight, weight, target_threshold, per_element))
    if per_element:
        return loss
    total = torch.sum(loss)
    if reduction == MEAN:
        total = total / logits.numel()
    return total.to(logits.dtype)


@on_input_device
def soft_bce_bwd(grad: torch.Tensor, logits: torch.Tensor, a: Optional[torch.Tensor], b: Optional[torch.Tensor],
                 lam: Optional[torch.Tensor], dense: Optional[torch.Tensor], pos_weight: Optional[torch.Tensor],
                 weight: Optional[torch.Tensor], label_smoothing: float, target_threshold: Optional[float],
                 reduction: int) -> torch.Tensor:
    """``tricks_ext::soft_bce_bwd`` in Triton: dlogits from dL/dloss (the forward's shape)."""
    rows, pieces = logits.shape[0], _pieces(logits)[0]
    per_element = reduction == NONE
    g = loss_grad(grad, logits, reduction)
    dz = torch.empty_like(logits)
    mode, inputs = _inputs(logits, a, b, lam, dense, pos_weight, weight)
    if rows:
        _bwd_kernel[(rows, pieces)](g, logits, *inputs, dz, *_scalars(logits, label_smoothing, target_threshold),
                                    **_constexprs(logits, mode, pos_weight, weight, target_threshold, per_element))
    return dz
