"""The dropout family's uniform stream in Triton (tl.randint4x): u of element i of
(seed, offset) uses counter offset + i // 4 and output word i % 4 (csrc/include/tricks/philox.h).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def stream_uniform(seed, offset, idx):
    """u (fp32) of elements ``idx`` (int64 block) of the stream (seed, offset)."""
    w0, w1, w2, w3 = tl.randint4x(seed, offset + idx // 4)
    r = idx % 4
    word = tl.where(r == 0, w0, tl.where(r == 1, w1, tl.where(r == 2, w2, w3)))
    return tl.random.uint_to_uniform_float(word)


@triton.jit
def _philox_uniform_kernel(OUT, n, seed, offset, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    tl.store(OUT + idx, stream_uniform(seed, offset, idx), mask=idx < n)


def philox_uniform_(out: torch.Tensor, seed: int, offset: int) -> None:
    """Fill contiguous float32 ``out`` with the stream's uniforms."""
    n = out.numel()
    if n:
        _philox_uniform_kernel[(triton.cdiv(n, 1024),)](out, n, seed, offset, BLOCK=1024)
