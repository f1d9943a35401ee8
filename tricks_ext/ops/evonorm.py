"""evonorm_s0: registration (fake + autograd) and per-backend entries of EvoNorm-S0.

Operators: tricks_ext::evonorm_s0_fwd / _bwd (C++: CPU and CUDA) and their Triton twins, on x
viewed as (N, C, P). Saved for backward: x and the
per-(n, g) shift (the mean minus the group's first element: csrc/evonorm/math.h) and rstd (plus the (C,) v and weight). The backward's per-(n, c) partials are
summed over N here, in a fixed order (deterministic dv, dweight, dbias).
Backend entries: (x, v, weight, bias, groups, eps, split=0) -> y, for x (N, C, ...); split is
the GPU forward's chunks per group (0: chosen from the SM count; 1: one program per group).
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import stats_dtype
from tricks_ext.ops._library import Twin, differentiable_vjp, register_autograd
from tricks_ext.reference.evonorm import evonorm_s0 as _reference

OP = "evonorm_s0"


def _check_args(x: Tensor, v: Tensor, weight: Tensor, groups: int) -> None:
    torch._check(x.dim() == 3, lambda: f"evonorm_s0: x must be (N, C, P), got {tuple(x.shape)}")
    c = x.shape[1]
    torch._check(groups >= 1 and c % groups == 0, lambda: f"evonorm_s0: C = {c} is not divisible by groups = {groups}")
    for name, t in (("v", v), ("weight", weight)):
        torch._check(t.shape == (c,) and t.dtype == stats_dtype(x.dtype),
                     lambda: f"evonorm_s0: {name} must be ({c},) {stats_dtype(x.dtype)}")


def _fake_fwd(x: Tensor, v: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float,
              split: int) -> Tuple[Tensor, Tensor, Tensor]:
    _check_args(x, v, weight, groups)
    acc = stats_dtype(x.dtype)
    return torch.empty_like(x), x.new_empty((x.shape[0], groups), dtype=acc), x.new_empty((x.shape[0], groups),
                                                                                          dtype=acc)


def _fake_bwd(dy: Tensor, x: Tensor, v: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, groups: int,
              eps: float) -> Tuple[Tensor, Tensor]:
    _check_args(x, v, weight, groups)
    torch._check(dy.shape == x.shape and dy.dtype == x.dtype, lambda: "evonorm_s0_bwd: dy must match x")
    return torch.empty_like(x), x.new_empty((x.shape[0], x.shape[1], 3), dtype=stats_dtype(x.dtype))


FWD = Twin("evonorm_s0_fwd", "evonorm", _fake_fwd)
BWD = Twin("evonorm_s0_bwd", "evonorm", _fake_bwd)


def _setup_context(ctx, inputs, output):
    x, v, weight, _bias, groups, eps, _split = inputs
    ctx.groups, ctx.eps = groups, eps
    ctx.save_for_backward(x, v, weight, output[1], output[2])


def _make_backward(bwd: Callable) -> Callable:
    def backward(ctx, dy, _dmean, _drstd):
        x, v, weight, mean, rstd = ctx.saved_tensors
        dx, part = bwd(dy, x, v, weight, mean, rstd, ctx.groups, ctx.eps)
        sums = part.sum(0)  # (C, 3): sum_n r A, sum_n r V, sum_n B
        return dx, weight * sums[:, 1], sums[:, 0], sums[:, 2], None, None, None
    return backward


def _graph_backward(ctx, dy, _dmean, _drstd):
    x, v, weight, _mean, _rstd = ctx.saved_tensors
    # y is affine in bias: no gradient reads it, so it is not saved and zeros stand in
    grads = differentiable_vjp(lambda *t: _torch(*t, ctx.groups, ctx.eps), (x, v, weight, torch.zeros_like(v)),
                               ctx.needs_input_grad[:4], dy)
    return (*grads, None, None, None)


register_autograd(FWD, _make_backward, _setup_context, bwd=BWD, graph=_graph_backward)


def as_ncp(x: Tensor) -> Tensor:
    """x (N, C, ...) as (N, C, P) whose strides the kernels walk (and whose empty_like has the
    same strides): a view for NCHW contiguous and channels_last(_3d), else a contiguous copy."""
    x3 = x.flatten(2) if x.dim() > 3 else x
    if x3.dim() == 3 and torch.empty_like(x3).stride() == x3.stride():
        return x3
    return x.contiguous().flatten(2)


def _kernel_entry(op: Callable) -> Callable:
    def run(x: Tensor, v: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, split: int = 0) -> Tensor:
        acc = stats_dtype(x.dtype)
        c = x.shape[1]
        y, _mean, _rstd = op(as_ncp(x), v.to(acc).reshape(c), weight.to(acc).reshape(c), bias.to(acc).reshape(c),
                             groups, float(eps), split)
        return y.view(x.shape)
    return run


def _torch(x: Tensor, v: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float, split: int = 0) -> Tensor:
    y = _reference(x, v, weight, bias, groups, eps)
    return y if y.stride() == x.stride() else torch.empty_like(x).copy_(y)  # x's layout, as the kernels


_backend.register(OP, torch=_torch, triton=_kernel_entry(FWD.triton), cxx=_kernel_entry(FWD.cxx) if FWD.cxx else None,
                  simt=_kernel_entry(FWD.simt) if FWD.simt else None)
