"""weight_standardize: torch.library registration (fake + autograd) and per-backend entries.

Operators: tricks_ext::weight_standardize_fwd / _bwd (C++: CPU and CUDA) and their Triton
twins, (w, eps, gain) as the public function orders them. Both take a row-dense ``w`` (see :func:`is_row_dense`) and ``gain`` as (O,) in the statistics
dtype with any scale folded in; :func:`weight_standardize` prepares those from user input.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext.ops._library import Twin, define_graph_backward, differentiable_vjp, register_autograd
from tricks_ext._dtypes import stats_dtype
from tricks_ext._checks import is_row_dense
from tricks_ext.reference.weight_standardize import weight_standardize as _reference

OP = "weight_standardize"


def _check_args(w: Tensor, gain: Optional[Tensor]) -> None:
    torch._check(w.dim() >= 2, lambda: f"weight_standardize: w must have rank >= 2, got {tuple(w.shape)}")
    torch._check(gain is None or (gain.shape == (w.shape[0],) and gain.dtype == stats_dtype(w.dtype)),
                 lambda: f"weight_standardize: gain must be ({w.shape[0]},) {stats_dtype(w.dtype)}")


def _fake_fwd(w: Tensor, eps: float, gain: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    _check_args(w, gain)
    stats = w.new_empty((w.shape[0],), dtype=stats_dtype(w.dtype))
    return torch.empty_like(w), stats, torch.empty_like(stats)


def _fake_bwd(grad_out: Tensor, w: Tensor, gain: Optional[Tensor], mean: Tensor, rstd: Tensor
              ) -> Tuple[Tensor, Tensor]:
    _check_args(w, gain)
    torch._check(grad_out.shape == w.shape and grad_out.dtype == w.dtype,
                 lambda: "weight_standardize_bwd: grad_out must have w's shape and dtype")
    return torch.empty_like(w), torch.empty_like(mean)


FWD = Twin("weight_standardize_fwd", "weight_standardize", _fake_fwd)
BWD = Twin("weight_standardize_bwd", "weight_standardize", _fake_bwd)


def _setup_context(ctx, inputs, output):
    w, eps, gain = inputs
    _, mean, rstd = output
    ctx.eps = eps
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(w, gain, mean, rstd)


def _make_backward(bwd: Callable) -> Callable:
    def backward(ctx, grad_out, _grad_mean, _grad_rstd):
        w, gain, mean, rstd = ctx.saved_tensors
        grad_w, grad_gain = bwd(grad_out, w, gain, mean, rstd)
        return (grad_w if ctx.needs_input_grad[0] else None, None,
                grad_gain if gain is not None and ctx.needs_input_grad[2] else None)
    return backward


def _graph_grads(grad_out: Tensor, w: Tensor, gain: Optional[Tensor], eps: float, w_grad: bool,
                 gain_grad: bool) -> List[Tensor]:
    """The gradients for w and gain (those asked for, in that order) as a differentiable graph of
    the torch backend: second derivatives."""
    grads = differentiable_vjp(lambda w, gain: _reference(w, eps, gain, None), (w, gain), (w_grad, gain_grad),
                               grad_out)
    return [g for g in grads if g is not None]


def _graph_backward(ctx, grad_out, _grad_mean, _grad_rstd):
    w, gain, _mean, _rstd = ctx.saved_tensors
    need_w, need_gain = ctx.needs_input_grad[0], gain is not None and ctx.needs_input_grad[2]
    grads = iter(_graph_grads(grad_out, w, gain, ctx.eps, need_w, need_gain))
    return (next(grads) if need_w else None), None, (next(grads) if need_gain else None)


# The C++ pair's autograd is registered in C++ (csrc/weight_standardize/autograd.cpp), same
# formulas; its double backward calls tricks_ext::weight_standardize_graph_backward.
register_autograd(FWD, _make_backward, _setup_context, bwd=BWD, kinds=("triton", "simt"), graph=_graph_backward)
if FWD.cxx is not None:
    define_graph_backward("weight_standardize_graph_backward", "(Tensor grad, Tensor w, Tensor? gain, float eps, "
                          "bool w_grad, bool gain_grad) -> Tensor[]", _graph_grads)


def _multiplier(w: Tensor, gain: Optional[Tensor], scale: Optional[float]) -> Optional[Tensor]:
    """The kernels' per-channel multiplier gain * scale, (O,) in the statistics dtype; None
    when both are absent."""
    if gain is None and scale is None:
        return None
    g = (torch.ones(w.shape[0], dtype=stats_dtype(w.dtype), device=w.device) if gain is None
         else gain.reshape(-1).to(stats_dtype(w.dtype)))
    return g if scale is None else g * scale


def _kernel_entry(fwd: Callable) -> Callable:
    def run(w: Tensor, eps: float, gain: Optional[Tensor], scale: Optional[float]) -> Tensor:
        if not is_row_dense(w):
            w = w.contiguous()
        return fwd(w, float(eps), _multiplier(w, gain, scale))[0]
    return run


def _torch(w: Tensor, eps: float, gain: Optional[Tensor], scale: Optional[float]) -> Tensor:
    return _reference(w, eps, gain, scale)


_backend.register(OP, torch=_torch, triton=_kernel_entry(FWD.triton), cxx=_kernel_entry(FWD.cxx) if FWD.cxx else None,
                  simt=_kernel_entry(FWD.simt) if FWD.simt else None)
