"""optim_step: per-backend implementations of one optimizer step over a list of tensors that
share a device and dtype. Signature of every implementation:
    impl(group, params, grads, states, grad_scale, found_inf, cache)
``group`` is the param group (hyperparameters), ``states`` the per-param state dicts (step is
counted here), ``grad_scale``/``found_inf`` come from torch.amp.GradScaler (or are None),
``cache`` a dict the optimizer keeps for this (group, device, dtype) bucket (launch plans).

Backends: ``torch`` (the reference, one tensor at a time), ``cpu`` and ``cuda``
(``tricks_ext::optim_step_``, csrc/), ``triton`` (triton_kernels/optim.py). The fused backends
count steps on the step tensors themselves (``_foreach_add_`` before the kernel, which computes
its per-step scalars from them; ``_foreach_sub_(found_inf)`` after), so GradScaler's found_inf is
never read on the host.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import is_row_dense
from tricks_ext.reference.optim import centralize, optimizer_step

OP = "optim_step"

# Work-list granularity of the device kernels: a tensor without GC is cut into chunks of CHUNK
# elements (8 sweeps of a 1024-wide Triton block, 32 of a 256-thread CUDA block: enough work per
# program to hide the table loads, ~3K programs for a 25M-param model, 20+ per H100 SM). A GC
# row of up to ROW_MAX elements is one program: its mean is reduced in a first sweep and the
# update sweep re-reads the row from L1/L2 (64 KiB of fp32 at most), so GC costs no DRAM pass.
# Longer rows would serialize on one SM; they take the two-level path instead: their grads are
# centralized by a separate torch reduction before the launch (one extra read and write of
# those grads only), then they are chunked like tensors without GC. No ResNet/ViT/GPT-2 weight
# has rows that long (the widest is 4608 = 512x3x3).
CHUNK = 8192
ROW_MAX = 16384


def _step_torch(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
                grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict) -> None:
    """The reference, one tensor at a time. Reads found_inf on the host (a sync on CUDA)."""
    if found_inf is not None and bool(found_inf.item()):
        return
    b1, b2 = group["betas"]
    for p, g, st in zip(params, grads, states):
        if grad_scale is not None:
            g = g / grad_scale.to(g.device)
        st["step"] += 1
        optimizer_step(p, g, st["exp_avg"], st["exp_avg_sq"], st.get("slow_buffer"), int(st["step"].item()),
                       lr=group["lr"], beta1=b1, beta2=b2, eps=group["eps"], weight_decay=group["weight_decay"],
                       decoupled_weight_decay=group["decoupled_weight_decay"], rectify=group["rectify"],
                       gc=group["gc"], gc_conv_only=group["gc_conv_only"], lookahead_k=group["lookahead_k"],
                       lookahead_alpha=group["lookahead_alpha"], maximize=group["maximize"])


class Plan:
    """Work list and pointer table of one (device, dtype) bucket, reused while its tensors
    (params, states, step counters) stay the same; the grad row is refreshed when grads move.
    ``ptrs`` rows: param, grad, exp_avg, exp_avg_sq, slow (0 without Lookahead), step."""

    def __init__(self, params: List[Tensor], states: List[Dict[str, Any]], gc_min_dim: int):
        work: List[int] = []
        self.long_rows: List[int] = []  # tensors whose GC rows take the two-level path
        for i, p in enumerate(params):
            if _centralized(p, gc_min_dim) and p.numel() // p.shape[0] > ROW_MAX:
                self.long_rows.append(i)
            if _centralized(p, gc_min_dim) and i not in self.long_rows:
                row = p.numel() // p.shape[0]
                for r in range(p.shape[0]):
                    work += [i, r * row, row, 1]
            else:
                for b in range(0, p.numel(), CHUNK):
                    work += [i, b, min(CHUNK, p.numel() - b), 0]
        device = params[0].device
        self.n_items = len(work) // 4
        self.work = torch.tensor(work, dtype=torch.int64).view(-1, 4).to(device)
        rows = [[p.data_ptr() for p in params], [0] * len(params),
                [st["exp_avg"].data_ptr() for st in states], [st["exp_avg_sq"].data_ptr() for st in states],
                [st["slow_buffer"].data_ptr() if "slow_buffer" in st else 0 for st in states],
                [st["step"].data_ptr() for st in states]]
        self.ptrs = torch.tensor(rows, dtype=torch.int64).to(device)
        self.grad_key: tuple = ()

    @staticmethod
    def key(params: List[Tensor], states: List[Dict[str, Any]], gc_min_dim: int) -> tuple:
        return (gc_min_dim,) + tuple(
            (p.data_ptr(), tuple(p.shape), st["exp_avg"].data_ptr(), st["exp_avg_sq"].data_ptr(),
             st["slow_buffer"].data_ptr() if "slow_buffer" in st else 0, st["step"].data_ptr())
            for p, st in zip(params, states))

    def set_grads(self, grads: List[Tensor]) -> None:
        key = tuple(g.data_ptr() for g in grads)
        if key != self.grad_key:
            self.ptrs[1].copy_(torch.tensor(key, dtype=torch.int64))
            self.grad_key = key


def _gc_min_dim(group: Dict[str, Any]) -> int:
    return (4 if group["gc_conv_only"] else 2) if group["gc"] else 0


def _centralized(p: Tensor, gc_min_dim: int) -> bool:
    return bool(gc_min_dim) and p.dim() > 1 and p.dim() >= gc_min_dim and p.shape[0] > 0


def check_params(backend: str, params: List[Tensor]) -> None:
    """Raise unless ``backend`` can step these params (the optimizer asks before it changes
    anything): the fused kernels walk each param as rows of one dense block."""
    if backend == "torch":
        return
    for p in params:
        if not is_row_dense(p):
            raise RuntimeError(f"optimizer: the fused kernels need contiguous or channels_last params, got shape "
                               f"{tuple(p.shape)} with strides {p.stride()}; use backend='torch' for it")


def _fused(launch: Callable, needs_plan: bool) -> Callable:
    """A fused backend: step counters on the params' device, grads restrided like their params,
    counts bumped before the kernel and undone on the device when found_inf is set."""
    def step(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
             grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict) -> None:
        device = params[0].device
        for p, st in zip(params, states):
            if st["step"].device != device:
                st["step"] = st["step"].to(device)
        grads = [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for p, g in zip(params, grads)]
        plan = None
        if needs_plan:
            key = Plan.key(params, states, _gc_min_dim(group))
            if cache.get("key") != key:
                cache["key"], cache["plan"] = key, Plan(params, states, _gc_min_dim(group))
            plan = cache["plan"]
            for i in plan.long_rows:  # two-level GC path (see ROW_MAX); linear, so before scaling is fine
                grads[i] = centralize(grads[i].to(torch.float32)).to(grads[i].dtype)
            plan.set_grads(grads)
        if found_inf is not None:
            found_inf = found_inf.to(device=device, dtype=torch.float32)
        if grad_scale is not None:
            grad_scale = grad_scale.to(device=device, dtype=torch.float32)
        steps = [st["step"] for st in states]
        torch._foreach_add_(steps, 1)
        launch(group, params, grads, states, steps, plan, found_inf, grad_scale)
        if found_inf is not None:
            torch._foreach_sub_(steps, [found_inf] * len(steps))
    return step


def _launch_cpp(group, params, grads, states, steps, plan, found_inf, grad_scale) -> None:
    b1, b2 = group["betas"]
    k = group["lookahead_k"]
    torch.ops.tricks_ext.optim_step_(
        params, grads, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
        [st["slow_buffer"] for st in states] if k is not None else [], steps,
        None if plan is None else plan.work, None if plan is None else plan.ptrs, found_inf, grad_scale,
        group["lr"], b1, b2, group["eps"], group["weight_decay"], group["decoupled_weight_decay"],
        group["lookahead_alpha"], k or 0, group["rectify"], _gc_min_dim(group), group["maximize"])


def _launch_triton(group, params, grads, states, steps, plan, found_inf, grad_scale) -> None:
    from tricks_ext.triton_kernels.optim import optim_step
    slow = states[0].get("slow_buffer") if group["lookahead_k"] is not None else None
    optim_step(plan, found_inf, grad_scale, group, params[0].dtype, states[0]["exp_avg"].dtype,
               None if slow is None else slow.dtype)


_backend.register(OP, "torch", _step_torch)
_backend.register(OP, "triton", _fused(_launch_triton, needs_plan=True))
if _ext.HAS_C:
    @torch.library.register_fake("tricks_ext::optim_step_")
    def _(params, grads, exp_avgs, exp_avg_sqs, slows, steps, work, ptrs, found_inf, grad_scale, lr, beta1, beta2,
          eps, weight_decay, decoupled, alpha, lookahead_k, rectify, gc_min_dim, maximize) -> None:
        return None

    _backend.register(OP, "cpu", _fused(_launch_cpp, needs_plan=False))
    _backend.register(OP, "cuda", _fused(_launch_cpp, needs_plan=True))
