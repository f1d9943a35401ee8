"""The one implementation behind Ranger, FusedAdam, FusedAdamW and FusedRAdam.

Per parameter group, the tensors with a gradient are grouped by (device, dtype) and handed, with
their state, to the backend implementation of the ``optim_step`` op (see tricks_ext/_backend.py).
The math is tricks_ext/reference/optim.py.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import TypedDict

from tricks_ext import _backend
from tricks_ext._dtypes import FLOAT_DTYPES, stats_dtype
from tricks_ext._checks import is_int, is_number
from tricks_ext.ops.optim import Extras, check_params, gc_min_dim, is_centralized, prepare_grad

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch built without distributed
    DTensor = None

OP = "optim_step"
_INT_DTYPES = (torch.int32, torch.int64)  # a token count may be an integer tensor


def _is_dtensor(t: Tensor) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def _local(t: Tensor) -> Tensor:
    """The rank's shard of a DTensor (FSDP2 params, their grads and state), else ``t``: the step
    is elementwise, and GC's rows are whole on every rank (see _check_dtensor)."""
    return t.to_local() if _is_dtensor(t) else t


def _check_dtensor(name: str, p: Tensor, group: Dict[str, Any], agc: bool) -> None:
    """A DTensor param steps on its local shard. Adam's math is elementwise, so any placement
    works; GC takes the mean of each row p[i] and AGC its norm, which a shard holds whole only
    when no mesh dimension splits dims 1.. (FSDP2's fully_shard shards dim 0: Shard(0)). AGC of a
    dim <= 1 param, whose one row spans the shards, is all-reduced (ops.optim.prepare_grad on the
    DTensors)."""
    if not _is_dtensor(p):
        return
    g = p.grad
    if not isinstance(g, DTensor) or g.placements != p.placements or g.device_mesh != p.device_mesh:
        raise RuntimeError(f"{name}: a DTensor param of placements {p.placements} has a gradient that is "
                           f"{'a DTensor of ' + str(g.placements) if isinstance(g, DTensor) else 'not a DTensor'}")
    gc = is_centralized(p, gc_min_dim(group))
    if gc or (agc and p.dim() > 1):
        split = [pl for pl in p.placements if not (pl.is_replicate() or (pl.is_shard() and pl.dim == 0))]
        if split:
            what, fix = ("gradient centralization", "turn GC off for this group (gc=False)") if gc else \
                ("adaptive gradient clipping", "clip by norm or value instead")
            raise ValueError(f"{name}: {what} needs each row p[i] whole on a rank, but the param of shape "
                             f"{tuple(p.shape)} is placed as {p.placements}, which splits its rows; shard dim 0 "
                             f"(FSDP2's default), or {fix}")


class StepOptions(TypedDict, total=False):
    """The keyword options every tricks_ext optimizer takes beyond its hyperparameters: what
    usually runs next to ``step()``, folded into it. At most one clipping mode.

    - ``max_grad_norm``: clip the grads by their total L2 norm (``clip_grad_norm_``); the norm
      spans every param of the optimizer (all ranks under FSDP2), ``last_grad_norm`` holds it.
    - ``clip_value``: clamp each grad element to [-clip_value, clip_value] (``clip_grad_value_``).
    - ``agc_clip_factor``, ``agc_eps`` (1e-3): timm's adaptive gradient clipping, unit-wise:
      each row p[i] (a dim <= 1 param as a whole) has its grad norm capped at
      ``agc_clip_factor * max(|p[i]|, agc_eps)``.
    - ``ema_decay``: keep an fp32 EMA of the params, updated in the same pass (timm's
      ``ModelEmaV3`` after each step, with the step count of timm's train loop); with
      ``ema_warmup`` (and ``ema_warmup_gamma`` 1.0, ``ema_warmup_power`` 2/3) the decay ramps as
      ``1 - (1 + t / gamma)^-power``, at least ``ema_min_decay``; the first
      ``ema_update_after_step`` + 1 steps copy the params. ``ema_weights()`` evaluates with it.

    Clipping acts on the unscaled grads (after GradScaler's scale is divided out), before GC.
    ``max_grad_norm=inf`` measures the norm without clipping, as ``clip_grad_norm_`` does.

    ``foreach`` and ``fused`` (bool or None) are accepted as torch.optim's are, for drop-in
    use, and change nothing: the step is always the fused one.
    """
    max_grad_norm: Optional[float]
    clip_value: Optional[float]
    agc_clip_factor: Optional[float]
    agc_eps: float
    ema_decay: Optional[float]
    ema_warmup: bool
    ema_warmup_gamma: float
    ema_warmup_power: float
    ema_min_decay: float
    ema_update_after_step: int


