"""Loads the compiled extension tricks_ext._C; the package works without it (torch backend)."""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings

HAS_C = False
HAS_CUDA_KERNELS = False
HAS_SIMT_KERNELS = False  # the simt backend: CUDA kernels emulated on CPU (csrc/simt/)
LIBRARY_PATH: str | None = None  # the loaded _C's file
LOAD_ERROR: str | None = None

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    torch = None
    LOAD_ERROR = f"torch is not importable ({exc})"

if torch is not None:
    try:
        _lib = os.environ.get("TRICKS_EXT_LIB")
        if _lib:  # another build of _C, e.g. the sanitizer build of `make test-sanitize`
            _spec = importlib.util.spec_from_file_location("tricks_ext._C", _lib)
            if _spec is None:
                raise ImportError(f"TRICKS_EXT_LIB={_lib!r} is not a loadable extension")
            sys.modules["tricks_ext._C"] = importlib.util.module_from_spec(_spec)
            _spec.loader.exec_module(sys.modules["tricks_ext._C"])
        else:
            from tricks_ext import _C  # noqa: F401  (registers the tricks_ext:: operators)

        HAS_C = True
        LIBRARY_PATH = os.path.realpath(sys.modules["tricks_ext._C"].__file__)
        HAS_CUDA_KERNELS = bool(torch.ops.tricks_ext._has_cuda_kernels())
        HAS_SIMT_KERNELS = bool(torch.ops.tricks_ext._has_simt_kernels())
    except (ImportError, OSError, RuntimeError) as exc:
        LOAD_ERROR = f"tricks_ext._C failed to load ({type(exc).__name__}: {exc})"

if LOAD_ERROR is not None:
    warnings.warn(
        f"{LOAD_ERROR}; only the `torch` backend is available. Build the extension with "
        "`pip install --no-build-isolation --no-deps -e .` (see README).",
        RuntimeWarning,
        stacklevel=2,
    )
