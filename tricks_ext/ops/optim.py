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

from tricks_ext import _backend
from tricks_ext.reference.optim import optimizer_step

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


_backend.register(OP, "torch", _step_torch)
