"""Fused optimizer step in Triton: GC + Adam/AdamW/RAdam + Lookahead, one launch per
(device, dtype) bucket.

Every tensor's pointers (param, grad, exp_avg, exp_avg_sq, slow, step) sit in int64 tables;
a work list row (tensor, start, length, gc) is one program: a GC row (its mean reduced on chip
in a first sweep, then the update sweep re-reads the row from L2, not DRAM) or a chunk of a
tensor without GC. Per-step scalars (bias corrections, the RAdam rectification, the Lookahead
sync) are computed in the kernel from the tensor's device step counter, so neither the step
nor GradScaler's found_inf is read on the host. Math: csrc/optim/math.h.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, cast_to, on_input_device

BLOCK = 1024


@triton.jit
def _optim_step_kernel(WORK, P_PTRS, G_PTRS, M_PTRS, V_PTRS, S_PTRS, STEP_PTRS, FOUND_INF, GRAD_SCALE,
                       lr, beta1, beta2, one_minus_beta1, one_minus_beta2, ln_beta1, ln_beta2, eps, p_mul, l2, alpha,
                       lookahead_k, rho_inf,
                       P_DTYPE: tl.constexpr, M_DTYPE: tl.constexpr, S_DTYPE: tl.constexpr,
                       HAS_SLOW: tl.constexpr, RECTIFY: tl.constexpr, MAXIMIZE: tl.constexpr,
                       HAS_FOUND_INF: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    w = tl.program_id(0).to(tl.int64)
    tid = tl.load(WORK + 4 * w)
    start = tl.load(WORK + 4 * w + 1)
    length = tl.load(WORK + 4 * w + 2)
    gc = tl.load(WORK + 4 * w + 3)
    if HAS_FOUND_INF:
        # an inf/NaN step changes nothing: every load/store below is masked off
        length = tl.where(tl.load(FOUND_INF) != 0, 0, length)
    p_ptr = tl.load(P_PTRS + tid).to(tl.pointer_type(P_DTYPE))
    g_ptr = tl.load(G_PTRS + tid).to(tl.pointer_type(P_DTYPE))
    m_ptr = tl.load(M_PTRS + tid).to(tl.pointer_type(M_DTYPE))
    v_ptr = tl.load(V_PTRS + tid).to(tl.pointer_type(M_DTYPE))
    step = tl.load(tl.load(STEP_PTRS + tid).to(tl.pointer_type(tl.float32))).to(tl.float64)

    # per-step scalars in fp64 (the CPU path computes the same on the host); scalar kernel
    # arguments are promoted by multiplying with an fp64 one (they are Python floats when
    # interpreted, fp32 values when compiled)
    one = tl.full([], 1.0, tl.float64)
    bc1 = 1.0 - tl.exp(step * (ln_beta1 * one))
    b2t = tl.exp(step * (ln_beta2 * one))
    bc2 = 1.0 - b2t
    step_size = (lr * one) / bc1
    inv_denom = 1.0 / tl.sqrt(bc2)
    if RECTIFY:
        rho_t = (rho_inf * one) - 2.0 * step * b2t / bc2
        has_denom = rho_t > 5.0
        rho = (rho_inf * one)
        r_t = tl.sqrt(tl.maximum((rho_t - 4.0) * (rho_t - 2.0) * rho / ((rho - 4.0) * (rho - 2.0) * rho_t), 0.0))
        step_size = tl.where(has_denom, (lr * one) * r_t * tl.sqrt(bc2) / bc1, step_size)
        inv_denom = tl.where(has_denom, 1.0, inv_denom)
    step_size32 = step_size.to(tl.float32)
    inv_denom32 = inv_denom.to(tl.float32)
    sync = False
    if HAS_SLOW:
        sync = (step.to(tl.int64) % lookahead_k) == 0

    gmul = 1.0
    if HAS_GRAD_SCALE:
        gmul = 1.0 / tl.load(GRAD_SCALE).to(tl.float32)
    if MAXIMIZE:
        gmul = -gmul
    offs = tl.arange(0, BLOCK)

    acc = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, length * gc, BLOCK):
        mask = k0 + offs < length
        acc += tl.load(g_ptr + start + k0 + offs, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(acc, axis=0) * gmul / tl.maximum(length, 1).to(tl.float32)
    mean = tl.where(gc != 0, mean, 0.0)

    for k0 in range(0, length, BLOCK):
        idx = start + k0 + offs
        mask = k0 + offs < length
        p = tl.load(p_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32) * gmul - mean
        m = tl.load(m_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = g + l2 * p
        p = p * p_mul
        m = beta1 * m + one_minus_beta1 * g
        v = beta2 * v + one_minus_beta2 * g * g
        if RECTIFY:
            p = p - step_size32 * tl.where(has_denom, m / (tl.sqrt(v) * inv_denom32 + eps), m)
        else:
            p = p - step_size32 * m / (tl.sqrt(v) * inv_denom32 + eps)
        if HAS_SLOW:
            s_ptr = tl.load(S_PTRS + tid).to(tl.pointer_type(S_DTYPE))
            smask = mask & ((tl.zeros([BLOCK], tl.int32) + sync.to(tl.int32)) != 0)
            slow = tl.load(s_ptr + idx, mask=smask, other=0.0).to(tl.float32)
            new_slow = slow + alpha * (p - slow)
            tl.store(s_ptr + idx, cast_to(new_slow, S_DTYPE), mask=smask)
            p = tl.where(sync, new_slow, p)
        tl.store(m_ptr + idx, m.to(M_DTYPE), mask=mask)
        tl.store(v_ptr + idx, v.to(M_DTYPE), mask=mask)
        tl.store(p_ptr + idx, cast_to(p, P_DTYPE), mask=mask)


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float64: tl.float64}


@on_input_device
def optim_step_(params: List[torch.Tensor], grads: List[torch.Tensor], exp_avgs: List[torch.Tensor],
                exp_avg_sqs: List[torch.Tensor], slows: List[torch.Tensor], steps: List[torch.Tensor],
                work: torch.Tensor, ptrs: torch.Tensor, found_inf: Optional[torch.Tensor],
                grad_scale: Optional[torch.Tensor], lr: float, beta1: float, beta2: float, eps: float,
                weight_decay: float, decoupled: bool, alpha: float, lookahead_k: int, rectify: bool,
                maximize: bool) -> None:
    """``tricks_ext::optim_step_`` in Triton, same arguments: one program per row of ``work``,
    the tensors reached through ``ptrs`` (tricks_ext.ops.optim.Plan); the tensor lists give the
    dtypes. The step counters already count this step."""
    if not params or work.shape[0] == 0:
        return
    p_mul, l2 = (1.0 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
    has_slow = bool(slows)
    _optim_step_kernel[(work.shape[0],)](
        work, ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5],
        found_inf if found_inf is not None else work, grad_scale if grad_scale is not None else work,
        # 1 - beta in float64 here, as torch does (csrc/optim/math.h, Moments)
        float(lr), float(beta1), float(beta2), 1.0 - beta1, 1.0 - beta2,
        math.log(beta1) if beta1 > 0 else -math.inf, math.log(beta2) if beta2 > 0 else -math.inf,
        float(eps), float(p_mul), float(l2), float(alpha), int(lookahead_k if has_slow else 1), 2.0 / (1.0 - beta2) - 1.0,
        P_DTYPE=_TL[params[0].dtype], M_DTYPE=_TL[exp_avgs[0].dtype],
        S_DTYPE=_TL[slows[0].dtype if has_slow else params[0].dtype], HAS_SLOW=has_slow,
        RECTIFY=bool(rectify), MAXIMIZE=bool(maximize), HAS_FOUND_INF=found_inf is not None,
        HAS_GRAD_SCALE=grad_scale is not None, BLOCK=BLOCK, **FUSED)
