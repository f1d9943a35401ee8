"""Input validation shared by every layer (functional, nn, optim, data, ops): messages that
name the op, the argument and the problem."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional

import torch
from torch import Tensor

from tricks_ext._dtypes import FLOAT_DTYPES



def check_float_tensor(op: str, name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    return t


def is_number(v: object) -> bool:
    """A real number: Python's int and float, numpy's scalars (``np.float32(0.1)``), any
    ``numbers.Real``; bool is not one here (``p=True`` is a mistake, not 1.0), nor a tensor."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_int(v: object) -> bool:
    """An integer: Python's int, numpy's integer scalars, any ``numbers.Integral``; not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_unit(op: str, name: str, v: object) -> float:
    """``name`` must be a number in [0, 1] (probabilities, smoothing)."""
    if not (is_number(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{op}: {name} must be a number in [0, 1], got {v!r}")
    return float(v)


def check_eps(op: str, eps: object, allow_zero: bool = False) -> float:
    """eps must be a finite real number > 0 (>= 0 with ``allow_zero``)."""
    ok = is_number(eps) and math.isfinite(eps)
    if not (ok and (eps >= 0 if allow_zero else eps > 0)):
        raise ValueError(f"{op}: eps must be a finite number {'>= 0' if allow_zero else '> 0'}, got {eps!r}")
    return float(eps)


def check_same_device(op: str, name: str, t: Optional[Tensor], ref: Tensor, ref_name: str) -> None:
    if t is not None and t.device != ref.device:
        raise RuntimeError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}")


def is_row_dense(t: Tensor) -> bool:
    """True when each t[i] is one dense block of t[0].numel() elements (any order inside),
    i.e. contiguous or channels_last weights; the kernels then walk memory directly."""
    if t.numel() == 0 or t.is_contiguous():  # the common case, in 0.1 us of the 1.7 the loop costs
        return True
    expected = 1
    for stride, size in sorted((t.stride(d), t.size(d)) for d in range(1, t.dim()) if t.size(d) != 1):
        if stride != expected:
            return False
        expected *= size
    return t.dim() == 0 or t.size(0) <= 1 or t.stride(0) == expected


def renamed(op: str, old: str, old_value: object, new: str, new_value: object, default: object) -> object:
    """The value of an argument renamed from ``old`` to ``new`` (kept for one release): ``new``'s,
    or ``old``'s with a FutureWarning when only the old name was given."""
    if old_value is None:
        return new_value
    if new_value != default:
        raise TypeError(f"{op}: got both {old}= and {new}=; {old} is the former name of {new}")
    warnings.warn(f"{op}: {old}= is renamed {new}= and the old name goes in the next release", FutureWarning,
                  stacklevel=3)
    return old_value


def check_count(op: str, name: str, value: object, low: int = 0) -> int:
    """``value`` as an int >= ``low``; ValueError naming ``op`` and ``name`` otherwise."""
    if not is_int(value) or value < low:
        raise ValueError(f"{op}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_range(op: str, name: str, value: object, low: float = 0.0, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float in [low, high] (an end excluded where ``*_open``); ValueError naming
    ``op`` and ``name`` otherwise."""
    ok = not isinstance(value, bool) and is_number(value) and low <= value <= high
    if not ok or (low_open and value == low) or (high_open and value == high):
        raise ValueError(f"{op}: {name} must be a number in {'(' if low_open else '['}{low}, {high}"
                         f"{')' if high_open else ']'}, got {value!r}")
    return float(value)
