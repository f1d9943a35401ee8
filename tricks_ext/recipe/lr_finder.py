"""The LR range test (Leslie Smith; torch-lr-finder's ``range_test``), with everything restored
afterwards and the losses kept on the device.

torch-lr-finder reads each loss on the host (``loss.item()``, a sync per step) and restores the
model and optimizer only when asked (``reset()``), from state dicts that leave GradScaler, the
RNG streams and the swapped-in weights of a Lookahead or EMA optimizer behind.
:func:`lr_range_test` keeps the raw loss, its smoothed value, the best smoothed value and the
first diverging step in float64 tensors on the loss's device, updated by a few element-wise ops
per step (the formulas are torch-lr-finder's, in its order, so the values are equal to the bit),
and reads one integer every ``check_every`` steps to stop after a divergence. On return the
model (parameters, buffers, gradients, train/eval flags), the optimizer (state, param groups,
tensor LRs in place, its other attributes), a GradScaler, torch's CPU and CUDA generators (the
dropout family's Philox seeds come from them), Python's and numpy's are as they were, the same
tensor objects holding the same bits. Nothing is written to disk.
"""
from __future__ import annotations

import math
import random
import sys
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from tricks_ext._checks import check_count, check_range, is_number

__all__ = ["lr_range_test", "LRRangeTest"]

METHODS = ("steep", "valley", "minimum")
_NAME = "lr_range_test"


class LRRangeTest:
    """What :func:`lr_range_test` saw: ``lrs`` (the LR of the first param group at each step, as
    torch-lr-finder's ``history["lr"]``), ``losses`` (smoothed, its ``history["loss"]``),
    ``raw_losses`` (the training loss of each step) and ``diverged`` (the test stopped early: the
    smoothed loss passed ``diverge_th`` times the best one)."""

    def __init__(self, lrs: List[float], losses: List[float], raw_losses: List[float], diverged: bool) -> None:
        self.lrs, self.losses, self.raw_losses, self.diverged = lrs, losses, raw_losses, diverged

    def __len__(self) -> int:
        return len(self.lrs)

    def __repr__(self) -> str:
        return f"LRRangeTest({len(self)} steps, lr {self.lrs[0]:.3g} .. {self.lrs[-1]:.3g}, diverged={self.diverged})"

    def suggestion(self, method: str = "valley", skip_start: int = 10, skip_end: int = 5) -> float:
        """A learning rate read off the curve, with the first ``skip_start`` and last ``skip_end``
        points left out (torch-lr-finder's ``plot`` defaults):

        - ``"steep"``: the LR where the loss falls fastest per step, torch-lr-finder's
          suggestion (``lrs[argmin(np.gradient(losses))]``);
        - ``"valley"``: fastai's: the longest strictly decreasing run of losses (a longest
          decreasing subsequence), then the point two thirds of the way down it (its index
          ``start + s + s // 2``, ``s`` a third of its length, as fastai rounds);
        - ``"minimum"``: fastai's: the LR of the lowest loss, divided by 10.
        """
        if method not in METHODS:
            raise ValueError(f"{_NAME}: method must be one of {', '.join(METHODS)}, got {method!r}")
        skip_start = check_count(_NAME, "skip_start", skip_start)
        skip_end = check_count(_NAME, "skip_end", skip_end)
        end = len(self.lrs) - skip_end
        if end - skip_start < 2:
            raise ValueError(f"{_NAME}: need at least {skip_start + skip_end + 2} steps to suggest an LR "
                             f"(skip_start={skip_start}, skip_end={skip_end}), got {len(self.lrs)}")
        lrs, losses = self.lrs[skip_start:end], self.losses[skip_start:end]
        if method == "steep":
            import numpy as np
            return lrs[int(np.gradient(np.asarray(losses)).argmin())]
        if method == "minimum":
            return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10
        return lrs[_valley(losses)]


def _valley(losses: Sequence[float]) -> int:
    """fastai's valley index, its loops kept as they are: the longest decreasing subsequence's
    end is the first index reaching the longest length, and its start is fixed when that end is
    first found (fastai's bookkeeping)."""
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


# ---- the snapshot: the same objects, the same bits ------------------------------------------------

def _capture(value: Any, memo: Dict[int, Any]) -> Any:
    """What restoring ``value`` needs: tensors cloned (to be copied back in place), the contents
    of dicts and lists (to be put back in the same container), anything else by reference."""
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, Tensor):
        out: Any = (value, value.detach().clone())
    elif isinstance(value, dict):
        out = (value, [(k, _capture(v, memo)) for k, v in value.items()])
    elif isinstance(value, (list, tuple)):
        out = (value, [_capture(v, memo) for v in value])
    else:
        out = (value, None)
    memo[key] = out
    return out


