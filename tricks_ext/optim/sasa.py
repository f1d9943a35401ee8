"""SASA+ (statistical adaptive stochastic approximation, Lang, Xiao and Zhang, NeurIPS 2019;
microsoft/statopt's ``SASA``): SGD with quasi-hyperbolic momentum whose LR drops by
``drop_factor`` when a statistical test says the iterates have become stationary. Here the
statistic, its window and the test live on the params' device: a training loop reads nothing on
the host (statopt reads two values per parameter tensor per step, ``.item()``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer

from tricks_ext import _backend
from tricks_ext._checks import check_count, check_range, is_number
from tricks_ext._dtypes import FLOAT_DTYPES

__all__ = ["SASA", "StationarityTest"]

VAR_MODES = ("mb", "olbm", "iid")
# The window's values are kept from the last step whose window may still reach them; the
# buffer starts at 1024 values (8 KiB) and doubles, so a copy of W values comes every ~W steps.
_MIN_CAPACITY = 1024
# statopt's QHM treats |momentum| or |qhm_nu| below this as 0, and |qhm_nu - 1| below it as 1.
_QHM_TINY = 1e-12
# statopt's guard in its slope test's t statistic against r = +-1.
_TINY = 1e-20


def _t_quantiles(level: float, size: int) -> Tensor:
    """Student t's quantile t.ppf(level, dof) for dof = 1..size, float64 (scipy's, as statopt's)."""
    try:
        from scipy import stats
    except ImportError as e:  # pragma: no cover - scipy comes with scikit-learn, a test dependency
        raise ImportError("SASA needs scipy for the Student t quantiles of its test (pip install scipy)") from e
    import numpy as np
    return torch.from_numpy(stats.t.ppf(level, np.arange(1, size + 1, dtype=np.float64)))


