"""optim_step: per-backend implementations of one optimizer step over a list of tensors that
share a device and dtype. Signature of every implementation:
    impl(group, params, grads, states, grad_scale, found_inf)
``group`` is the param group (hyperparameters), ``states`` the per-param state dicts (step is
counted here), ``grad_scale``/``found_inf`` come from torch.amp.GradScaler (or are None).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.reference.optim import optimizer_step, step_scalars

OP = "optim_step"


def _step_torch(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
                grad_scale: Optional[Tensor], found_inf: Optional[Tensor]) -> None:
    """The reference, one tensor at a time. Reads found_inf on the host (a sync on CUDA)."""
    if found_inf is not None and bool(found_inf.item()):
        return
    b1, b2 = group["betas"]
    for p, g, st in zip(params, grads, states):
        if grad_scale is not None:
            g = g / grad_scale.to(g.device)
        st["step"] += 1
        optimizer_step(p, g, st["exp_avg"], st["exp_avg_sq"], st.get("slow_buffer"), int(st["step"].item()),
                       lr=group["lr"], beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                       decoupled_weight_decay=group["decoupled_weight_decay"], rectify=group["rectify"],
                       gc=group["gc"], gc_conv_only=group["gc_conv_only"], lookahead_k=group["lookahead_k"],
                       lookahead_alpha=group["lookahead_alpha"], maximize=group["maximize"])


def _step_kernel(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
                 grad_scale: Optional[Tensor], found_inf: Optional[Tensor]) -> None:
    """tricks_ext::optim_step_ (one fused pass over all tensors). The per-tensor scalars of
    this step are computed here in float64 (step counters are CPU tensors, as in torch)."""
    if found_inf is not None and bool(found_inf.item()):
        return
    inv_scale = 1.0 if grad_scale is None else 1.0 / float(grad_scale.item())
    b1, b2 = group["betas"]
    k = group["lookahead_k"]
    rows = []
    for st in states:
        st["step"] += 1
        t = int(st["step"].item())
        step_size, denom_scale = step_scalars(t, group["lr"], b1, b2, group["rectify"])
        rows.append([step_size, 1.0 if denom_scale is None else denom_scale, group["lr"],
                     float(denom_scale is not None), float(k is not None and t % k == 0)])
    scalars = torch.tensor(rows, dtype=torch.float64)
    slows = [st["slow_buffer"] for st in states] if k is not None else []
    gc_min_dim = (4 if group["gc_conv_only"] else 2) if group["gc"] else 0
    torch.ops.tricks_ext.optim_step_(
        params, grads, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states], slows, scalars,
        b1, b2, group["eps"], group["weight_decay"], group["decoupled_weight_decay"], group["lookahead_alpha"],
        gc_min_dim, group["maximize"], inv_scale)


_backend.register(OP, "torch", _step_torch)
if _ext.HAS_C:
    @torch.library.register_fake("tricks_ext::optim_step_")
    def _(params, grads, exp_avgs, exp_avg_sqs, slows, scalars, beta1, beta2, eps, weight_decay, decoupled,
          alpha, gc_min_dim, maximize, grad_inv_scale) -> None:
        return None

    _backend.register(OP, "cpu", _step_kernel)