def _positive(name: str, value: Any, optional: bool = True, zero: bool = False, inf: bool = False
              ) -> Optional[float]:
    """``value`` as a float > 0 (>= 0 with ``zero``; inf allowed with ``inf``), or None when
    ``optional``; ValueError naming ``name`` otherwise."""
    if value is None and optional:
        return None
    if not is_number(value) or not (0.0 <= value < math.inf or (inf and value == math.inf)) or \
            (value == 0.0 and not zero):
        raise ValueError(f"invalid {name}: {value!r} (must be a {'' if inf else 'finite '}float {'>=' if zero else '>'} 0"
                         f"{' or None' if optional else ''})")
    return float(value)


def _parse_options(options: Dict[str, Any]) -> Tuple[Optional[float], Extras]:
    """(max_grad_norm, Extras) from StepOptions; ValueError/TypeError on anything bad."""
    for key in ("foreach", "fused"):
        flag = options.pop(key, None)
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"invalid {key}: {flag!r} (must be a bool or None)")
    unknown = set(options) - set(StepOptions.__annotations__)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    # inf: clip_grad_norm_'s coefficient is then 1, so the step only measures the norm
    max_norm = _positive("max_grad_norm", options.get("max_grad_norm"), inf=True)
    clip_value = _positive("clip_value", options.get("clip_value"), inf=True)
    agc = _positive("agc_clip_factor", options.get("agc_clip_factor"))
    agc_eps = _positive("agc_eps", options.get("agc_eps", 1e-3), optional=False)
    modes = [n for n, v in (("max_grad_norm", max_norm), ("clip_value", clip_value), ("agc_clip_factor", agc))
             if v is not None]
    if len(modes) > 1:
        raise ValueError(f"choose one clipping mode, got {' and '.join(modes)}")
    decay = options.get("ema_decay")
    ema: Dict[str, Any] = {}
    if decay is not None:
        if isinstance(decay, (Tensor, bool)) or not is_number(decay) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"invalid ema_decay: {decay!r} (must be in [0, 1] or None)")
        warmup = options.get("ema_warmup", False)
        if not isinstance(warmup, bool):
            raise TypeError(f"invalid ema_warmup: {warmup!r} (must be a bool)")
        min_decay = options.get("ema_min_decay", 0.0)
        if isinstance(min_decay, (Tensor, bool)) or not is_number(min_decay) or not 0.0 <= min_decay <= 1.0:
            raise ValueError(f"invalid ema_min_decay: {min_decay!r} (must be in [0, 1])")
        after = options.get("ema_update_after_step", 0)
        if not is_int(after) or after < 0:
            raise ValueError(f"invalid ema_update_after_step: {after!r} (must be an int >= 0)")
        ema = dict(ema_decay=float(decay), ema_min_decay=float(min_decay), ema_update_after_step=after,
                   ema_warmup=warmup,
                   ema_warmup_gamma=_positive("ema_warmup_gamma", options.get("ema_warmup_gamma", 1.0),
                                              optional=False),
                   ema_warmup_power=_positive("ema_warmup_power", options.get("ema_warmup_power", 2 / 3),
                                              optional=False, zero=True))
    else:
        given = [k for k in options if k.startswith("ema_") and k != "ema_decay"]
        if given:
            raise ValueError(f"{', '.join(sorted(given))} given without ema_decay")
    return max_norm, Extras(clip_value=clip_value if clip_value is not None else math.inf,
                            agc_clip_factor=agc or 0.0, agc_eps=agc_eps, **ema)


def _sharded_whole_row(p: Tensor) -> bool:
    """A dim <= 1 DTensor split across ranks: its AGC norm spans ranks."""
    return _is_dtensor(p) and p.dim() <= 1 and any(pl.is_shard() for pl in p.placements)


