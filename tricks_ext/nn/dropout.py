"""Dropout module over tricks_ext.functional.dropout (mask regenerated in backward)."""
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
