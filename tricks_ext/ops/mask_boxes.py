"""mask_boxes: registration (fake + autograd) and per-backend entries of box masking.

Operators: tricks_ext::mask_boxes / mask_boxes_ (C++: CPU and CUDA) and their Triton twins. The out-of-place op is linear in x: its backward is the
same op on the gradient with value 0 (the boxes, not a mask, are saved). Backend entries:
(x, box, value, inplace) -> masked tensor (x itself when inplace).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext.ops._library import Twin, register_autograd
from tricks_ext.ops.mixup import check_layout, clip_boxes, sample_layout
from tricks_ext.reference.mask_boxes import mask_boxes as _reference

OP = "mask_boxes"


def _fake(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> Tensor:
    check_layout("mask_boxes", x, box, height, width, inner, 3)
    return torch.empty_like(x)


def _fake_inplace(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> None:
    _fake(x, box, value, height, width, inner)


MASK = Twin("mask_boxes", "mask_boxes", _fake)
MASK_ = Twin("mask_boxes_", "mask_boxes", _fake_inplace, mutates_args=("x",))


def _setup_context(ctx, inputs, output):
    _x, box, _value, height, width, inner = inputs
    ctx.layout = (height, width, inner)
    ctx.save_for_backward(box)


def _make_backward(op: Callable) -> Callable:
    def backward(ctx, grad):
        (box,) = ctx.saved_tensors
        return op(grad.contiguous(), box, 0.0, *ctx.layout), None, None, None, None, None
    return backward


register_autograd(MASK, _make_backward, _setup_context)


def _torch(x: Tensor, box: Tensor, value: float, inplace: bool) -> Tensor:
    out = _reference(x, box, value)
    return x.copy_(out) if inplace else out


def _kernel_entry(op: Callable, op_: Callable) -> Callable:
    def run(x: Tensor, box: Tensor, value: float, inplace: bool) -> Tensor:
        xd, height, width, inner = sample_layout(x)
        box = clip_boxes(box, height, width, x.device)
        if not inplace:
            return op(xd, box, float(value), height, width, inner)
        op_(xd, box, float(value), height, width, inner)
        return x if xd is x else x.copy_(xd)
    return run


_backend.register(OP, torch=_torch, triton=_kernel_entry(MASK.triton, MASK_.triton),
                  cxx=_kernel_entry(MASK.cxx, MASK_.cxx) if MASK.cxx else None,
                  simt=_kernel_entry(MASK.simt, MASK_.simt) if MASK.simt else None)
