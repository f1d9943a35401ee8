"""Dropout modules over tricks_ext.functional (masks regenerated in backward, never stored)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from tricks_ext import functional as F


class Dropout(torch.nn.Module):
    """Drop-in for ``torch.nn.Dropout(p)``: same distribution, no stored mask, the same mask on
    every backend for the same seed. Seeds come from torch's generator (``torch.manual_seed``
    makes runs reproducible)."""

    def __init__(self, p: float = 0.5, backend: Optional[str] = None) -> None:
        super().__init__()
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"Dropout: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, backend=self.backend)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ReZeroResidual(torch.nn.Module):
    """``x + alpha * dropout(sublayer(x))`` with a learnable scalar ``alpha`` initialized to 0
    (ReZero, arXiv 2003.04887): the block starts as the identity. The add, gate and dropout run
    as one fused op (:func:`tricks_ext.functional.dropout_add`)."""

    def __init__(self, sublayer: torch.nn.Module, p: float = 0.0, backend: Optional[str] = None) -> None:
        super().__init__()
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"ReZeroResidual: p must be a number in [0, 1], got {p!r}")
        self.sublayer = sublayer
        self.alpha = torch.nn.Parameter(torch.zeros(()))
        self.p = float(p)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        out = self.sublayer(x)
        return F.dropout_add(out, x, self.p, gate=self.alpha, training=self.training, backend=self.backend)

    def extra_repr(self) -> str:
        return f"p={self.p}"
