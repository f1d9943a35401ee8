"""Gradient Centralization and adaptive gradient clipping of one tensor, out of place, in plain
PyTorch: functional.centralize_gradients_, the optimizer's path for rows too long for its
kernels (ops/optim.py, prepare_grad) and the optimizer's reference use them. Tests check them
against pytorch-optimizer's centralize_gradient and timm's adaptive_clip_grad."""
from __future__ import annotations

import torch
from torch import Tensor


def centralize(g: Tensor, conv_only: bool = False) -> Tensor:
    """g minus its mean over all dims but the first (unchanged for dim <= 1, or <= 3 if conv_only)."""
    if g.dim() <= (3 if conv_only else 1):
        return g
    return g - g.mean(dim=tuple(range(1, g.dim())), keepdim=True)


def unitwise_norm(x: Tensor) -> Tensor:
    """The L2 norm of each row x[i] (dims 1..), keeping dims; of the whole tensor for dim <= 1."""
    if x.dim() <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)


def adaptive_clip(g: Tensor, p: Tensor, clip_factor: float, eps: float = 1e-3) -> Tensor:
    """timm's adaptive_clip_grad on one tensor, out of place: rows of ``g`` whose norm exceeds
    ``clip_factor * max(|p row|, eps)`` are scaled down to it."""
    max_norm = unitwise_norm(p).clamp(min=eps) * clip_factor
    grad_norm = unitwise_norm(g)
    return torch.where(grad_norm < max_norm, g, g * (max_norm / grad_norm.clamp(min=1e-6)))
