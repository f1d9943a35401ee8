"""EvoNorm-S0 in Triton (math: csrc/evonorm/math.h): one program per (sample,
group) of x viewed as (N, C, P) with strides (NCHW contiguous or channels_last). Forward:
shifted sum, centred sum of squares, output; backward: per-channel sums, then dx."""
from __future__ import annotations

from typing import Tuple

import torch
import triton
import triton.language as tl

from tricks_ext.triton_kernels._common import FUSED, acc_dtype, cast_to, on_input_device
from tricks_ext._dtypes import stats_dtype

BLOCK = 1024


@triton.jit
def _sigmoid(z):
    if z.dtype == tl.float64:
        # no fp64 division: its slow path is a subroutine call whose saved registers spill
        # (compile-check: 4 B in the fp64 backward on sm_90); exp(-log(1 + e^-z)) is within a
        # few ulp of 1 / (1 + e^-z) and saturates alike (e^-z = inf gives 0)
        return tl.exp(-tl.log(1.0 + tl.exp(-z)))
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _split_index(e, P):
    """(channel within the group, spatial position) of in-group index e, in 32 bits: a group
    holds fewer than 2^31 elements (the launchers check), and a 64-bit division is a subroutine
    call whose saved registers spill (compile-check: 8 B in the fp16/bf16 backward at i64 sizes)."""
    e32 = e.to(tl.int32)
    p32 = P.to(tl.int32)
    q = e32 // p32
    return q, e32 - q * p32


@triton.jit
def _place(e, P, n, c0, s_n, s_c, s_p):
    """(channel, element offset) of in-group index e of sample n, the group starting at c0."""
    ch, pos = _split_index(e, P)
    c = c0 + ch
    return c, n * s_n + c * s_c + pos * s_p


