"""soft_ce: registration (fake + autograd) and per-backend entries of the soft-target
cross-entropy.

Operators: tricks_ext::soft_ce_fwd / soft_ce_bwd (C++: CPU and CUDA) and the Triton pair
soft_ce_fwd_triton / soft_ce_bwd_triton. The forward returns the loss, already reduced and in the
logits' dtype (one autograd node per call: a separate sum / divide / cast and their backward
nodes cost as much as a kernel at ImageNet sizes), and per-row stats (lse as shift + log_sum, sum of targets); only the
logits, the compact targets and those stats are saved for backward (dense targets are saved
when given: they are an input, not an intermediate).
The C++ pair's autograd is registered in C++ (csrc/soft_ce/autograd.cpp): on CPU torch.library's
Python autograd layers cost about as much as both kernels (benchmarks/NOTES.md). The Triton
pair's is registered here, with the same formulas.
Backend entries: (logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction) -> the loss;
reduction is 'none', 'sum' or 'mean' (REDUCTIONS maps it to the ops' int).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import stats_dtype
from tricks_ext.ops._library import (Twin, define_graph_backward, differentiable_vjp, loss_input_grads,
                                     register_autograd)
from tricks_ext.reference.soft_ce import reduce_rows, soft_ce_rows

OP = "soft_ce"
REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
_REDUCTION_NAMES = {v: k for k, v in REDUCTIONS.items()}


def _check_args(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], weight: Optional[Tensor], reduction: int) -> None:
    torch._check(logits.dim() == 2, lambda: f"soft_ce: logits must be (N, C), got {tuple(logits.shape)}")
    rows = logits.shape[0]
    for name, t in (("a", a), ("b", b), ("lam", lam)):
        torch._check(t is None or t.shape == (rows,), lambda: f"soft_ce: {name} must be ({rows},)")
    torch._check(dense is None or (dense.shape == logits.shape and dense.dtype == logits.dtype),
                 lambda: "soft_ce: dense targets must have the logits' shape and dtype")
    torch._check(weight is None or (weight.shape == (logits.shape[1],) and weight.dtype == stats_dtype(logits.dtype)),
                 lambda: f"soft_ce: weight must be ({logits.shape[1]},) in {stats_dtype(logits.dtype)}")
    torch._check(reduction in _REDUCTION_NAMES, lambda: f"soft_ce: reduction must be 0, 1 or 2, got {reduction}")


def _fake_fwd(columns: Callable[[], int]) -> Callable:
    def fake(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
             weight: Optional[Tensor], label_smoothing: float, ignore_index: int,
             reduction: int) -> Tuple[Tensor, Tensor]:
        _check_args(logits, a, b, lam, dense, weight, reduction)
        rows = logits.shape[0]
        loss = logits.new_empty((rows,) if reduction == REDUCTIONS["none"] else ())
        return loss, logits.new_empty((rows, columns()), dtype=stats_dtype(logits.dtype))
    return fake


def _cxx_stats_columns() -> int:
    return int(torch.ops.tricks_ext.soft_ce_stats_columns())


def _triton_stats_columns() -> int:
    from tricks_ext.triton_kernels.soft_ce import STATS_COLUMNS
    return int(STATS_COLUMNS)


def _fake_bwd(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
              dense: Optional[Tensor], weight: Optional[Tensor], stats: Tensor, label_smoothing: float,
              ignore_index: int, reduction: int) -> Tensor:
    _check_args(logits, a, b, lam, dense, weight, reduction)
    torch._check(stats.dim() == 2 and stats.shape[0] == logits.shape[0] and stats.dtype == stats_dtype(logits.dtype),
                 lambda: "soft_ce_bwd: stats must be the forward's")
    return torch.empty_like(logits)


FWD = Twin("soft_ce_fwd", "soft_ce", _fake_fwd(_cxx_stats_columns),
           triton_fake=_fake_fwd(_triton_stats_columns))
BWD = Twin("soft_ce_bwd", "soft_ce", _fake_bwd)


def _setup_context(ctx, inputs, output):
    logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction = inputs
    ctx.label_smoothing, ctx.ignore_index, ctx.reduction = label_smoothing, ignore_index, reduction
    ctx.save_for_backward(logits, a, b, lam, dense, weight, output[1])


def _make_backward(bwd: Callable) -> Callable:
    def backward(ctx, grad_loss, _grad_stats):
        logits, a, b, lam, dense, weight, stats = ctx.saved_tensors

        def dense_grad() -> Tensor:
            from tricks_ext.triton_kernels.soft_ce import dense_target_grad
            return dense_target_grad(grad_loss, logits, weight, stats, ctx.reduction)
        return loss_input_grads(ctx, dense, 9, lambda: bwd(grad_loss, logits, a, b, lam, dense, weight, stats,
                                                           ctx.label_smoothing, ctx.ignore_index, ctx.reduction),
                                dense_grad)
    return backward


def _graph_grads(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float, ignore_index: int,
                 reduction: int, logits_grad: bool, dense_grad: bool) -> List[Tensor]:
    """The gradients for logits and dense targets (those asked for, in that order) as a
    differentiable graph of the torch backend: second derivatives."""
    grads = differentiable_vjp(
        lambda z, t: _torch_entry(z, a, b, lam, t, weight, label_smoothing, ignore_index, _REDUCTION_NAMES[reduction]),
        (logits, dense), (logits_grad, dense_grad), grad)
    return [g for g in grads if g is not None]


def _graph_backward(ctx, grad_loss, _grad_stats):
    logits, a, b, lam, dense, weight, _stats = ctx.saved_tensors
    need_z, need_t = ctx.needs_input_grad[0], dense is not None and ctx.needs_input_grad[4]
    grads = iter(_graph_grads(grad_loss, logits, a, b, lam, dense, weight, ctx.label_smoothing, ctx.ignore_index,
                              ctx.reduction, need_z, need_t))
    return (next(grads) if need_z else None), None, None, None, (next(grads) if need_t else None), None, None, None, None


# The C++ pair's autograd is registered in C++ (csrc/soft_ce/autograd.cpp), same formulas; its
# double backward calls tricks_ext::soft_ce_graph_backward.
register_autograd(FWD, _make_backward, _setup_context, bwd=BWD, kinds=("triton", "simt"), graph=_graph_backward)
if FWD.cxx is not None:
    define_graph_backward("soft_ce_graph_backward", "(Tensor grad, Tensor logits, Tensor? a, Tensor? b, Tensor? lam, "
                          "Tensor? dense, Tensor? weight, float label_smoothing, int ignore_index, int reduction, "
                          "bool logits_grad, bool dense_grad) -> Tensor[]", _graph_grads)


def _kernel_entry(op: Callable) -> Callable:
    def run(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
            weight: Optional[Tensor], label_smoothing: float, ignore_index: int, reduction: str) -> Tensor:
        def prep(t: Optional[Tensor], dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
            return None if t is None else t.to(dtype or t.dtype).contiguous()
        loss, _stats = op(logits.contiguous(), prep(a, torch.int64), prep(b, torch.int64), prep(lam, torch.float32),
                          prep(dense), prep(weight, stats_dtype(logits.dtype)), float(label_smoothing),
                          int(ignore_index), REDUCTIONS[reduction])
        return loss
    return run


def _torch_entry(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float, ignore_index: int,
                 reduction: str) -> Tensor:
    rows = soft_ce_rows(logits, a, b, lam, dense, weight, label_smoothing, ignore_index)
    return reduce_rows(rows, a, b, weight, ignore_index, reduction, logits.dtype)


_backend.register(OP, torch=_torch_entry, triton=_kernel_entry(FWD.triton),
                  cxx=_kernel_entry(FWD.cxx) if FWD.cxx else None, simt=_kernel_entry(FWD.simt) if FWD.simt else None)