# Group keys of torch.optim.Adam/AdamW/RAdam that change the math or the state's meaning: a
# state dict that sets one is refused (continuing it as plain Adam would be silently wrong).
# ``foreach`` and ``fused`` only pick torch's implementation of the same math: accepted.
_UNSUPPORTED_FLAGS = {
    "amsgrad": "AMSGrad keeps a running max of exp_avg_sq and steps with it",
    "differentiable": "the fused step is not differentiable",
    "capturable": "capturable state keeps its step counters on the device in torch's own layout",
}
_TORCH_ONLY_KEYS = tuple(_UNSUPPORTED_FLAGS) + ("foreach", "fused")


def _check_hyper(group: Dict[str, Any]) -> None:
    """Raise ValueError/TypeError for any bad hyperparameter of ``group``; changes nothing."""
    lr, betas, eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    if isinstance(lr, Tensor):
        # a tensor LR is read by the kernels on the device: its value is not checked here, as
        # that would read it on the host (a sync)
        if lr.numel() != 1 or lr.dtype not in FLOAT_DTYPES or lr.requires_grad or lr.is_sparse:
            raise ValueError(f"invalid lr: a tensor LR must be one floating value without grad, got shape "
                             f"{tuple(lr.shape)}, {lr.dtype}{', requires_grad' if lr.requires_grad else ''}")
    elif not (is_number(lr) and 0.0 <= lr < math.inf):
        raise ValueError(f"invalid lr: {lr!r} (must be a finite float >= 0, or a one-element tensor)")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"invalid betas: {betas!r} (must be a pair (beta1, beta2))")
    for name, b in (("betas[0]", betas[0]), ("betas[1]", betas[1])):
        if isinstance(b, Tensor) or not (is_number(b) and 0.0 <= b < 1.0):
            raise ValueError(f"invalid {name}: {b!r} (must be in [0, 1))")
    if not (is_number(eps) and 0.0 <= eps < math.inf):
        raise ValueError(f"invalid eps: {eps!r} (must be a finite float >= 0)")
    if not (is_number(wd) and 0.0 <= wd < math.inf):
        raise ValueError(f"invalid weight_decay: {wd!r} (must be a finite float >= 0)")
    k = group["lookahead_k"]
    if k is not None and not (is_int(k) and k >= 1):
        raise ValueError(f"invalid lookahead_k (k): {k!r} (must be an int >= 1 or None)")
    alpha = group["lookahead_alpha"]
    if not (is_number(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"invalid lookahead_alpha (alpha): {alpha!r} (must be in [0, 1])")
    for key in ("decoupled_weight_decay", "rectify", "gc", "gc_conv_only", "maximize", "slow_in_param_dtype"):
        if not isinstance(group[key], bool):
            raise TypeError(f"invalid {key}: {group[key]!r} (must be a bool)")
    for key, why in _UNSUPPORTED_FLAGS.items():
        if group.get(key):
            raise ValueError(f"{key}=True is not supported ({why}); tricks_ext optimizers run Adam/AdamW/RAdam "
                             "without it")


def _not_traced(step: Callable) -> Callable:
    """torch.compile runs the step eagerly (a graph break; with fullgraph=True an error that
    gives this reason instead of dynamo's "Observed exception")."""
    reason = ("the tricks_ext optimizers' step is one fused launch per (device, dtype) with host-side planning; "
              "torch.compile cannot trace it: call opt.step() outside the compiled function")
    try:
        return torch.compiler.disable(step, reason=reason)
    except TypeError:  # torch < 2.7: no reason= (the graph break is the same)
        return torch.compiler.disable(step)


# The context managers that swap state into the params, by the state they swap in.
_SWAPS = {"slow_buffer": "slow_weights", "ema": "ema_weights"}


def _unnamed(owner: str, item: Any) -> Any:
    """The tensor of a ``model.named_parameters()`` (name, param) pair (torch keeps the names as
    the group's ``param_names``), else ``item``."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        if not isinstance(item[1], Tensor):
            raise TypeError(f"{owner}: a (name, param) pair holds {type(item[1]).__name__} for {item[0]!r}")
        return item[1]
    return item


class TricksOptimizer(Optimizer):
    """GC + Adam/AdamW/RAdam + Lookahead. Use the subclasses; every hyperparameter is per group.

    Extra group keys beyond torch.optim.Adam's: ``decoupled_weight_decay``, ``rectify`` (RAdam),
    ``gc``, ``gc_conv_only``, ``lookahead_k`` (None: no Lookahead), ``lookahead_alpha``,
    ``slow_in_param_dtype`` (keep Lookahead slow weights in the param dtype instead of fp32).
    State per param: ``step`` (float32 CPU scalar tensor, like torch), ``exp_avg``,
    ``exp_avg_sq`` (fp32; fp64 for fp64 params), ``slow_buffer`` (with Lookahead).

    ``**options`` (:class:`StepOptions`): clipping (``max_grad_norm``, ``clip_value`` or
    ``agc_clip_factor``) and an EMA of the weights (``ema_decay``...) inside the step, with no
    host sync; ``last_grad_norm`` holds the norm clip_grad_norm_ would return, ``ema_weights()``
    swaps the EMA in. The EMA is state ``ema`` (fp32; fp64 for fp64 params).

    AMP: ``_step_supports_amp_scaling`` is set, so ``torch.amp.GradScaler.step`` hands the scale
    and inf flag over (``self.grad_scale``/``self.found_inf``) instead of unscaling the grads;
    a step with an inf/NaN gradient changes nothing, step counters included.
    """

    _step_supports_amp_scaling = True

    def __init__(self, params: Iterable, *, lr: float, betas: Tuple[float, float], eps: float,
                 weight_decay: float, decoupled_weight_decay: bool, rectify: bool, gc: bool,
                 gc_conv_only: bool, lookahead_k: Optional[int], lookahead_alpha: float, maximize: bool,
                 slow_in_param_dtype: bool, backend: Optional[str], **options: Any) -> None:
        _backend.check_backend_name(type(self).__name__, backend)
        try:
            self.max_grad_norm, self.extras = _parse_options(options)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{type(self).__name__}: {e}") from None
        self.backend = backend
        # The total gradient norm of the last step (unscaled: after GradScaler's scale is divided
        # out), a tensor on the grads' device, as clip_grad_norm_ returns it; None without clipping.
        self.last_grad_norm: Optional[Tensor] = None
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, rectify=rectify, gc=gc,
                        gc_conv_only=gc_conv_only, lookahead_k=lookahead_k, lookahead_alpha=lookahead_alpha,
                        maximize=maximize, slow_in_param_dtype=slow_in_param_dtype)
        try:
            _check_hyper(defaults)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{type(self).__name__}: {e}") from None
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    # What a copy or a pickle keeps beyond torch's defaults, state and param_groups (the launch
    # caches are rebuilt at the next step; the weights' swap is never in progress in a copy).
    _COPIED = ("backend", "max_grad_norm", "extras", "last_grad_norm")

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state.update({key: self.__dict__[key] for key in self._COPIED})
        return state

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """As torch's, but every check runs before the optimizer changes: a group that fails
        leaves the optimizer exactly as it was."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a param group must be a dict, got {type(param_group).__name__}")
        params = param_group.get("params")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set) or params is None:
            raise TypeError(f"{name}: a param group's params must be an ordered iterable of tensors, got "
                            f"{type(params).__name__}")
        else:
            params = list(params)
        tensors = [_unnamed(name, p) for p in params]
        first: Dict[int, int] = {}
        for i, p in enumerate(tensors):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize tensors, got {type(p).__name__}")
            if p.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{name}: params must be float16, bfloat16, float32 or float64, got {p.dtype}")
            # torch warns and then steps such a param twice per step, its state shared; the fused
            # step would read and write it twice in one launch: refused instead
            j = first.setdefault(id(p), i)
            if j != i:
                raise ValueError(f"{name}: the param at position {i} of this group is the one at position {j} "
                                 f"(shape {tuple(p.shape)}) again; list each param once")
        devices = {p.device for p in tensors}
        if len(devices) > 1:
            raise ValueError(f"{name}: a param group holds params on several devices "
                             f"({', '.join(sorted(map(str, devices)))}); use one group per device")
        merged = {**self.defaults, **param_group}
        try:
            _check_hyper(merged)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {e}") from None
        param_group = dict(param_group, params=params)  # a list: torch would also accept a generator only once
        super().add_param_group(param_group)  # torch's own checks (duplicates, leaves) run before it appends
        self.param_groups[-1]["betas"] = tuple(self.param_groups[-1]["betas"])

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Also loads torch.optim.Adam/AdamW/RAdam state dicts: missing group keys take this
        optimizer's defaults, moments become fp32 (fp64 for fp64 params). ``amsgrad``,
        ``capturable`` and ``differentiable`` set to True are refused; ``foreach``/``fused``
        (implementation choices of torch) are dropped. Everything is checked before anything
        changes: a refused state dict leaves the optimizer as it was. The state is copied, as
        ``nn.Module.load_state_dict`` copies into its parameters: the optimizer shares no tensor
        with ``state_dict``, so two optimizers loaded from one state step apart."""
        self._check_state_dict(state_dict)
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for key in _TORCH_ONLY_KEYS:
                group.pop(key, None)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            group["betas"] = tuple(group["betas"])
            for p in group["params"]:
                st = self.state.get(p)
                if not st:
                    continue
                # copies: torch's loader keeps the saved tensors themselves, and the step writes
                # them in place, so an optimizer loaded from a live one would share its state
                acc = stats_dtype(p.dtype)
                for key in ("exp_avg", "exp_avg_sq", "ema"):
                    if key in st:
                        st[key] = st[key].to(device=p.device, dtype=acc, copy=True)
                if "slow_buffer" in st:
                    st["slow_buffer"] = st["slow_buffer"].to(
                        device=p.device, dtype=p.dtype if group["slow_in_param_dtype"] else acc, copy=True)
                step = st.get("step", 0)
                st["step"] = step.to(dtype=torch.float32, copy=True) if isinstance(step, Tensor) \
                    else torch.tensor(float(step), dtype=torch.float32)

    def _check_state_dict(self, state_dict: Dict[str, Any]) -> None:
        name = type(self).__name__
        if not (isinstance(state_dict, dict) and "state" in state_dict and "param_groups" in state_dict):
            raise ValueError(f"{name}: a state dict has 'state' and 'param_groups'")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"{name}: loaded state dict has {len(saved)} param groups, this optimizer has "
                             f"{len(self.param_groups)}")
        index = {}
        for gi, (mine, theirs) in enumerate(zip(self.param_groups, saved)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"{name}: param group {gi} of the loaded state dict has {len(theirs['params'])} "
                                 f"params, this optimizer's has {len(mine['params'])}")
            merged = {**self.defaults, **{k: v for k, v in theirs.items() if k != "params"}}
            try:
                _check_hyper(merged)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{name}: param group {gi} of the loaded state dict: {e}") from None
            index.update(zip(theirs["params"], mine["params"]))
        for pid, st in state_dict["state"].items():
            p = index.get(pid)
            if p is None or not isinstance(st, dict):
                continue
            for key in ("exp_avg", "exp_avg_sq", "slow_buffer", "ema"):
                t = st.get(key)
                if isinstance(t, Tensor) and t.shape != p.shape:
                    raise ValueError(f"{name}: loaded state {key} of shape {tuple(t.shape)} does not match its "
                                     f"param of shape {tuple(p.shape)}")

    def _init_state(self, p: Tensor, group: Dict[str, Any]) -> Dict[str, Any]:
        st = self.state[p]
        if not st:
            acc = stats_dtype(p.dtype)
            st["step"] = torch.tensor(0.0, dtype=torch.float32)
            st["exp_avg"] = torch.zeros_like(p, dtype=acc, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, dtype=acc, memory_format=torch.preserve_format)
        if group["lookahead_k"] is not None and "slow_buffer" not in st:
            # slow weights = params before their first update
            st["slow_buffer"] = p.detach().to(p.dtype if group["slow_in_param_dtype"] else stats_dtype(p.dtype),
                                              copy=True)
        if self.extras.ema_decay is not None and "ema" not in st:
            st["ema"] = p.detach().to(stats_dtype(p.dtype), copy=True)  # as ModelEmaV3's deepcopy of the model
        return st

    @_not_traced
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None,
             grad_divisor: Union[Tensor, float, None] = None) -> Any:
        """One step over every param with a gradient. ``grad_divisor``: divide the grads by it
        inside the step (a one-element tensor, read on the device, or a number), as if the loss
        had been divided by it: the sum of micro-batch losses over their total token count, say,
        known only once the last micro-batch ran. Folded with GradScaler's division; clipping
        (``max_grad_norm``, ``clip_value``, AGC) sees the divided grads, and ``last_grad_norm``
        their norm."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        swapped = self.__dict__.get("_swapped")
        if swapped is not None:
            raise RuntimeError(f"{type(self).__name__}: step() inside {swapped}(): the params hold other weights "
                               "there and get their own back on exit, so this step would be lost; step outside it")
        grad_scale: Optional[Tensor] = getattr(self, "grad_scale", None)
        found_inf: Optional[Tensor] = getattr(self, "found_inf", None)
        caches = self.__dict__.setdefault("_launch_caches", {})
        # Every check (hyperparameters edited by hand, grads, backends) runs before any tensor
        # moves, so a step that raises leaves params and state as they were.
        plans = []
        for gi, group in enumerate(self.param_groups):
            try:
                _check_hyper(group)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{type(self).__name__}: param group {gi}: {e}") from None
            buckets: Dict[Tuple[torch.device, torch.dtype], List[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if p.grad.shape != p.shape:
                    raise RuntimeError(f"gradient shape {tuple(p.grad.shape)} != param shape {tuple(p.shape)}")
                if p.grad.dtype != p.dtype or p.grad.device != p.device:
                    raise RuntimeError(f"{type(self).__name__}: a gradient of {p.grad.dtype} on {p.grad.device} for a "
                                       f"param of {p.dtype} on {p.device}")
                _check_dtensor(type(self).__name__, p, group, bool(self.extras.agc_clip_factor))
                buckets.setdefault((p.device, p.dtype), []).append(p)
            for (device, dtype), params in buckets.items():
                backend = self._backend_for(device, dtype)
                check_params(backend, [_local(p) for p in params])
                plans.append((gi, group, device, dtype, params, backend))
        if grad_divisor is not None and plans:
            grad_scale = self._with_divisor(grad_scale, grad_divisor, plans[0][2])
        if self.max_grad_norm is not None and plans:
            grads = [p.grad for *_, params, _ in plans for p in params]
            # the C++ norm where every bucket runs the CPU kernels; DTensor grads need get_total_norm's all-reduce
            fast = all(backend == "cpu" for *_, backend in plans) and not any(_is_dtensor(g) for g in grads)
            grad_scale = self._clip_scale(grads, grad_scale, fast)
        for gi, group, device, dtype, params, backend in plans:
            states = [self._init_state(p, group) for p in params]
            # The backends see plain tensors: each DTensor's local shard, its state's too (the
            # state stays DTensors, placed as their params, for distributed checkpoints).
            local_states = [{k: _local(v) for k, v in st.items()} for st in states]
            grads = [p.grad for p in params]
            extras = self.extras
            if extras.agc_clip_factor:
                prepared = frozenset(i for i, p in enumerate(params) if _sharded_whole_row(p))
                for i in prepared:
                    grads[i] = prepare_grad(params[i].grad, params[i].detach(), False, True, extras, grad_scale)
                extras = extras._replace(prepared=prepared)
            impl = _backend.implementation(OP, device, backend)
            impl(group, [_local(p) for p in params], [_local(g) for g in grads], local_states, grad_scale,
                 found_inf, caches.setdefault((gi, device, dtype), {}), extras)
            for st, local in zip(states, local_states):
                st["step"] = local["step"]  # a fused backend may have moved the counter to the device
        return loss

    def _with_divisor(self, grad_scale: Optional[Tensor], divisor: Union[Tensor, float], device: torch.device
                      ) -> Tensor:
        """GradScaler's scale times ``divisor``, the one divisor the kernels apply (float32; a
        number becomes a tensor on ``device``, a fill there, not a copy from the host)."""
        name = type(self).__name__
        if isinstance(divisor, Tensor):
            if divisor.numel() != 1 or not (divisor.is_floating_point() or divisor.dtype in _INT_DTYPES) or \
                    divisor.requires_grad:
                raise ValueError(f"{name}: grad_divisor must be one number without grad, got a tensor of shape "
                                 f"{tuple(divisor.shape)} and {divisor.dtype}")
            divisor = divisor.detach().reshape(()).to(torch.float32)
        elif not (is_number(divisor) and 0.0 < divisor < math.inf):
            raise ValueError(f"{name}: grad_divisor must be a finite number > 0 or a one-element tensor, got {divisor!r}")
        if grad_scale is None:
            return divisor if isinstance(divisor, Tensor) else torch.full((), float(divisor), dtype=torch.float32,
                                                                              device=device)
        grad_scale = grad_scale.to(torch.float32)
        return grad_scale * (divisor.to(grad_scale.device) if isinstance(divisor, Tensor) else float(divisor))

    def _clip_scale(self, grads: List[Tensor], grad_scale: Optional[Tensor], fast: bool) -> Tensor:
        """clip_grad_norm_ folded into the step: the total L2 norm of ``grads`` (all-reduced for
        DTensor grads, divided by GradScaler's scale) and the clip coefficient stay tensors on
        the grads' device (no host sync); the kernels divide every grad by the returned scale,
        ``grad_scale / clip_coef``, where clip_grad_norm_ would multiply it by clip_coef.
        ``fast``: CPU grads, the extension's one-pass norm instead of torch's."""
        norm = torch.ops.tricks_ext.optim_grad_norm(grads) if fast else torch.nn.utils.get_total_norm(grads, 2.0)
        if _is_dtensor(norm):
            norm = norm.full_tensor()
        norm = norm.to(torch.float32)
        if grad_scale is not None:
            grad_scale = grad_scale.to(device=norm.device, dtype=torch.float32)
            norm = norm / grad_scale
        self.last_grad_norm = norm
        coef = torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s coefficient
        return coef.reciprocal() if grad_scale is None else grad_scale / coef

    def _backend_for(self, device: torch.device, dtype: torch.dtype) -> str:
        """The backend for one (device, dtype) bucket; the dtype rules are the registry's (fp64
        params: `auto` passes over cuda/triton, an explicit request for them raises)."""
        return _backend.resolve(OP, device, self.backend, dtype=dtype, caller=type(self).__name__)

    def _state_pairs(self, key: str) -> Iterator[Tuple[Tensor, Tensor]]:
        for group in self.param_groups:
            for p in group["params"]:
                t = self.state.get(p, {}).get(key)
                if t is not None:
                    yield p, t

    @torch.no_grad()
    def swap_slow_weights(self) -> None:
        """Exchange params and Lookahead slow weights (call again to swap back). Slow weights
        wider than their params (fp32 for bf16) lose precision through the param: evaluate with
        ``slow_weights()``, which keeps them."""
        for p, slow in self._state_pairs("slow_buffer"):
            tmp = p.detach().clone()
            p.copy_(slow)
            slow.copy_(tmp)

    @contextlib.contextmanager
    def _weights_from(self, key: str) -> Iterator[None]:
        """Params hold state ``key`` inside, and exactly their own values again after. Where the
        state has the params' dtype the two swap (no extra memory); otherwise the params are
        saved aside (one copy in their dtype) so the state keeps its precision."""
        if self.__dict__.get("_swapped") is not None:
            raise RuntimeError(f"{type(self).__name__}: {self._swapped}() is already in force; nest no swaps")
        with torch.no_grad():
            pairs = list(self._state_pairs(key))
            saved = []
            for p, t in pairs:
                if t.dtype == p.dtype:
                    tmp = p.detach().clone()
                    p.copy_(t)
                    t.copy_(tmp)
                    saved.append(None)
                else:
                    saved.append(p.detach().clone())
                    p.copy_(t)
        self._swapped = _SWAPS[key]
        try:
            yield
        finally:
            self._swapped = None
            with torch.no_grad():
                for (p, t), old in zip(pairs, saved):
                    if old is None:
                        tmp = p.detach().clone()
                        p.copy_(t)
                        t.copy_(tmp)
                    else:
                        p.copy_(old)

    def slow_weights(self) -> contextlib.AbstractContextManager:
        """Context manager: params hold the Lookahead slow weights inside (e.g. to evaluate)."""
        return self._weights_from("slow_buffer")

    def ema_weights(self) -> contextlib.AbstractContextManager:
        """Context manager: params hold their EMA inside (``with opt.ema_weights(): evaluate(model)``),
        their own values after. Params that never stepped keep their values."""
        if self.extras.ema_decay is None:
            raise RuntimeError(f"{type(self).__name__}: ema_weights() needs ema_decay=")
        return self._weights_from("ema")