@triton.jit
def _group(pid, groups, C, P):
    """(n, channels per group, elements per group, first channel) of program pid, divided in 32
    bits (C and the grid are < 2^31; a 64-bit division is a subroutine call, see _split_index)."""
    g = tl.cast(groups, tl.int32)
    cg = tl.cast(C, tl.int32) // g
    return (pid // g).to(tl.int64), cg, cg * P, (pid % g) * cg


@triton.jit
def _moments(X, n, c0, P, s_n, s_c, s_p, e0, e1, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Shift (mean - pivot) and centred sum of squares of group elements [e0, e1) (e0 < e1): two
    passes. The pivot is the group's first element for every chunk, so the chunks' shifts merge
    as they are; x - mean is (x - pivot) - shift (csrc/evonorm/math.h says why)."""
    base = X + n * s_n
    pivot = tl.load(base + c0 * s_c).to(ACC)
    acc = tl.zeros([BLOCK], ACC)
    for e_off in range(0, e1 - e0, BLOCK):
        e = e0 + e_off + tl.arange(0, BLOCK)
        m = e < e1
        ch, pos = _split_index(e, P)
        xv = tl.load(base + (c0 + ch) * s_c + pos * s_p, mask=m, other=0.0).to(ACC)
        acc += tl.where(m, xv - pivot, 0.0)
    shift = tl.sum(acc, axis=0) / (e1 - e0)
    acc = tl.zeros([BLOCK], ACC)
    for e_off in range(0, e1 - e0, BLOCK):
        e = e0 + e_off + tl.arange(0, BLOCK)
        m = e < e1
        ch, pos = _split_index(e, P)
        xv = tl.load(base + (c0 + ch) * s_c + pos * s_p, mask=m, other=0.0).to(ACC)
        d = tl.where(m, (xv - pivot) - shift, 0.0)
        acc += d * d
    return shift, tl.sum(acc, axis=0)


@triton.jit
def _write(X, Y, V, WEIGHT, BIAS, n, c0, P, s_n, s_c, s_p, e0, e1, r, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Outputs of group elements [e0, e1) given the group's rstd r."""
    for e_off in range(0, e1 - e0, BLOCK):
        e = e0 + e_off + tl.arange(0, BLOCK)
        m = e < e1
        c, off = _place(e, P, n, c0, s_n, s_c, s_p)
        xv = tl.load(X + off, mask=m, other=0.0).to(ACC)
        vc = tl.load(V + c, mask=m, other=0.0).to(ACC)
        gc = tl.load(WEIGHT + c, mask=m, other=0.0).to(ACC)
        bc = tl.load(BIAS + c, mask=m, other=0.0).to(ACC)
        y = gc * xv * _sigmoid(vc * xv) * r + bc
        tl.store(Y + off, cast_to(y, Y.dtype.element_ty), mask=m)


@triton.jit
def _fwd_kernel(X, Y, V, WEIGHT, BIAS, MEAN, RSTD, groups, C, P, s_n, s_c, s_p, eps, ACC: tl.constexpr,
                BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n, cg, M, c0 = _group(pid, groups, C, P)
    shift, m2 = _moments(X, n, c0, P, s_n, s_c, s_p, 0, M, ACC, BLOCK)
    r = 1.0 / tl.sqrt(m2 / M + eps)
    tl.store(MEAN + pid, shift)
    tl.store(RSTD + pid, r)
    _write(X, Y, V, WEIGHT, BIAS, n, c0, P, s_n, s_c, s_p, 0, M, r, ACC, BLOCK)


@triton.jit
def _split_stats_kernel(X, PART, groups, C, P, s_n, s_c, s_p, split, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Split forward, pass 1: chunk program_id(1) of the group: count, shift, centred sum of
    squares (csrc/evonorm/cuda.cu: split_stats_kernel); an empty chunk stores zeros."""
    pid = tl.program_id(0)
    k = tl.program_id(1)
    n, cg, M, c0 = _group(pid, groups, C, P)
    chunk = (M + split - 1) // split
    e0 = tl.minimum(k * chunk, M)
    e1 = tl.minimum(M, e0 + chunk)
    out = PART + 3 * (pid * split + k)
    if e0 < e1:
        shift, m2 = _moments(X, n, c0, P, s_n, s_c, s_p, e0, e1, ACC, BLOCK)
        tl.store(out, (e1 - e0).to(ACC))
        tl.store(out + 1, shift)
        tl.store(out + 2, m2)
    else:
        tl.store(out, 0.0)
        tl.store(out + 1, 0.0)
        tl.store(out + 2, 0.0)


@triton.jit
def _split_out_kernel(X, Y, V, WEIGHT, BIAS, MEAN, RSTD, PART, groups, C, P, s_n, s_c, s_p, eps, split,
                      ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Split forward, pass 2: merge the group's chunks in a fixed order (Chan et al.), write this
    chunk's outputs; chunk 0 stores the shift and rstd."""
    pid = tl.program_id(0)
    k = tl.program_id(1)
    n, cg, M, c0 = _group(pid, groups, C, P)
    part = PART + 3 * pid * split
    cnt = tl.load(part).to(ACC)
    shift = tl.load(part + 1).to(ACC)
    m2 = tl.load(part + 2).to(ACC)
    for j in range(1, split):
        n2 = tl.load(part + 3 * j).to(ACC)
        shift2 = tl.load(part + 3 * j + 1).to(ACC)
        m2b = tl.load(part + 3 * j + 2).to(ACC)
        total = cnt + n2
        w = tl.where(total > 0, n2 / tl.maximum(total, 1.0), 0.0)
        delta = shift2 - shift
        shift = shift + delta * w
        m2 = m2 + m2b + delta * delta * cnt * w
        cnt = total
    r = 1.0 / tl.sqrt(m2 / M + eps)
    if k == 0:
        tl.store(MEAN + pid, shift)
        tl.store(RSTD + pid, r)
    chunk = (M + split - 1) // split
    e0 = tl.minimum(k * chunk, M)
    _write(X, Y, V, WEIGHT, BIAS, n, c0, P, s_n, s_c, s_p, e0, tl.minimum(M, e0 + chunk), r, ACC, BLOCK)


@triton.jit
def _bwd_kernel(DY, X, V, WEIGHT, MEAN, RSTD, DX, PART, groups, C, P, s_n, s_c, s_p, ACC: tl.constexpr,
                CH: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n, cg, M, c0 = _group(pid, groups, C, P)
    shift = tl.load(MEAN + pid)
    pivot = tl.load(X + n * s_n + c0 * s_c).to(ACC)
    r = tl.load(RSTD + pid)
    sum_ga = shift * 0.0
    # per-channel sums over [CH, BLOCK] tiles: CH channels at once when a channel is shorter than
    # BLOCK (7x7: 8 channels of 64 lanes), so that a thread keeps 8 loads of x and dy in flight
    # instead of half a load (gpu-model, bfloat16 at P = 49: 72 -> 98 % of the H100 ceiling)
    for cl0 in range(0, cg, CH):
        cl = cl0 + tl.arange(0, CH)
        cm = cl < cg
        c = c0 + cl
        vc = tl.load(V + c, mask=cm, other=0.0).to(ACC)[:, None]
        a = tl.zeros([CH, BLOCK], ACC)
        vv = tl.zeros([CH, BLOCK], ACC)
        b = tl.zeros([CH, BLOCK], ACC)
        for p0 in range(0, P, BLOCK):
            p = p0 + tl.arange(0, BLOCK)
            m = cm[:, None] & (p < P)[None, :]
            off = n * s_n + c[:, None] * s_c + p[None, :] * s_p
            xv = tl.load(X + off, mask=m, other=0.0).to(ACC)
            d = tl.load(DY + off, mask=m, other=0.0).to(ACC)
            s = _sigmoid(vc * xv)
            a += d * xv * s
            vv += d * xv * xv * s * (1.0 - s)
            b += d
        sa = tl.sum(a, axis=1)
        pc = PART + 3 * (n * C + c)
        tl.store(pc, r * sa, mask=cm)
        tl.store(pc + 1, r * tl.sum(vv, axis=1), mask=cm)
        tl.store(pc + 2, tl.sum(b, axis=1), mask=cm)
        sum_ga += tl.sum(tl.load(WEIGHT + c, mask=cm, other=0.0).to(ACC) * sa, axis=0)
    c_ng = r / M * sum_ga
    for e0 in range(0, M, BLOCK):
        e = e0 + tl.arange(0, BLOCK)
        m = e < M
        c, off = _place(e, P, n, c0, s_n, s_c, s_p)
        xv = tl.load(X + off, mask=m, other=0.0).to(ACC)
        d = tl.load(DY + off, mask=m, other=0.0).to(ACC)
        vc = tl.load(V + c, mask=m, other=0.0).to(ACC)
        gc = tl.load(WEIGHT + c, mask=m, other=0.0).to(ACC)
        s = _sigmoid(vc * xv)
        dx = r * gc * d * s * (1.0 + vc * xv * (1.0 - s)) - r * r * c_ng * ((xv - pivot) - shift)
        tl.store(DX + off, cast_to(dx, DX.dtype.element_ty), mask=m)


def _block(group_numel: int) -> int:
    return min(BLOCK, max(16, triton.next_power_of_2(max(group_numel, 1))))


def choose_split(groups_total: int, group_numel: int, device: torch.device) -> int:
    """Chunks per group for the split forward: the rule of csrc/evonorm/cuda.cu
    (choose_split_cuda); 1 off CUDA."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    if groups_total >= 2 * sms or group_numel < 2 * 8192:
        return 1
    return max(1, min(-(-2 * sms // groups_total), group_numel // 8192, 64))


@on_input_device
def evonorm_s0_fwd(x: torch.Tensor, v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int,
                   eps: float, split: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``tricks_ext::evonorm_s0_fwd`` in Triton: x (N, C, P) with the strides validated by the
    caller; split: chunks per group (0: auto)."""
    n, c, p = x.shape
    y = torch.empty_like(x)
    acc = stats_dtype(x.dtype)
    mean = torch.zeros(n, groups, dtype=acc, device=x.device)
    rstd = torch.zeros(n, groups, dtype=acc, device=x.device)
    if not x.numel():
        return y, mean, rstd
    group_numel = c // groups * p
    if group_numel >= 2 ** 31:  # _split_index is 32-bit, as the CUDA kernels' in-group index
        raise RuntimeError("evonorm_s0: groups of 2^31 elements or more are not supported")
    split = min(split or choose_split(n * groups, group_numel, x.device), 65535)
    if split > 1:
        part = torch.empty(n * groups, split, 3, dtype=acc, device=x.device)
        block = _block(-(-group_numel // split))
        _split_stats_kernel[(n * groups, split)](x, part, groups, c, p, *x.stride(), split, ACC=acc_dtype(x.dtype),
                                                 BLOCK=block, **FUSED)
        _split_out_kernel[(n * groups, split)](x, y, v, weight, bias, mean, rstd, part, groups, c, p, *x.stride(),
                                               float(eps), split, ACC=acc_dtype(x.dtype), BLOCK=block, **FUSED)
    else:
        _fwd_kernel[(n * groups,)](x, y, v, weight, bias, mean, rstd, groups, c, p, *x.stride(), float(eps),
                                   ACC=acc_dtype(x.dtype), BLOCK=_block(group_numel), **FUSED)
    return y, mean, rstd


@on_input_device
def evonorm_s0_bwd(dy: torch.Tensor, x: torch.Tensor, v: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                   rstd: torch.Tensor, groups: int, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """``tricks_ext::evonorm_s0_bwd`` in Triton: (dx, per-channel partial sums of dweight, dbias
    and dv). ``eps`` is the forward's: the saved rstd already holds it."""
    n, c, p = x.shape
    dy = dy if dy.stride() == x.stride() else torch.empty_like(x).copy_(dy)
    dx = torch.empty_like(x)
    part = torch.zeros(n, c, 3, dtype=stats_dtype(x.dtype), device=x.device)
    if x.numel():
        block = _block(p)
        # tiles of 512 when a tile holds several channels, with a warp per 256 elements (8 a
        # thread): tiles of 1024 took 80-121 registers at 4 warps, 16-24 resident warps per SM
        # (gpu-model: 81-89 % in bfloat16, 62-72 registers and 98-100 % at 512), and 4 warps on a
        # 2 x 16 tile (P = 3) replicated it and spilled 4 B in fp64 on sm_80 (compile-check)
        channels = max(1, min(512 // block, triton.next_power_of_2(c // groups)))
        _bwd_kernel[(n * groups,)](dy, x, v, weight, mean, rstd, dx, part, groups, c, p, *x.stride(),
                                   ACC=acc_dtype(x.dtype), CH=channels, BLOCK=block,
                                   num_warps=max(1, min(4, channels * block // 256)), **FUSED)
    return dx, part
