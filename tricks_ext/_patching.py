"""Swap the layers of an existing model for tricks_ext's, in place: ``patch(model)``.

Each replaced module keeps its identity, its parameters, buffers, hooks and attributes: only its
class changes, to a subclass of both the tricks_ext layer (whose ``forward`` runs) and the
original class (so ``isinstance(m, timm.layers.StdConv2d)`` still holds). Nothing is copied, so
an optimizer built before the patch keeps stepping the same tensors, and state dicts keep their
keys. :func:`unpatch` restores the original classes.

Replaced (exact types only, so subclasses with other math, such as timm's ``EvoNorm2dS0a``, are
left alone), with the flag that controls each:

* ``torch.nn.Dropout`` -> :class:`tricks_ext.nn.Dropout` (``dropout``)
* timm ``DropPath`` -> :class:`tricks_ext.nn.DropPath` (``drop_path``)
* timm ``EvoNorm2dS0`` -> :class:`tricks_ext.nn.EvoNorm2dS0` (``evonorm``)
* timm ``StdConv2d``, ``StdConv2dSame``, ``ScaledStdConv2d``, ``ScaledStdConv2dSame`` -> the
  tricks_ext layers of the same names (``std_conv``)

Dropout and DropPath draw their masks from tricks_ext's Philox stream, seeded from torch's
generator: the same distribution and scaling as torch's and timm's, not the same masks. The
convolutions and EvoNorm compute the same function, rounded once in fp32 (timm rounds after each
torch op), so outputs agree to rounding; in eval mode dropout and drop path are the identity,
as before.
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from tricks_ext._backend import check_backend_name
from tricks_ext.nn import dropout as _dropout
from tricks_ext.nn import timm_layers as _timm_layers

__all__ = ["PatchReport", "patch", "unpatch", "patch_timm_create_model"]

# (flag, module of the original class, its name, the tricks_ext class that runs). timm's classes
# are looked up by module path, so tricks_ext never imports timm unless asked to patch.
_RULES: Tuple[Tuple[str, str, str, type], ...] = (
    ("dropout", "torch.nn", "Dropout", _dropout.Dropout),
    ("drop_path", "timm.layers", "DropPath", _dropout.DropPath),
    ("evonorm", "timm.layers", "EvoNorm2dS0", _timm_layers.EvoNorm2dS0),
    ("std_conv", "timm.layers", "StdConv2d", _timm_layers.StdConv2d),
    ("std_conv", "timm.layers", "StdConv2dSame", _timm_layers.StdConv2dSame),
    ("std_conv", "timm.layers", "ScaledStdConv2d", _timm_layers.ScaledStdConv2d),
    ("std_conv", "timm.layers", "ScaledStdConv2dSame", _timm_layers.ScaledStdConv2dSame),
)
_PATCHED_PREFIX = "Patched_"


@dataclasses.dataclass
class PatchReport:
    """What :func:`patch` (or :func:`unpatch`) changed: ``replaced`` counts modules per original
    class (``"timm.StdConv2d"``, ``"torch.nn.Dropout"``, ...); ``skipped`` names the modules of a
    patchable class that were left alone, with the reason."""
    replaced: Dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.replaced.values())

    def __str__(self) -> str:
        lines = [f"{n} x {name}" for name, n in sorted(self.replaced.items())] or ["nothing replaced"]
        lines += [f"skipped {path}: {why}" for path, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def _label(module_path: str, name: str) -> str:
    return f"{module_path.split('.')[0]}.{name}" if module_path.startswith("timm") else f"{module_path}.{name}"


def _original(module_path: str, name: str, load: bool = False) -> Optional[type]:
    """The original class, or None when its package is not loaded. A model that holds timm
    layers has imported timm, so :func:`patch` never imports it (``load`` is for unpickling)."""
    module = sys.modules.get(module_path)
    if module is None and load:
        try:
            module = importlib.import_module(module_path)
        except ImportError:
            return None
    return getattr(module, name, None)


def _patched_class(ours: type, original: type, label: str) -> type:
    """The class a patched module gets: ours first in the MRO (its forward runs), then the
    original. Created once per pair and kept in this module under its own name, so patched
    models pickle (torch.save(model)) and unpickle after ``import tricks_ext.patch``."""
    qualname = f"{_PATCHED_PREFIX}{original.__module__.replace('.', '_')}_{original.__name__}"
    cls = globals().get(qualname)
    if cls is None:
        cls = type(qualname, (ours, original), {"__module__": __name__, "__qualname__": qualname,
                                                "_tricks_original": original, "_tricks_label": label,
                                                "__doc__": f"{original.__name__} running {ours.__qualname__}."})
        globals()[qualname] = cls
    return cls


def __getattr__(name: str) -> Any:  # unpickling a patched model in a fresh process
    if name.startswith(_PATCHED_PREFIX):
        for _, module_path, cls_name, ours in _RULES:
            original = _original(module_path, cls_name, load=True)
            if original is not None and name == f"{_PATCHED_PREFIX}{original.__module__.replace('.', '_')}_{cls_name}":
                return _patched_class(ours, original, _label(module_path, cls_name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _why_not(module: torch.nn.Module, flag: str) -> Optional[str]:
    """Why this module must keep its own forward, or None."""
    if flag == "std_conv" and module.padding_mode != "zeros":
        # timm's forward calls F.conv2d with zero padding whatever padding_mode says
        return f"padding_mode={module.padding_mode!r} (timm ignores it; tricks_ext would not)"
    return None


def _extra_attributes(module: torch.nn.Module, flag: str, backend: Optional[str]) -> Dict[str, Any]:
    """Attributes the tricks_ext forward reads that the original class does not set."""
    extra: Dict[str, Any] = {"backend": backend}
    if flag == "evonorm":
        extra["num_features"] = module.weight.numel()
    return extra


def patch(model: torch.nn.Module, *, dropout: bool = True, drop_path: bool = True, evonorm: bool = True,
          std_conv: bool = True, backend: Optional[str] = None) -> PatchReport:
    """Replace, in place, every ``torch.nn.Dropout`` and timm ``DropPath``, ``EvoNorm2dS0``,
    ``StdConv2d``, ``StdConv2dSame``, ``ScaledStdConv2d`` and ``ScaledStdConv2dSame`` in ``model``
    (``model`` itself included) by the tricks_ext layer. The flags leave a kind alone; ``backend``
    is the tricks_ext backend the layers use (None: the active one). Modules already patched are
    left as they are. Returns a :class:`PatchReport`."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"patch: model must be a torch.nn.Module, got {type(model).__name__}")
    check_backend_name("patch", backend)
    wanted = {"dropout": dropout, "drop_path": drop_path, "evonorm": evonorm, "std_conv": std_conv}
    for flag, value in wanted.items():
        if not isinstance(value, bool):
            raise TypeError(f"patch: {flag} must be a bool, got {value!r}")
    table: Dict[type, Tuple[str, type, str]] = {}
    for flag, module_path, name, ours in _RULES:
        original = _original(module_path, name) if wanted[flag] else None
        if original is not None:
            table[original] = (flag, ours, _label(module_path, name))
    report = PatchReport()
    for path, module in model.named_modules():
        rule = table.get(type(module))
        if rule is None:
            continue
        flag, ours, label = rule
        why = _why_not(module, flag)
        if why is not None:
            report.skipped[path or "<model>"] = why
            continue
        added: List[str] = []
        for attr, value in _extra_attributes(module, flag, backend).items():
            if attr not in module.__dict__:
                added.append(attr)
            setattr(module, attr, value)
        module._tricks_patch_added = tuple(added)
        module.__class__ = _patched_class(ours, type(module), label)
        report.replaced[label] = report.replaced.get(label, 0) + 1
    return report


