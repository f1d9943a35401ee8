"""Optimizer step, plain PyTorch: clipping + Gradient Centralization + Adam/AdamW/RAdam +
Lookahead + EMA of the weights.

The specification of tricks_ext.optim, one tensor at a time, written from the formulas:
t = step (1 on the first update), bc1 = 1 - b1^t, bc2 = 1 - b2^t.
  clipping, on the unscaled grads, before anything else: by value (torch's clip_grad_value_)
      g <- clamp(g, -c, c); or AGC (arXiv 2102.06171, timm's adaptive_clip_grad): per row
      (dims 1..; the whole tensor for dim <= 1) g <- g * min(1, f max(|p|, eps) / |g|).
      Clipping by the total norm spans tensors: the optimizer folds it into the grad scale.
  GC (arXiv 2004.01461): for grads with dim > 1 (dim > 3 when conv_only),
      g <- g - mean(g over dims 1..d-1); 1-D tensors are never centralized.
  weight decay: decoupled p *= 1 - lr*wd (AdamW), else L2 g += wd*p (after GC).
  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
  Adam:  p -= (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps)                    (= torch.optim.Adam)
  RAdam: rho_inf = 2/(1-b2) - 1, rho_t = rho_inf - 2 t b2^t / bc2;      (= torch.optim.RAdam)
         rho_t > 5: p -= lr r_t (sqrt(bc2)/bc1) m / (sqrt(v) + eps),
                    r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))
         else:      p -= (lr/bc1) m
  Lookahead (arXiv 1907.08610): slow = p before the first update; every k-th step, after the
      update: slow += alpha (p - slow); p = slow.
  EMA (timm's ModelEmaV3, applied after the step): ema = lerp(ema, p, 1 - decay(t)), see
      ema_decay; ema = p on the first update (decay 0).
Math in fp32 (fp64 for fp64 params); m, v, ema (and slow, by default) kept in fp32.
GC and AGC are tricks_ext/_gradients.py's (checked against pytorch-optimizer's
centralize_gradient and timm's adaptive_clip_grad by the tests).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype
from tricks_ext._gradients import adaptive_clip, centralize


def ema_decay(step: int, decay: float, min_decay: float = 0.0, update_after_step: int = 0, warmup: bool = False,
              warmup_gamma: float = 1.0, warmup_power: float = 2 / 3) -> float:
    """timm's ModelEmaV3.get_decay(step): 0 (the EMA takes the params) until step passes
    update_after_step + 1, then ``decay``, or with warmup 1 - (1 + t / gamma)^-power clamped to
    [min_decay, decay]."""
    t = max(0, step - update_after_step - 1)
    if t <= 0:
        return 0.0
    if not warmup:
        return decay
    return max(min(1 - (1 + t / warmup_gamma) ** -warmup_power, decay), min_decay)


def step_scalars(step: int, lr: float, beta1: float, beta2: float, rectify: bool):
    """(step_size, denom_scale): p -= step_size * m / (sqrt(v) / denom_scale + eps), or, when
    denom_scale is None (RAdam before the variance is tractable), p -= step_size * m."""
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    if not rectify:
        return lr / bc1, math.sqrt(bc2)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2 ** step / bc2
    if rho_t > 5.0:
        r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return lr * r_t * math.sqrt(bc2) / bc1, 1.0
    return lr / bc1, None


def optimizer_step(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                   slow: Optional[Tensor], step: int, *, lr: float, beta1: float, beta2: float, eps: float,
                   weight_decay: float, decoupled_weight_decay: bool, rectify: bool, gc: bool,
                   gc_conv_only: bool, lookahead_k: Optional[int], lookahead_alpha: float,
                   maximize: bool, clip_value: Optional[float] = None, agc_clip_factor: Optional[float] = None,
                   agc_eps: float = 1e-3, ema: Optional[Tensor] = None, ema_decay: float = 0.0) -> None:
    """One update of one tensor, in place on param/exp_avg/exp_avg_sq/slow/ema; ``step`` counts
    this update (1 on the first). ``grad`` (unscaled) is not modified."""
    acc = stats_dtype(param.dtype)
    with torch.no_grad():
        g = grad.to(acc)
        if clip_value is not None:
            g = g.clamp(-clip_value, clip_value)
        if agc_clip_factor is not None:
            g = adaptive_clip(g, param.to(acc), agc_clip_factor, agc_eps)
        if maximize:
            g = -g
        if gc:
            g = centralize(g, gc_conv_only)
        p = param.to(acc)
        if weight_decay != 0:
            if decoupled_weight_decay:
                p = p * (1.0 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        exp_avg.mul_(beta1).add_(g, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        step_size, denom_scale = step_scalars(step, lr, beta1, beta2, rectify)
        if denom_scale is None:
            p = p - step_size * exp_avg
        else:
            p = p - step_size * exp_avg / (exp_avg_sq.sqrt() / denom_scale + eps)
        if lookahead_k is not None and slow is not None and step % lookahead_k == 0:
            new_slow = slow.to(acc) + lookahead_alpha * (p - slow.to(acc))
            slow.copy_(new_slow)
            p = new_slow
        param.copy_(p)
        if ema is not None:
            ema.lerp_(param.to(ema.dtype), 1.0 - ema_decay)
