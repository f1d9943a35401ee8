"""Backend registry and selection.

Backends: ``torch`` (the pure-PyTorch reference), ``cpu`` (C++ kernels of tricks_ext._C),
``cuda`` (CUDA kernels of tricks_ext._C), ``triton`` (Triton kernels), ``simt`` (the CUDA
kernels and bindings run on CPU tensors by the SIMT emulator, under three thread orders that
must agree bit for bit: a test backend, slow, never chosen by ``auto``). ``auto`` picks, per call:
CUDA tensors -> the backend in ``AUTO_CUDA`` for the op; CPU tensors -> ``cpu`` when the
extension loaded, else ``torch``. An explicitly requested backend that cannot run raises
:class:`BackendUnavailableError` naming what is missing; it never falls back silently.

The registry is keyed by op name (the torch.library op's base name: ``dropout_apply``,
``soft_ce``, ...). An op registers its implementations: ``torch``, ``cxx`` (the C++ op, which
serves both ``cpu`` and ``cuda``: torch's dispatcher picks the kernel by the tensors' device),
``triton`` and ``simt``; and the dtypes each backend runs, where it does not run them all.

Precedence: per-call ``backend=`` > innermost :func:`use_backend` > :func:`set_backend` > auto.
:func:`use_backend` is per thread (a thread-local stack: a block in one thread never changes
another thread's ops); :func:`set_backend` is process-wide, like the ``torch.backends`` flags.
torch.compile traces both and guards on them.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch.autograd import forward_ad

from tricks_ext import _ext

BACKENDS = ("torch", "cpu", "cuda", "triton", "simt")
CHOICES = ("auto",) + BACKENDS

# Backend used by `auto` for CUDA tensors, per op. Set from GPU benchmark winners
# (benchmarks/results/); an op missing here defaults to `cuda`, then `triton`.
AUTO_CUDA: Dict[str, str] = {}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this op here; the message says what is missing."""


class _Scoped(threading.local):
    """Each thread's stack of use_backend() names, innermost last."""

    def __init__(self) -> None:
        self.stack: List[str] = []


