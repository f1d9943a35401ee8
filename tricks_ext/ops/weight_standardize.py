"""weight_standardize: torch.library registration (fake + autograd) and per-backend entries.

Operators:
  tricks_ext::weight_standardize_fwd / _bwd          C++ (CPU and CUDA dispatch keys, csrc/)
  tricks_ext::weight_standardize_fwd_triton / _bwd   Triton launchers wrapped as custom ops
Both take a row-dense ``w`` (see :func:`is_row_dense`) and ``gain`` as (O,) in the statistics
dtype with any scale folded in; :func:`weight_standardize` prepares those from user input.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import is_row_dense, stats_dtype
from tricks_ext.reference.weight_standardize import per_channel_multiplier
from tricks_ext.reference.weight_standardize import weight_standardize as _reference

OP = "weight_standardize"


def _fake_fwd(w: Tensor, gain: Optional[Tensor], eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    stats = w.new_empty((w.shape[0],), dtype=stats_dtype(w.dtype))
    return torch.empty_like(w), stats, torch.empty_like(stats)


def _fake_bwd(grad_out: Tensor, w: Tensor, gain: Optional[Tensor], mean: Tensor, rstd: Tensor
              ) -> Tuple[Tensor, Tensor]:
    return torch.empty_like(w), torch.empty_like(mean)


def _register_autograd(fwd_name: str, bwd: Callable) -> None:
    def setup_context(ctx, inputs, output):
        w, gain, _eps = inputs
        _, mean, rstd = output
        ctx.mark_non_differentiable(mean, rstd)
        ctx.save_for_backward(w, gain, mean, rstd)

    def backward(ctx, grad_out, _grad_mean, _grad_rstd):
        w, gain, mean, rstd = ctx.saved_tensors
        grad_w, grad_gain = bwd(grad_out, w, gain, mean, rstd)
        return (grad_w if ctx.needs_input_grad[0] else None,
                grad_gain if gain is not None and ctx.needs_input_grad[1] else None, None)

    torch.library.register_autograd(fwd_name, backward, setup_context=setup_context)


if _ext.HAS_C:
    torch.library.register_fake("tricks_ext::weight_standardize_fwd")(_fake_fwd)
    torch.library.register_fake("tricks_ext::weight_standardize_bwd")(_fake_bwd)
    _register_autograd("tricks_ext::weight_standardize_fwd", torch.ops.tricks_ext.weight_standardize_bwd)


@torch.library.custom_op("tricks_ext::weight_standardize_fwd_triton", mutates_args=())
def _fwd_triton(w: Tensor, gain: Optional[Tensor], eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    from tricks_ext.triton_kernels.weight_standardize import weight_standardize_fwd
    return weight_standardize_fwd(w, gain, eps)


@torch.library.custom_op("tricks_ext::weight_standardize_bwd_triton", mutates_args=())
def _bwd_triton(grad_out: Tensor, w: Tensor, gain: Optional[Tensor], mean: Tensor, rstd: Tensor
                ) -> Tuple[Tensor, Tensor]:
    from tricks_ext.triton_kernels.weight_standardize import weight_standardize_bwd
    return weight_standardize_bwd(grad_out, w, gain, mean, rstd)


_fwd_triton.register_fake(_fake_fwd)
_bwd_triton.register_fake(_fake_bwd)
_register_autograd("tricks_ext::weight_standardize_fwd_triton", _bwd_triton)


def _kernel_entry(fwd: Callable) -> Callable:
    def run(w: Tensor, eps: float, gain: Optional[Tensor], scale: Optional[float]) -> Tensor:
        if not is_row_dense(w):
            w = w.contiguous()
        return fwd(w, per_channel_multiplier(w, gain, scale), float(eps))[0]
    return run


_backend.register(OP, "torch", lambda w, eps, gain, scale: _reference(w, eps, gain, scale))
_backend.register(OP, "triton", _kernel_entry(_fwd_triton))
if _ext.HAS_C:
    _cpp = _kernel_entry(torch.ops.tricks_ext.weight_standardize_fwd)
    _backend.register(OP, "cpu", _cpp)
    _backend.register(OP, "cuda", _cpp)