def unpatch(model: torch.nn.Module) -> PatchReport:
    """Undo :func:`patch` on ``model``: every patched module gets its original class back and
    loses the attributes the patch added. Returns what was restored, as a :class:`PatchReport`."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"unpatch: model must be a torch.nn.Module, got {type(model).__name__}")
    report = PatchReport()
    for module in model.modules():
        original = getattr(type(module), "_tricks_original", None)
        if original is None:
            continue
        for attr in module.__dict__.pop("_tricks_patch_added", ()):
            module.__dict__.pop(attr, None)
        label = type(module)._tricks_label
        module.__class__ = original
        report.replaced[label] = report.replaced.get(label, 0) + 1
    return report


class patch_timm_create_model:
    """Make ``timm.create_model`` return patched models: from this call until :meth:`remove`, or
    for the body of a ``with`` block. Keyword arguments go to :func:`patch`; the report of each
    model created is appended to ``reports``.

    Several may be active at once: a model created then is patched by each of them, in the
    order they started. They may be removed in any order; timm gets its own ``create_model``
    back when the last one is removed.

    >>> with tricks_ext.patch_timm_create_model():
    ...     model = timm.create_model("nf_resnet26", pretrained=False)
    """

    # Where timm binds the function: users call timm.create_model, timm's own code the others.
    _HOMES = ("timm", "timm.models", "timm.models._factory")
    # The patchers in force, in the order they started, and timm's own functions while any is.
    _active: List["patch_timm_create_model"] = []
    _saved: List[Tuple[Any, Callable]] = []

    def __init__(self, **patch_kwargs: Any) -> None:
        try:
            import timm  # noqa: F401
        except ImportError as exc:
            raise ImportError("patch_timm_create_model: timm is not importable") from exc
        unknown = set(patch_kwargs) - {"dropout", "drop_path", "evonorm", "std_conv", "backend"}
        if unknown:
            raise TypeError(f"patch_timm_create_model: unknown arguments {sorted(unknown)} (see tricks_ext.patch)")
        self.patch_kwargs = patch_kwargs
        self.reports: List[PatchReport] = []
        cls = type(self)
        if not cls._active:
            cls._install()
        cls._active.append(self)

    @classmethod
    def _install(cls) -> None:
        original = sys.modules["timm.models._factory"].create_model

        def create_model(*args: Any, **kwargs: Any) -> torch.nn.Module:
            model = original(*args, **kwargs)
            for patcher in list(cls._active):
                patcher.reports.append(patch(model, **patcher.patch_kwargs))
            return model

        create_model.__doc__ = original.__doc__
        create_model.__wrapped__ = original
        for home in cls._HOMES:
            module = sys.modules[home]
            cls._saved.append((module, module.create_model))
            module.create_model = create_model

    def remove(self) -> None:
        """Stop patching new models (models already created stay patched); timm gets its own
        ``create_model`` back once no patcher is in force. Removing twice does nothing."""
        cls = type(self)
        if self in cls._active:
            cls._active.remove(self)
        if not cls._active:
            while cls._saved:
                module, function = cls._saved.pop()
                module.create_model = function

    def __enter__(self) -> "patch_timm_create_model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
