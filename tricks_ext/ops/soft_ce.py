"""soft_ce: registration (fake + autograd) and per-backend entries of the soft-target
cross-entropy.

Operators: tricks_ext::soft_ce_fwd / soft_ce_bwd (C++: CPU and CUDA) and the Triton pair
soft_ce_fwd_triton / soft_ce_bwd_triton. The forward returns per-row losses and per-row stats
(lse, sum of targets); only the logits, the compact targets and those stats are saved for
backward (dense targets are saved when given: they are an input, not an intermediate).
Backend entries: (logits, a, b, lam, dense, smoothing, ignore_index) -> per-row loss in fp32
(fp64 for fp64 logits); the reduction is done by the caller.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import stats_dtype
from tricks_ext.reference.soft_ce import soft_ce_rows

OP = "soft_ce"


def _fake_fwd(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
              smoothing: float, ignore_index: int) -> Tuple[Tensor, Tensor]:
    acc = stats_dtype(logits.dtype)
    return logits.new_empty((logits.shape[0],), dtype=acc), logits.new_empty((logits.shape[0], 2), dtype=acc)


def _fake_bwd(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
              dense: Optional[Tensor], stats: Tensor, smoothing: float, ignore_index: int) -> Tensor:
    return torch.empty_like(logits)


def _register_autograd(name: str, bwd: Callable) -> None:
    def setup_context(ctx, inputs, output):
        logits, a, b, lam, dense, smoothing, ignore_index = inputs
        ctx.smoothing, ctx.ignore_index = smoothing, ignore_index
        ctx.save_for_backward(logits, a, b, lam, dense, output[1])

    def backward(ctx, grad_loss, _grad_stats):
        logits, a, b, lam, dense, stats = ctx.saved_tensors
        grad_loss = grad_loss.contiguous()
        dlogits = ddense = None
        if ctx.needs_input_grad[0]:
            dlogits = bwd(grad_loss, logits, a, b, lam, dense, stats, ctx.smoothing, ctx.ignore_index)
        if dense is not None and ctx.needs_input_grad[4]:  # d loss_i / d t_ic = lse_i - z_ic
            ddense = ((stats[:, :1] - logits.to(stats.dtype)) * grad_loss[:, None]).to(dense.dtype)
        return dlogits, None, None, None, ddense, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::soft_ce_fwd")(_fake_fwd)
    torch.library.register_fake("tricks_ext::soft_ce_bwd")(_fake_bwd)
    _register_autograd("tricks_ext::soft_ce_fwd", torch.ops.tricks_ext.soft_ce_bwd)


@torch.library.custom_op("tricks_ext::soft_ce_fwd_triton", mutates_args=())
def _fwd_triton(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], smoothing: float, ignore_index: int) -> Tuple[Tensor, Tensor]:
    from tricks_ext.triton_kernels.soft_ce import soft_ce_fwd
    return soft_ce_fwd(logits, a, b, lam, dense, smoothing, ignore_index)


@torch.library.custom_op("tricks_ext::soft_ce_bwd_triton", mutates_args=())
def _bwd_triton(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], stats: Tensor, smoothing: float, ignore_index: int) -> Tensor:
    from tricks_ext.triton_kernels.soft_ce import soft_ce_bwd
    return soft_ce_bwd(grad, logits, a, b, lam, dense, stats, smoothing, ignore_index)


_fwd_triton.register_fake(_fake_fwd)
_bwd_triton.register_fake(_fake_bwd)
_register_autograd("tricks_ext::soft_ce_fwd_triton", _bwd_triton)


def _kernel_entry(op: Callable) -> Callable:
    def run(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
            smoothing: float, ignore_index: int) -> Tensor:
        def prep(t: Optional[Tensor], dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
            return None if t is None else t.to(dtype or t.dtype).contiguous()
        loss, _stats = op(logits.contiguous(), prep(a, torch.int64), prep(b, torch.int64), prep(lam, torch.float32),
                          prep(dense), float(smoothing), int(ignore_index))
        return loss
    return run


_backend.register(OP, "torch", soft_ce_rows)
_backend.register(OP, "triton", _kernel_entry(_fwd_triton))
if _ext.HAS_C:
    _cpp = _kernel_entry(torch.ops.tricks_ext.soft_ce_fwd)
    _backend.register(OP, "cpu", _cpp)
    _backend.register(OP, "cuda", _cpp)
