"""Loads the compiled extension tricks_ext._C; the package works without it (torch backend)."""
from __future__ import annotations

import warnings

HAS_C = False
HAS_CUDA_KERNELS = False
LOAD_ERROR: str | None = None

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    torch = None
    LOAD_ERROR = f"torch is not importable ({exc})"

if torch is not None:
    try:
        from tricks_ext import _C  # noqa: F401  (registers the tricks_ext:: operators)

        HAS_C = True
        HAS_CUDA_KERNELS = bool(torch.ops.tricks_ext._has_cuda_kernels())
    except (ImportError, OSError, RuntimeError) as exc:
        LOAD_ERROR = f"tricks_ext._C failed to load ({type(exc).__name__}: {exc})"

if LOAD_ERROR is not None:
    warnings.warn(
        f"{LOAD_ERROR}; only the `torch` backend is available. Build the extension with "
        "`pip install --no-build-isolation --no-deps -e .` (see README).",
        RuntimeWarning,
        stacklevel=2,
    )
