"""Learning-rate schedules that write the LR without reading anything on the host.

Each is a ``torch.optim.lr_scheduler.LRScheduler``: the LR of step t is a function of t alone,
computed on the host in float64 from the peak LRs read once at construction; torch's base class
then writes it into each group, in place (``fill_``: a kernel, not a sync) where the group's LR
is a tensor on the device (``FusedAdamW(params, lr=torch.tensor(1e-3, device="cuda"))``), so
the optimizer step reads it there and a CUDA graph of the step stays valid across LR changes.
Call ``step()`` after each optimizer step, as for torch's schedulers.
"""
from __future__ import annotations

import math
from typing import List

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR

from tricks_ext._checks import check_count, check_range

__all__ = ["OneCycle", "FlatCos", "WarmupCosine", "WSD"]


class OneCycle(OneCycleLR):
    """Leslie Smith's 1cycle: torch's ``OneCycleLR``, same arguments and the same per-step LR
    and beta1 (momentum cycling writes ``betas[0]`` of the tricks_ext optimizers' groups, a host
    float the kernels take as an argument). fastai's ``fit_one_cycle`` is ``pct_start=0.25,
    div_factor=25, final_div_factor=1e5, base_momentum=0.85, max_momentum=0.95``."""


class _PeakSchedule(LRScheduler):
    """LR of group g at step t = lr_at(peak_g, t), peak_g its LR at construction."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        # the one host read: the peaks, at construction (a tensor LR's value)
        self.peaks = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
        super().__init__(optimizer, last_epoch)

    def lr_at(self, peak: float, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        return [self.lr_at(peak, self.last_epoch) for peak in self.peaks]


class FlatCos(_PeakSchedule):
    """fastai's ``fit_flat_cos``: the peak LR for the first ``pct_start`` of ``total_steps``,
    then cosine annealing to ``peak / div_final``. With pos = t / total_steps (fastai's
    pct_train) and p = (pos - pct_start) / (1 - pct_start) past the flat part:
    ``lr = peak + (1 + cos(pi (1 - p))) (peak / div_final - peak) / 2``; from the last step on,
    ``peak / div_final``."""

    def __init__(self, optimizer: Optimizer, total_steps: int, pct_start: float = 0.75, div_final: float = 1e5,
                 last_epoch: int = -1) -> None:
        self.total_steps = check_count("FlatCos", "total_steps", total_steps, 1)
        self.pct_start = check_range("FlatCos", "pct_start", pct_start, 0.0, 1.0, high_open=True)
        self.div_final = check_range("FlatCos", "div_final", div_final, 1.0, math.inf, high_open=True)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, peak: float, step: int) -> float:
        pos = step / self.total_steps
        if pos < self.pct_start:
            return peak
        end = peak / self.div_final
        if pos >= 1.0:
            return end
        p = (pos - self.pct_start) / (1.0 - self.pct_start)
        return peak + (1.0 + math.cos(math.pi * (1.0 - p))) * (end - peak) / 2.0


class WarmupCosine(_PeakSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then half a cosine to ``min_lr_ratio * peak``
    at ``total_steps`` (Hugging Face's ``get_cosine_schedule_with_warmup`` for
    ``min_lr_ratio=0``): factor ``t / warmup_steps``, then ``m + (1 - m) (1 + cos(pi q)) / 2``
    with q = (t - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1]."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.warmup_steps = check_count("WarmupCosine", "warmup_steps", warmup_steps)
        self.total_steps = check_count("WarmupCosine", "total_steps", total_steps, 1)
        if self.warmup_steps > self.total_steps:
            raise ValueError(f"WarmupCosine: warmup_steps ({warmup_steps}) > total_steps ({total_steps})")
        self.min_lr_ratio = check_range("WarmupCosine", "min_lr_ratio", min_lr_ratio, 0.0, 1.0)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, peak: float, step: int) -> float:
        if step < self.warmup_steps:
            return peak * step / self.warmup_steps
        q = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        m = self.min_lr_ratio
        return peak * (m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * q)))


class WSD(_PeakSchedule):
    """Warmup-stable-decay: linear warm-up from 0 over ``warmup_steps``, the peak for
    ``stable_steps``, then over ``decay_steps`` down to ``min_lr_ratio * peak`` by ``decay``:
    with p the fraction of the decay done, ``"linear"`` 1 - p, ``"cosine"`` (1 + cos(pi p)) / 2,
    ``"1-sqrt"`` 1 - sqrt(p) (Hägele et al., 2024); the factor f gives ``m + (1 - m) f``. The
    LR stays at the end value past the decay."""

    DECAYS = ("linear", "cosine", "1-sqrt")

    def __init__(self, optimizer: Optimizer, warmup_steps: int, stable_steps: int, decay_steps: int,
                 min_lr_ratio: float = 0.0, decay: str = "1-sqrt", last_epoch: int = -1) -> None:
        self.warmup_steps = check_count("WSD", "warmup_steps", warmup_steps)
        self.stable_steps = check_count("WSD", "stable_steps", stable_steps)
        self.decay_steps = check_count("WSD", "decay_steps", decay_steps, 1)
        self.min_lr_ratio = check_range("WSD", "min_lr_ratio", min_lr_ratio, 0.0, 1.0)
        if decay not in self.DECAYS:
            raise ValueError(f"WSD: decay must be one of {', '.join(self.DECAYS)}, got {decay!r}")
        self.decay = decay
        super().__init__(optimizer, last_epoch)

    def lr_at(self, peak: float, step: int) -> float:
        if step < self.warmup_steps:
            return peak * step / self.warmup_steps
        p = min(1.0, max(0.0, (step - self.warmup_steps - self.stable_steps) / self.decay_steps))
        f = {"linear": 1.0 - p, "cosine": 0.5 * (1.0 + math.cos(math.pi * p)), "1-sqrt": 1.0 - math.sqrt(p)}[self.decay]
        m = self.min_lr_ratio
        return peak * (m + (1.0 - m) * f)
