"""dropout_apply: registration (fake + autograd) and per-backend entries of dropout and
dropout_add.

Operators: tricks_ext::dropout_apply (C++: CPU and CUDA) and tricks_ext::dropout_apply_triton,
y = residual + gate * dropout(x) with residual and gate optional. x (and residual) contiguous,
gate one element in the statistics dtype, seed_offset int64 [2] on x's device, p and scale
rounded to fp32. Backward: dx is the same op on the gradient (gate * dropout(grad)), dresidual
is the gradient, dgate = sum(grad * dropout(x)) (x is saved only when the gate needs a grad).
The mask is never stored: only the 16-byte seed_offset is saved for it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import stats_dtype
from tricks_ext.reference.dropout import dropout_add as _reference
from tricks_ext.reference.dropout import dropout_scale

OP = "dropout"


def fp32(v: float) -> float:
    """v rounded to float32: every backend then compares and multiplies by the same numbers."""
    return float(torch.tensor(v, dtype=torch.float32))


def _fake(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
          scale: float) -> Tensor:
    return torch.empty_like(x)


def _register_autograd(name: str, op: Callable) -> None:
    def setup_context(ctx, inputs, output):
        x, _residual, gate, seed_offset, p, scale = inputs
        ctx.p, ctx.scale = p, scale
        ctx.save_for_backward(seed_offset, gate, x if ctx.needs_input_grad[2] else None)

    def backward(ctx, grad):
        seed_offset, gate, x = ctx.saved_tensors
        grad = grad.contiguous()
        dx = op(grad, None, gate, seed_offset, ctx.p, ctx.scale) if ctx.needs_input_grad[0] else None
        dres = grad if ctx.needs_input_grad[1] else None
        dgate = None
        if ctx.needs_input_grad[2]:
            # dropout(x) in the accumulation dtype (same mask: it depends on the index only), so
            # fp16/bf16 x is not rounded before the reduction
            acc = stats_dtype(x.dtype)
            dropped = op(x.to(acc), None, None, seed_offset, ctx.p, ctx.scale)
            dgate = (dropped * grad.to(acc)).sum().reshape(gate.shape).to(gate.dtype)
        return dx, dres, dgate, None, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::dropout_apply")(_fake)
    _register_autograd("tricks_ext::dropout_apply", torch.ops.tricks_ext.dropout_apply)


@torch.library.custom_op("tricks_ext::dropout_apply_triton", mutates_args=())
def _apply_triton(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
                  scale: float) -> Tensor:
    from tricks_ext.triton_kernels.dropout import dropout_apply
    return dropout_apply(x, residual, gate, seed_offset, p, scale)


_apply_triton.register_fake(_fake)
_register_autograd("tricks_ext::dropout_apply_triton", _apply_triton)


def _torch(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float) -> Tensor:
    return _reference(x, residual, fp32(p), seed_offset[0], seed_offset[1], gate)


def _kernel_entry(op: Callable) -> Callable:
    def run(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float) -> Tensor:
        if gate is not None:
            gate = gate.reshape(()).to(stats_dtype(x.dtype))
        return op(x.contiguous(), None if residual is None else residual.contiguous(), gate, seed_offset,
                  fp32(p), fp32(dropout_scale(p)))
    return run


_backend.register(OP, "torch", _torch)
_backend.register(OP, "triton", _kernel_entry(_apply_triton))
if _ext.HAS_C:
    _backend.register(OP, "cpu", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
    _backend.register(OP, "cuda", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
