"""Loss accumulation on the device: a training loop reads the host once per epoch, not once per
step (``loss.item()`` each step waits for the GPU to finish that step)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Union

import torch
from torch import Tensor

__all__ = ["LossMeter"]


class LossMeter:
    """Running sum and count of batch losses, float64 tensors on the losses' device.

    ``update(loss, n=1)`` adds ``loss * n`` (``loss`` a batch mean over ``n`` samples or tokens;
    ``n`` a number or a tensor, e.g. a token count on the device) and ``n``; ``mean()`` is the
    sum over the count as a 0-dim float64 tensor (NaN before any update), ``sum`` and
    ``count`` the parts. Nothing is read on the host; ``float(meter.mean())`` at the end of an
    epoch is the one read. A NaN loss makes the mean NaN (not skipped: a skip would hide it)."""

    def __init__(self) -> None:
        self.sum: Optional[Tensor] = None
        self.count: Optional[Tensor] = None

    def update(self, loss: Tensor, n: Union[int, float, Tensor] = 1) -> None:
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"LossMeter.update: loss must be a one-element tensor, got "
                             f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
        value = loss.detach().reshape(()).to(torch.float64)
        weight = n.detach().reshape(()).to(device=value.device, dtype=torch.float64) if isinstance(n, Tensor) else n
        if not isinstance(n, Tensor) and (isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0):
            raise ValueError(f"LossMeter.update: n must be a number >= 0 or a tensor, got {n!r}")
        if self.sum is None or self.sum.device != value.device:
            if self.sum is not None:
                raise ValueError(f"LossMeter.update: a loss on {value.device}, the meter's sums are on "
                                 f"{self.sum.device}")
            self.sum = torch.zeros((), dtype=torch.float64, device=value.device)
            self.count = torch.zeros((), dtype=torch.float64, device=value.device)
        self.sum.add_(value * weight)
        self.count.add_(weight)

    def mean(self) -> Tensor:
        if self.sum is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.sum / self.count

    def reset(self) -> None:
        """Zero the sums in place (their tensors stay: a captured graph keeps writing them)."""
        if self.sum is not None:
            self.sum.zero_()
            self.count.zero_()

    def state_dict(self) -> Dict[str, Any]:
        return {"sum": self.sum, "count": self.count}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.sum, self.count = state["sum"], state["count"]
