"""Layers with timm 1.0's exact signatures and defaults, over the fused ops.

``StdConv2d``, ``StdConv2dSame``, ``ScaledStdConv2d``, ``ScaledStdConv2dSame`` and
``EvoNorm2dS0`` take the same positional and keyword arguments as their namesakes in
``timm.layers`` (``in_channel`` is singular in timm's StdConv2d and StdConv2dSame, so it is here),
hold the same parameters under the same names, and pad as timm does: ``padding=None`` is the
symmetric ``((stride - 1) + dilation * (kernel_size - 1)) // 2``, ``'SAME'`` is TensorFlow's
asymmetric padding (static where it can be, else computed from each input's size). A timm
state dict loads with ``strict=True`` and the outputs agree to rounding (the standardization and
the normalization run in fp32 and round once, where timm rounds after each torch op).

The nn.Conv2d-style layers (:class:`~tricks_ext.nn.WSConv2d`, :class:`~tricks_ext.nn.EvoNormS0`)
keep torch's defaults (bias=True, padding=0).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from tricks_ext.nn.norm import EvoNormS0, ScaledWSConv2d, WSConv2d, symmetric_padding

_Size = Union[int, Tuple[int, int]]


def _pair(v: _Size) -> Tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def same_padding_value(padding: Union[_Size, str, None], kernel_size: _Size, stride: _Size = 1,
                       dilation: _Size = 1) -> Tuple[Union[_Size, Sequence[int]], bool]:
    """timm ``get_padding_value``: (padding for nn.Conv2d, whether 'SAME' must pad per input).

    'same' is static (symmetric) when stride is 1 and ``dilation * (kernel_size - 1)`` is even in
    every dim, otherwise dynamic (conv padding 0, the input padded in forward); 'valid' is 0; any
    other string is the symmetric padding; numbers pass through."""
    if not isinstance(padding, str):
        return padding, False
    padding = padding.lower()
    if padding == "valid":
        return 0, False
    if padding == "same":
        static = all(s == 1 and (d * (k - 1)) % 2 == 0
                     for k, s, d in zip(_pair(kernel_size), _pair(stride), _pair(dilation)))
        if not static:
            return 0, True
    return symmetric_padding(kernel_size, stride, dilation), False


def pad_same(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int]) -> Tensor:
    """TensorFlow 'SAME' padding of the last two dims (timm ``pad_same``): the total padding
    ``max((ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)``, the odd element on the right/bottom."""
    pads: List[int] = []
    for i, k, s, d in zip(reversed(x.shape[-2:]), reversed(kernel_size), reversed(stride), reversed(dilation)):
        total = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
        pads += [total // 2, total - total // 2]
    return torch.nn.functional.pad(x, pads)


class StdConv2d(WSConv2d):
    """timm ``StdConv2d``: no bias, ``padding=None`` (timm's symmetric padding), eps 1e-6."""

    def __init__(self, in_channel: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Optional[_Size] = None, dilation: _Size = 1, groups: int = 1, bias: bool = False,
                 eps: float = 1e-6, device=None, dtype=None, backend: Optional[str] = None) -> None:
        super().__init__(in_channel, out_channels, kernel_size, stride, padding, dilation, groups, bias, eps,
                         backend, device=device, dtype=dtype)


class _SamePad:
    """Forward of the 'SAME' variants: pad the input first where the padding is dynamic."""
    same_pad = False

    def forward(self, x: Tensor) -> Tensor:
        if self.same_pad:
            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return WSConv2d.forward(self, x)


class StdConv2dSame(_SamePad, WSConv2d):
    """timm ``StdConv2dSame``: TensorFlow 'SAME' padding by default, no bias, eps 1e-6."""

    def __init__(self, in_channel: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Union[_Size, str] = "SAME", dilation: _Size = 1, groups: int = 1, bias: bool = False,
                 eps: float = 1e-6, device=None, dtype=None, backend: Optional[str] = None) -> None:
        padding, dynamic = same_padding_value(padding, kernel_size, stride, dilation)
        super().__init__(in_channel, out_channels, kernel_size, stride, padding, dilation, groups, bias, eps,
                         backend, device=device, dtype=dtype)
        self.same_pad = dynamic


class ScaledStdConv2d(ScaledWSConv2d):
    """timm ``ScaledStdConv2d`` (NF-Nets): bias, ``padding=None`` (symmetric), gamma 1, eps 1e-6,
    gain_init 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Union[_Size, str, None] = None, dilation: _Size = 1, groups: int = 1, bias: bool = True,
                 gamma: float = 1.0, eps: float = 1e-6, gain_init: float = 1.0, device=None, dtype=None,
                 backend: Optional[str] = None) -> None:
        if padding is None:
            padding = symmetric_padding(kernel_size, stride, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, gamma, eps,
                         gain_init, backend, device=device, dtype=dtype)


class ScaledStdConv2dSame(_SamePad, ScaledWSConv2d):
    """timm ``ScaledStdConv2dSame``: ScaledStdConv2d with TensorFlow 'SAME' padding by default."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _Size, stride: _Size = 1,
                 padding: Union[_Size, str] = "SAME", dilation: _Size = 1, groups: int = 1, bias: bool = True,
                 gamma: float = 1.0, eps: float = 1e-6, gain_init: float = 1.0, device=None, dtype=None,
                 backend: Optional[str] = None) -> None:
        padding, dynamic = same_padding_value(padding, kernel_size, stride, dilation)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, gamma, eps,
                         gain_init, backend, device=device, dtype=dtype)
        self.same_pad = dynamic


class EvoNorm2dS0(EvoNormS0):
    """timm ``EvoNorm2dS0``: arguments in timm's order (``apply_act`` before ``eps``), eps 1e-5.
    Extra keyword arguments are ignored, as timm's ignores them (its model builders pass
    ``act_layer`` and the like to every norm layer)."""

    def __init__(self, num_features: int, groups: int = 32, group_size: Optional[int] = None, apply_act: bool = True,
                 eps: float = 1e-5, device=None, dtype=None, backend: Optional[str] = None, **_) -> None:
        super().__init__(num_features, groups, group_size, eps, apply_act, backend, device=device, dtype=dtype)
