"""Dropout modules over tricks_ext.functional (masks regenerated in backward, never stored)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext import functional as F
from tricks_ext._backend import check_backend_name
from tricks_ext.nn._script import NotScriptable
from tricks_ext._checks import check_unit


class Dropout(NotScriptable, torch.nn.Module):
    """Drop-in for ``torch.nn.Dropout(p, inplace)``: same distribution, no stored mask, the same
    mask on every backend for the same seed. Seeds come from torch's generator
    (``torch.manual_seed`` makes runs reproducible). ``inplace=True`` writes the result into
    the input and returns it, as torch's does (the input must then not be a leaf that requires
    grad)."""

    def __init__(self, p: float = 0.5, inplace: bool = False, backend: Optional[str] = None) -> None:
        super().__init__()
        self.p = check_unit("Dropout", "p", p)
        if not isinstance(inplace, bool):
            raise TypeError(f"Dropout: inplace must be a bool, got {inplace!r}")
        check_backend_name("Dropout", backend)
        self.inplace = inplace
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        out = F.dropout(x, self.p, self.training, backend=self.backend)
        return x.copy_(out) if self.inplace and out is not x else out

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class DropPath(NotScriptable, torch.nn.Module):
    """Drop-in for timm ``DropPath(drop_prob, scale_by_keep)`` (stochastic depth): per-sample
    dropout along dim 0 with the mask regenerated in backward. Same attribute names as timm and
    no parameters or buffers, so timm state dicts load unchanged."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, backend: Optional[str] = None) -> None:
        super().__init__()
        self.drop_prob = check_unit("DropPath", "drop_prob", drop_prob)
        check_backend_name("DropPath", backend)
        self.scale_by_keep = scale_by_keep
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_path(x, self.drop_prob, self.training, self.scale_by_keep, backend=self.backend)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"


class ReZeroResidual(NotScriptable, torch.nn.Module):
    """``x + alpha * dropout(sublayer(x))`` with a learnable scalar ``alpha`` initialized to 0
    (ReZero, arXiv 2003.04887): the block starts as the identity. The add, gate and dropout run
    as one fused op (:func:`tricks_ext.functional.dropout_add`)."""

    def __init__(self, sublayer: torch.nn.Module, p: float = 0.0, backend: Optional[str] = None) -> None:
        super().__init__()
        p = check_unit("ReZeroResidual", "p", p)
        check_backend_name("ReZeroResidual", backend)
        self.sublayer = sublayer
        self.alpha = torch.nn.Parameter(torch.zeros(()))
        self.p = float(p)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        out = self.sublayer(x)
        return F.dropout_add(out, x, self.p, gate=self.alpha, training=self.training, backend=self.backend)

    def extra_repr(self) -> str:
        return f"p={self.p}"
