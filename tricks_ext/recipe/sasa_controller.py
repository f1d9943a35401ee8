"""SASA+'s LR drop for any optimizer: statopt's stationarity test (``optim.StationarityTest``) on
the change of ||x||^2 from one step to the next, decided on the device."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer

from tricks_ext._checks import check_count, check_range
from tricks_ext.optim import StationarityTest
from tricks_ext.recipe._lr import device_lrs

__all__ = ["SASAController"]

_NAME = "SASAController"


class SASAController:
    """Divide every group's LR by ``drop_factor`` when the iterates of ``optimizer`` (any of
    ours, Adam or Ranger; or torch's) have become stationary; ``step()`` after each optimizer
    step, with no host read.

    SASA+ tests E[<x_{k+1}, d_k> + lr/2 ||d_k||^2] = 0, a criterion made for SGD's update
    x_{k+1} = x_k - lr d_k. For an update of any form, stationarity of the iterates' distribution
    gives E[||x_{k+1}||^2] = E[||x_k||^2]: the statistic here is v_k = ||x_{k+1}||^2 - ||x_k||^2
    over all params (per-tensor norms accumulated in float64 by ``torch._foreach_norm``), and
    the test, its bucket and its arguments are SASA's (:class:`tricks_ext.optim.SASA`, statopt's
    names and defaults): every ``testfreq`` calls once more than ``warmup`` calls were made.
    A drop divides each group's LR (ratios kept) and empties the bucket; the optimizer's
    moments are left as they are (SASA zeroes its momentum, an Adam's second moment is a scale
    that a drop does not change). Each group's LR becomes a float64 tensor on its params'
    device (a float keeps its value). ``step()`` returns the decision as a bool device tensor;
    ``state_dict()`` / ``load_state_dict()`` resume exactly. The first call only records
    ||x||^2. Host reads: none.
    """

    def __init__(self, optimizer: Optimizer, warmup: int = 1000, drop_factor: float = 10.0,
                 significance: float = 0.05, var_mode: str = "mb", leak_ratio: int = 8, minN_stats: int = 1000,
                 testfreq: int = 100) -> None:
        self.optimizer = optimizer
        self.warmup = check_count(_NAME, "warmup", warmup, 0)
        self.drop_factor = check_range(_NAME, "drop_factor", drop_factor, 1.0, math.inf, high_open=True)
        self.testfreq = check_count(_NAME, "testfreq", testfreq, 1)
        StationarityTest.check_args(_NAME, significance, var_mode, leak_ratio, minN_stats)
        self.params: List[Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        devices = {p.device for p in self.params}
        if len(devices) != 1:
            raise ValueError(f"{_NAME}: all params must be on one device (the statistic sums over all of "
                             f"them), got {sorted(map(str, devices))}")
        device_lrs(_NAME, optimizer)
        self.test = StationarityTest(devices.pop(), significance, var_mode, leak_ratio, minN_stats, owner=_NAME)
        self.previous: Optional[Tensor] = None

    @property
    def lrs(self) -> List[Tensor]:
        """The groups' LR tensors, looked up at each use as torch's schedulers do: after the
        optimizer's ``load_state_dict`` they are the loaded ones."""
        return device_lrs(_NAME, self.optimizer)

    def _squared_norm(self) -> Tensor:
        norms = torch._foreach_norm([p.detach() for p in self.params], 2, dtype=torch.float64)
        return torch.stack(norms).square().sum()

    @torch.no_grad()
    def step(self) -> Tensor:
        """Record this step's change of ||x||^2; on test calls, test and drop on the device."""
        current = self._squared_norm()
        previous, self.previous = self.previous, current
        if previous is None:
            return torch.zeros((), dtype=torch.bool, device=current.device)
        self.test.add(current - previous)
        calls = self.test.state["n_values"]
        if calls % self.testfreq != 0 or calls <= self.warmup:
            return torch.zeros((), dtype=torch.bool, device=current.device)
        drop = self.test.test()
        for lr in self.lrs:
            lr.copy_(torch.where(drop, lr / self.drop_factor, lr))
        return drop

    def state_dict(self) -> Dict[str, Any]:
        return {"test": {k: v.clone() if isinstance(v, Tensor) else v for k, v in self.test.state.items()},
                "previous": None if self.previous is None else self.previous.clone(),
                "lrs": [lr.clone() for lr in self.lrs]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.test.load_state(state["test"])
        self.previous = None if state["previous"] is None else state["previous"].to(self.test.device, copy=True)
        for lr, saved in zip(self.lrs, state["lrs"]):
            lr.copy_(saved)
