"""dropout_apply: registration (fake + autograd) and per-backend entries of dropout,
dropout_add and drop_path.

Operators: tricks_ext::dropout_apply (C++: CPU and CUDA) and tricks_ext::dropout_apply_triton,
y = residual + gate * dropout(x) with residual and gate optional, one draw per ``group``
consecutive elements (1: dropout; elements per sample: drop path). x (and residual) contiguous,
gate one element in the statistics dtype, seed_offset int64 [2] on x's device, p and scale
rounded to fp32. Backward (tricks_ext::dropout_apply_bwd / _triton): one pass and one Philox
draw give dx = gate * dropout(grad) and per-chunk partial sums of x * dropout(grad) (= the gate
gradient sum(grad * dropout(x)), dropout being diagonal), summed here; dresidual is the
gradient itself. x is saved only when the gate needs a gradient. The mask is never stored:
only the 16-byte seed_offset is saved for it.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

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
          scale: float, group: int) -> Tensor:
    return torch.empty_like(x)


# Elements per partial sum of the gate gradient, per kernel (csrc: kPartialChunk on CPU,
# kBwdBlockElements on CUDA; triton_kernels/dropout.py: BLOCK).
_PARTIAL_CHUNK = {"cpu": 1 << 16, "cuda": 1024, "triton": 1024}


def _fake_bwd(chunk: Callable[[Tensor], int]) -> Callable:
    def fake(grad: Tensor, x: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
             scale: float, group: int):
        n = -(-grad.numel() // chunk(grad)) if x is not None else 0
        return torch.empty_like(grad), grad.new_empty((n,), dtype=stats_dtype(grad.dtype))
    return fake


def _register_autograd(name: str, bwd: Callable) -> None:
    def setup_context(ctx, inputs, output):
        x, _residual, gate, seed_offset, p, scale, group = inputs
        ctx.p, ctx.scale, ctx.group = p, scale, group
        ctx.save_for_backward(seed_offset, gate, x if ctx.needs_input_grad[2] else None)

    def backward(ctx, grad):
        seed_offset, gate, x = ctx.saved_tensors
        grad = grad.contiguous()
        dx = dgate = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            dx, partials = bwd(grad, x, gate, seed_offset, ctx.p, ctx.scale, ctx.group)
            if ctx.needs_input_grad[2]:
                dgate = partials.sum().reshape(gate.shape).to(gate.dtype)
        dres = grad if ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), dres, dgate, None, None, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::dropout_apply")(_fake)
    torch.library.register_fake("tricks_ext::dropout_apply_bwd")(
        _fake_bwd(lambda t: _PARTIAL_CHUNK["cuda" if t.device.type == "cuda" else "cpu"]))
    _register_autograd("tricks_ext::dropout_apply", torch.ops.tricks_ext.dropout_apply_bwd)


@torch.library.custom_op("tricks_ext::dropout_apply_triton", mutates_args=())
def _apply_triton(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
                  scale: float, group: int) -> Tensor:
    from tricks_ext.triton_kernels.dropout import dropout_apply
    return dropout_apply(x, residual, gate, seed_offset, p, scale, group)


@torch.library.custom_op("tricks_ext::dropout_apply_bwd_triton", mutates_args=())
def _apply_bwd_triton(grad: Tensor, x: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
                      scale: float, group: int) -> Tuple[Tensor, Tensor]:
    from tricks_ext.triton_kernels.dropout import dropout_apply_bwd
    return dropout_apply_bwd(grad, x, gate, seed_offset, p, scale, group)


_apply_triton.register_fake(_fake)
_apply_bwd_triton.register_fake(_fake_bwd(lambda t: _PARTIAL_CHUNK["triton"]))
_register_autograd("tricks_ext::dropout_apply_triton", _apply_bwd_triton)


# Backend entries: (x, residual, gate, seed_offset, p, group, scale); scale None = 1 / (1 - p).
def _torch(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
           group: int = 1, scale: Optional[float] = None) -> Tensor:
    # the scale from p itself, not from fp32(p), as the kernel entries take it: for p = 0.9 the
    # two differ by 2.4e-7 relative, which moved some bf16 results by one ulp
    return _reference(x, residual, fp32(p), seed_offset[0], seed_offset[1], gate, group,
                      dropout_scale(p) if scale is None else scale)


def _kernel_entry(op: Callable) -> Callable:
    def run(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
            group: int = 1, scale: Optional[float] = None) -> Tensor:
        if gate is not None:
            gate = gate.reshape(()).to(stats_dtype(x.dtype))
        return op(x.contiguous(), None if residual is None else residual.contiguous(), gate, seed_offset,
                  fp32(p), fp32(dropout_scale(p) if scale is None else scale), group)
    return run


_backend.register(OP, "torch", _torch)
_backend.register(OP, "triton", _kernel_entry(_apply_triton))
if _ext.HAS_C:
    _backend.register(OP, "cpu", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
    _backend.register(OP, "cuda", _kernel_entry(torch.ops.tricks_ext.dropout_apply))
