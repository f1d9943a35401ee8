"""tricks_ext: fused kernels for the training tricks that make networks converge faster.

Public surface: :mod:`tricks_ext.functional` (stateless ops), :mod:`tricks_ext.nn` (modules),
:mod:`tricks_ext.optim` (optimizers), :mod:`tricks_ext.data` (batch transforms),
:mod:`tricks_ext.recipe` (schedules, the plateau rule, loss accumulation), :func:`patch`
(swap torch/timm layers of an existing model for these, in place), backend
control (:func:`set_backend`, :func:`use_backend`, :func:`get_backend`), and the build flags
``HAS_C`` (the C++ extension loaded) and ``HAS_CUDA_KERNELS`` (it was built with CUDA kernels).
:mod:`tricks_ext.reference` (import it explicitly) holds each op's specification in plain PyTorch.
"""
from tricks_ext._version import __version__
from tricks_ext._ext import HAS_C, HAS_CUDA_KERNELS, LOAD_ERROR
from tricks_ext._backend import BACKENDS, BackendUnavailableError, get_backend, set_backend, use_backend
from tricks_ext import ops  # noqa: F401  (registers the operators)
from tricks_ext import functional  # noqa: F401
from tricks_ext import data, nn, optim, recipe  # noqa: F401
from tricks_ext._patching import PatchReport, patch, patch_timm_create_model, unpatch

__all__ = [
    "__version__", "HAS_C", "HAS_CUDA_KERNELS", "LOAD_ERROR", "BACKENDS", "BackendUnavailableError",
    "get_backend", "set_backend", "use_backend", "functional", "data", "nn", "optim", "recipe",
    "patch", "unpatch", "patch_timm_create_model", "PatchReport",
]
