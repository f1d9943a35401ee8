"""soft_f1: registration (fake + autograd) and per-backend entries of the soft F1 loss.

Operators: tricks_ext::soft_f1_sums / soft_f1_sums_bwd (C++: CPU and CUDA) and their Triton and
simt twins. The fused op reduces the logits to the per-class soft counts, (3, C): sum_i t p,
sum_i p and sum_i t (csrc/soft_f1/math.h); the F1 score on those C-vectors is a few tensor ops
(:func:`f1_loss_from_sums`), differentiated by autograd into the op's backward. Backend entries:
(logits, a, dense, average, beta, eps, multi_label) -> the loss in the logits' dtype.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import stats_dtype
from tricks_ext.ops._library import Twin, differentiable_vjp, register_autograd
from tricks_ext.reference.soft_f1 import soft_f1_sums as _reference_sums

OP = "soft_f1"


def _check_args(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor]) -> None:
    torch._check(logits.dim() == 2, lambda: f"soft_f1: logits must be (N, C), got {tuple(logits.shape)}")
    torch._check((a is None) != (dense is None), lambda: "soft_f1: give labels (a) or dense targets, one of them")
    torch._check(a is None or a.shape == (logits.shape[0],), lambda: f"soft_f1: a must be ({logits.shape[0]},)")
    torch._check(dense is None or (dense.shape == logits.shape and dense.dtype == logits.dtype),
                 lambda: "soft_f1: dense targets must have the logits' shape and dtype")


def _fake_sums(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], multi_label: bool) -> Tensor:
    _check_args(logits, a, dense)
    return logits.new_empty((3, logits.shape[1]), dtype=stats_dtype(logits.dtype))


def _fake_bwd(grad: Tensor, logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], multi_label: bool) -> Tensor:
    _check_args(logits, a, dense)
    torch._check(grad.shape == (3, logits.shape[1]), lambda: "soft_f1_sums_bwd: grad must be (3, C)")
    return torch.empty_like(logits)


FWD = Twin("soft_f1_sums", "soft_f1", _fake_sums)
BWD = Twin("soft_f1_sums_bwd", "soft_f1", _fake_bwd)


def _setup_context(ctx, inputs, output):
    logits, a, dense, multi_label = inputs
    ctx.multi_label = multi_label
    ctx.save_for_backward(logits, a, dense)


def _make_backward(bwd: Callable) -> Callable:
    def backward(ctx, grad):
        logits, a, dense = ctx.saved_tensors
        return bwd(grad.contiguous(), logits, a, dense, ctx.multi_label) if ctx.needs_input_grad[0] else None, \
            None, None, None
    return backward


def _graph_backward(ctx, grad):
    logits, a, dense = ctx.saved_tensors
    (dz,) = differentiable_vjp(lambda z: _reference_sums(z, a, dense, ctx.multi_label), (logits,),
                               (ctx.needs_input_grad[0],), grad)
    return dz, None, None, None


register_autograd(FWD, _make_backward, _setup_context, bwd=BWD, graph=_graph_backward)


def f1_loss_from_sums(sums: Tensor, average: str, beta: float, eps: float) -> Tensor:
    """1 - F_beta from the (3, C) soft counts: per class and averaged ('macro'), or on the counts
    summed over the classes ('micro'). P = TP / (sum p + eps), R = TP / (sum t + eps), F =
    (1 + beta^2) P R / (beta^2 P + R + eps); a ratio over 0 (eps = 0 only) is 0. In fp64 whatever
    the sums' dtype: F's gradient in the counts subtracts nearly equal terms (2R / den - 2PR /
    den^2 when R << P), which in fp32 lost 3 of its 7 digits on a 5000-class batch of 3 rows,
    and on C values fp64 costs nothing."""
    sums = sums.double()
    tp, sp, st = sums[0], sums[1], sums[2]
    if average == "micro":
        tp, sp, st = tp.sum(), sp.sum(), st.sum()
    precision = _ratio(tp, sp + eps)
    recall = _ratio(tp, st + eps)
    f = _ratio((1 + beta ** 2) * precision * recall, beta ** 2 * precision + recall + eps)
    return 1 - f.mean()


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    zero = den == 0
    return torch.where(zero, 0.0, num / torch.where(zero, 1.0, den))


def _entry(sums_of: Callable) -> Callable:
    def run(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], average: str, beta: float, eps: float,
            multi_label: bool) -> Tensor:
        sums = sums_of(logits, a, dense, multi_label)
        return f1_loss_from_sums(sums, average, beta, eps).to(logits.dtype)
    return run


def _kernel_sums(op: Callable) -> Callable:
    def sums(logits: Tensor, a: Optional[Tensor], dense: Optional[Tensor], multi_label: bool) -> Tensor:
        return op(logits.contiguous(), None if a is None else a.to(torch.int64).contiguous(),
                  None if dense is None else dense.contiguous(), bool(multi_label))
    return sums


_backend.register(OP, torch=_entry(_reference_sums), triton=_entry(_kernel_sums(FWD.triton)),
                  cxx=_entry(_kernel_sums(FWD.cxx)) if FWD.cxx else None,
                  simt=_entry(_kernel_sums(FWD.simt)) if FWD.simt else None)
