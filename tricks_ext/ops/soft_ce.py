"""soft_ce: registration (fake + autograd) and per-backend entries of the soft-target
cross-entropy.

Operators: tricks_ext::soft_ce_fwd / soft_ce_bwd (C++: CPU and CUDA) and the Triton pair
soft_ce_fwd_triton / soft_ce_bwd_triton. The forward returns the loss, already reduced and in the
logits' dtype (one autograd node per call: at 256 x 1000 a separate sum / divide / cast and
their backward nodes cost as much as a kernel), and per-row stats (lse as shift + log_sum, sum of targets); only the
logits, the compact targets and those stats are saved for backward (dense targets are saved
when given: they are an input, not an intermediate).
The C++ pair's autograd is registered in C++ (csrc/autograd/soft_ce.cpp): on CPU at 256 x 1000
torch.library's Python autograd layers cost about as much as both kernels. The Triton pair's is
registered here, with the same formulas.
Backend entries: (logits, a, b, lam, dense, smoothing, ignore_index, reduction) -> the loss;
reduction is 'none', 'sum' or 'mean' (REDUCTIONS maps it to the ops' int).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import stats_dtype
from tricks_ext.reference.soft_ce import mean_divisor, reduce_rows, soft_ce_rows

OP = "soft_ce"
REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
STATS = 3  # per-row statistics: shift, log_sum, T (kStats in csrc/include/tricks/soft_ce.h)
_REDUCTION_NAMES = {v: k for k, v in REDUCTIONS.items()}


def _fake_fwd(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
              smoothing: float, ignore_index: int, reduction: int) -> Tuple[Tensor, Tensor]:
    rows = logits.shape[0]
    loss = logits.new_empty((rows,) if reduction == REDUCTIONS["none"] else ())
    return loss, logits.new_empty((rows, STATS), dtype=stats_dtype(logits.dtype))


def _fake_bwd(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
              dense: Optional[Tensor], stats: Tensor, smoothing: float, ignore_index: int, reduction: int) -> Tensor:
    return torch.empty_like(logits)


def row_grads(grad: Tensor, a: Optional[Tensor], b: Optional[Tensor], ignore_index: int, reduction: int,
              rows: int) -> Tensor:
    """dL/dloss_i in the statistics dtype: (N,) for 'none', else a 0-dim tensor (divided by
    'mean''s divisor) that every row shares. The C++ ops do the same in csrc/soft_ce.h."""
    acc = stats_dtype(grad.dtype)
    g = grad.to(acc)
    if reduction != REDUCTIONS["mean"]:
        return g.contiguous()
    return g / mean_divisor(a, b, ignore_index, rows)


def _register_autograd(name: str, bwd: Callable) -> None:
    def setup_context(ctx, inputs, output):
        logits, a, b, lam, dense, smoothing, ignore_index, reduction = inputs
        ctx.smoothing, ctx.ignore_index, ctx.reduction = smoothing, ignore_index, reduction
        ctx.save_for_backward(logits, a, b, lam, dense, output[1])

    def backward(ctx, grad_loss, _grad_stats):
        logits, a, b, lam, dense, stats = ctx.saved_tensors
        dlogits = ddense = None
        if ctx.needs_input_grad[0]:
            dlogits = bwd(grad_loss, logits, a, b, lam, dense, stats, ctx.smoothing, ctx.ignore_index, ctx.reduction)
        if dense is not None and ctx.needs_input_grad[4]:  # d loss_i / d t_ic = lse_i - z_ic
            g = row_grads(grad_loss, a, b, ctx.ignore_index, ctx.reduction, logits.shape[0])
            g = g[:, None] if g.dim() else g
            ddense = ((stats[:, :1] + stats[:, 1:2] - logits.to(stats.dtype)) * g).to(dense.dtype)
        return dlogits, None, None, None, ddense, None, None, None

    torch.library.register_autograd(name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::soft_ce_fwd")(_fake_fwd)
    torch.library.register_fake("tricks_ext::soft_ce_bwd")(_fake_bwd)


@torch.library.custom_op("tricks_ext::soft_ce_fwd_triton", mutates_args=())
def _fwd_triton(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], smoothing: float, ignore_index: int, reduction: int) -> Tuple[Tensor, Tensor]:
    from tricks_ext.triton_kernels.soft_ce import soft_ce_fwd
    rows, stats = soft_ce_fwd(logits, a, b, lam, dense, smoothing, ignore_index)
    return reduce_rows(rows, a, b, ignore_index, _REDUCTION_NAMES[reduction], logits.dtype), stats


@torch.library.custom_op("tricks_ext::soft_ce_bwd_triton", mutates_args=())
def _bwd_triton(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], stats: Tensor, smoothing: float, ignore_index: int, reduction: int) -> Tensor:
    from tricks_ext.triton_kernels.soft_ce import soft_ce_bwd
    g = row_grads(grad, a, b, ignore_index, reduction, logits.shape[0])
    return soft_ce_bwd(g, logits, a, b, lam, dense, stats, smoothing, ignore_index)


_fwd_triton.register_fake(_fake_fwd)
_bwd_triton.register_fake(_fake_bwd)
_register_autograd("tricks_ext::soft_ce_fwd_triton", _bwd_triton)


def _kernel_entry(op: Callable) -> Callable:
    def run(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
            smoothing: float, ignore_index: int, reduction: str) -> Tensor:
        def prep(t: Optional[Tensor], dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
            return None if t is None else t.to(dtype or t.dtype).contiguous()
        loss, _stats = op(logits.contiguous(), prep(a, torch.int64), prep(b, torch.int64), prep(lam, torch.float32),
                          prep(dense), float(smoothing), int(ignore_index), REDUCTIONS[reduction])
        return loss
    return run


def _torch_entry(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], smoothing: float, ignore_index: int, reduction: str) -> Tensor:
    rows = soft_ce_rows(logits, a, b, lam, dense, smoothing, ignore_index)
    return reduce_rows(rows, a, b, ignore_index, reduction, logits.dtype)


_backend.register(OP, "torch", _torch_entry)
_backend.register(OP, "triton", _kernel_entry(_fwd_triton))
if _ext.HAS_C:
    _cpp = _kernel_entry(torch.ops.tricks_ext.soft_ce_fwd)
    _backend.register(OP, "cpu", _cpp)
    _backend.register(OP, "cuda", _cpp)
