"""optim_step: per-backend implementations of one optimizer step over a list of tensors that
share a device and dtype. Signature of every implementation:
    impl(group, params, grads, states, grad_scale, found_inf, cache, extras)
``group`` is the param group (hyperparameters), ``states`` the per-param state dicts (step is
counted here), ``grad_scale``/``found_inf`` come from torch.amp.GradScaler (or are None; the
optimizer folds max_grad_norm's coefficient into grad_scale), ``cache`` a dict the optimizer
keeps for this (group, device, dtype) bucket (launch plans), ``extras`` the optimizer-wide
:class:`Extras` (clipping by value or AGC, EMA).

Backends: ``torch`` (the reference, one tensor at a time), ``cpu`` and ``cuda``
(``tricks_ext::optim_step_``, csrc/optim/), ``triton`` (triton_kernels/optim.py, the same
signature as the C++ op), ``simt`` (the CUDA kernel emulated on CPU, tricks_ext/ops/_simt.py).
Every fused backend takes the work list of :class:`Plan`. The fused backends
count steps on the step tensors themselves (``_foreach_add_`` before the kernel, which computes
its per-step scalars from them; ``_foreach_sub_(found_inf)`` after), so GradScaler's found_inf is
never read on the host.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, get_type_hints

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext._checks import is_row_dense
from tricks_ext._dtypes import stats_dtype
from tricks_ext._gradients import adaptive_clip, centralize
from tricks_ext.ops._simt import simt_call
from tricks_ext.reference.optim import ema_decay, optimizer_step

OP = "optim_step"

# The work list, one planner for every fused backend: a row of up to ROW_MAX elements is one item
# (its GC mean and AGC norms are reduced in a first sweep and the update sweep re-reads the row
# from cache: L1/L2 on a CPU core, L2 on a GPU SM, 64 KiB of fp32 at most), so GC and AGC cost no
# DRAM pass. Longer rows would serialize on one core or SM; they take the two-level path instead:
# their grads are clipped and centralized by torch reductions before the launch (one extra read
# and write of those grads only), then they are chunked like tensors without GC (flag PREPARED).
# No ResNet/ViT/GPT-2 weight has rows
# that long (the widest is 4608 = 512x3x3). A tensor without GC is cut into chunks of CHUNK
# elements: on the GPUs 8 sweeps of a 1024-wide Triton program or 32 of a 256-thread CUDA block
# (~3K items for a 25M-param model, 20+ per H100 SM); on CPU 32K elements, 128 KiB of fp32 params,
# which the kernel groups into parallel tasks (csrc/optim/cpu.cpp).
CHUNK = {"cpu": 1 << 15, "cuda": 8192, "triton": 8192, "simt": 8192}
ROW_MAX = 16384
# The Triton kernel computes in fp32: fp64 params run on the other backends (the CUDA kernel, as
# the CPU one, steps them in fp64).
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Work-item flags (csrc/optim/math.h): a GC row, an AGC row, a chunk of a prepared grad.
GC_ROW, AGC_ROW, PREPARED = 1, 2, 4


class Extras(NamedTuple):
    """Optimizer-wide options of a step, named as the optimizer's keyword options
    (tricks_ext.optim.StepOptions): ``clip_value`` (inf: off) and AGC (``agc_clip_factor`` 0:
    off) act on the unscaled grads; ``ema_decay`` None: no EMA, else timm's ModelEmaV3 with the
    ``ema_*`` settings; ``prepared`` holds the indices, in the bucket, of grads the caller
    already clipped (AGC of sharded 1-D DTensors, whose norm spans ranks)."""
    clip_value: float = math.inf
    agc_clip_factor: float = 0.0
    agc_eps: float = 1e-3
    ema_decay: Optional[float] = None
    ema_min_decay: float = 0.0
    ema_update_after_step: int = 0
    ema_warmup: bool = False
    ema_warmup_gamma: float = 1.0
    ema_warmup_power: float = 2 / 3
    prepared: FrozenSet[int] = frozenset()


class Hyperparams(NamedTuple):
    """The scalar arguments of ``tricks_ext::optim_step_``, in order: the one declaration of the
    step's contract. Each name is a param-group key or an optimizer option (Extras) of the same
    name, except ``beta1``/``beta2``, the group's ``betas`` pair. From it come the op's schema
    (:data:`SCHEMA`, defined below), the Triton launcher's arguments (a test checks its
    signature), and the kernels' ``Params`` fields, filled in this order by the C++ bindings
    through the ``TRICKS_OPTIM_HYPERPARAMS`` list in csrc/optim/math.h (a test checks it against
    this declaration; torch checks its types against the schema when the op is defined).
    ``lookahead_k`` 0: no Lookahead; ``ema_decay`` is read only when EMA tensors are passed."""
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool
    lookahead_alpha: float
    lookahead_k: int
    rectify: bool
    maximize: bool
    clip_value: float
    agc_clip_factor: float
    agc_eps: float
    ema_decay: float
    ema_min_decay: float
    ema_update_after_step: int
    ema_warmup_gamma: float
    ema_warmup_power: float
    ema_warmup: bool

    @classmethod
    def of(cls, group: Dict[str, Any], extras: Extras) -> "Hyperparams":
        """The step's hyperparameters from a param group and the optimizer's options; a tensor
        LR is passed apart (``lr_tensor``), and ``lr`` is then NaN, unread."""
        beta1, beta2 = group["betas"]
        lr = math.nan if isinstance(group["lr"], Tensor) else group["lr"]
        named = {**extras._asdict(), **group, "lr": lr, "beta1": beta1, "beta2": beta2,
                 "lookahead_k": group["lookahead_k"] or 0, "ema_decay": extras.ema_decay or 0.0}
        return cls(**{name: named[name] for name in cls._fields})


# ``tricks_ext::optim_step_``: one optimizer step (clipping + GC + Adam/AdamW/RAdam + Lookahead +
# EMA) over tensors that share a device and dtype, in place. ``steps`` already count this step; a
# non-zero ``found_inf`` skips the step (the caller undoes its count); ``lr_tensor`` (float64, one
# value on the params' device), when given, is the LR, read by the kernels in place of ``lr``
# (a tensor LR: a schedule changes it with no host sync). ``slows`` is empty without
# Lookahead, ``emas`` without EMA. Grads are divided by ``grad_scale``, clamped to +-clip_value
# and, on the work items flagged for it, clipped by timm's AGC; the EMA decay follows timm's
# ModelEmaV3.get_decay on each tensor's step. ``work`` and ``ptrs`` are a Plan's (below); on CPU
# ``ptrs`` must be None. Because the CUDA kernel writes through ``ptrs``, the op must see the
# tensors themselves: it is not for functionalized (compiled) graphs. Its tensor arguments, then
# Hyperparams (schema types from the annotations):
_TENSOR_ARGS = ("Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
                "Tensor(d!)[] slows, Tensor(e!)[] emas, Tensor[] steps, Tensor work, Tensor? ptrs, "
                "Tensor? found_inf, Tensor? grad_scale, Tensor? lr_tensor")
_SCHEMA_TYPES = {float: "float", int: "int", bool: "bool"}
SCHEMA = "(" + ", ".join([_TENSOR_ARGS] + [f"{_SCHEMA_TYPES[t]} {name}" for name, t in
                                            get_type_hints(Hyperparams).items()]) + ") -> ()"


def _step_torch(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
                grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict, extras: Extras) -> None:
    """The reference, one tensor at a time. Reads found_inf on the host (a sync on CUDA)."""
    if found_inf is not None and bool(found_inf.item()):
        return
    b1, b2 = group["betas"]
    for i, (p, g, st) in enumerate(zip(params, grads, states)):
        if grad_scale is not None:
            g = g / grad_scale.to(g.device)
        st["step"] += 1
        step = int(st["step"].item())
        prepared = i in extras.prepared
        optimizer_step(p, g, st["exp_avg"], st["exp_avg_sq"], st.get("slow_buffer"), step,
                       lr=float(group["lr"]), beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                       decoupled_weight_decay=group["decoupled_weight_decay"], rectify=group["rectify"],
                       gc=group["gc"], gc_conv_only=group["gc_conv_only"], lookahead_k=group["lookahead_k"],
                       lookahead_alpha=group["lookahead_alpha"], maximize=group["maximize"],
                       clip_value=None if prepared or math.isinf(extras.clip_value) else extras.clip_value,
                       agc_clip_factor=extras.agc_clip_factor if extras.agc_clip_factor and not prepared else None,
                       agc_eps=extras.agc_eps, ema=st.get("ema") if extras.ema_decay is not None else None,
                       ema_decay=0.0 if extras.ema_decay is None else ema_decay(
                           step, extras.ema_decay, extras.ema_min_decay, extras.ema_update_after_step,
                           extras.ema_warmup, extras.ema_warmup_gamma, extras.ema_warmup_power))


class Plan:
    """Work list and pointer table of one (device, dtype) bucket, as ``optim_step_`` takes them,
    reused while its tensors stay the same; the grad row is refreshed when grads move.
    ``work`` rows: (tensor, start, length, flags); a tensor is listed by rows p[i] (a dim <= 1
    tensor as one row) when its grad is centralized or AGC-clipped in the kernel (``agc``: one
    flag per tensor), else by chunks. ``ptrs`` (the device kernels' table, None with
    ``with_ptrs=False``: the CPU kernel reads the lists) rows: param, grad, exp_avg, exp_avg_sq,
    slow, ema (0 without them), step addresses; ``long_rows``: the tensors whose rows take the
    two-level path (see ROW_MAX)."""

    def __init__(self, params: List[Tensor], exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor],
                 slows: List[Tensor], emas: List[Tensor], steps: List[Tensor], gc_min_dim: int, chunk: int,
                 agc: Sequence[bool] = (), with_ptrs: bool = True):
        work: List[int] = []
        self.long_rows: List[int] = []
        for i, p in enumerate(params):
            gc = is_centralized(p, gc_min_dim)
            clip = bool(agc) and agc[i]
            row = 0
            if (gc or clip) and p.numel():
                row = p.numel() // p.shape[0] if p.dim() > 1 else p.numel()
            if row > ROW_MAX:
                self.long_rows.append(i)
            if 0 < row <= ROW_MAX:
                flags = (GC_ROW if gc else 0) | (AGC_ROW if clip else 0)
                for r in range(p.numel() // row):
                    work += [i, r * row, row, flags]
            else:
                for b in range(0, p.numel(), chunk):
                    work += [i, b, min(chunk, p.numel() - b), PREPARED if row else 0]
        device = params[0].device
        self.work = torch.tensor(work, dtype=torch.int64).view(-1, 4).to(device)
        self.ptrs: Optional[Tensor] = None
        if with_ptrs:
            none = [0] * len(params)
            rows = [[p.data_ptr() for p in params], none, [t.data_ptr() for t in exp_avgs],
                    [t.data_ptr() for t in exp_avg_sqs], [t.data_ptr() for t in slows] if slows else none,
                    [t.data_ptr() for t in emas] if emas else none, [t.data_ptr() for t in steps]]
            self.ptrs = torch.tensor(rows, dtype=torch.int64).to(device)
        self.grad_key: tuple = ()

    @staticmethod
    def key(params: List[Tensor], exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor], slows: List[Tensor],
            emas: List[Tensor], steps: List[Tensor], gc_min_dim: int, chunk: int, agc: Sequence[bool] = ()) -> tuple:
        none = [0] * len(params)
        slow_ptrs = [t.data_ptr() for t in slows] if slows else none
        ema_ptrs = [t.data_ptr() for t in emas] if emas else none
        return (gc_min_dim, chunk, tuple(agc)) + tuple(
            (p.data_ptr(), tuple(p.shape), m.data_ptr(), v.data_ptr(), s, e, c.data_ptr())
            for p, m, v, s, e, c in zip(params, exp_avgs, exp_avg_sqs, slow_ptrs, ema_ptrs, steps))

    def set_grads(self, grads: List[Tensor]) -> None:
        key = tuple(g.data_ptr() for g in grads)
        if self.ptrs is not None and key != self.grad_key:
            self.ptrs[1].copy_(torch.tensor(key, dtype=torch.int64))
            self.grad_key = key


def gc_min_dim(group: Dict[str, Any]) -> int:
    """0: no GC; else the smallest rank whose grads are centralized (2, or 4 for conv only)."""
    return (4 if group["gc_conv_only"] else 2) if group["gc"] else 0


def is_centralized(p: Tensor, min_dim: int) -> bool:
    return bool(min_dim) and p.dim() > 1 and p.dim() >= min_dim and p.shape[0] > 0


def check_params(backend: str, params: List[Tensor]) -> None:
    """Raise unless ``backend`` can step these params (the optimizer asks before it changes
    anything): the fused kernels walk each param as rows of one dense block."""
    if backend == "torch":
        return
    for p in params:
        if not is_row_dense(p):
            raise RuntimeError(f"optimizer: the fused kernels need contiguous or channels_last params, got shape "
                               f"{tuple(p.shape)} with strides {p.stride()}; use backend='torch' for it")


def prepare_grad(g: Tensor, p: Tensor, gc: bool, agc: bool, extras: Extras, grad_scale: Optional[Tensor]) -> Tensor:
    """The path of one tensor outside the kernels (rows past ROW_MAX; the AGC of sharded 1-D
    DTensors, where ``g`` and ``p`` are DTensors and the norm all-reduces): its grad clipped (by value or AGC, on the
    unscaled grad) and centralized by torch ops, scaled back so the kernel's division by the
    grad scale still applies; out of place (the user's grad stays)."""
    x = g.to(stats_dtype(g.dtype))
    if grad_scale is not None:
        x = x / grad_scale
    if not math.isinf(extras.clip_value):
        x = x.clamp(-extras.clip_value, extras.clip_value)
    if agc:
        x = adaptive_clip(x, p.to(x.dtype), extras.agc_clip_factor, extras.agc_eps)
    if gc:
        x = centralize(x)
    if grad_scale is not None:
        x = x * grad_scale
    return x.to(g.dtype)


def _fused(launch: Callable, kind: str) -> Callable:
    """A fused backend: step counters on the params' device, grads restrided like their params,
    counts bumped before the kernel and undone on the device when found_inf is set. ``launch``
    has the signature of ``tricks_ext::optim_step_``: the Triton launcher (``kind`` "triton"), the
    emulated CUDA binding ("simt") or the C++ op ("cxx"), which serves the cpu and cuda backends
    (the chunk and the pointer table follow the device)."""
    def step(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
             grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict, extras: Extras) -> None:
        device = params[0].device
        chunk = CHUNK[device.type if kind == "cxx" else kind]
        for p, st in zip(params, states):
            if st["step"].device != device:
                st["step"] = st["step"].to(device)
        grads = [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for p, g in zip(params, grads)]
        k = group["lookahead_k"]
        exp_avgs, exp_avg_sqs = [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states]
        slows = [st["slow_buffer"] for st in states] if k is not None else []
        emas = [st["ema"] for st in states] if extras.ema_decay is not None else []
        steps = [st["step"] for st in states]
        agc = [i not in extras.prepared for i in range(len(params))] if extras.agc_clip_factor else []
        plan_args = (params, exp_avgs, exp_avg_sqs, slows, emas, steps, gc_min_dim(group), chunk, agc)
        key = Plan.key(*plan_args)
        if cache.get("key") != key:
            cache["key"], cache["plan"] = key, Plan(*plan_args, with_ptrs=kind != "cxx" or device.type == "cuda")
        plan = cache["plan"]
        if grad_scale is not None:
            grad_scale = grad_scale.to(device=device, dtype=torch.float32)
        for i in plan.long_rows:
            grads[i] = prepare_grad(grads[i], params[i], is_centralized(params[i], gc_min_dim(group)),
                                    bool(agc) and agc[i], extras, grad_scale)
        plan.set_grads(grads)
        if found_inf is not None:
            found_inf = found_inf.to(device=device, dtype=torch.float32)
        torch._foreach_add_(steps, 1)
        launch(params, grads, exp_avgs, exp_avg_sqs, slows, emas, steps, plan.work, plan.ptrs, found_inf, grad_scale,
               lr_tensor(group["lr"], device), *Hyperparams.of(group, extras))
        if found_inf is not None:
            torch._foreach_sub_(steps, [found_inf] * len(steps))
    return step


def lr_tensor(lr: Any, device: torch.device) -> Optional[Tensor]:
    """A tensor LR as the kernels read it, float64 on ``device`` (the tensor itself when it is
    one already: an in-place change reaches the next step); None for a float LR. A tensor on
    another device is copied each step: a CPU LR for CUDA params is a copy from host memory per
    step, which is why the docs ask for the LR on the params' device."""
    if not isinstance(lr, Tensor):
        return None
    return lr.detach().to(device=device, dtype=torch.float64).reshape(())


def _launch_triton(*args: Any) -> None:
    from tricks_ext.triton_kernels.optim import optim_step_
    optim_step_(*args)


if _ext.HAS_C:
    torch.library.define("tricks_ext::optim_step_", SCHEMA)

    @torch.library.register_fake("tricks_ext::optim_step_")
    def _(params, grads, exp_avgs, exp_avg_sqs, slows, emas, steps, work, ptrs, found_inf, grad_scale, lr_tensor,
          *hyperparams) -> None:
        torch._check(work.dim() == 2 and work.shape[1] == 4 and work.dtype == torch.int64,
                     lambda: "optim_step_: work must be int64 (n_items, 4)")
        torch._check(ptrs is None or (ptrs.shape == (7, len(params)) and ptrs.dtype == torch.int64),
                     lambda: f"optim_step_: ptrs must be None or int64 (7, {len(params)})")
        return None

    @torch.library.register_fake("tricks_ext::optim_grad_norm")
    def _(tensors) -> Tensor:
        return torch.empty((), dtype=torch.float32, device=tensors[0].device if tensors else "cpu")


# optim_step_'s arguments written in place: params, exp_avgs, exp_avg_sqs, slows, emas.
_WRITTEN = (0, 2, 3, 4, 5)


def _launch_simt(*args: Any) -> None:
    simt_call("optim_step_", args, mutated=_WRITTEN)

_backend.register(OP, torch=_step_torch, triton=_fused(_launch_triton, "triton"),
                  cxx=_fused(torch.ops.tricks_ext.optim_step_, "cxx") if _ext.HAS_C else None,
                  simt=_fused(_launch_simt, "simt") if _ext.HAS_SIMT_KERNELS else None,
                  dtypes={"triton": TRITON_DTYPES})
