"""mixup_apply: registration (fake impls) and per-backend entries of the Mixup/CutMix mixing.

Operators: tricks_ext::mixup_apply / mixup_apply_ (C++: CPU and CUDA) and the Triton pair
mixup_apply_triton / mixup_apply_triton_. Mixing is a data transform: no autograd formula is
registered, and the public API rejects inputs that require grad.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.reference.mixup import mix as _reference

OP = "mixup"


def sample_layout(x: Tensor) -> Tuple[Tensor, int, int, int]:
    """(x', height, width, inner): x' has each sample as one dense block viewed as
    [outer][height][width][inner] (x itself when contiguous or channels_last, else a copy)."""
    if x.dim() < 3:
        return x.contiguous(), 1, 1, 1
    h, w = x.shape[-2], x.shape[-1]
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x, h, w, x.shape[1]
    return x.contiguous(), h, w, 1


def clip_boxes(box: Tensor, height: int, width: int, device: torch.device) -> Tensor:
    """Boxes as the kernels take them: int32 on ``device``, each (y0, y1, x0, x1) clipped to
    [0, height] x [0, width] in int64 first, so that an int64 edge past 2**31 cannot wrap into
    the image. Clipping keeps every box's meaning (an empty box stays empty)."""
    b = box.to(device, torch.int64)
    return torch.cat([b[..., :2].clamp(0, height), b[..., 2:].clamp(0, width)], dim=-1).to(torch.int32).contiguous()


def _fake(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> Tensor:
    return torch.empty_like(x)


def _fake_inplace(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> None:
    return None


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::mixup_apply")(_fake)
    torch.library.register_fake("tricks_ext::mixup_apply_")(_fake_inplace)


@torch.library.custom_op("tricks_ext::mixup_apply_triton", mutates_args=())
def _apply_triton(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> Tensor:
    from tricks_ext.triton_kernels.mixup import mixup_apply
    out = torch.empty_like(x)
    mixup_apply(x, out, coef, box, height, width, inner)
    return out


@torch.library.custom_op("tricks_ext::mixup_apply_triton_", mutates_args=("x",))
def _apply_triton_(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> None:
    from tricks_ext.triton_kernels.mixup import mixup_apply
    mixup_apply(x, x, coef, box, height, width, inner)


_apply_triton.register_fake(_fake)
_apply_triton_.register_fake(_fake_inplace)


# Backend entries: (x, coef, box, inplace) -> mixed tensor (x itself when inplace).
def _torch(x: Tensor, coef: Tensor, box: Tensor, inplace: bool) -> Tensor:
    out = _reference(x, coef, box)
    return x.copy_(out) if inplace else out


def _kernel_entry(op: Callable, op_: Callable) -> Callable:
    def run(x: Tensor, coef: Tensor, box: Tensor, inplace: bool) -> Tensor:
        xd, height, width, inner = sample_layout(x)
        coef = coef.to(x.device, torch.float32).contiguous()
        box = clip_boxes(box, height, width, x.device)
        if not inplace:
            return op(xd, coef, box, height, width, inner)
        op_(xd, coef, box, height, width, inner)
        return x if xd is x else x.copy_(xd)
    return run


_backend.register(OP, "torch", _torch)
_backend.register(OP, "triton", _kernel_entry(_apply_triton, _apply_triton_))
if _ext.HAS_C:
    _cpp = _kernel_entry(torch.ops.tricks_ext.mixup_apply, torch.ops.tricks_ext.mixup_apply_)
    _backend.register(OP, "cpu", _cpp)
    _backend.register(OP, "cuda", _cpp)
