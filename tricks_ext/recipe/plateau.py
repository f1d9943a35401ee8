"""Cutting the LR when the loss stops improving, decided on the device.

torch's ``ReduceLROnPlateau`` reads the metric on the host (``float(metrics)``) at every call, a
sync per epoch or per step. :class:`PlateauController` keeps its state (best value, counters,
the fluctuation window) in tensors on the device and writes the LR of each param group in
place, a group's LR being a float64 tensor on its params' device (the controller makes it one
at construction if it is a float, keeping its value): the decision and the cut cost no host
read, and the fused step reads the new LR on the device.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.optim import Optimizer

from tricks_ext._checks import check_count, check_range
from tricks_ext.recipe._lr import device_lrs

__all__ = ["PlateauController", "fluctuation_reference"]

MODES = ("fluctuation", "torch", "keras")


def _number(name: str, value: Any, low: float = 0.0, high: float = math.inf, low_open: bool = False,
            high_open: bool = False) -> float:
    return check_range("PlateauController", name, value, low, high, low_open, high_open)


def _count(name: str, value: Any, low: int = 0) -> int:
    return check_count("PlateauController", name, value, low)


class PlateauController:
    """Cut each param group's LR by ``factor`` (not below its ``min_lr``) when the loss stops
    improving; ``step(loss)`` takes a tensor and reads nothing on the host.

    ``mode="fluctuation"`` (default), the rule of the seed notes, scale-free. Per call t >= 1
    with loss x_t (x_0 starts the EMA): the deviation d_t = e_{t-1} - x_t of the loss from its
    EMA (e_t = smoothing e_{t-1} + (1 - smoothing) x_t, e_0 = x_0) joins a window. Once the
    window holds ``patience`` deviations since the last cut, the loss counts as still
    falling while the deviations are significantly positive:
    ``mean(d) * sqrt(W) / sd(d) >= threshold`` over the last W = patience of them (sd with
    W - 1 degrees of freedom; a window of equal deviations counts as falling iff their mean
    is > 0). When they cancel instead (the seed's -100, 100, -100, 100), the LR is cut, the
    window empties (the cooldown: ``patience`` calls before the next test) and the patience
    grows: W <- min(ceil(W * patience_growth), max_patience). Multiplying the losses by any
    c > 0 multiplies every d by c and leaves every decision as it was. Defaults: window 16,
    smoothing 0.9, threshold 1.0 (the loss's fall over the window under one standard error
    of its noise), growth 1.5, factor 0.5. A pure-Python reference: :func:`fluctuation_reference`.

    ``mode="torch"``: torch's ``ReduceLROnPlateau`` (``metric_mode`` for its ``mode``,
    ``factor``, ``patience``, ``threshold``, ``threshold_mode``, ``cooldown``, ``min_lr``,
    ``eps``; its defaults) with its LR sequence exactly, float64 like torch's Python floats.

    ``mode="keras"``: Keras' ``ReduceLROnPlateau`` (``metric_mode``, ``factor``, ``patience``,
    ``min_delta``, ``cooldown``, ``min_lr``; its defaults): improvement is x < best - min_delta
    (max: x > best + min_delta), a cut when the calls without one reach ``patience``, none
    while cooling down; float64 where Keras keeps the LR in float32.

    ``min_lr`` is a number or one per group. The ratio of the groups' LRs is kept (every group
    is cut by the same factor, until its min_lr). ``state_dict()`` / ``load_state_dict()``
    resume exactly. Host reads: at construction, a float LR becomes a tensor (no read); none
    after.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "fluctuation", *, factor: Optional[float] = None,
                 patience: Optional[int] = None, min_lr: Union[float, Sequence[float]] = 0.0,
                 cooldown: int = 0, metric_mode: str = "min", threshold: Optional[float] = None,
                 threshold_mode: str = "rel", eps: float = 1e-8, min_delta: float = 1e-4,
                 smoothing: float = 0.9, patience_growth: float = 1.5, max_patience: int = 256) -> None:
        if mode not in MODES:
            raise ValueError(f"PlateauController: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if metric_mode not in ("min", "max"):
            raise ValueError(f"PlateauController: metric_mode must be 'min' or 'max', got {metric_mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"PlateauController: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        defaults = {"fluctuation": (0.5, 16, 1.0), "torch": (0.1, 10, 1e-4), "keras": (0.1, 10, None)}[mode]
        self.mode = mode
        self.optimizer = optimizer
        self.factor = _number("factor", defaults[0] if factor is None else factor, 0.0, 1.0, True, True)
        self.patience = _count("patience", defaults[1] if patience is None else patience, 1 if mode != "torch" else 0)
        self.threshold = _number("threshold", defaults[2] if threshold is None else threshold) \
            if mode != "keras" else 0.0
        self.cooldown = _count("cooldown", cooldown)
        self.metric_mode, self.threshold_mode = metric_mode, threshold_mode
        self.eps = _number("eps", eps)
        self.min_delta = _number("min_delta", min_delta)
        self.smoothing = _number("smoothing", smoothing, 0.0, 1.0, high_open=True)
        self.patience_growth = _number("patience_growth", patience_growth, 1.0)
        self.max_patience = _count("max_patience", max_patience, self.patience)
        groups = optimizer.param_groups
        mins = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups)
        if len(mins) != len(groups):
            raise ValueError(f"PlateauController: min_lr has {len(mins)} values for {len(groups)} param groups")
        self.min_lrs = [_number("min_lr", m) for m in mins]
        device = self.lrs[0].device
        f64 = dict(dtype=torch.float64, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        worst = math.inf if metric_mode == "min" else -math.inf
        self.state: Dict[str, Tensor] = {
            "calls": torch.zeros((), **i64),         # losses seen
            "best": torch.full((), worst, **f64),    # torch / keras
            "bad": torch.zeros((), **i64),           # calls without improvement (keras: wait)
            "cooldown_left": torch.zeros((), **i64),
            "ema": torch.zeros((), **f64),           # fluctuation
            "window": torch.zeros(self.max_patience, **f64),
            "filled": torch.zeros((), **i64),        # deviations since the last cut
            "width": torch.full((), self.patience, **i64),
            "cuts": torch.zeros((), **i64),
        }

    @property
    def lrs(self) -> List[Tensor]:
        """The groups' LR tensors, looked up at each use as torch's schedulers do: after the
        optimizer's ``load_state_dict`` they are the loaded ones."""
        return device_lrs("PlateauController", self.optimizer)

    def step(self, loss: Tensor) -> Tensor:
        """Take one loss (a one-element tensor; a number is accepted, as torch's); returns the
        decision, a bool tensor on the device: True where the LRs were cut."""
        st = self.state
        x = loss.detach().reshape(()).to(device=st["best"].device, dtype=torch.float64) \
            if isinstance(loss, Tensor) else torch.tensor(float(loss), dtype=torch.float64, device=st["best"].device)
        cut = {"fluctuation": self._fluctuation, "torch": self._torch, "keras": self._keras}[self.mode](x)
        for lr, low in zip(self.lrs, self.min_lrs):
            cut_lr = torch.clamp(lr * self.factor, min=low)
            if self.mode == "torch":  # torch changes an LR only by more than eps
                apply = cut & (lr - cut_lr > self.eps)
            elif self.mode == "keras":  # keras cuts only an LR above min_lr
                apply = cut & (lr > low)
            else:
                apply = cut
            lr.copy_(torch.where(apply, cut_lr, lr))
        st["cuts"].add_(cut.to(torch.int64))
        st["calls"].add_(1)
        return cut

    def _fluctuation(self, x: Tensor) -> Tensor:
        st = self.state
        first = st["calls"] == 0
        d = st["ema"] - x
        st["ema"].copy_(torch.where(first, x, self.smoothing * st["ema"] + (1.0 - self.smoothing) * x))
        slot = torch.remainder(st["calls"] - 1, self.max_patience)
        keep = torch.arange(self.max_patience, device=x.device) != slot
        st["window"].copy_(torch.where(keep | first, st["window"], d))
        st["filled"].add_((~first).to(torch.int64))
        width = st["width"]
        ages = torch.remainder(slot - torch.arange(self.max_patience, device=x.device), self.max_patience)
        inside = (ages < width).to(torch.float64)
        w = width.to(torch.float64)
        mean = (st["window"] * inside).sum() / w
        var = (((st["window"] - mean) * inside) ** 2).sum() / torch.clamp(w - 1.0, min=1.0)
        sd = torch.sqrt(var)
        falling = torch.where(sd > 0, mean * torch.sqrt(w) / torch.where(sd > 0, sd, 1.0) >= self.threshold,
                              mean > 0)
        cut = (~first) & (st["filled"] >= width) & ~falling
        grown = torch.clamp(torch.ceil(w * self.patience_growth), max=float(self.max_patience)).to(torch.int64)
        st["width"].copy_(torch.where(cut, grown, width))
        st["filled"].copy_(torch.where(cut, torch.zeros_like(st["filled"]), st["filled"]))
        return cut

    def _better(self, x: Tensor) -> Tensor:
        best = self.state["best"]
        if self.mode == "keras":
            return x < best - self.min_delta if self.metric_mode == "min" else x > best + self.min_delta
        rel = self.threshold_mode == "rel"
        if self.metric_mode == "min":
            return x < best * (1.0 - self.threshold) if rel else x < best - self.threshold
        return x > best * (self.threshold + 1.0) if rel else x > best + self.threshold

    def _torch(self, x: Tensor) -> Tensor:
        st = self.state
        better = self._better(x)
        st["best"].copy_(torch.where(better, x, st["best"]))
        st["bad"].copy_(torch.where(better, torch.zeros_like(st["bad"]), st["bad"] + 1))
        cooling = st["cooldown_left"] > 0
        st["cooldown_left"].sub_(cooling.to(torch.int64))
        st["bad"].copy_(torch.where(cooling, torch.zeros_like(st["bad"]), st["bad"]))
        cut = st["bad"] > self.patience
        st["cooldown_left"].copy_(torch.where(cut, torch.full_like(st["cooldown_left"], self.cooldown),
                                              st["cooldown_left"]))
        st["bad"].copy_(torch.where(cut, torch.zeros_like(st["bad"]), st["bad"]))
        return cut

    def _keras(self, x: Tensor) -> Tensor:
        st = self.state
        cooling = st["cooldown_left"] > 0
        st["cooldown_left"].sub_(cooling.to(torch.int64))
        st["bad"].copy_(torch.where(cooling, torch.zeros_like(st["bad"]), st["bad"]))
        better = self._better(x)
        st["best"].copy_(torch.where(better, x, st["best"]))
        still_cooling = st["cooldown_left"] > 0
        counting = ~better & ~still_cooling
        st["bad"].copy_(torch.where(better, torch.zeros_like(st["bad"]), st["bad"] + counting.to(torch.int64)))
        reached = counting & (st["bad"] >= self.patience)
        # Keras resets its counters only when an LR was above min_lr (it cut); here: any group's
        above = torch.stack([lr > low for lr, low in zip(self.lrs, self.min_lrs)]).any()
        cut = reached & above
        st["cooldown_left"].copy_(torch.where(cut, torch.full_like(st["cooldown_left"], self.cooldown),
                                              st["cooldown_left"]))
        st["bad"].copy_(torch.where(cut, torch.zeros_like(st["bad"]), st["bad"]))
        return cut

    def state_dict(self) -> Dict[str, Any]:
        return {"mode": self.mode, "state": {k: v.clone() for k, v in self.state.items()},
                "lrs": [lr.clone() for lr in self.lrs]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state["mode"] != self.mode:
            raise ValueError(f"PlateauController: a state of mode {state['mode']!r} for a controller of "
                             f"mode {self.mode!r}")
        for k, v in state["state"].items():
            self.state[k].copy_(v)
        for lr, saved in zip(self.lrs, state["lrs"]):
            lr.copy_(saved)


def fluctuation_reference(losses: Sequence[float], patience: int = 16, smoothing: float = 0.9,
                          threshold: float = 1.0, patience_growth: float = 1.5, max_patience: int = 256) -> List[bool]:
    """The fluctuation rule in plain Python floats: the decision (cut or not) at each loss."""
    ema = 0.0
    window: List[float] = []
    width, filled, out = patience, 0, []
    for t, x in enumerate(losses):
        if t == 0:
            ema = x
            out.append(False)
            continue
        d = ema - x
        ema = smoothing * ema + (1.0 - smoothing) * x
        window.append(d)
        filled += 1
        last = window[-width:]
        cut = False
        if filled >= width:
            mean = sum(last) / width
            sd = math.sqrt(sum((v - mean) ** 2 for v in last) / max(width - 1, 1))
            falling = mean * math.sqrt(width) / sd >= threshold if sd > 0 else mean > 0
            cut = not falling
        if cut:
            width = min(math.ceil(width * patience_growth), max_patience)
            filled = 0
        out.append(cut)
    return out
