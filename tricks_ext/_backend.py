"""Backend registry and selection.

Backends: ``torch`` (the pure-PyTorch reference), ``cpu`` (C++ kernels of tricks_ext._C),
``cuda`` (CUDA kernels of tricks_ext._C), ``triton`` (Triton kernels). ``auto`` picks, per call:
CUDA tensors -> the backend in ``AUTO_CUDA`` for the op; CPU tensors -> ``cpu`` when the
extension loaded, else ``torch``. An explicitly requested backend that cannot run raises
:class:`BackendUnavailableError` naming what is missing; it never falls back silently.

Precedence: per-call ``backend=`` > innermost :func:`use_backend` > :func:`set_backend` > auto.
The selection is process-wide, like the ``torch.backends`` flags (not per thread): it lives in
plain module globals so that torch.compile can trace it and guard on it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Callable, Dict, Iterator, List, Optional

import torch

from tricks_ext import _ext

BACKENDS = ("torch", "cpu", "cuda", "triton")
CHOICES = ("auto",) + BACKENDS

# Backend used by `auto` for CUDA tensors, per op. Set from GPU benchmark winners
# (benchmarks/results/); an op missing here defaults to `cuda`, then `triton`.
AUTO_CUDA: Dict[str, str] = {}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this op here; the message says what is missing."""


_global_backend = "auto"
_scoped: List[str] = []  # stack of use_backend() names, innermost last
_registry: Dict[str, Dict[str, Callable]] = {}


def _check_name(name: str) -> str:
    if name not in CHOICES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    return name


def check_backend_name(owner: str, backend: object) -> None:
    """For constructors that store a backend: None or a name in CHOICES, checked up front so a
    typo (or a positional argument in the wrong place) fails where it is written."""
    if backend is not None and not (isinstance(backend, str) and backend in CHOICES):
        raise ValueError(f"{owner}: backend must be None or one of {', '.join(CHOICES)}, got {backend!r}")


def set_backend(name: str) -> None:
    """Set the process-wide default backend (``auto`` restores automatic selection)."""
    global _global_backend
    _global_backend = _check_name(name)


def get_backend() -> str:
    """The backend in force here: the innermost :func:`use_backend`, else :func:`set_backend`."""
    return _scoped[-1] if _scoped else _global_backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the ops inside with backend ``name``."""
    _scoped.append(_check_name(name))
    try:
        yield
    finally:
        _scoped.pop()


def register(op: str, backend: str, impl: Callable) -> None:
    """Register ``impl`` as ``backend``'s implementation of ``op``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    _registry.setdefault(op, {})[backend] = impl


def registered_ops() -> Dict[str, Dict[str, Callable]]:
    return {op: dict(impls) for op, impls in _registry.items()}


# Found without importing triton (that costs ~1 s); a plain global so torch.compile traces it.
_TRITON_MISSING = None if importlib.util.find_spec("triton") is not None else "triton is not installed"


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def unavailable_reason(backend: str, device: torch.device, op: Optional[str] = None) -> Optional[str]:
    """None when ``backend`` can run ``op`` on ``device``, else why not."""
    reason = _device_reason(backend, torch.device(device))
    if reason is None and op is not None and backend not in _registry.get(op, {}):
        reason = f"op {op!r} has no {backend!r} implementation"
    return reason


def _device_reason(backend: str, device: torch.device) -> Optional[str]:
    if backend == "torch":
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"the cpu backend runs CPU tensors, got a tensor on {device}"
        if not _ext.HAS_C:
            return f"the C++ extension is not loaded: {_ext.LOAD_ERROR}"
        return None
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs CUDA tensors, got a tensor on {device}"
        if not _ext.HAS_C:
            return f"the C++ extension is not loaded: {_ext.LOAD_ERROR}"
        if not _ext.HAS_CUDA_KERNELS:
            return "tricks_ext._C was built without CUDA kernels (no nvcc at build time, or TRICKS_EXT_CUDA=0)"
        return None
    if backend == "triton":
        if _TRITON_MISSING is not None:
            return _TRITON_MISSING
        if device.type == "cpu" and not triton_interpreting():
            return ("triton runs CPU tensors only in its interpreter: set TRITON_INTERPRET=1 "
                    "before tricks_ext.triton_kernels is imported")
        if device.type not in ("cpu", "cuda"):
            return f"the triton backend runs CUDA tensors, got a tensor on {device}"
        return None
    raise ValueError(f"unknown backend {backend!r}")


def resolve(op: str, device: torch.device, backend: Optional[str] = None) -> str:
    """Name of the backend that runs ``op`` on ``device`` for this call."""
    name = _check_name(backend) if backend is not None else get_backend()
    device = torch.device(device)
    if name == "auto":
        if device.type == "cuda":
            preferred = [AUTO_CUDA[op]] if op in AUTO_CUDA else []
            for cand in preferred + ["cuda", "triton", "torch"]:
                if unavailable_reason(cand, device, op) is None:
                    return cand
        return "cpu" if unavailable_reason("cpu", device, op) is None else "torch"
    reason = unavailable_reason(name, device, op)
    if reason is not None:
        raise BackendUnavailableError(f"{op}: backend {name!r} is unavailable: {reason}")
    return name


def implementation(op: str, device: torch.device, backend: Optional[str] = None) -> Callable:
    """The registered implementation of ``op`` chosen by :func:`resolve`."""
    return _registry[op][resolve(op, device, backend)]