_global_backend = "auto"
_scoped = _Scoped()
_registry: Dict[str, Dict[str, Callable]] = {}  # op -> {"torch" | "cxx" | "triton" | "simt": implementation}
_dtypes: Dict[Tuple[str, str], Tuple[torch.dtype, ...]] = {}  # (op, backend) -> the only dtypes it runs
# Ops without a gradient (the optimizer step, the data transform): autograd transforms do not
# change their backend.
_NOT_DIFFERENTIABLE = {"optim_step", "sasa_step", "mixup_apply"}


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
    """The backend in force in this thread: its innermost :func:`use_backend`, else
    :func:`set_backend`."""
    stack = _scoped.stack
    return stack[-1] if stack else _global_backend


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the ops this thread calls inside with backend ``name``."""
    stack = _scoped.stack
    stack.append(_check_name(name))
    try:
        yield
    finally:
        stack.pop()


def register(op: str, *, torch: Callable, triton: Callable, cxx: Optional[Callable] = None,
             simt: Optional[Callable] = None, dtypes: Optional[Dict[str, Iterable[torch.dtype]]] = None) -> None:
    """Register the implementations of ``op``: ``cxx`` (None without the C++ extension) runs on
    both the ``cpu`` and ``cuda`` backends, ``simt`` (None without the emulator) on ``simt``.
    ``dtypes`` maps a backend name to the only dtypes it runs for this op: ``auto`` passes over it
    for other dtypes, an explicit request raises."""
    impls = {"torch": torch, "triton": triton}
    if cxx is not None:
        impls["cxx"] = cxx
    if simt is not None:
        impls["simt"] = simt
    _registry[op] = impls
    for backend, allowed in (dtypes or {}).items():
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        _dtypes[(op, backend)] = tuple(allowed)


def _slot(backend: str) -> str:
    return "cxx" if backend in ("cpu", "cuda") else backend


def registered_ops() -> Dict[str, Dict[str, Callable]]:
    """Per op, the implementation behind each backend name that has one."""
    return {op: {b: impls[_slot(b)] for b in BACKENDS if _slot(b) in impls} for op, impls in _registry.items()}


# Found without importing triton (an import costs seconds); a plain global so torch.compile traces it.
_TRITON_MISSING = None if importlib.util.find_spec("triton") is not None else "triton is not installed"


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def unavailable_reason(backend: str, device: torch.device, op: Optional[str] = None,
                       dtype: Optional[torch.dtype] = None) -> Optional[str]:
    """None when ``backend`` can run ``op`` on ``device`` (for ``dtype`` tensors), else why not."""
    reason = _device_reason(backend, torch.device(device))
    if reason is None and op is not None and _slot(backend) not in _registry.get(op, {}):
        reason = f"op {op!r} has no {backend!r} implementation"
    allowed = _dtypes.get((op, backend))
    if reason is None and dtype is not None and allowed is not None and dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        reason = f"it runs {names} for {op}, got {str(dtype).replace('torch.', '')}"
    return reason


def _device_reason(backend: str, device: torch.device) -> Optional[str]:
    if backend == "torch":
        return None
    if backend in ("cpu", "simt"):  # simt: the CUDA kernels emulated on CPU
        if device.type != "cpu":
            return f"the {backend} backend runs CPU tensors, got a tensor on {device}"
        if not _ext.HAS_C:
            return f"the C++ extension is not loaded: {_ext.LOAD_ERROR}"
        if backend == "simt" and not _ext.HAS_SIMT_KERNELS:
            return ("tricks_ext._C was built without the simt backend (the CUDA headers were not found at build "
                    "time, or TRICKS_EXT_SIMT=0)")
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


def transform_reason() -> Optional[str]:
    """Why the kernels cannot run now, else None: inside forward-mode AD or a torch.func
    transform. The kernels' autograd is registered through torch.library (or in C++), which
    neither supports: torch.library's generated autograd.Function has no functorch rule, and
    forward AD would silently drop the tangents. The torch backend is plain differentiable
    PyTorch, so ``auto`` picks it there."""
    if torch.compiler.is_compiling():  # dynamo traces transforms itself
        return None
    if forward_ad._current_level >= 0:
        return "forward-mode AD (torch.autograd.forward_ad) is active: only the torch backend carries tangents"
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return "a torch.func transform (grad, vjp, jvp, vmap, ...) is active: only the torch backend runs under it"
    return None


def resolve(op: str, device: torch.device, backend: Optional[str] = None, dtype: Optional[torch.dtype] = None,
            caller: Optional[str] = None) -> str:
    """Name of the backend that runs ``op`` on ``device`` (for ``dtype`` tensors) for this call.
    ``caller``: the public function or class the user called, named in errors (default: op)."""
    name = _check_name(backend) if backend is not None else get_backend()
    device = torch.device(device)
    if name != "torch" and op not in _NOT_DIFFERENTIABLE:
        reason = transform_reason()
        if reason is not None:
            if name == "auto":
                return "torch"
            raise BackendUnavailableError(f"{caller or op}: backend {name!r} is unavailable: {reason}")
    if name == "auto":
        candidates = ["cpu"]
        if device.type == "cuda":
            candidates = ([AUTO_CUDA[op]] if op in AUTO_CUDA else []) + ["cuda", "triton"]
        for cand in candidates:
            if unavailable_reason(cand, device, op, dtype) is None:
                return cand
        return "torch"
    reason = unavailable_reason(name, device, op, dtype)
    if reason is not None:
        raise BackendUnavailableError(f"{caller or op}: backend {name!r} is unavailable: {reason}")
    return name


def implementation(op: str, device: torch.device, backend: Optional[str] = None, dtype: Optional[torch.dtype] = None,
                   caller: Optional[str] = None) -> Callable:
    """The registered implementation of ``op`` chosen by :func:`resolve`."""
    return _registry[op][_slot(resolve(op, device, backend, dtype, caller))]
