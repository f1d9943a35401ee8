"""Mixup / CutMix mixing in Triton (math: csrc/mixup/math.h). Grid (sample blocks,
pairs): a program reads a block of both samples of pair (i, B-1-i) and writes both outputs, so
``out`` may be ``x`` (in-place mixing)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import EXACT, acc_dtype, cast_to, on_input_device

BLOCK = 1024


@triton.jit
def _side(vi, vj, COEF, BOX, i, h, w, ACC: tl.constexpr):
    """Output of sample i (partner value vj) at in-sample positions (h, w)."""
    a = tl.load(COEF + 2 * i).to(ACC)
    b = tl.load(COEF + 2 * i + 1)
    y0 = tl.load(BOX + 4 * i)
    y1 = tl.load(BOX + 4 * i + 1)
    x0 = tl.load(BOX + 4 * i + 2)
    x1 = tl.load(BOX + 4 * i + 3)
    inside = (h >= y0) & (h < y1) & (w >= x0) & (w < x1)
    mixed = tl.where(b == 0.0, vi, a * vi + b.to(ACC) * vj)
    return tl.where(inside, vj, mixed)


@triton.jit
def _mix_kernel(X, OUT, COEF, BOX, batch, sample, height, width, inner, ACC: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < sample
    i = tl.program_id(1).to(tl.int64)
    j = batch - 1 - i
    pos = e // inner
    w = pos % width
    h = (pos // width) % height
    vi = tl.load(X + i * sample + e, mask=mask, other=0.0).to(ACC)
    vj = tl.load(X + j * sample + e, mask=mask, other=0.0).to(ACC)
    ri = _side(vi, vj, COEF, BOX, i, h, w, ACC)
    rj = _side(vj, vi, COEF, BOX, j, h, w, ACC)
    tl.store(OUT + i * sample + e, cast_to(ri, OUT.dtype.element_ty), mask=mask)
    tl.store(OUT + j * sample + e, cast_to(rj, OUT.dtype.element_ty), mask=mask)


def _launch(x: torch.Tensor, out: torch.Tensor, coef: torch.Tensor, box: torch.Tensor, height: int, width: int,
            inner: int) -> None:
    """Mix ``x`` (samples dense blocks, validated by the caller) into ``out`` (may be ``x``).
    No FMA contraction (enable_fp_fusion=False): a * x + b * y rounds both products, as timm's
    x * lam + x_flip * (1 - lam) does."""
    batch = x.shape[0]
    sample = x.numel() // batch if batch else 0
    if batch == 0 or sample == 0:
        return
    _mix_kernel[(triton.cdiv(sample, BLOCK), (batch + 1) // 2)](
        x, out, coef, box, batch, sample, height, width, inner, ACC=acc_dtype(x.dtype), BLOCK=BLOCK, **EXACT)


@on_input_device
def mixup_apply(x: torch.Tensor, coef: torch.Tensor, box: torch.Tensor, height: int, width: int,
                inner: int) -> torch.Tensor:
    """``tricks_ext::mixup_apply`` in Triton: x mixed with its flip, out of place."""
    out = torch.empty_like(x)
    _launch(x, out, coef, box, height, width, inner)
    return out


@on_input_device
def mixup_apply_(x: torch.Tensor, coef: torch.Tensor, box: torch.Tensor, height: int, width: int, inner: int) -> None:
    """``tricks_ext::mixup_apply_`` in Triton: x mixed with its flip, in place."""
    _launch(x, x, coef, box, height, width, inner)
