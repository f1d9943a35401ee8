"""SASA+'s fused step in Triton: statopt's QHM update and the two sums of SASA+'s statistic, one
launch per param group.

Every tensor's pointers (param, grad, momentum buffer) sit in an int64 table; a work-list row
(tensor, start, length) is one program, which sweeps its chunk once and writes the chunk's
(<x_new, d>, ||d||^2) in float64. The LR is read on the device. Math: csrc/sasa/math.h; spec:
tricks_ext/reference/sasa.py.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, cast_to, on_input_device

BLOCK = 1024
# csrc/sasa/math.h, Kind: d = g (no buffers), d = h (qhm_nu == 1), d = (1 - qhm_nu) g + qhm_nu h
GRAD, MOMENTUM, QHM = 0, 1, 2


@triton.jit
def _sasa_step_kernel(WORK, P_PTRS, G_PTRS, H_PTRS, LR, SUMS, momentum, one_minus_momentum, nu, one_minus_nu,
                      weight_decay, P_DTYPE: tl.constexpr, KIND: tl.constexpr, BLOCK: tl.constexpr):
    w = tl.program_id(0).to(tl.int64)
    tid = tl.load(WORK + 3 * w)
    start = tl.load(WORK + 3 * w + 1)
    length = tl.load(WORK + 3 * w + 2)
    p_ptr = tl.load(P_PTRS + tid).to(tl.pointer_type(P_DTYPE))
    g_ptr = tl.load(G_PTRS + tid).to(tl.pointer_type(P_DTYPE))
    lr = tl.load(LR).to(tl.float32)
    offs = tl.arange(0, BLOCK)
    xd = tl.zeros([BLOCK], tl.float32)
    dd = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, length, BLOCK):
        idx = start + k0 + offs
        mask = k0 + offs < length
        # the roundings of csrc/sasa/math.h (statopt's torch ops): a fused multiply-add per add_
        x = tl.load(p_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        d = tl.fma(weight_decay + tl.zeros_like(x), x, tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32))
        if KIND != 0:
            h_ptr = tl.load(H_PTRS + tid).to(tl.pointer_type(P_DTYPE))
            h = tl.fma(one_minus_momentum + tl.zeros_like(x), d,
                       momentum * tl.load(h_ptr + idx, mask=mask, other=0.0).to(tl.float32))
            tl.store(h_ptr + idx, cast_to(h, P_DTYPE), mask=mask)
            if KIND == 1:
                d = h
            else:
                d = tl.fma(nu + tl.zeros_like(x), h, one_minus_nu * d)
        stored = cast_to(tl.fma(-lr + tl.zeros_like(x), d, x), P_DTYPE)
        tl.store(p_ptr + idx, stored, mask=mask)
        xd += stored.to(tl.float32) * d
        dd += d * d
    tl.store(SUMS + 2 * w, tl.sum(xd, axis=0).to(tl.float64))
    tl.store(SUMS + 2 * w + 1, tl.sum(dd, axis=0).to(tl.float64))


# fp32 math: compiled, Triton passes float arguments as fp32, so fp64 params (gradcheck-grade
# work) run on the other backends, as for optim_step_.
_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


@on_input_device
def sasa_step_(params: List[torch.Tensor], grads: List[torch.Tensor], bufs: List[torch.Tensor], lr: torch.Tensor,
               work: torch.Tensor, ptrs: Optional[torch.Tensor], momentum: float, qhm_nu: float,
               weight_decay: float) -> torch.Tensor:
    """``tricks_ext::sasa_step_`` in Triton, same arguments and result: one program per row of
    ``work``, the tensors reached through ``ptrs`` (tricks_ext.ops.sasa.Plan); the lists give the
    dtype and the direction's form."""
    sums = torch.empty((work.shape[0], 2), dtype=torch.float64, device=lr.device)
    if work.shape[0] == 0:
        return sums
    kind = GRAD if not bufs else (MOMENTUM if qhm_nu == 1.0 else QHM)
    _sasa_step_kernel[(work.shape[0],)](
        work, ptrs[0], ptrs[1], ptrs[2], lr, sums, float(momentum), 1.0 - momentum, float(qhm_nu), 1.0 - qhm_nu,
        float(weight_decay), P_DTYPE=_TL[params[0].dtype], KIND=kind, BLOCK=BLOCK,
        **FUSED)
    return sums
