"""Activation regularization (AR) and temporal activation regularization (TAR) of recurrent
outputs (Merity et al. 2017, "Revisiting Activation Regularization for Language RNNs"), with
fastai's ``RNNRegularizer`` formulas: terms to add to the loss."""
from __future__ import annotations

import torch
from torch import Tensor

from tricks_ext._checks import check_float_tensor, check_range

__all__ = ["activation_regularization", "temporal_activation_regularization"]


def activation_regularization(h: Tensor, alpha: float) -> Tensor:
    """AR: ``alpha * mean(h^2)`` in float32 (float64 for float64 ``h``), ``h`` the last layer's
    output after dropout, as fastai adds it. A 0-dim tensor; no host read."""
    check_float_tensor("activation_regularization", "h", h)
    alpha = check_range("activation_regularization", "alpha", alpha)
    if h.numel() == 0:
        raise ValueError("activation_regularization: h is empty")
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    return alpha * h.to(acc).pow(2).mean()


def temporal_activation_regularization(h: Tensor, beta: float, dim: int = 1) -> Tensor:
    """TAR: ``beta * mean((h_{t+1} - h_t)^2)`` over the time dimension ``dim`` (fastai: batch
    first, time dim 1), in float32 (float64 for float64 ``h``), ``h`` the last layer's output
    before dropout. Zero for a single time step (fastai adds nothing then)."""
    check_float_tensor("temporal_activation_regularization", "h", h)
    beta = check_range("temporal_activation_regularization", "beta", beta)
    if h.dim() < 2:
        raise ValueError(f"temporal_activation_regularization: h needs a batch and a time dimension, got shape "
                         f"{tuple(h.shape)}")
    acc = torch.float64 if h.dtype == torch.float64 else torch.float32
    steps = h.shape[dim]
    if steps < 2 or h.numel() == 0:
        return torch.zeros((), dtype=acc, device=h.device)
    # the difference in h's dtype, then widened: fastai's order of operations
    diff = h.narrow(dim, 1, steps - 1) - h.narrow(dim, 0, steps - 1)
    return beta * diff.to(acc).pow(2).mean()
