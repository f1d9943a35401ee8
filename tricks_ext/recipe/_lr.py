"""Each param group's LR as a float64 tensor on its params' device, the form in which the
recipe's controllers change it in place without a host read (the fused step and SASA read it on
the device)."""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import Tensor
from torch.optim import Optimizer


def device_lr(owner: str, group: Dict[str, Any]) -> Tensor:
    """The group's LR tensor; a float LR becomes one (same value) on the group's params' device."""
    lr = group["lr"]
    if isinstance(lr, Tensor):
        if lr.dtype != torch.float64 or lr.numel() != 1:
            raise ValueError(f"{owner}: a tensor LR must be one float64 value (the controller writes it in "
                             f"place), got {lr.dtype} of shape {tuple(lr.shape)}")
        return lr
    device = next((p.device for p in group["params"]), torch.device("cpu"))
    group["lr"] = torch.tensor(float(lr), dtype=torch.float64, device=device)
    return group["lr"]


def device_lrs(owner: str, optimizer: Optimizer) -> List[Tensor]:
    return [device_lr(owner, g) for g in optimizer.param_groups]