def _at(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` for a 0-dim integer tensor, clamped into the table, on the device: indexing
    with a 0-dim tensor reads it on the host (torch calls item() on it), a sync per test."""
    return table.gather(0, index.clamp(0, table.numel() - 1).reshape(1)).reshape(())


class StationarityTest:
    """statopt's leaky bucket and stationarity t-test, on the device: :class:`SASA` feeds it
    ``<x_{k+1}, d_k> + lr/2 ||d_k||^2`` and ``recipe.SASAController`` the change of ``||x||^2``;
    any statistic whose mean is 0 once the iterates are stationary fits.

    ``add(value)`` puts one float64 value (a device tensor) in the bucket: after T values since
    the last reset it holds the last ceil(T / leak_ratio) of them. ``test()`` returns a bool
    device tensor, True when the bucket holds more than ``minN_stats`` values and they are
    stationary (the rule is in :class:`SASA`'s docstring); the bucket empties when it is True
    and the test is the simple one from then on. ``state`` is a dict of device tensors and host
    ints, saved as it is by the optimizer or controller that holds it."""

    def __init__(self, device: torch.device, significance: float = 0.05, var_mode: str = "mb",
                 leak_ratio: int = 8, minN_stats: int = 1000, owner: str = "StationarityTest") -> None:
        self.significance, self.var_mode, self.leak_ratio, self.minN_stats = self.check_args(
            owner, significance, var_mode, leak_ratio, minN_stats)
        self.device = torch.device(device)
        f64 = dict(dtype=torch.float64, device=self.device)
        flag = dict(dtype=torch.bool, device=self.device)
        self.state: Dict[str, Any] = {
            "n_values": 0,                                      # values added, on the host
            "offset": 0,                                        # the index of values[0]
            "values": torch.zeros(_MIN_CAPACITY, **f64),
            "total": torch.zeros((), dtype=torch.int64, device=self.device),  # values since the last reset
            "composite": torch.ones((), **flag),
            "drops": torch.zeros((), dtype=torch.int64, device=self.device),
            "stats_val": torch.zeros((), **f64),
            "stats_test": torch.zeros((), **flag),
            "stats_stationary": torch.zeros((), **flag),
            "stats_mean": torch.zeros((), **f64),
            "stats_lb": torch.zeros((), **f64),
            "stats_ub": torch.zeros((), **f64),
        }
        # two-sided for the stationarity test; the slope test's one-sided table is built on use
        self._quantiles = _t_quantiles(1.0 - self.significance / 2.0, 4096).to(self.device)
        self._slope_quantiles = torch.empty(0)

    @staticmethod
    def check_args(owner: str, significance: Any, var_mode: Any, leak_ratio: Any, minN_stats: Any) -> tuple:
        """The arguments checked (statopt's bounds; minN_stats >= 100), as (float, str, int, int)."""
        if var_mode not in VAR_MODES:
            raise ValueError(f"{owner}: var_mode must be one of {', '.join(VAR_MODES)}, got {var_mode!r}")
        return (check_range(owner, "significance", significance, 0.0, 1.0, True, True), var_mode,
                check_count(owner, "leak_ratio", leak_ratio, 1), check_count(owner, "minN_stats", minN_stats, 100))

    def load_state(self, state: Dict[str, Any]) -> None:
        """Take a saved ``state`` (copied onto this test's device)."""
        self.state = {k: v.to(self.device, copy=True) if isinstance(v, Tensor) else v for k, v in state.items()}

    def _bound(self, n_values: int) -> int:
        """The most values the bucket can hold after ``n_values`` adds: ceil(n_values / leak_ratio)."""
        return -(-n_values // self.leak_ratio)

    def add(self, value: Tensor) -> None:
        """Write the value at its place in the buffer, growing the buffer (host-known sizes) when
        it is full."""
        st = self.state
        index = st["n_values"]
        if index - st["offset"] == st["values"].numel():
            keep = self._bound(index + 1) - 1  # values still reachable after this one
            start = index - keep
            grown = torch.zeros(max(_MIN_CAPACITY, 2 * (keep + 1)), dtype=torch.float64, device=self.device)
            grown[:keep].copy_(st["values"][start - st["offset"]:index - st["offset"]])
            st["values"], st["offset"] = grown, start
        st["values"][index - st["offset"]] = value
        st["stats_val"].copy_(value)
        st["total"].add_(1)
        st["n_values"] = index + 1

    def _window(self) -> tuple:
        """The buffer's tail that holds the bucket, (v, start, count): the bucket is v[start:],
        ``count`` values (start and count on the device; v's length known on the host)."""
        st = self.state
        n_values = st["n_values"]
        size = self._bound(n_values)
        v = st["values"][n_values - size - st["offset"]:n_values - st["offset"]]
        count = (st["total"] + self.leak_ratio - 1) // self.leak_ratio
        return v, size - count, count

    def decreasing(self) -> Tensor:
        """statopt's slope test (``LeakyBucket.linregress``, SALSA's switch): True when the
        least-squares slope of the bucket's values against their step is negative at
        ``significance`` (one-sided t-test on the correlation r, t = r sqrt(df / ((1 - r)(1 + r))),
        df = n - 2), decided on the device. Meaningful once the bucket holds 3 values or more."""
        v, start, count = self._window()
        size = v.numel()
        if self._slope_quantiles.numel() < size:
            self._slope_quantiles = _t_quantiles(self.significance, max(2 * size, 4096)).to(self.device)
        n = count.to(torch.float64).clamp(min=1.0)
        pos = torch.arange(size, device=self.device)
        inside = pos >= start
        zero = v.new_zeros(())
        xc = torch.where(inside, (pos - start).to(torch.float64) - (n - 1.0) / 2.0, zero)
        yc = torch.where(inside, v - torch.where(inside, v, zero).sum() / n, zero)
        cxx, cyy, cxy = (xc * xc).sum() / n, (yc * yc).sum() / n, (xc * yc).sum() / n
        den = torch.sqrt(cxx * cyy)
        r = torch.where(den == 0, zero, cxy / torch.where(den == 0, v.new_ones(()), den)).clamp(-1.0, 1.0)
        df = count - 2
        t = r * torch.sqrt(df.to(torch.float64).clamp(min=1.0) / ((1.0 - r + _TINY) * (1.0 + r + _TINY)))
        return t < _at(self._slope_quantiles, df - 1)

    def test(self, allow_drop: bool = True) -> Tensor:
        """The test on the bucket, decided on the device (no host read): True when the bucket
        holds more than ``minN_stats`` values and they are stationary. With ``allow_drop`` that is
        a drop: the bucket empties and the composite test ends; without (statopt's test before
        ``warmup`` steps), nothing changes but the ``stats_*`` values."""
        st = self.state
        v, start, count = self._window()
        size = v.numel()
        while self._quantiles.numel() < size:
            self._quantiles = _t_quantiles(1.0 - self.significance / 2.0, 2 * self._quantiles.numel()).to(self.device)
        n = count.to(torch.float64).clamp(min=1.0)
        pos = torch.arange(size, device=self.device)
        inside = pos >= start
        zero = v.new_zeros(())
        mean = torch.where(inside, v, zero).sum() / n
        half = count // 2
        first = inside & (pos < start + half)
        mean1 = torch.where(first, v, zero).sum() / half.clamp(min=1)
        mean2 = torch.where(inside & ~first, v, zero).sum() / (count - half).clamp(min=1)
        centered = torch.where(inside, v - mean, zero)
        if self.var_mode == "iid":
            sd = torch.sqrt((centered * centered).sum() / (n - 1.0).clamp(min=1.0))
            dof = count - 1
        else:
            sd, dof = self._batch_means_sd(centered, start, count, size)
        t = _at(self._quantiles, dof - 1)
        width = sd * t / torch.sqrt(n)
        lower, upper = mean - width, mean + width
        same_sign = mean1 * mean2 > 0
        simple = (lower < 0) & (upper > 0) & same_sign
        composite = ((mean1 - width) * (mean1 + width) < 0) & ((mean2 - width) * (mean2 + width) < 0) & same_sign
        stationary = torch.where(st["composite"], composite, simple)
        tested = count > self.minN_stats
        drop = tested & stationary
        if allow_drop:
            st["composite"].logical_and_(~drop)
            st["total"].mul_((~drop).to(torch.int64))
            st["drops"].add_(drop.to(torch.int64))
        st["stats_test"].copy_(tested)
        st["stats_stationary"].copy_(drop)
        st["stats_mean"].copy_(mean)
        st["stats_lb"].copy_(lower)
        st["stats_ub"].copy_(upper)
        return drop

    def _batch_means_sd(self, centered: Tensor, start: Tensor, count: Tensor, size: int):
        """The batch-means standard deviation of the window and its degrees of freedom: batches
        of b = floor(sqrt(n)) values, overlapping (``olbm``) or not (``mb``), their sums taken
        as differences of prefix sums of the centered values (the batch mean minus the mean)."""
        b = torch.floor(torch.sqrt(count.to(torch.float64)))
        width = b.to(torch.int64).clamp(min=1)
        prefix = torch.cat([centered.new_zeros(1), torch.cumsum(centered, 0)])
        n = count.to(torch.float64)
        if self.var_mode == "mb":
            batches = count // width
            k = torch.arange(math.isqrt(size) + 3, device=self.device)  # n / floor(sqrt(n)) < sqrt(n) + 3
            lo = start + k * width
            m = batches.to(torch.float64)
            factor = b / (m - 1.0).clamp(min=1.0)
            dof = width - 1
        else:
            batches = count - width + 1
            k = torch.arange(size, device=self.device)
            lo = start + k
            m = batches.to(torch.float64)
            factor = b * n / (m * (m - 1.0)).clamp(min=1.0)
            dof = count - width
        lo = lo.clamp(0, size)
        hi = (lo + width).clamp(0, size)
        means = torch.where(k < batches, (prefix[hi] - prefix[lo]) / b.clamp(min=1.0), centered.new_zeros(()))
        return torch.sqrt(factor * (means * means).sum()), dof



class SASA(Optimizer):
    r"""SASA+ with statopt's arguments, names and defaults; the statistic and the stationarity
    test run on the device, with no host read.

    Step (statopt's QHM, per group): g = grad + weight_decay * x (the grads are not modified),
    h = momentum * h + (1 - momentum) * g, d = (1 - qhm_nu) * g + qhm_nu * h (d = h when
    qhm_nu = 1, d = g when momentum or qhm_nu is 0), x <- x - lr * d.

    Statistic, once per step: v = sum_p <x_{k+1}, d_k> + sum_groups (lr / 2) * sum_p ||d_k||^2,
    each dot product in the param's dtype (float32 for half types), summed in float64 in a
    fixed order. v joins a leaky bucket: after T steps since the last drop it holds the last
    ceil(T / leak_ratio) values (statopt's ``LeakyBucket``).

    Test, every ``testfreq`` steps once more than ``warmup`` steps were taken, when the bucket
    holds more than ``minN_stats`` values: with the bucket's mean m, its two halves' means m1,
    m2 and the half width w = sd * t_{1 - significance/2, dof} / sqrt(n), the iterates are
    stationary when m - w < 0 < m + w and m1 * m2 > 0 (before the first drop, the composite
    test: both m1 +- w and m2 +- w straddle 0, and m1 * m2 > 0). Then every group's LR is
    divided by ``drop_factor``, the momentum buffers are zeroed and the bucket is emptied.
    ``var_mode``: ``"iid"`` (sd of the values, dof n - 1), ``"olbm"`` (overlapping batch means of
    b = floor(sqrt(n)) values, dof n - b) or ``"mb"`` (non-overlapping batch means, dof b - 1).

    Where it differs from statopt 0.2, on purpose:

    - ``var_mode="mb"`` is the batch-means variance. statopt accepts ``"mb"`` but its bucket
      only knows ``"bm"``, so its ``"mb"`` (its default) computes the iid variance; our
      ``"iid"`` gives statopt's default behaviour.
    - A drop divides each group's LR, keeping their ratios; statopt writes its one LR over
      every group.
    - Each group's LR is a float64 tensor on the params' device (a float becomes one at
      construction, keeping its value), divided in place on a drop: read it with
      ``float(group["lr"])`` outside the loop. A schedule that writes it keeps working.
    - The bucket and statistic are float64 (statopt: the params' dtype).
    - The test's statistics (``state["sasa"]["stats_mean"]``, ``stats_lb``, ``stats_ub``,
      ``stats_stationary``, ``stats_test``) are device tensors, computed only on test steps
      after warmup; statopt's ``logstats`` is not taken.

    The step is one fused pass per param group and dtype (``tricks_ext::sasa_step_``: the update
    and the statistic's two sums together, 20 B/param in fp32, the bytes of the update alone),
    on the backend ``backend`` names (default: the process's, tricks_ext.set_backend); half
    params step in fp32 and are rounded once (statopt rounds after each op in their dtype: at
    most one ulp apart).

    Host reads: none per step. Host work grows the bucket's buffer and the t-quantile table
    (scipy, from ``significance``; computed for 4096 degrees of freedom at construction and
    doubled when the bucket may outgrow it) at steps known on the host. The batch means use
    ``torch.cumsum``, bit-reproducible on CPU; on CUDA, torch's one-dimensional scan may round
    the variance differently from run to run in its last bits. All params must be on one
    device, dense, and float16/bfloat16/float32/float64.

    Example::

        opt = SASA(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    """

    def __init__(self, params: Iterable, lr: Any, momentum: float = 0.0, qhm_nu: float = 1.0,
                 weight_decay: float = 0.0, warmup: int = 1000, drop_factor: float = 10.0,
                 significance: float = 0.05, var_mode: str = "mb", leak_ratio: int = 8, minN_stats: int = 1000,
                 testfreq: int = 100, *, backend: Optional[str] = None) -> None:
        _backend.check_backend_name(type(self).__name__, backend)
        self.backend = backend
        self._plans: Dict[tuple, Dict] = {}
        _check_lr(lr)
        check_range("SASA", "momentum", momentum, 0.0, 1.0)
        if not (is_number(qhm_nu) and math.isfinite(qhm_nu)):
            raise ValueError(f"SASA: qhm_nu must be a finite number, got {qhm_nu!r}")
        check_range("SASA", "weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        self.warmup = check_count("SASA", "warmup", warmup, 0)
        self.drop_factor = check_range("SASA", "drop_factor", drop_factor, 1.0, math.inf, high_open=True)
        self.testfreq = check_count("SASA", "testfreq", testfreq, 1)
        test_args = dict(significance=significance, var_mode=var_mode, leak_ratio=leak_ratio, minN_stats=minN_stats,
                         owner="SASA")
        StationarityTest.check_args(**test_args)
        super().__init__(params, dict(lr=lr, momentum=momentum, qhm_nu=qhm_nu, weight_decay=weight_decay))
        devices = {p.device for g in self.param_groups for p in g["params"]}
        if len(devices) != 1:
            raise ValueError(f"SASA: all params must be on one device (its statistic sums over all of them), "
                             f"got {sorted(map(str, devices))}")
        self._device = devices.pop()
        for p in (p for g in self.param_groups for p in g["params"]):
            if p.dtype not in FLOAT_DTYPES or p.layout != torch.strided:
                raise TypeError(f"SASA: params must be dense float16, bfloat16, float32 or float64, "
                                f"got {p.dtype} ({p.layout})")
        for group in self.param_groups:
            group["lr"] = self._device_lr(group["lr"])
        self._test = StationarityTest(self._device, **test_args)
        self.state["sasa"] = self._test.state  # saved with the optimizer's state_dict

    def _device_lr(self, lr: Any) -> Tensor:
        _check_lr(lr)
        if isinstance(lr, Tensor):
            if lr.dtype != torch.float64 or lr.numel() != 1 or lr.device != self._device:
                raise ValueError(f"SASA: a tensor LR must be one float64 value on the params' device "
                                 f"({self._device}; a drop divides it in place), got {lr.dtype} of shape "
                                 f"{tuple(lr.shape)} on {lr.device}")
            return lr
        return torch.tensor(float(lr), dtype=torch.float64, device=self._device)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """torch's; a group added after construction gets its LR as a device tensor too."""
        super().add_param_group(param_group)
        if "_device" in self.__dict__:
            group = self.param_groups[-1]
            if any(p.device != self._device for p in group["params"]):
                raise ValueError(f"SASA: all params must be on one device ({self._device})")
            group["lr"] = self._device_lr(group["lr"])

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One QHM step, the statistic into the bucket, and on test steps the test and a drop
        decided on the device. ``closure`` re-evaluates the loss, as in torch's optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        dots: List[Tensor] = []
        for index, (group, params) in enumerate(self._stepped_groups()):
            momentum, nu = group["momentum"], group["qhm_nu"]
            with_bufs = abs(momentum) >= _QHM_TINY and abs(nu) >= _QHM_TINY
            nu = 1.0 if abs(nu - 1.0) < _QHM_TINY else nu
            for dtype in sorted({p.dtype for p in params}, key=str):
                bucket = [p for p in params if p.dtype == dtype]
                step = _backend.implementation("sasa_step", self._device, self.backend, dtype, caller="SASA")
                sums = step(bucket, [p.grad for p in bucket], self._buffers(bucket) if with_bufs else [],
                            group["lr"], momentum, nu, group["weight_decay"], self._plans.setdefault((index, dtype), {}))
                dots.append(sums[0] + 0.5 * group["lr"] * sums[1])
        if dots:
            self._test.add(dots[0] if len(dots) == 1 else torch.stack(dots).sum())
            self._test_and_drop(self._test.state["n_values"])
        return loss

    def _stepped_groups(self) -> List[tuple]:
        """(group, its params with a grad) for each group that has one; sparse grads refused."""
        out = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            if params:
                out.append((group, params))
        return out

    def _test_and_drop(self, steps: int) -> Optional[Tensor]:
        """On a test step (every ``testfreq`` steps), the test; past ``warmup`` steps a True result
        divides every group's LR by ``drop_factor`` and zeroes the momentum. The test's result
        (stationary, on the device), or None off test steps."""
        if steps % self.testfreq != 0:
            return None
        stationary = self._test.test(allow_drop=steps > self.warmup)
        if steps > self.warmup:
            self._drop(stationary)
        return stationary

    def _drop(self, drop: Tensor) -> None:
        for group in self.param_groups:
            group["lr"].copy_(torch.where(drop, group["lr"] / self.drop_factor, group["lr"]))
        bufs = [s["momentum_buffer"] for p, s in self.state.items()
                if isinstance(p, Tensor) and "momentum_buffer" in s]
        if bufs:
            torch._foreach_mul_(bufs, (~drop).to(torch.float32))

    @staticmethod
    def _gradients(group: Dict[str, Any], params: List[Tensor]) -> List[Tensor]:
        """g = grad + weight_decay * x (new tensors; the grads themselves when weight_decay is 0)."""
        grads = [p.grad for p in params]
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        return grads

    def _direction(self, group: Dict[str, Any], params: List[Tensor], grads: List[Tensor]) -> List[Tensor]:
        """QHM's d from g, updating the momentum buffers."""
        momentum, nu = group["momentum"], group["qhm_nu"]
        if abs(momentum) < _QHM_TINY or abs(nu) < _QHM_TINY:
            return grads
        bufs = self._buffers(params)
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=1.0 - momentum)
        if abs(nu - 1.0) < _QHM_TINY:
            return bufs
        directions = torch._foreach_mul(grads, 1.0 - nu)
        torch._foreach_add_(directions, bufs, alpha=nu)
        return directions

    def _buffers(self, params: List[Tensor]) -> List[Tensor]:
        """The params' momentum buffers (statopt's, in the param's dtype), zeros when new."""
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        return bufs

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """torch's, then copies of the momentum buffers (shared with ``state_dict`` by torch's
        loader), each group's LR back to a float64 tensor on the params' device and the bucket's
        tensors onto that device."""
        super().load_state_dict(state_dict)
        for p, st in self.state.items():
            if isinstance(p, Tensor) and "momentum_buffer" in st:  # torch's loader keeps the saved tensor
                st["momentum_buffer"] = st["momentum_buffer"].to(device=p.device, dtype=p.dtype, copy=True)
        for group in self.param_groups:
            lr = group["lr"]
            group["lr"] = lr.to(device=self._device, dtype=torch.float64, copy=True) if isinstance(lr, Tensor) \
                else self._device_lr(lr)
        # copies: torch's loader keeps the saved dict itself, which another optimizer may hold
        self._test.load_state(self.state["sasa"])
        self.state["sasa"] = self._test.state


def _check_lr(lr: Any) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or lr.requires_grad:
            raise ValueError(f"SASA: invalid lr: a tensor LR must be one value without grad, "
                             f"got shape {tuple(lr.shape)}")
        return
    if not (is_number(lr) and 0.0 < lr < math.inf):
        raise ValueError(f"SASA: invalid lr: {lr!r} (must be a finite number > 0)")


def _descend(params: List[Tensor], directions: List[Tensor], lr: Tensor) -> None:
    """x -= lr d in place with the LR read on the device, as statopt's ``add_(d, alpha=-lr)``
    rounds it: the LR in the param's dtype (torch casts alpha to it: a bf16 LR keeps 8 bits).
    One 0-dim LR per param: ``_foreach_mul`` by a tensor would allocate the product (30 ms of a
    45 ms ResNet-50 step on 2 CPU threads); ``_foreach_addcmul_`` adds in place (6 ms, as
    ``_foreach_add_`` with a float alpha)."""
    neg = {dtype: -lr.to(dtype) for dtype in {p.dtype for p in params}}
    torch._foreach_addcmul_(params, directions, [neg[p.dtype] for p in params])


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """<a, b> in a's dtype (float32 for half types), as one float64 value."""
    acc = torch.float32 if a.dtype in (torch.float16, torch.bfloat16) else a.dtype
    return torch.dot(a.reshape(-1).to(acc), b.reshape(-1).to(acc)).to(torch.float64)
