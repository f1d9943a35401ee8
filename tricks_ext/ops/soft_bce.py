"""soft_bce: registration (fake + autograd) and per-backend entries of the soft-target binary
cross-entropy.

Operators: tricks_ext::soft_bce_fwd / soft_bce_bwd (C++: CPU and CUDA, autograd in C++:
csrc/soft_bce/autograd.cpp), their Triton and simt twins (autograd registered here). The forward returns the loss already reduced, in the logits' dtype; nothing but the
inputs is saved for backward, which recomputes each element's target and sigmoid from the
logits. Backend entries: (logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction)
-> the loss; reduction is 'none', 'sum' or 'mean' (REDUCTIONS maps it to the ops' int).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import stats_dtype
from tricks_ext.ops._library import (Twin, define_graph_backward, differentiable_vjp, loss_input_grads,
                                     register_autograd)
from tricks_ext.ops.soft_ce import _REDUCTION_NAMES, REDUCTIONS
from tricks_ext.reference.soft_bce import reduce_elements, soft_bce_elements

OP = "soft_bce"
_NONE = REDUCTIONS["none"]


def _check_args(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                dense: Optional[Tensor], pos_weight: Optional[Tensor], weight: Optional[Tensor], reduction: int) -> None:
    torch._check(logits.dim() == 2, lambda: f"soft_bce: logits must be (N, C), got {tuple(logits.shape)}")
    rows, classes = logits.shape
    for name, t in (("a", a), ("b", b), ("lam", lam)):
        torch._check(t is None or t.shape == (rows,), lambda: f"soft_bce: {name} must be ({rows},)")
    torch._check(dense is None or (dense.shape == logits.shape and dense.dtype == logits.dtype),
                 lambda: "soft_bce: dense targets must have the logits' shape and dtype")
    for name, t in (("pos_weight", pos_weight), ("weight", weight)):
        torch._check(t is None or t.shape == (classes,), lambda: f"soft_bce: {name} must be ({classes},)")
    torch._check(reduction in (0, 1, 2), lambda: f"soft_bce: reduction must be 0, 1 or 2, got {reduction}")


def _fake_fwd(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
              pos_weight: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float,
              target_threshold: Optional[float], reduction: int) -> Tensor:
    _check_args(logits, a, b, lam, dense, pos_weight, weight, reduction)
    return torch.empty_like(logits) if reduction == _NONE else logits.new_empty(())


def _fake_bwd(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
              dense: Optional[Tensor], pos_weight: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float,
              target_threshold: Optional[float], reduction: int) -> Tensor:
    _check_args(logits, a, b, lam, dense, pos_weight, weight, reduction)
    return torch.empty_like(logits)


FWD = Twin("soft_bce_fwd", "soft_bce", _fake_fwd)
BWD = Twin("soft_bce_bwd", "soft_bce", _fake_bwd)


def _setup_context(ctx, inputs, output):
    logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction = inputs
    ctx.label_smoothing, ctx.target_threshold, ctx.reduction = label_smoothing, target_threshold, reduction
    ctx.save_for_backward(logits, a, b, lam, dense, pos_weight, weight)


def _make_backward(bwd: Callable) -> Callable:
    def backward(ctx, grad_loss):
        logits, a, b, lam, dense, pos_weight, weight = ctx.saved_tensors

        def dense_grad() -> Tensor:
            from tricks_ext.triton_kernels.soft_bce import dense_target_grad
            return dense_target_grad(grad_loss, logits, pos_weight, weight, ctx.target_threshold, ctx.reduction)
        return loss_input_grads(ctx, dense, 10, lambda: bwd(grad_loss, logits, a, b, lam, dense, pos_weight, weight,
                                                            ctx.label_smoothing, ctx.target_threshold, ctx.reduction),
                                dense_grad)
    return backward


def _graph_grads(grad: Tensor, logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], pos_weight: Optional[Tensor], weight: Optional[Tensor],
                 label_smoothing: float, target_threshold: Optional[float],
                 reduction: int, logits_grad: bool, dense_grad: bool) -> List[Tensor]:
    """The gradients for logits and dense targets (those asked for, in that order) as a
    differentiable graph of the torch backend: second derivatives."""
    grads = differentiable_vjp(
        lambda z, t: _torch_entry(z, a, b, lam, t, pos_weight, weight, label_smoothing, target_threshold,
                                  _REDUCTION_NAMES[reduction]),
        (logits, dense), (logits_grad, dense_grad), grad)
    return [g for g in grads if g is not None]


def _graph_backward(ctx, grad_loss):
    logits, a, b, lam, dense, pos_weight, weight = ctx.saved_tensors
    need_z, need_t = ctx.needs_input_grad[0], dense is not None and ctx.needs_input_grad[4]
    grads = iter(_graph_grads(grad_loss, logits, a, b, lam, dense, pos_weight, weight, ctx.label_smoothing,
                              ctx.target_threshold, ctx.reduction, need_z, need_t))
    return ((next(grads) if need_z else None), None, None, None, (next(grads) if need_t else None)) + (None,) * 5


# The C++ pair's autograd is registered in C++ (csrc/soft_bce/autograd.cpp), same formulas; its
# double backward calls tricks_ext::soft_bce_graph_backward.
register_autograd(FWD, _make_backward, _setup_context, bwd=BWD, kinds=("triton", "simt"), graph=_graph_backward)
if FWD.cxx is not None:
    define_graph_backward("soft_bce_graph_backward", "(Tensor grad, Tensor logits, Tensor? a, Tensor? b, Tensor? lam, "
                          "Tensor? dense, Tensor? pos_weight, Tensor? weight, float label_smoothing, float? target_threshold, "
                          "int reduction, "
                          "bool logits_grad, bool dense_grad) -> Tensor[]", _graph_grads)


def _kernel_entry(op: Callable) -> Callable:
    def run(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor], dense: Optional[Tensor],
            pos_weight: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float,
            target_threshold: Optional[float], reduction: str) -> Tensor:
        def prep(t: Optional[Tensor], dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
            return None if t is None else t.to(dtype or t.dtype).contiguous()
        acc = stats_dtype(logits.dtype)
        return op(logits.contiguous(), prep(a, torch.int64), prep(b, torch.int64), prep(lam, torch.float32),
                  prep(dense), prep(pos_weight, acc), prep(weight, acc), float(label_smoothing),
                  None if target_threshold is None else float(target_threshold), REDUCTIONS[reduction])
    return run


def _torch_entry(logits: Tensor, a: Optional[Tensor], b: Optional[Tensor], lam: Optional[Tensor],
                 dense: Optional[Tensor], pos_weight: Optional[Tensor], weight: Optional[Tensor], label_smoothing: float,
                 target_threshold: Optional[float], reduction: str) -> Tensor:
    elements = soft_bce_elements(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold)
    return reduce_elements(elements, reduction, logits.dtype)


_backend.register(OP, torch=_torch_entry, triton=_kernel_entry(FWD.triton),
                  cxx=_kernel_entry(FWD.cxx) if FWD.cxx else None, simt=_kernel_entry(FWD.simt) if FWD.simt else None)
