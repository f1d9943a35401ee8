"""mask_boxes: registration (fake + autograd) and per-backend entries of box masking.

Operators: tricks_ext::mask_boxes / mask_boxes_ (C++: CPU and CUDA) and the Triton pair
mask_boxes_triton / mask_boxes_triton_. The out-of-place op is linear in x: its backward is the
same op on the gradient with value 0 (the boxes, not a mask, are saved). Backend entries:
(x, box, value, inplace) -> masked tensor (x itself when inplace).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops.mixup import clip_boxes, sample_layout
from tricks_ext.reference.mask_boxes import mask_boxes as _reference

OP = "mask_boxes"


def _fake(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> Tensor:
    return torch.empty_like(x)


def _fake_inplace(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> None:
    return None


def _register_autograd(name: str, op: Callable) -> None:
    def setup_context(ctx, inputs, output):
        _x, box, _value, height, width, inner = inputs
        ctx.layout = (height, width, inner)
        ctx.save_for_backward(box)

    def backward(ctx, grad):
        (box,) = ctx.saved_tensors
        return op(grad.contiguous(), box, 0.0, *ctx.layout), None, None, None, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::mask_boxes")(_fake)
    torch.library.register_fake("tricks_ext::mask_boxes_")(_fake_inplace)
    _register_autograd("tricks_ext::mask_boxes", torch.ops.tricks_ext.mask_boxes)


@torch.library.custom_op("tricks_ext::mask_boxes_triton", mutates_args=())
def _triton(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> Tensor:
    from tricks_ext.triton_kernels.mask_boxes import mask_boxes
    out = torch.empty_like(x)
    mask_boxes(x, out, box, value, height, width, inner)
    return out


@torch.library.custom_op("tricks_ext::mask_boxes_triton_", mutates_args=("x",))
def _triton_(x: Tensor, box: Tensor, value: float, height: int, width: int, inner: int) -> None:
    from tricks_ext.triton_kernels.mask_boxes import mask_boxes
    mask_boxes(x, x, box, value, height, width, inner)


_triton.register_fake(_fake)
_triton_.register_fake(_fake_inplace)
_register_autograd("tricks_ext::mask_boxes_triton", _triton)


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


_backend.register(OP, "torch", _torch)
_backend.register(OP, "triton", _kernel_entry(_triton, _triton_))
if _ext.HAS_C:
    _cpp = _kernel_entry(torch.ops.tricks_ext.mask_boxes, torch.ops.tricks_ext.mask_boxes_)
    _backend.register(OP, "cpu", _cpp)
    _backend.register(OP, "cuda", _cpp)
