"""The Philox4x32-10 stream in plain PyTorch, bit-identical to Triton's ``tl.randint4x(seed,
counter)`` and to csrc/dropout/math.h (tests/test_dropout.py checks Random123's known answers):
the dropout family's masks and the boxes of cutout / SpecAugment are drawn from it, so any device
draws the same values from (seed, offset) without a host sync. uint32 arithmetic is emulated in
int64 tensors; products are split into 16-bit halves so that no intermediate leaves the int64
range."""
from __future__ import annotations

from typing import List, Union

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85


def _mul_lo_hi(a: int, b: Tensor):
    """(a * b) mod 2^32 and (a * b) >> 32 for a uint32 constant and a uint32-valued int64 tensor."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    lo_part = a * b_lo                      # < 2^48
    hi_part = a * b_hi                      # < 2^48
    lo = (lo_part + ((hi_part & 0xFFFF) << 16)) & _M32
    carry = ((lo_part >> 16) + (hi_part & 0xFFFF)) >> 16
    hi = ((hi_part >> 16) + carry) & _M32
    return lo, hi


Seed = Union[int, Tensor]  # a Python int, or an int64 0-d tensor (traceable by torch.compile)


def philox4x32_10(seed: Seed, counter: Tensor) -> List[Tensor]:
    """The four uint32 output words (as int64 tensors) for each int64 ``counter``:
    Philox on counter words (counter & 0xffffffff, counter >> 32, 0, 0) and key words
    (seed & 0xffffffff, seed >> 32), as Triton's randint4x."""
    if isinstance(seed, int) and not 0 <= seed < 2 ** 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    counter = counter.to(torch.int64)
    zero = torch.zeros_like(counter)
    return philox_rounds([counter & _M32, (counter >> 32) & _M32, zero, zero], seed & _M32, (seed >> 32) & _M32)


def philox_rounds(c: List[Tensor], k0: Seed, k1: Seed) -> List[Tensor]:
    """Ten Philox4x32 rounds on counter words ``c`` (uint32 values in int64) with key (k0, k1)."""
    c0, c1, c2, c3 = c
    for _ in range(10):
        lo_b, hi_b = _mul_lo_hi(_ROUND_B, c2)
        lo_a, hi_a = _mul_lo_hi(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _M32, (k1 + _KEY_B) & _M32
    return [c0, c1, c2, c3]


def to_uniform(word: Tensor) -> Tensor:
    """Triton's uint_to_uniform_float: int32 bitcast, x < 0 -> ~x, times 4.6566127342e-10 (fp32)."""
    x = torch.where(word >= 2 ** 31, word - 2 ** 32, word)  # int32 bitcast
    x = torch.where(x < 0, -x - 1, x)
    return x.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


def uniform(seed: Seed, offset: Seed, numel: int, device: torch.device = torch.device("cpu")) -> Tensor:
    """u for elements 0..numel-1 of the stream (seed, offset), fp32."""
    # Element i takes word i % 4 of counter offset + i // 4: one Philox evaluation per counter,
    # its four words laid out in order (elements 4c .. 4c + 3).
    counter = torch.arange((numel + 3) // 4, dtype=torch.int64, device=device)
    words = torch.stack(philox4x32_10(seed, offset + counter), dim=-1)
    return to_uniform(words.reshape(-1)[:numel])
