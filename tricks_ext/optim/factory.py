"""timm-style optimizer construction: ``create_optimizer(model, "ranger", lr=..., weight_decay=...)``.

Follows timm 1.0's ``create_optimizer_v2`` for a model: parameters are split by
``param_groups_weight_decay`` (no weight decay on biases and 1-D parameters such as norm weights
when ``filter_bias_and_bn``, nor on the names or fnmatch patterns the model's
``no_weight_decay()`` returns), frozen parameters are left out, and each group carries its own
weight decay. An iterable of parameters or groups is passed through as it is.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Collection, Dict, Iterable, List, Optional, Union

import torch

from tricks_ext.optim._base import TricksOptimizer
from tricks_ext.optim.optimizers import FusedAdam, FusedAdamW, FusedRAdam, Ranger

OPTIMIZERS = {"ranger": Ranger, "adam": FusedAdam, "adamw": FusedAdamW, "radam": FusedRAdam}


def param_groups_weight_decay(model: torch.nn.Module, weight_decay: float = 1e-5, exclude_1d: bool = True,
                              no_weight_decay_list: Collection[str] = ()) -> List[Dict[str, Any]]:
    """timm ``param_groups_weight_decay``: [no-decay group, decay group] (empty ones left out)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = exclude_1d and (param.ndim <= 1 or name.endswith(".bias"))
        if not weight_decay or excluded or any(fnmatch.fnmatch(name, p) for p in no_weight_decay_list):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = []
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


def create_optimizer(model_or_params: Union[torch.nn.Module, Iterable], opt: str = "ranger",
                     lr: Optional[float] = None, weight_decay: float = 0.0, filter_bias_and_bn: bool = True,
                     **kwargs: Any) -> TricksOptimizer:
    """``opt``: 'ranger', 'adam', 'adamw' or 'radam'; ``lr`` None keeps the optimizer's default;
    other keyword arguments go to the optimizer (``gc_conv_only=True``: Gradient Centralization
    of conv weights only, as pytorch-optimizer's ``gc_conv_only``; ``k``, ``alpha``, ``betas``, ...)."""
    if not isinstance(opt, str) or opt.lower() not in OPTIMIZERS:
        raise ValueError(f"create_optimizer: opt must be one of {', '.join(OPTIMIZERS)}, got {opt!r}")
    cls = OPTIMIZERS[opt.lower()]
    if isinstance(model_or_params, torch.nn.Module):
        no_weight_decay = getattr(model_or_params, "no_weight_decay", lambda: set())()
        params = param_groups_weight_decay(model_or_params, weight_decay, filter_bias_and_bn, no_weight_decay)
        weight_decay = 0.0  # carried by the groups
    else:
        params = model_or_params
    if lr is not None:
        kwargs["lr"] = lr
    return cls(params, weight_decay=weight_decay, **kwargs)
