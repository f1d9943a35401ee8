"""Helpers shared by the Triton launchers."""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterable, Optional, Tuple

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


# Programs a row kernel's launch aims at: a full wave of the 4-warp row kernels on an H100 (132 SMs x
# 16 programs, scripts/gpu_model.py's wave). With fewer rows each row is cut into pieces of at least
# MIN_PIECE_SWEEPS sweeps: one program per row left 32 rows of 131072 classes at 32 programs, ten
# times the modelled time of a full wave (benchmarks/results/gpu_model_43028ca.md).
ROW_PROGRAMS = 2112
MIN_PIECE_SWEEPS = 2


def row_pieces(rows: int, columns: int, block: int) -> Tuple[int, int]:
    """(pieces per row, sweeps of ``block`` columns per piece) for a row kernel's launch of
    ``rows`` rows. From the shape alone, so every device (and the interpreter) sums a row in
    the same order; no piece is empty."""
    sweeps = max(1, triton.cdiv(columns, block))
    pieces = min(triton.cdiv(sweeps, MIN_PIECE_SWEEPS), triton.cdiv(ROW_PROGRAMS, max(rows, 1)))
    per_piece = triton.cdiv(sweeps, max(pieces, 1))
    return triton.cdiv(sweeps, per_piece), per_piece


@triton.jit
def piece_columns(C, piece_sweeps, BLOCK: tl.constexpr, SPLIT: tl.constexpr):
    """The columns [begin, end) of a row kernel's piece of its row (row_pieces): the whole row
    unless SPLIT, else piece tl.program_id(1) of piece_sweeps sweeps (64-bit: rows past 2^31
    columns)."""
    if SPLIT:
        begin = tl.program_id(1).to(tl.int64) * piece_sweeps * BLOCK
        return begin, tl.minimum(C, begin + piece_sweeps * BLOCK)
    else:
        return 0, C


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