def _restore(captured: Any, done: set) -> Any:
    value, inner = captured
    if id(value) in done or inner is None:
        return value
    done.add(id(value))
    if isinstance(value, Tensor):
        with torch.no_grad():
            value.copy_(inner)
    elif isinstance(value, dict):
        items = [(k, _restore(c, done)) for k, c in inner]
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        value[:] = [_restore(c, done) for c in inner]
    else:  # a tuple: the same object, its mutable elements restored
        for c in inner:
            _restore(c, done)
    return value


class _Snapshot:
    """Model, optimizer, GradScaler and the RNG streams as they are now; ``restore()`` puts them
    back. Param groups' "params" lists and the model's parameters are restored once each."""

    def __init__(self, model: nn.Module, optimizer: Optimizer, scaler: Optional[Any]) -> None:
        memo: Dict[int, Any] = {}
        self.modules = [(m, _capture(m.__dict__, memo)) for m in model.modules()]
        self.grads = [(p, p.grad, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]
        optimizer_params = [p for group in optimizer.param_groups for p in group["params"]]
        self.grads += [(p, p.grad, None if p.grad is None else p.grad.detach().clone())
                       for p in optimizer_params if id(p) not in {id(q) for q, _, _ in self.grads}]
        self.optimizer = _capture(optimizer.__dict__, memo)
        self.scaler = None if scaler is None else _capture(scaler.__dict__, memo)
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.python_rng = random.getstate()
        numpy = sys.modules.get("numpy")
        self.numpy_rng = numpy.random.get_state() if numpy is not None else None

    def restore(self) -> None:
        done: set = set()
        for _module, captured in self.modules:
            _restore(captured, done)
        _restore(self.optimizer, done)
        if self.scaler is not None:
            _restore(self.scaler, done)
        with torch.no_grad():
            for p, grad, values in self.grads:
                if grad is not None:
                    grad.copy_(values)
                p.grad = grad
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        random.setstate(self.python_rng)
        if self.numpy_rng is not None:
            sys.modules["numpy"].random.set_state(self.numpy_rng)


# ---- the test ---------------------------------------------------------------------------------

def _batches(batches: Iterable) -> Iterator:
    """The batches, started again when they run out (torch-lr-finder's auto reset) if the
    iterable can be iterated again; a one-shot iterator ends the test when it is exhausted."""
    while True:
        it = iter(batches)
        empty = True
        for batch in it:
            empty = False
            yield batch
        if empty or it is batches:
            return


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _set_lr(group: Dict[str, Any], lr: float) -> None:
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(lr)  # a device LR: written there, read by the fused step
    else:
        group["lr"] = lr


def lr_range_test(model: nn.Module, optimizer: Optimizer, batches: Iterable, loss_fn: Callable[[Any, Any], Tensor],
                  start_lr: Optional[float] = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
                  step_mode: str = "exp", smooth_f: float = 0.05, diverge_th: float = 5, *,
                  scaler: Optional[Any] = None, check_every: int = 10) -> LRRangeTest:
    """Train ``num_iter`` steps with the LR rising from ``start_lr`` to ``end_lr`` and record the
    loss, as torch-lr-finder's ``LRFinder(model, optimizer, loss_fn).range_test(batches,
    start_lr=, end_lr=, num_iter=, step_mode=, smooth_f=, diverge_th=)``, then put everything
    back (module docstring).

    Step i (from 0) trains one batch ``(inputs, targets)`` of ``batches`` (moved to the params'
    device; started again when exhausted) at LR ``start_lr * (end_lr / start_lr) ** (i /
    (num_iter - 1))`` (``step_mode="exp"``) or ``start_lr + i / (num_iter - 1) * (end_lr -
    start_lr)`` ("linear"), in every param group (``start_lr=None``: each group's own LR is
    its start, the LR recorded is the first group's). The model is in train mode and ``loss =
    loss_fn(model(inputs), targets)`` goes through ``scaler`` (a GradScaler) when given. The
    smoothed loss is the first loss, then ``smooth_f * loss + (1 - smooth_f) * previous``; the
    test stops after the first step whose smoothed loss exceeds ``diverge_th`` times the best
    so far (that step included, as torch-lr-finder).

    Host reads: one integer per ``check_every`` steps (whether the loss has diverged), and the
    losses once at the end. Works with any torch optimizer; a tricks_ext optimizer whose LR is a
    tensor gets it written in place.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_NAME}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{_NAME}: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"{_NAME}: loss_fn must be callable, got {type(loss_fn).__name__}")
    if step_mode not in ("exp", "linear"):
        raise ValueError(f"{_NAME}: step_mode must be 'exp' or 'linear', got {step_mode!r}")
    num_iter = check_count(_NAME, "num_iter", num_iter, 2)
    check_every = check_count(_NAME, "check_every", check_every, 1)
    smooth_f = check_range(_NAME, "smooth_f", smooth_f, 0.0, 1.0, high_open=True)
    diverge_th = check_range(_NAME, "diverge_th", diverge_th, 0.0, math.inf, low_open=True)
    end_lr = check_range(_NAME, "end_lr", end_lr, 0.0, math.inf, low_open=step_mode == "exp")
    if start_lr is not None:
        start_lr = check_range(_NAME, "start_lr", start_lr, 0.0, math.inf, low_open=step_mode == "exp")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not params:
        raise ValueError(f"{_NAME}: the optimizer has no params")
    starts = []
    for gi, group in enumerate(optimizer.param_groups):
        lr = group["lr"] if start_lr is None else start_lr
        if isinstance(lr, Tensor):
            lr = float(lr)  # the one read of a tensor LR, before the test
        if not is_number(lr) or not (lr > 0 if step_mode == "exp" else lr >= 0):
            raise ValueError(f"{_NAME}: param group {gi}'s start LR must be a positive number, got {lr!r}")
        starts.append(float(lr))
    device = params[0].device

    def lr_at(base: float, i: int) -> float:
        r = i / (num_iter - 1)
        return base * (end_lr / base) ** r if step_mode == "exp" else base + r * (end_lr - base)

    snapshot = _Snapshot(model, optimizer, scaler)
    try:
        return _run(model, optimizer, batches, loss_fn, scaler, device, starts, lr_at, num_iter, smooth_f,
                    diverge_th, check_every)
    finally:
        snapshot.restore()


def _run(model: nn.Module, optimizer: Optimizer, batches: Iterable, loss_fn: Callable, scaler: Optional[Any],
         device: torch.device, starts: List[float], lr_at: Callable[[float, int], float], num_iter: int,
         smooth_f: float, diverge_th: float, check_every: int) -> LRRangeTest:
    raw: Optional[Tensor] = None
    smoothed = best = stop = None
    lrs: List[float] = []
    model.train()
    source = _batches(batches)
    steps = 0
    for i in range(num_iter):
        batch = next(source, None)
        if batch is None:
            break
        for group, base in zip(optimizer.param_groups, starts):
            _set_lr(group, lr_at(base, i))
        optimizer.zero_grad()
        inputs, targets = _to(batch[0], device), _to(batch[1], device)
        loss = loss_fn(model(inputs), targets)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"{_NAME}: loss_fn must return a one-element tensor, got "
                             f"{type(loss).__name__ if not isinstance(loss, Tensor) else tuple(loss.shape)}")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        lrs.append(lr_at(starts[0], i))
        value = loss.detach().reshape(()).to(torch.float64)
        if raw is None:
            raw = torch.empty(num_iter, dtype=torch.float64, device=value.device)
            history = torch.empty_like(raw)
            smoothed, best = value.clone(), value.clone()
            stop = torch.full((), num_iter, dtype=torch.int64, device=value.device)
        elif smooth_f > 0:
            # torch-lr-finder's `smooth_f * loss + (1 - smooth_f) * previous`, each product rounded
            smoothed = value * smooth_f + smoothed * (1 - smooth_f)
        else:
            smoothed = value
        if i:
            best = torch.where(smoothed < best, smoothed, best)
        raw[i] = value
        history[i] = smoothed
        diverged = (smoothed > best * diverge_th) & (stop == num_iter)
        stop = torch.where(diverged, torch.full_like(stop, i), stop)
        steps = i + 1
        if steps % check_every == 0 and int(stop) < num_iter:  # the one read per check_every steps
            break
    if raw is None:
        raise ValueError(f"{_NAME}: batches gave no batch")
    first_stop = int(stop)
    count = min(steps, first_stop + 1)
    return LRRangeTest(lrs[:count], history[:count].tolist(), raw[:count].tolist(), first_stop < num_iter)
