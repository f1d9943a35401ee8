"""sasa_step: per-backend implementations of SASA+'s fused step (statopt's QHM update and the
two sums of SASA+'s statistic) over a list of tensors that share a device and dtype.

Signature of every implementation:
    impl(params, grads, bufs, lr, momentum, qhm_nu, weight_decay, cache) -> float64 [2]
in place on ``params`` and ``bufs`` (empty: d = g), ``lr`` a float64 value on the params'
device, returning (sum <x_new, d>, sum ||d||^2) on that device (tricks_ext/reference/sasa.py).
``cache`` is a dict the caller keeps per (group, device, dtype) for the launch plan.

Backends: ``torch`` (the reference), ``cpu`` and ``cuda`` (``tricks_ext::sasa_step_``,
csrc/sasa/), ``triton`` (triton_kernels/sasa.py, the same signature as the C++ op), ``simt``
(the CUDA kernel emulated on CPU). The fused backends write one row of sums per chunk of the
work list and add the rows here in their fixed order: the result does not depend on threads
or blocks.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import Tensor

from tricks_ext import _backend, _ext
from tricks_ext.ops._simt import simt_call
from tricks_ext.reference.sasa import sasa_step as _reference

OP = "sasa_step"

# Elements per work item: on CPU 32K (128 KiB of fp32 params), grouped by the kernel into tasks
# of 64K as optim_step_'s; on the GPUs 8192, 32 sweeps of a 256-thread CUDA block or 8 of a
# 1024-wide Triton program (~3K items for the 25.6M params of ResNet-50, 20+ per H100 SM).
CHUNK = {"cpu": 1 << 15, "cuda": 8192, "triton": 8192, "simt": 8192}
# The Triton kernel computes in fp32 (its float arguments are fp32 when compiled).
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class Plan:
    """The work list (tensor, start, length) of a group's tensors and, for the device kernels,
    the int64 (3, n) table of the params', grads' and buffers' addresses (buffers 0 without);
    reused while the tensors stay the same, the grad row refreshed when grads move."""

    def __init__(self, params: List[Tensor], bufs: List[Tensor], chunk: int, with_ptrs: bool) -> None:
        work = [[i, b, min(chunk, p.numel() - b)] for i, p in enumerate(params) for b in range(0, p.numel(), chunk)]
        device = params[0].device
        self.work = torch.tensor(work, dtype=torch.int64).reshape(-1, 3).to(device)
        self.ptrs: Optional[Tensor] = None
        if with_ptrs:
            rows = [[p.data_ptr() for p in params], [0] * len(params),
                    [b.data_ptr() for b in bufs] if bufs else [0] * len(params)]
            self.ptrs = torch.tensor(rows, dtype=torch.int64).to(device)
        self.grad_key: tuple = ()

    @staticmethod
    def key(params: List[Tensor], bufs: List[Tensor], chunk: int) -> tuple:
        return (chunk, bool(bufs)) + tuple((p.data_ptr(), p.numel()) for p in params) + \
            tuple(b.data_ptr() for b in bufs)

    def set_grads(self, grads: List[Tensor]) -> None:
        key = tuple(g.data_ptr() for g in grads)
        if self.ptrs is not None and key != self.grad_key:
            self.ptrs[1].copy_(torch.tensor(key, dtype=torch.int64))
            self.grad_key = key


def _torch(params: List[Tensor], grads: List[Tensor], bufs: List[Tensor], lr: Tensor, momentum: float,
           qhm_nu: float, weight_decay: float, cache: Dict) -> Tensor:
    return _reference(params, grads, bufs, lr, momentum, qhm_nu, weight_decay)


def _fused(launch: Callable, kind: str) -> Callable:
    """A fused backend: grads restrided like their params, the plan cached, the chunks' sums
    added in order. ``launch`` has the signature of ``tricks_ext::sasa_step_``."""
    def step(params: List[Tensor], grads: List[Tensor], bufs: List[Tensor], lr: Tensor, momentum: float,
             qhm_nu: float, weight_decay: float, cache: Dict) -> Tensor:
        device = params[0].device
        chunk = CHUNK[device.type if kind == "cxx" else kind]
        grads = [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for p, g in zip(params, grads)]
        key = Plan.key(params, bufs, chunk)
        if cache.get("key") != key:
            cache["key"], cache["plan"] = key, Plan(params, bufs, chunk, kind != "cxx" or device.type == "cuda")
        plan = cache["plan"]
        plan.set_grads(grads)
        sums = launch(params, grads, bufs, lr, plan.work, plan.ptrs, float(momentum), float(qhm_nu),
                      float(weight_decay))
        return sums.sum(0)
    return step


def _launch_triton(*args: Any) -> Tensor:
    from tricks_ext.triton_kernels.sasa import sasa_step_
    return sasa_step_(*args)


def _launch_simt(*args: Any) -> Tensor:
    return simt_call("sasa_step_", args, mutated=(0, 2))


if _ext.HAS_C:
    @torch.library.register_fake("tricks_ext::sasa_step_")
    def _(params, grads, bufs, lr, work, ptrs, momentum, qhm_nu, weight_decay) -> Tensor:
        torch._check(work.dim() == 2 and work.shape[1] == 3 and work.dtype == torch.int64,
                     lambda: "sasa_step_: work must be int64 (n_items, 3)")
        return work.new_empty((work.shape[0], 2), dtype=torch.float64)


_backend.register(OP, torch=_torch, triton=_fused(_launch_triton, "triton"),
                  cxx=_fused(torch.ops.tricks_ext.sasa_step_, "cxx") if _ext.HAS_C else None,
                  simt=_fused(_launch_simt, "simt") if _ext.HAS_SIMT_KERNELS else None,
                  dtypes={"triton": TRITON_DTYPES})
