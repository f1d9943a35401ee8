"""dropout_apply: registration (fake + autograd) and per-backend entries.

Operators: tricks_ext::dropout_apply (C++: CPU and CUDA) and tricks_ext::dropout_apply_triton.
Both take a contiguous x, seed_offset (int64 [2] on x's device), p and the fp32-rounded scale.
The op is linear in x with a mask regenerated from (seed, offset), so its backward is the same
op on the gradient and nothing but the 16-byte seed_offset is saved for backward.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.reference.dropout import dropout as _reference
from tricks_ext.reference.dropout import dropout_scale

OP = "dropout"


def fp32(v: float) -> float:
    """v rounded to float32: every backend then compares and multiplies by the same numbers."""
    return float(torch.tensor(v, dtype=torch.float32))


def _fake(x: Tensor, seed_offset: Tensor, p: float, scale: float) -> Tensor:
    return torch.empty_like(x)


def _register_autograd(name: str, op: Callable) -> None:
    def setup_context(ctx, inputs, output):
        _, seed_offset, p, scale = inputs
        ctx.save_for_backward(seed_offset)
        ctx.p, ctx.scale = p, scale

    def backward(ctx, grad):
        (seed_offset,) = ctx.saved_tensors
        return op(grad.contiguous(), seed_offset, ctx.p, ctx.scale), None, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::dropout_apply")(_fake)
    _register_autograd("tricks_ext::dropout_apply", torch.ops.tricks_ext.dropout_apply)


@torch.library.custom_op("tricks_ext::dropout_apply_triton", mutates_args=())
def _apply_triton(x: Tensor, seed_offset: Tensor, p: float, scale: float) -> Tensor:
    from tricks_ext.triton_kernels.dropout import dropout_apply
    return dropout_apply(x, seed_offset, p, scale)


_apply_triton.register_fake(_fake)
_register_autograd("tricks_ext::dropout_apply_triton", _apply_triton)


def _torch(x: Tensor, seed_offset: Tensor, p: float) -> Tensor:
    return _reference(x, fp32(p), seed_offset[0], seed_offset[1])


def _kernel_entry(op: Callable) -> Callable:
    def run(x: Tensor, seed_offset: Tensor, p: float) -> Tensor:
        return op(x.contiguous(), seed_offset, fp32(p), fp32(dropout_scale(p)))
    return run


_backend.register(OP, "torch", _torch)
_backend.register(OP, "triton", _kernel_entry(_apply_triton))
if _ext.HAS_C:
    _backend.register(OP, "cpu", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
    _backend.register(OP, "cuda", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
