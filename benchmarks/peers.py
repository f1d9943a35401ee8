"""The real peer libraries the benchmarks and tests compare against, imported when installed
(`make test` installs timm and pytorch-optimizer without their dependencies).

timm imports torchvision at module level (``timm.layers.create_norm``, ``timm.data``), and the
PyPI torchvision does not load beside the CPU torch build used here. timm's model, layer, loss
and Mixup code never calls it, so when torchvision is missing a stand-in package answers those
imports with inert placeholder classes; any real use of one fails loudly (they do nothing and
have no attributes but more placeholders).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Optional, Tuple


class _Placeholder(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (_Inert,), {})


class _Inert(metaclass=_Placeholder):
    def __init__(self, *args, **kwargs):
        pass


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (_Inert,), {})


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StandInModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def _torchvision_loads() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
        return True
    except Exception:  # the PyPI wheel fails against a CPU torch build ("torchvision::nms")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        return False


def load_timm() -> Tuple[Optional[types.ModuleType], str]:
    """(timm with its data, layers and loss packages imported, "") or (None, why not)."""
    if importlib.util.find_spec("timm") is None:
        return None, "timm is not installed (make test installs it)"
    if not _torchvision_loads() and not any(isinstance(f, _TorchvisionStandIn) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionStandIn())
    try:
        import timm
        import timm.data  # noqa: F401  (Mixup)
        import timm.layers  # noqa: F401
        import timm.loss  # noqa: F401
    except ImportError as exc:
        return None, f"timm does not import ({exc})"
    return timm, ""


def load_pytorch_optimizer() -> Tuple[Optional[types.ModuleType], str]:
    if importlib.util.find_spec("pytorch_optimizer") is None:
        return None, "pytorch-optimizer is not installed (make test installs it)"
    import pytorch_optimizer
    return pytorch_optimizer, ""
