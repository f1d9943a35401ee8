"""dropout_apply: the op behind dropout, dropout_add and drop_path (registration, fake,
autograd, backend entries).

Operators: tricks_ext::dropout_apply (C++: CPU and CUDA) and its Triton twin,
y = residual + gate * dropout(x) with residual and gate optional, one draw per ``group``
consecutive elements (1: dropout; elements per sample: drop path). x (and residual) contiguous,
gate one element in the statistics dtype, seed_offset int64 [2] on x's device, p and scale
rounded to fp32. Backward (tricks_ext::dropout_apply_bwd and twin): one pass and one Philox
draw give dx = gate * dropout(grad) and per-chunk partial sums of x * dropout(grad) (= the gate
gradient sum(grad * dropout(x)), dropout being diagonal), summed here; dresidual is the
gradient itself. x is saved only when the gate needs a gradient. The mask is never stored:
only the 16-byte seed_offset is saved for it.

Backend entry: (x, residual, gate, seed_offset, p, scale, group) -> y, the op's own arguments.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import round_fp32, stats_dtype
from tricks_ext.ops._library import Twin, differentiable_vjp, register_autograd
from tricks_ext.reference.dropout import dropout_add as _reference

OP = "dropout_apply"


def _check_args(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
                group: int) -> None:
    torch._check(residual is None or (residual.shape == x.shape and residual.dtype == x.dtype),
                 lambda: "dropout_apply: residual must have x's shape and dtype")
    torch._check(gate is None or (gate.numel() == 1 and gate.dtype == stats_dtype(x.dtype)),
                 lambda: f"dropout_apply: gate must be one {stats_dtype(x.dtype)} element")
    torch._check(seed_offset.dtype == torch.int64 and seed_offset.numel() == 2,
                 lambda: "dropout_apply: seed_offset must be an int64 tensor of 2 elements")
    torch._check(0.0 <= p <= 1.0 and group >= 1, lambda: "dropout_apply: p must be in [0, 1] and group >= 1")


def _fake(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
          scale: float, group: int) -> Tensor:
    _check_args(x, residual, gate, seed_offset, p, group)
    return torch.empty_like(x)


def _fake_bwd(partial_elements: Callable[[Tensor], int]) -> Callable:
    def fake(grad: Tensor, x: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
             scale: float, group: int) -> Tuple[Tensor, Tensor]:
        _check_args(grad, x, gate, seed_offset, p, group)
        n = -(-grad.numel() // partial_elements(grad)) if x is not None else 0
        return torch.empty_like(grad), grad.new_empty((n,), dtype=stats_dtype(grad.dtype))
    return fake


def _cxx_partial_elements(t: Tensor) -> int:
    return int(torch.ops.tricks_ext.dropout_apply_bwd_partial_elements(t.device.type))


def _simt_partial_elements(t: Tensor) -> int:  # the CUDA kernel's, on CPU tensors
    return int(torch.ops.tricks_ext.dropout_apply_bwd_partial_elements("cuda"))


def _triton_partial_elements(t: Tensor) -> int:
    from tricks_ext.triton_kernels.dropout import BLOCK
    return BLOCK


APPLY = Twin("dropout_apply", "dropout", _fake)
APPLY_BWD = Twin("dropout_apply_bwd", "dropout", _fake_bwd(_cxx_partial_elements),
                 triton_fake=_fake_bwd(_triton_partial_elements), simt_fake=_fake_bwd(_simt_partial_elements))


def _setup_context(ctx, inputs, output):
    x, _residual, gate, seed_offset, p, scale, group = inputs
    ctx.p, ctx.scale, ctx.group = p, scale, group
    ctx.save_for_backward(seed_offset, gate, x if ctx.needs_input_grad[2] else None)


def _make_backward(bwd: Callable) -> Callable:
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
    return backward


def _graph_backward(ctx, grad):
    seed_offset, gate, x = ctx.saved_tensors
    # y is linear in x: its gradient does not read x, which is saved only for the gate's
    x = torch.zeros_like(grad) if x is None else x
    dx, dgate = differentiable_vjp(lambda x, gate: _torch(x, None, gate, seed_offset, ctx.p, ctx.scale, ctx.group),
                                   (x, gate), (ctx.needs_input_grad[0], ctx.needs_input_grad[2]), grad)
    return dx, (grad if ctx.needs_input_grad[1] else None), dgate, None, None, None, None


register_autograd(APPLY, _make_backward, _setup_context, bwd=APPLY_BWD, graph=_graph_backward)


def _torch(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
           scale: float, group: int) -> Tensor:
    return _reference(x, residual, gate, seed_offset[0], seed_offset[1], round_fp32(p), scale, group)


def _kernel_entry(op: Callable) -> Callable:
    def run(x: Tensor, residual: Optional[Tensor], gate: Optional[Tensor], seed_offset: Tensor, p: float,
            scale: float, group: int) -> Tensor:
        if gate is not None:
            gate = gate.reshape(()).to(stats_dtype(x.dtype))
        return op(x.contiguous(), None if residual is None else residual.contiguous(), gate, seed_offset,
                  round_fp32(p), round_fp32(scale), group)
    return run


_backend.register(OP, torch=_torch, triton=_kernel_entry(APPLY.triton),
                  cxx=_kernel_entry(APPLY.cxx) if APPLY.cxx else None,
                  simt=_kernel_entry(APPLY.simt) if APPLY.simt else None)
