"""Normalization layers: EvoNorm-S0 and weight-standardized convolutions (timm-compatible
parameter names, so timm state dicts load unchanged)."""
from __future__ import annotations

import copy
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from tricks_ext import functional as F
from tricks_ext._backend import check_backend_name
from tricks_ext.nn._script import NotScriptable
from tricks_ext._checks import check_eps, is_int

_Size = Union[int, Tuple[int, ...]]


def _is_positive_int(v: object) -> bool:
    return is_int(v) and v >= 1


def symmetric_padding(kernel_size: _Size, stride: _Size = 1, dilation: _Size = 1) -> Union[int, Tuple[int, ...]]:
    """timm ``get_padding``: ``((stride - 1) + dilation * (kernel_size - 1)) // 2`` per dim."""
    def per_dim(v: _Size, n: int) -> Tuple[int, ...]:
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    n = max(len(v) if isinstance(v, (tuple, list)) else 1 for v in (kernel_size, stride, dilation))
    if n == 1 and not any(isinstance(v, (tuple, list)) for v in (kernel_size, stride, dilation)):
        return ((stride - 1) + dilation * (kernel_size - 1)) // 2
    ks, ss, ds = per_dim(kernel_size, n), per_dim(stride, n), per_dim(dilation, n)
    return tuple(((s - 1) + d * (k - 1)) // 2 for k, s, d in zip(ks, ss, ds))


class EvoNormS0(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``EvoNorm2dS0`` (parameters ``v``, ``weight``, ``bias``; ``v`` is None
    with ``apply_act=False``), for any rank >= 3 input. ``group_size`` wins over ``groups``."""

    def __init__(self, num_features: int, groups: int = 32, group_size: Optional[int] = None, eps: float = 1e-5,
                 apply_act: bool = True, backend: Optional[str] = None, device=None, dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("num_features", num_features), ("groups", groups), ("group_size", group_size)):
            if not (value is None and arg == "group_size" or _is_positive_int(value)):
                raise ValueError(f"{name}: {arg} must be an int >= 1{' or None' if arg == 'group_size' else ''}, "
                                 f"got {value!r}")
        check_eps(name, eps)
        check_backend_name(name, backend)
        if group_size:
            if num_features % group_size:
                raise ValueError(f"{name}: num_features={num_features} is not divisible by group_size={group_size}")
            groups = num_features // group_size
        if apply_act and num_features % groups:  # affine-only S0 has no groups, as timm
            raise ValueError(f"{name}: num_features={num_features} is not divisible by groups={groups}")
        self.num_features, self.groups, self.eps, self.apply_act = num_features, groups, eps, apply_act
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.ones(num_features, **factory))
        self.bias = torch.nn.Parameter(torch.zeros(num_features, **factory))
        self.v = torch.nn.Parameter(torch.ones(num_features, **factory)) if apply_act else None
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return F.evonorm_s0(x, self.v, self.weight, self.bias, self.groups, self.eps, self.apply_act,
                            backend=self.backend)

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, apply_act={self.apply_act}"


class WSConv2d(NotScriptable, torch.nn.Conv2d):
    """Conv2d with Weight Standardization (arXiv 1903.10520), timm ``StdConv2d`` semantics and
    state dict: the weight is standardized per output channel (biased variance, ``eps``) by the
    fused op, then ``F.conv2d`` (cuDNN) runs. Any nn.Conv2d padding, including 'same';
    ``padding=None`` is timm's symmetric ``((stride - 1) + dilation * (kernel_size - 1)) // 2``.

    The standardized weight is recomputed on every forward, in eval mode too: a cache keyed on
    the weight's version would serve stale values after ``weight.data.copy_(...)`` (the usual
    EMA update), whose writes bypass the version counter. The standardization reads the weight
    once (O * K elements, small beside the convolution); for inference without it, use
    :func:`fold_weight_standardization`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Union[_Size, str, None] = 0, dilation: _Size = 1, groups: int = 1, bias: bool = True,
                 eps: float = 1e-6, backend: Optional[str] = None, **kwargs) -> None:
        check_eps(type(self).__name__, eps, allow_zero=True)
        check_backend_name(type(self).__name__, backend)
        if padding is None:
            padding = symmetric_padding(kernel_size, stride, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, **kwargs)
        self.eps = eps
        self.backend = backend

    def _gain_scale(self) -> Tuple[Optional[Tensor], Optional[float]]:
        return None, None

    def standardized_weight(self) -> Tensor:
        """The weight the convolution uses, standardized from the current weight (and gain)."""
        gain, scale = self._gain_scale()
        return F.weight_standardize(self.weight, self.eps, gain, scale, backend=self.backend)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", eps={self.eps}"


