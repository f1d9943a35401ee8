"""Helpers shared by the Triton launchers."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterable, Optional

import torch
import triton
import triton.language as tl

from tricks_ext._dtypes import stats_dtype


def acc_dtype(dtype: torch.dtype):
    """Accumulation type inside kernels, as a Triton dtype (the rule: tricks_ext._dtypes)."""
    return tl.float64 if stats_dtype(dtype) == torch.float64 else tl.float32

# Triton 3.9 fuses a * b + c into an FMA unless a launch says otherwise (its default turns
# fusion off in 3.10), so every launch states it. EXACT: no fusion, for the ops whose results
# must match the other backends bit for bit (dropout, mixup: the CPU kernels and the CUDA
# kernels round every product). FUSED: the statistics ops, held to the fp64 reference within a
# tolerance, where an FMA rounds once instead of twice.
EXACT = {"enable_fp_fusion": False}
FUSED = {"enable_fp_fusion": True}


@triton.jit
def cast_to(x, DTYPE: tl.constexpr):
    """fp32 -> DTYPE with round-to-nearest-even. For bf16 the rounding is done on the bits:
    Triton's interpreter truncates in fp32 -> bf16 casts (half of random values land one ulp
    low, a bias that accumulates over optimizer steps), while the hardware cast rounds to
    nearest; the integer form gives the hardware's result in both (NaN payloads aside)."""
    if DTYPE == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(DTYPE)


def row_vector(columns: int, dtype: torch.dtype) -> int:
    """The most elements, up to 16 bytes, that divide a row of ``columns``. A row kernel takes
    its row length as ``columns // VEC`` and rebuilds it as that times the constexpr VEC, so
    Triton knows every row start and the row's end mask to be VEC-aligned and loads VEC
    elements per instruction: it proves divisibility of integer arguments by 16 only, and a row
    of 1000 fp32 logits (4000 bytes, 16-byte aligned) otherwise moved 4 bytes per load."""
    vec = 16 // torch.empty((), dtype=dtype).element_size()
    while columns % vec:
        vec //= 2
    return vec


def _first_tensor(args: Iterable[Any]) -> Optional[torch.Tensor]:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return a[0]
    return None


def on_input_device(launcher: Callable) -> Callable:
    """Run ``launcher`` with its first tensor argument's CUDA device current, as the C++
    bindings' DeviceGuard does: Triton launches on the current device, so without it a tensor
    on cuda:1 would be handed to a kernel on cuda:0. CPU tensors (the interpreter) need none."""
    @functools.wraps(launcher)
    def run(*args: Any, **kwargs: Any) -> Any:
        t = _first_tensor(list(args) + list(kwargs.values()))
        guard = torch.cuda.device(t.device) if t is not None and t.is_cuda else contextlib.nullcontext()
        with guard:
            return launcher(*args, **kwargs)
    run.device_guarded = True
    return run
