"""SALSA (microsoft/statopt's ``SALSA``: Lang, Xiao and Zhang's statistical adaptation with a
smoothed stochastic line search): SASA+ whose LR is first found by a line search on each
minibatch, smoothed over steps, until the loss stops decreasing or the iterates are stationary;
from then on it is SASA+. Here the line search's choice, the switch and SASA's test are decided
on the device: the host never waits for a value (statopt reads 2 values per parameter tensor and
one per closure call, every step)."""
from __future__ import annotations

import ctypes
import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import Tensor

from tricks_ext._checks import check_count, check_range
from tricks_ext.optim.sasa import SASA, StationarityTest, _descend, _dot

__all__ = ["SALSA"]

LS_DIRS = ("g", "d")


class _LaggedFlag:
    """A device bool that the host learns without waiting for the device: each step publishes it
    (on CUDA, a non-blocking copy into pinned memory and an event); ``poll()`` reads the pinned
    byte once the event has completed, so the host sees a change one or a few steps late, and
    never earlier than the device. On the CPU the flag is host memory already and is read as it
    is. The byte is read through ctypes: a tensor method would be a synchronizing read."""

    def __init__(self, flag: Tensor) -> None:
        self.known = False
        self._event: Optional[Any] = None
        cuda = flag.device.type == "cuda"
        self._host = torch.zeros((), dtype=torch.bool, pin_memory=True) if cuda else flag
        self.publish(flag)

    def publish(self, flag: Tensor) -> None:
        if self.known:
            return
        if flag.device.type == "cuda":
            self._host.copy_(flag, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        elif flag.device.type == "cpu":
            self._host = flag
        else:  # no pinned-memory event here: the one synchronizing read per step
            self._host = flag.cpu()

    def poll(self) -> bool:
        if not self.known and (self._event is None or self._event.query()):
            self.known = ctypes.c_bool.from_address(self._host.data_ptr()).value
        return self.known


class SALSA(SASA):
    r"""SALSA with statopt 0.2's arguments, names and defaults (its ``logstats`` is not taken).

    Each step computes statopt's QHM direction d from g = grad + weight_decay * x (the
    :class:`SASA` step; the grads are not modified). Until the switch, a line search on the
    step's minibatch comes first: ``closure(ls_evl)`` must return the minibatch loss (a tensor;
    no backward), and f(x) = closure + sum over groups of weight_decay / 2 * ||x||^2.

    - The search direction s is g (``ls_dir="g"``) or d (``"d"``); gs = sum <g, s> (each
      group's term times its LR ratio, below).
    - Trial j = 0 .. ls_max - 1 is x - eta_j s with eta_0 = lr * ls_inc (lr * ls_inc ** cos(g, d)
      with ``ls_dir="d"`` and ``ls_cos``) and eta_j = eta_{j-1} * ls_dec. The first trial with
      f(trial) <= f(x) - ls_sdc * eta_j * gs gives eta (statopt's test, not f(trial) > ..., so a
      NaN loss passes); none: eta = eta_0 * ls_dec ** ls_max. When gs <= 0 no trial counts and
      eta = lr * ls_dec (eta_0 with ``ls_cos``, or when gs is NaN).
    - The LR is smoothed: lr <- (1 - gamma) lr + gamma eta; x is restored; then the QHM update
      x <- x - lr d and SASA's statistic and test (``warmup``, ``drop_factor``, ``testfreq`` ...).
    - f(x) joins a second leaky bucket; once it holds more than ``minN_stats`` values, a slope
      test at ``significance`` that does not find the loss decreasing switches to SASA+; so does
      a stationary result of SASA's test. After the switch, steps are SASA+ steps.

    ``auto_switch=0`` is statopt's manual mode: line-search steps for the first ``warmup``
    steps, with no statistic, then SASA+.

    Where it differs from statopt 0.2, on purpose:

    - Every trial is evaluated: ``closure`` runs ls_max + 1 times per step before the switch
      (statopt stops at the first accepted trial: 2 calls per step when the first is), because
      deciding which trials to run would read the device. The choice among them is statopt's,
      so the LR sequence is the same when the closure is deterministic; a closure that draws
      random numbers (dropout in train mode) draws them for every trial.
    - The host learns of the switch a step or more after the device decides it (see
      ``_LaggedFlag``): a step in between runs the line search with its result masked, so it
      changes nothing but the time spent.
    - Groups keep their LR ratios: each group's LR is its ratio to the first group's LR at
      construction times the one searched LR, and a trial moves each group by its ratio times
      eta. statopt writes its one LR over every group.
    - ``var_mode``, LR tensors, the statistic's precision and a drop keeping the ratios are as
      in :class:`SASA` (statopt's ``"mb"`` is our ``"iid"``).

    ``step(closure)`` returns the closure's first loss on a line-search step, else None.
    ``state["salsa"]`` holds the searched LR (``lr``), the last search's ``ls_eta``, ``ls_cnt``
    (rejected trials) and ``cosine``, ``switched`` (device tensors) and the loss bucket.

    Example::

        opt = SALSA(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-4, gamma=0.01)
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()

            def eval_loss(eval_mode=True):
                model.train(not eval_mode)
                with torch.no_grad():
                    return loss_fn(model(x), y)
            opt.step(eval_loss)
            model.train()
    """

    def __init__(self, params: Iterable, lr: Any = 1e-3, momentum: float = 0.0, qhm_nu: float = 1.0,
                 weight_decay: float = 0.0, gamma: float = 0.1, ls_sdc: float = 0.05, ls_inc: float = 2.0,
                 ls_dec: float = 0.5, ls_max: int = 2, ls_evl: int = 1, ls_dir: str = "g", ls_cos: int = 0,
                 auto_switch: int = 1, warmup: int = 0, drop_factor: float = 10.0, significance: float = 0.05,
                 var_mode: str = "mb", leak_ratio: int = 8, minN_stats: int = 1000, testfreq: int = 100) -> None:
        self.gamma = check_range("SALSA", "gamma", gamma, 0.0, 1.0)
        self.ls_sdc = check_range("SALSA", "ls_sdc", ls_sdc, 0.0, 0.5, low_open=True, high_open=True)
        self.ls_inc = check_range("SALSA", "ls_inc", ls_inc, 1.0, math.inf, high_open=True)
        self.ls_dec = check_range("SALSA", "ls_dec", ls_dec, 0.0, 1.0, low_open=True, high_open=True)
        self.ls_max = check_count("SALSA", "ls_max", ls_max, 1)
        if ls_dir not in LS_DIRS:
            raise ValueError(f"SALSA: ls_dir must be 'g' or 'd', got {ls_dir!r}")
        self.ls_dir, self.ls_evl, self.ls_cos, self.auto_switch = ls_dir, bool(ls_evl), bool(ls_cos), bool(auto_switch)
        super().__init__(params, lr, momentum, qhm_nu, weight_decay, warmup, drop_factor, significance, var_mode,
                         leak_ratio, minN_stats, testfreq)
        base = self.param_groups[0]["lr"]
        self._ratios = [(g["lr"] / base).item() for g in self.param_groups]  # at construction, on the host
        self._losses = StationarityTest(self._device, significance, "iid", leak_ratio, minN_stats, owner="SALSA")
        f64 = dict(dtype=torch.float64, device=self._device)
        self.state["salsa"] = {
            "lr": base.clone(), "ls_eta": torch.zeros((), **f64), "ls_cnt": torch.zeros((), **f64),
            "cosine": torch.zeros((), **f64), "switched": torch.zeros((), dtype=torch.bool, device=self._device),
            "steps": 0, "losses": self._losses.state,
        }
        self._switched = _LaggedFlag(self.state["salsa"]["switched"])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """torch's; a group added after construction keeps its LR's ratio to the searched LR."""
        super().add_param_group(param_group)
        if "_ratios" in self.__dict__:
            self._ratios.append((self.param_groups[-1]["lr"] / self.state["salsa"]["lr"]).item())

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[bool], Any]] = None) -> Any:  # type: ignore[override]
        """One SALSA step; ``closure(eval_mode)`` returns the loss on the step's minibatch."""
        if closure is None:
            raise ValueError("SALSA.step needs a closure: closure(eval_mode) -> the minibatch loss (its line "
                             "search evaluates the loss at trial points)")
        st = self.state["salsa"]
        steps = st["steps"] + 1
        searching = (steps <= self.warmup) if not self.auto_switch else not self._switched.poll()
        stepped = [(group, params, self._gradients(group, params)) for group, params in self._stepped_groups()]
        if not stepped:
            return None
        directions = [self._direction(group, params, grads) for group, params, grads in stepped]
        loss = self._line_search(closure, stepped, directions) if searching else None
        st["steps"] = steps
        if self.auto_switch or steps > self.warmup:
            dots = []
            for (group, params, _), dirs in zip(stepped, directions):
                _descend(params, dirs, group["lr"])
                dots.append(sum(_dot(x, d) for x, d in zip(params, dirs))
                            + 0.5 * group["lr"] * sum(_dot(d, d) for d in dirs))
            self._test.add(sum(dots))
            stationary = self._test_and_drop(steps)
            if stationary is not None:  # SASA's drop divided the groups' LRs; the searched one follows
                if steps > self.warmup:
                    st["lr"].copy_(torch.where(stationary, st["lr"] / self.drop_factor, st["lr"]))
                st["switched"].logical_or_(stationary)
        else:
            for (group, params, _), dirs in zip(stepped, directions):
                _descend(params, dirs, group["lr"])
        self._switched.publish(st["switched"])
        return loss

    def _l2(self, stepped: List[tuple]) -> Tensor:
        """sum over groups of weight_decay / 2 * ||x||^2 (statopt's ``L2_regu_loss``)."""
        terms = [0.5 * group["weight_decay"] * _dot(x, x) for group, params, _ in stepped if group["weight_decay"]
                 for x in params]
        return torch.stack(terms).sum() if terms else torch.zeros((), dtype=torch.float64, device=self._device)

    def _evaluate(self, closure: Callable[[bool], Any], stepped: List[tuple]) -> tuple:
        """(the closure's loss, f = that loss in float64 + the L2 term) at the params as they are."""
        loss = closure(self.ls_evl)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TypeError(f"SALSA: the closure must return the loss as a one-value tensor, got {type(loss).__name__}")
        return loss, loss.detach().reshape(()).to(torch.float64) + self._l2(stepped)

    def _line_search(self, closure: Callable[[bool], Any], stepped: List[tuple], directions: List[List[Tensor]]) -> Tensor:
        st = self.state["salsa"]
        loss0, f0 = self._evaluate(closure, stepped)
        searches = [grads if self.ls_dir == "g" else dirs for (_, _, grads), dirs in zip(stepped, directions)]
        group_gs = [sum(_dot(g, s) for g, s in zip(grads, dirs)) for (_, _, grads), dirs in zip(stepped, searches)]
        gs = sum(r * v for r, v in zip(self._group_ratios(stepped), group_gs))
        gg = sum(_dot(g, g) for _, _, grads in stepped for g in grads)
        ss = sum(_dot(s, s) for dirs in searches for s in dirs)
        st["cosine"].copy_(sum(group_gs) / torch.sqrt(gg * ss))
        lr = st["lr"]
        eta0 = lr * torch.pow(torch.full_like(lr, self.ls_inc), st["cosine"]) if self.ls_dir == "d" and self.ls_cos \
            else lr * self.ls_inc
        saved = [[x.clone() for x in params] for _, params, _ in stepped]
        etas, accepted = [eta0], []
        for j in range(self.ls_max):
            eta = etas[-1]
            for (group, params, _), dirs, keep, ratio in zip(stepped, searches, saved, self._group_ratios(stepped)):
                torch._foreach_copy_(params, keep)
                _descend(params, dirs, eta * ratio)
            # statopt rejects when f > threshold: a NaN loss is accepted, as there
            accepted.append(~(self._evaluate(closure, stepped)[1] > f0 - self.ls_sdc * eta * gs))
            etas.append(eta * self.ls_dec)
        for (_, params, _), keep in zip(stepped, saved):
            torch._foreach_copy_(params, keep)
        eta, count = etas[-1], torch.full_like(lr, float(self.ls_max))
        for j in reversed(range(self.ls_max)):  # the first accepted trial wins
            eta = torch.where(accepted[j], etas[j], eta)
            count = torch.where(accepted[j], torch.full_like(lr, float(j)), count)
        # no trial counts unless gs > 0; then eta = lr * ls_dec where gs <= 0 (without ls_cos),
        # else eta_0 (a NaN gs too, as statopt's comparisons fall)
        descent = gs > 0
        held = eta0 if self.ls_cos else torch.where(gs <= 0, lr * self.ls_dec, eta0)
        eta = torch.where(descent, eta, held)
        count = torch.where(descent, count, torch.zeros_like(count))
        live = ~st["switched"]
        st["ls_eta"].copy_(torch.where(live, eta, st["ls_eta"]))
        st["ls_cnt"].copy_(torch.where(live, count, st["ls_cnt"]))
        lr.copy_(torch.where(live, (1.0 - self.gamma) * lr + self.gamma * eta, lr))
        for group, ratio in zip(self.param_groups, self._ratios):
            group["lr"].copy_(lr * ratio)
        if self.auto_switch:
            self._losses.add(f0)
            if self._losses._bound(self._losses.state["n_values"]) > self._losses.minN_stats:
                st["switched"].logical_or_(live & ~self._losses.decreasing())
        return loss0

    def _group_ratios(self, stepped: List[tuple]) -> List[float]:
        index = {id(g): i for i, g in enumerate(self.param_groups)}
        return [self._ratios[index[id(group)]] for group, _, _ in stepped]

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """:class:`SASA`'s, then the line search's state onto the params' device."""
        super().load_state_dict(state_dict)
        saved = self.state["salsa"]
        self.state["salsa"] = {k: v.to(self._device, copy=True) if isinstance(v, Tensor) else v
                               for k, v in saved.items() if k != "losses"}
        self._losses.load_state(saved["losses"])
        self.state["salsa"]["losses"] = self._losses.state
        self._switched = _LaggedFlag(self.state["salsa"]["switched"])
