"""Box masking in Triton (math: csrc/mask_boxes/math.h): grid (sample blocks,
samples); ``out`` may be ``x``."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import EXACT, acc_dtype, cast_to, on_input_device

BLOCK = 1024


@triton.jit
def _mask_kernel(X, OUT, BOX, boxes, sample, height, width, inner, value, SAME: tl.constexpr, ACC: tl.constexpr,
                 BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < sample
    n = tl.program_id(1).to(tl.int64)
    pos = e // inner
    w = pos % width
    h = (pos // width) % height
    inside = e < 0
    for k in range(boxes):
        b = BOX + (n * boxes + k) * 4
        inside = inside | ((h >= tl.load(b)) & (h < tl.load(b + 1)) & (w >= tl.load(b + 2)) & (w < tl.load(b + 3)))
    ptr = n * sample + e
    fill = cast_to(tl.full([BLOCK], value, ACC), OUT.dtype.element_ty)
    if SAME:
        tl.store(OUT + ptr, fill, mask=mask & inside)
    else:
        v = tl.load(X + ptr, mask=mask, other=0.0)
        tl.store(OUT + ptr, tl.where(inside, fill, v), mask=mask)


def _launch(x: torch.Tensor, out: torch.Tensor, box: torch.Tensor, value: float, height: int, width: int,
            inner: int) -> None:
    """Mask ``x`` (samples dense blocks, validated by the caller) into ``out`` (may be ``x``)."""
    batch = x.shape[0]
    sample = x.numel() // batch if batch else 0
    if batch == 0 or sample == 0:
        return
    _mask_kernel[(triton.cdiv(sample, BLOCK), batch)](x, out, box, box.shape[1], sample, height, width, inner,
                                                      float(value), SAME=out is x,
                                                      ACC=acc_dtype(x.dtype), BLOCK=BLOCK, **EXACT)


@on_input_device
def mask_boxes(x: torch.Tensor, box: torch.Tensor, value: float, height: int, width: int, inner: int) -> torch.Tensor:
    """``tricks_ext::mask_boxes`` in Triton: ``value`` inside each sample's boxes, out of place."""
    out = torch.empty_like(x)
    _launch(x, out, box, value, height, width, inner)
    return out


@on_input_device
def mask_boxes_(x: torch.Tensor, box: torch.Tensor, value: float, height: int, width: int, inner: int) -> None:
    """``tricks_ext::mask_boxes_`` in Triton: ``value`` inside each sample's boxes, in place."""
    _launch(x, x, box, value, height, width, inner)
