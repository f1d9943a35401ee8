"""optim_step: per-backend implementations of one optimizer step over a list of tensors that
share a device and dtype. Signature of every implementation:
    impl(group, params, grads, states, grad_scale, found_inf, cache)
``group`` is the param group (hyperparameters), ``states`` the per-param state dicts (step is
counted here), ``grad_scale``/``found_inf`` come from torch.amp.GradScaler (or are None),
``cache`` a dict the optimizer keeps for this (group, device, dtype) bucket (launch plans).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._common import is_row_dense
from tricks_ext.reference.optim import optimizer_step, step_scalars

OP = "optim_step"


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


def _step_cpu(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
              grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict) -> None:
    """tricks_ext::optim_step_ (one fused pass over all tensors). The per-tensor scalars of
    this step are computed here in float64 (step counters are CPU tensors, as in torch)."""
    if found_inf is not None and bool(found_inf.item()):
        return
    inv_scale = 1.0 if grad_scale is None else 1.0 / float(grad_scale.item())
    b1, b2 = group["betas"]
    k = group["lookahead_k"]
    rows = []
    for st in states:
        st["step"] += 1
        t = int(st["step"].item())
        step_size, denom_scale = step_scalars(t, group["lr"], b1, b2, group["rectify"])
        rows.append([step_size, 1.0 if denom_scale is None else 1.0 / denom_scale, group["lr"],
                     float(denom_scale is not None), float(k is not None and t % k == 0)])
    scalars = torch.tensor(rows, dtype=torch.float64)
    slows = [st["slow_buffer"] for st in states] if k is not None else []
    gc_min_dim = (4 if group["gc_conv_only"] else 2) if group["gc"] else 0
    torch.ops.tricks_ext.optim_step_(
        params, grads, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states], slows, scalars,
        b1, b2, group["eps"], group["weight_decay"], group["decoupled_weight_decay"], group["lookahead_alpha"],
        gc_min_dim, group["maximize"], inv_scale)


_backend.register(OP, "torch", _step_torch)
if _ext.HAS_C:
    @torch.library.register_fake("tricks_ext::optim_step_")
    def _(params, grads, exp_avgs, exp_avg_sqs, slows, scalars, beta1, beta2, eps, weight_decay, decoupled,
          alpha, gc_min_dim, maximize, grad_inv_scale) -> None:
        return None

    _backend.register(OP, "cpu", _step_cpu)


# ---- GPU-style backends (triton; cuda): pointer tables + a cached work list -------------------

# Work-list granularity: a tensor without GC is cut into chunks of CHUNK elements (8 sweeps of
# a 1024-wide Triton block: enough work per program to hide the table loads, and ~3K programs
# for a 25M-param model, 20+ per SM on an H100). A GC row is one program whatever its length:
# its mean is reduced in a first sweep and the update sweep re-reads the row from L2.
CHUNK = 8192


class Plan:
    """Pointer tables and work list for one (device, dtype) bucket, reused while the tensors
    (params, states, step counters) stay the same; grad pointers are refreshed per step."""

    def __init__(self, params: List[Tensor], states: List[Dict[str, Any]], gc_min_dim: int, device: torch.device):
        def table(ptrs: List[int]) -> Tensor:
            return torch.tensor(ptrs, dtype=torch.int64).to(device)

        work: List[int] = []
        for i, p in enumerate(params):
            if gc_min_dim and p.dim() > 1 and p.dim() >= gc_min_dim and p.shape[0] > 0:
                row = p.numel() // p.shape[0]
                for r in range(p.shape[0]):
                    work += [i, r * row, row, 1]
            else:
                for b in range(0, p.numel(), CHUNK):
                    work += [i, b, min(CHUNK, p.numel() - b), 0]
        self.n_items = len(work) // 4
        self.work = table(work) if work else torch.zeros(4, dtype=torch.int64, device=device)
        self.p_ptrs = table([p.data_ptr() for p in params])
        self.m_ptrs = table([st["exp_avg"].data_ptr() for st in states])
        self.v_ptrs = table([st["exp_avg_sq"].data_ptr() for st in states])
        slows = [st.get("slow_buffer") for st in states]
        self.s_ptrs = table([s.data_ptr() for s in slows]) if all(s is not None for s in slows) else None
        self.step_ptrs = table([st["step"].data_ptr() for st in states])
        self.grad_key: tuple = ()
        self.grad_ptrs: Optional[Tensor] = None

    @staticmethod
    def key(params: List[Tensor], states: List[Dict[str, Any]], gc_min_dim: int) -> tuple:
        return (gc_min_dim,) + tuple(
            (p.data_ptr(), tuple(p.shape), st["exp_avg"].data_ptr(), st["exp_avg_sq"].data_ptr(),
             st["slow_buffer"].data_ptr() if "slow_buffer" in st else 0, st["step"].data_ptr())
            for p, st in zip(params, states))

    def grads(self, grads: List[Tensor], device: torch.device) -> Tensor:
        key = tuple(g.data_ptr() for g in grads)
        if key != self.grad_key:
            self.grad_ptrs = torch.tensor(key, dtype=torch.int64).to(device)
            self.grad_key = key
        return self.grad_ptrs


def _prepare_device_step(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor],
                         states: List[Dict[str, Any]], cache: Dict):
    """Common part of the device backends: step counters on the device (the kernels read them,
    so no host sync), grads restrided like their params, the cached plan."""
    device = params[0].device
    for p, st in zip(params, states):
        if not is_row_dense(p):
            raise RuntimeError(f"optimizer: the fused kernels need contiguous or channels_last params, got "
                               f"shape {tuple(p.shape)} strides {p.stride()}; use backend='torch' for this param")
        if st["step"].device != device:
            st["step"] = st["step"].to(device)
    grads = [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for p, g in zip(params, grads)]
    gc_min_dim = (4 if group["gc_conv_only"] else 2) if group["gc"] else 0
    key = Plan.key(params, states, gc_min_dim)
    if cache.get("key") != key:
        cache["key"], cache["plan"] = key, Plan(params, states, gc_min_dim, device)
    return grads, cache["plan"]


_TL_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64"}


def _step_triton(group: Dict[str, Any], params: List[Tensor], grads: List[Tensor], states: List[Dict[str, Any]],
                 grad_scale: Optional[Tensor], found_inf: Optional[Tensor], cache: Dict) -> None:
    import triton.language as tl

    from tricks_ext.triton_kernels.optim import optim_step

    grads, plan = _prepare_device_step(group, params, grads, states, cache)
    steps = [st["step"] for st in states]
    torch._foreach_add_(steps, 1)
    b1, b2 = group["betas"]
    wd, lr = group["weight_decay"], group["lr"]
    p_mul, l2 = (1.0 - lr * wd, 0.0) if group["decoupled_weight_decay"] else (1.0, wd)
    slow = states[0].get("slow_buffer")
    optim_step(plan, plan.grads(grads, params[0].device), found_inf, grad_scale, lr=lr, beta1=b1, beta2=b2,
               eps=group["eps"], p_mul=p_mul, l2=l2, alpha=group["lookahead_alpha"],
               lookahead_k=group["lookahead_k"], rectify=group["rectify"], maximize=group["maximize"],
               p_dtype=getattr(tl, _TL_DTYPES[params[0].dtype]),
               m_dtype=getattr(tl, _TL_DTYPES[states[0]["exp_avg"].dtype]),
               s_dtype=getattr(tl, _TL_DTYPES[slow.dtype if slow is not None else params[0].dtype]))
    if found_inf is not None:  # undo the count on an inf step, on the device
        torch._foreach_sub_(steps, [found_inf.to(torch.float32)] * len(steps))


_backend.register(OP, "triton", _step_triton)
