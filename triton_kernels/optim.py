"""Fused optimizer step in Triton: clipping + GC + Adam/AdamW/RAdam + Lookahead + EMA, one
launch per (device, dtype) bucket.

Every tensor's pointers (param, grad, exp_avg, exp_avg_sq, slow, ema, step) sit in int64
tables; a work list row (tensor, start, length, flags) is one program: a row (its GC mean and
AGC norms reduced on chip in a first sweep, then the update sweep re-reads the row from L2, not
DRAM) or a chunk of a tensor. Per-step scalars (bias corrections, the RAdam rectification, the
Lookahead sync, the EMA decay) are computed in the kernel from the tensor's device step
counter, so neither the step nor GradScaler's found_inf is read on the host. Math:
csrc/optim/math.h.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, cast_to, on_input_device

BLOCK = 1024
NUM_WARPS = 8
MAXNREG = 128


@triton.jit
def _clip(x, c, HAS_CLIP: tl.constexpr):
    """clip_grad_value_; NaN passes through."""
    if HAS_CLIP:
        x = tl.where(x > c, c, tl.where(x < -c, -c, x))
    return x


@triton.jit
def _optim_step_kernel(WORK, P_PTRS, G_PTRS, M_PTRS, V_PTRS, S_PTRS, E_PTRS, STEP_PTRS, FOUND_INF, GRAD_SCALE,
                       LR, lr, wd_decoupled, beta1, beta2, one_minus_beta1, one_minus_beta2, ln_beta1, ln_beta2,
                       eps, p_mul, l2,
                       lookahead_alpha, lookahead_k, rho_inf, clip_value, agc_clip_factor, agc_eps,
                       ema_decay, ema_min_decay, ema_update_after_step, ema_warmup_gamma, ema_warmup_power,
                       P_DTYPE: tl.constexpr, M_DTYPE: tl.constexpr, S_DTYPE: tl.constexpr,
                       HAS_SLOW: tl.constexpr, RECTIFY: tl.constexpr, MAXIMIZE: tl.constexpr,
                       HAS_FOUND_INF: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr,
                       HAS_LR_TENSOR: tl.constexpr, HAS_CLIP: tl.constexpr,
                       HAS_AGC: tl.constexpr, HAS_EMA: tl.constexpr, EMA_WARMUP: tl.constexpr, BLOCK: tl.constexpr):
    w = tl.program_id(0).to(tl.int64)
    tid = tl.load(WORK + 4 * w)
    start = tl.load(WORK + 4 * w + 1)
    length = tl.load(WORK + 4 * w + 2)
    flags = tl.load(WORK + 4 * w + 3)
    gc = flags & 1
    if HAS_CLIP:  # a prepared chunk (math.h, kPrepared) is clipped already
        clip_value = tl.where((flags & 4) != 0, 3.4028234663852886e38, clip_value)
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
    lr64 = lr * one
    if HAS_LR_TENSOR:  # the LR on the device (math.h, lr_of); decoupled decay follows it
        lr64 = tl.load(LR)
        p_mul = (1.0 - lr64 * (wd_decoupled * one)).to(tl.float32)
    bc1 = 1.0 - tl.exp(step * (ln_beta1 * one))
    b2t = tl.exp(step * (ln_beta2 * one))
    bc2 = 1.0 - b2t
    step_size = lr64 / bc1
    inv_denom = 1.0 / tl.sqrt(bc2)
    if RECTIFY:
        rho_t = (rho_inf * one) - 2.0 * step * b2t / bc2
        has_denom = rho_t > 5.0
        rho = (rho_inf * one)
        r_t = tl.sqrt(tl.maximum((rho_t - 4.0) * (rho_t - 2.0) * rho / ((rho - 4.0) * (rho - 2.0) * rho_t), 0.0))
        step_size = tl.where(has_denom, lr64 * r_t * tl.sqrt(bc2) / bc1, step_size)
        inv_denom = tl.where(has_denom, 1.0, inv_denom)
    step_size32 = step_size.to(tl.float32)
    inv_denom32 = inv_denom.to(tl.float32)
    sync = False
    if HAS_SLOW:
        sync = (step.to(tl.int64) % lookahead_k) == 0
    ema_w = 0.0
    if HAS_EMA:  # timm ModelEmaV3.get_decay (csrc/optim/math.h, ema_decay_of)
        t = step - (ema_update_after_step * one) - 1.0
        decay = ema_decay * one
        if EMA_WARMUP:
            warm = 1.0 - tl.exp(-(ema_warmup_power * one) * tl.log(1.0 + t / (ema_warmup_gamma * one)))
            decay = tl.maximum(tl.minimum(warm, decay), ema_min_decay * one)
        ema_w = tl.where(t <= 0.0, 1.0, 1.0 - decay).to(tl.float32)

    gmul = 1.0
    if HAS_GRAD_SCALE:
        gmul = 1.0 / tl.load(GRAD_SCALE).to(tl.float32)
    if MAXIMIZE:
        gmul = -gmul
    offs = tl.arange(0, BLOCK)

    f = 1.0  # AGC's factor; it commutes with the clamp (f > 0), so the sweep folds it into both
    if HAS_AGC:
        agc = (flags >> 1) & 1
        gsq = tl.zeros([BLOCK], tl.float32)
        psq = tl.zeros([BLOCK], tl.float32)
        # two blocks per iteration, loaded before either is used (twice the bytes per round trip)
        for k0 in range(0, length * agc, 2 * BLOCK):
            mask0 = k0 + offs < length
            mask1 = k0 + BLOCK + offs < length
            g0 = tl.load(g_ptr + start + k0 + offs, mask=mask0, other=0.0)
            p0 = tl.load(p_ptr + start + k0 + offs, mask=mask0, other=0.0)
            g1 = tl.load(g_ptr + start + k0 + BLOCK + offs, mask=mask1, other=0.0)
            p1 = tl.load(p_ptr + start + k0 + BLOCK + offs, mask=mask1, other=0.0)
            x0 = _clip(g0.to(tl.float32) * gmul, clip_value, HAS_CLIP)
            x1 = _clip(g1.to(tl.float32) * gmul, clip_value, HAS_CLIP)
            y0 = p0.to(tl.float32)
            y1 = p1.to(tl.float32)
            gsq += x0 * x0
            psq += y0 * y0
            gsq += x1 * x1
            psq += y1 * y1
        gn = tl.sqrt(tl.sum(gsq, axis=0))
        max_norm = tl.maximum(tl.sqrt(tl.sum(psq, axis=0)), agc_eps) * agc_clip_factor
        f = tl.where((agc != 0) & (gn >= max_norm), max_norm / tl.maximum(gn, 1e-6), 1.0)

    acc = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, length * gc, 2 * BLOCK):  # as AGC's sweep: two blocks per iteration
        g0 = tl.load(g_ptr + start + k0 + offs, mask=k0 + offs < length, other=0.0)
        g1 = tl.load(g_ptr + start + k0 + BLOCK + offs, mask=k0 + BLOCK + offs < length, other=0.0)
        acc += _clip(g0.to(tl.float32) * gmul, clip_value, HAS_CLIP)
        acc += _clip(g1.to(tl.float32) * gmul, clip_value, HAS_CLIP)
    mean = tl.sum(acc, axis=0) * f / tl.maximum(length, 1).to(tl.float32)
    mean = tl.where(gc != 0, mean, 0.0)
    gmul_f = gmul * f
    clip_f = clip_value * f
    if HAS_SLOW:
        s_ptr = tl.load(S_PTRS + tid).to(tl.pointer_type(S_DTYPE))
        sync_lanes = (tl.zeros([BLOCK], tl.int32) + sync.to(tl.int32)) != 0
    if HAS_EMA:
        e_ptr = tl.load(E_PTRS + tid).to(tl.pointer_type(M_DTYPE))

    for k0 in range(0, length, BLOCK):
        idx = start + k0 + offs
        mask = k0 + offs < length
        # every stream loaded before any is used: their loads are in flight together (the slow and
        # EMA copies loaded after the update waited a second round trip per block; gpu_model.py)
        p = tl.load(p_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = _clip(tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32) * gmul_f, clip_f, HAS_CLIP) - mean
        m = tl.load(m_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        if HAS_SLOW:
            smask = mask & sync_lanes
            slow = tl.load(s_ptr + idx, mask=smask, other=0.0).to(tl.float32)
        if HAS_EMA:
            e = tl.load(e_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        g = g + l2 * p
        p = p * p_mul
        m = beta1 * m + one_minus_beta1 * g
        v = beta2 * v + one_minus_beta2 * g * g
        if RECTIFY:
            p = p - step_size32 * tl.where(has_denom, m / (tl.sqrt(v) * inv_denom32 + eps), m)
        else:
            p = p - step_size32 * m / (tl.sqrt(v) * inv_denom32 + eps)
        if HAS_SLOW:
            new_slow = slow + lookahead_alpha * (p - slow)
            tl.store(s_ptr + idx, cast_to(new_slow, S_DTYPE), mask=smask)
            p = tl.where(sync, new_slow, p)
        tl.store(m_ptr + idx, m.to(M_DTYPE), mask=mask)
        tl.store(v_ptr + idx, v.to(M_DTYPE), mask=mask)
        stored = cast_to(p, P_DTYPE)
        tl.store(p_ptr + idx, stored, mask=mask)
        if HAS_EMA:  # torch.lerp's two forms, from the nearer end (math.h, ema_lerp)
            ps = stored.to(tl.float32)
            e = tl.where(ema_w < 0.5, e + ema_w * (ps - e), ps - (ps - e) * (1.0 - ema_w))
            tl.store(e_ptr + idx, e.to(M_DTYPE), mask=mask)


_TL = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float64: tl.float64}


@on_input_device
def optim_step_(params: List[torch.Tensor], grads: List[torch.Tensor], exp_avgs: List[torch.Tensor],
                exp_avg_sqs: List[torch.Tensor], slows: List[torch.Tensor], emas: List[torch.Tensor],
                steps: List[torch.Tensor], work: torch.Tensor, ptrs: torch.Tensor, found_inf: Optional[torch.Tensor],
                grad_scale: Optional[torch.Tensor], lr_tensor: Optional[torch.Tensor], lr: float, beta1: float,
                beta2: float, eps: float, weight_decay: float, decoupled_weight_decay: bool, lookahead_alpha: float, lookahead_k: int,
                rectify: bool, maximize: bool, clip_value: float, agc_clip_factor: float, agc_eps: float,
                ema_decay: float, ema_min_decay: float, ema_update_after_step: int, ema_warmup_gamma: float,
                ema_warmup_power: float, ema_warmup: bool) -> None:
    """``tricks_ext::optim_step_`` in Triton, same arguments: one program per row of ``work``,
    the tensors reached through ``ptrs`` (tricks_ext.ops.optim.Plan); the tensor lists give the
    dtypes. The step counters already count this step."""
    if not params or work.shape[0] == 0:
        return
    has_lr = lr_tensor is not None
    wd_decoupled = weight_decay if decoupled_weight_decay else 0.0
    p_mul = 1.0 if has_lr else 1.0 - lr * wd_decoupled  # with a tensor LR, the kernel computes it
    l2 = 0.0 if decoupled_weight_decay else weight_decay
    has_slow = bool(slows)
    has_clip = not math.isinf(clip_value)
    _optim_step_kernel[(work.shape[0],)](
        work, ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5], ptrs[6],
        found_inf if found_inf is not None else work, grad_scale if grad_scale is not None else work,
        lr_tensor if has_lr else work, 0.0 if has_lr else float(lr), float(wd_decoupled),
        # 1 - beta in float64 here, as torch does (csrc/optim/math.h, Moments)
        float(beta1), float(beta2), 1.0 - beta1, 1.0 - beta2,
        math.log(beta1) if beta1 > 0 else -math.inf, math.log(beta2) if beta2 > 0 else -math.inf,
        float(eps), float(p_mul), float(l2), float(lookahead_alpha), int(lookahead_k if has_slow else 1),
        2.0 / (1.0 - beta2) - 1.0,
        float(clip_value) if has_clip else 0.0, float(agc_clip_factor), float(agc_eps),
        float(ema_decay), float(ema_min_decay), int(ema_update_after_step), float(ema_warmup_gamma),
        float(ema_warmup_power),
        P_DTYPE=_TL[params[0].dtype], M_DTYPE=_TL[exp_avgs[0].dtype],
        S_DTYPE=_TL[slows[0].dtype if has_slow else params[0].dtype], HAS_SLOW=has_slow,
        RECTIFY=bool(rectify), MAXIMIZE=bool(maximize), HAS_FOUND_INF=found_inf is not None,
        HAS_GRAD_SCALE=grad_scale is not None, HAS_LR_TENSOR=has_lr, HAS_CLIP=has_clip, HAS_AGC=agc_clip_factor > 0,
        HAS_EMA=bool(emas),
        EMA_WARMUP=bool(ema_warmup), BLOCK=BLOCK, num_warps=NUM_WARPS, maxnreg=MAXNREG, **FUSED)