class ScaledWSConv2d(WSConv2d):
    """timm ``ScaledStdConv2d`` (NF-Nets, arXiv 2101.08692): the standardized weight times a
    learnable per-channel ``gain`` (O, 1, 1, 1), init ``gain_init``, and ``gamma * fan_in**-0.5``.
    Default eps 1e-6 as timm 1.0 (older timm and DESIGN.md used 1e-5)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Union[_Size, str] = 0, dilation: _Size = 1, groups: int = 1, bias: bool = True,
                 gamma: float = 1.0, eps: float = 1e-6, gain_init: float = 1.0, backend: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, eps,
                         backend, **kwargs)
        self.scale = gamma * self.weight[0].numel() ** -0.5
        self.gain_init = gain_init
        self.gain = torch.nn.Parameter(torch.full((out_channels, 1, 1, 1), float(gain_init), device=self.weight.device,
                                                  dtype=self.weight.dtype))

    def _gain_scale(self) -> Tuple[Optional[Tensor], Optional[float]]:
        return self.gain, self.scale


# timm's own weight-standardized convolutions, folded as ours (their gain, scale and eps
# attributes have our names).
_TIMM_WS = ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")


def _standardization(module: torch.nn.Module) -> Optional[Tuple[Optional[Tensor], Optional[float], float,
                                                                Optional[str]]]:
    """(gain, scale, eps, backend) of a weight-standardized convolution (ours, patched or not,
    or timm's own), else None."""
    if isinstance(module, WSConv2d):
        gain, scale = module._gain_scale()
        return gain, scale, module.eps, module.backend
    cls = type(module)
    if cls.__module__.startswith("timm.") and cls.__name__ in _TIMM_WS and isinstance(module, torch.nn.Conv2d):
        return getattr(module, "gain", None), getattr(module, "scale", None), float(module.eps), None
    return None


@torch.no_grad()
def fold_weight_standardization(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` where every weight-standardized convolution (WSConv2d,
    ScaledWSConv2d, timm's StdConv2d / ScaledStdConv2d and their 'Same' variants) is a plain
    ``nn.Conv2d`` holding the standardized weight (for export and inference); ``model`` itself
    is unchanged. A 'SAME' variant whose padding depends on the input size (timm's dynamic
    padding) has no plain Conv2d equivalent: ValueError naming the module."""
    for name, module in model.named_modules():
        if _standardization(module) is not None and getattr(module, "same_pad", False):
            raise ValueError(f"fold_weight_standardization: {name or 'the model'} ({type(module).__name__}) pads "
                             "'SAME' by the input size at each call, which a plain Conv2d cannot hold")
    model = copy.deepcopy(model)

    def convert(module: torch.nn.Module) -> torch.nn.Module:
        found = _standardization(module)
        if found is not None:
            gain, scale, eps, backend = found
            conv = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                   module.padding, module.dilation, module.groups, module.bias is not None,
                                   module.padding_mode, device=module.weight.device, dtype=module.weight.dtype)
            conv.weight.copy_(F.weight_standardize(module.weight, eps, gain, scale, backend=backend))
            if module.bias is not None:
                conv.bias.copy_(module.bias)
            conv.train(module.training)
            return conv
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)
