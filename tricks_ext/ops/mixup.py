"""mixup_apply: registration (fake impls) and per-backend entries of the Mixup/CutMix mixing.

Operators: tricks_ext::mixup_apply / mixup_apply_ (C++: CPU and CUDA) and their Triton twins. Mixing is a data transform: no autograd formula is
registered, and the public API rejects inputs that require grad.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext.ops._library import Twin
from tricks_ext.reference.mixup import mix as _reference

OP = "mixup_apply"


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


def check_layout(op: str, x: Tensor, box: Tensor, height: int, width: int, inner: int, box_dims: int) -> None:
    """What the fake kernels of mixup_apply and mask_boxes check: the layout and the boxes."""
    torch._check(x.dim() >= 1 and height >= 1 and width >= 1 and inner >= 1,
                 lambda: f"{op}: height, width, inner must be >= 1 for a batch x")
    torch._check(box.dtype == torch.int32 and box.dim() == box_dims and box.shape[0] == x.shape[0] and box.shape[-1] == 4,
                 lambda: f"{op}: box must be int32 with one row of (y0, y1, x0, x1) per sample")


def _fake(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> Tensor:
    check_layout("mixup_apply", x, box, height, width, inner, 2)
    torch._check(coef.dtype == torch.float32 and coef.shape == (x.shape[0], 2),
                 lambda: "mixup_apply: coef must be float32 (B, 2)")
    return torch.empty_like(x)


def _fake_inplace(x: Tensor, coef: Tensor, box: Tensor, height: int, width: int, inner: int) -> None:
    _fake(x, coef, box, height, width, inner)


APPLY = Twin("mixup_apply", "mixup", _fake)
APPLY_ = Twin("mixup_apply_", "mixup", _fake_inplace, mutates_args=("x",))


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


_backend.register(OP, torch=_torch, triton=_kernel_entry(APPLY.triton, APPLY_.triton),
                  cxx=_kernel_entry(APPLY.cxx, APPLY_.cxx) if APPLY.cxx else None,
                  simt=_kernel_entry(APPLY.simt, APPLY_.simt) if APPLY.simt else None)
