"""The learning rates that curvature, the training horizon and the batch size give: the critical
LR 2 / lambda from the loss's top curvature eigenvalue (Lewkowycz et al. 2020, "The large
learning rate phase of deep learning: the catapult mechanism"), Adam's settings for a horizon of
N steps, and LR and weight decay carried to a new batch size at the same SGD noise scale."""
from __future__ import annotations

import math
from typing import Any, Callable, List, NamedTuple, Sequence, Tuple

import torch
from torch import Tensor, nn

from tricks_ext._checks import check_count, check_range

__all__ = ["critical_lr", "top_curvature_eigenvalue", "adam_horizon", "rescale_hparams", "RescaledHparams"]

CURVATURES = ("hessian", "gauss_newton")
BATCH_RULES = ("linear", "sqrt")


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b))


def critical_lr(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], batch: Tuple[Any, Tensor],
                iters: int = 20, curvature: str = "hessian", seed: int = 0) -> float:
    """2 / |lambda|, lambda = :func:`top_curvature_eigenvalue` (same arguments): gradient
    descent on a quadratic converges below this LR and diverges above it; the catapult paper's
    lambda_0 for MSE is the ``"gauss_newton"`` one. One host read, lambda's, at the end."""
    value = float(top_curvature_eigenvalue(model, loss_fn, batch, iters, curvature, seed))
    if not math.isfinite(value) or value == 0.0:
        raise ValueError(f"critical_lr: the curvature's top eigenvalue is {value}: no critical LR")
    return 2.0 / abs(value)


def top_curvature_eigenvalue(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                             batch: Tuple[Any, Tensor], iters: int = 20, curvature: str = "hessian",
                             seed: int = 0) -> Tensor:
    """The largest-magnitude eigenvalue of the curvature of ``loss_fn(model(inputs), targets)``
    in the model's trainable params at their current values (``batch = (inputs, targets)``), a
    float64 0-dim tensor on the params' device.

    ``curvature``: ``"hessian"`` (the loss's Hessian, H v by double backward) or
    ``"gauss_newton"`` (J^T H_out J, H_out the loss's Hessian in the model's outputs: positive
    semi-definite for a convex loss, and the Hessian itself for a model linear in its params).
    ``iters`` power iterations from a seeded normal vector (a CPU generator, then moved: the same
    start on any device), each v <- C v / ||C v||, lambda = <v, C v>; the loop reads nothing on
    the host. Dropout and batch statistics: call it in
    ``model.eval()`` for a deterministic curvature. The params' grads are left as they were."""
    if curvature not in CURVATURES:
        raise ValueError(f"top_curvature_eigenvalue: curvature must be one of {', '.join(CURVATURES)}, "
                         f"got {curvature!r}")
    iters = check_count("top_curvature_eigenvalue", "iters", iters, 1)
    params: List[Tensor] = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("top_curvature_eigenvalue: the model has no trainable params")
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError("top_curvature_eigenvalue: batch must be (inputs, targets)")
    inputs, targets = batch
    gen = torch.Generator().manual_seed(check_count("top_curvature_eigenvalue", "seed", seed, 0))
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype) for p in params]
    with torch.enable_grad():
        out = model(inputs)
        loss = loss_fn(out, targets)
        if curvature == "hessian":
            grads = torch.autograd.grad(loss, params, create_graph=True)

            def apply(vec: List[Tensor]) -> Tuple[Tensor, ...]:
                return torch.autograd.grad(grads, params, vec, retain_graph=True)
        else:
            d_out = torch.autograd.grad(loss, out, create_graph=True)[0]
            probe = torch.zeros_like(out, requires_grad=True)
            jt_probe = torch.autograd.grad(out, params, probe, create_graph=True)  # J^T u, linear in u

            def apply(vec: List[Tensor]) -> Tuple[Tensor, ...]:
                jv = torch.autograd.grad(jt_probe, probe, vec, retain_graph=True)[0]  # d<J^T u, v>/du = J v
                h_jv = torch.autograd.grad(d_out, out, jv, retain_graph=True)[0]
                return torch.autograd.grad(out, params, h_jv, retain_graph=True)
        norm = torch.sqrt(_dot(v, v))
        v = [x / norm.to(x.dtype) for x in v]
        lam = torch.zeros((), dtype=torch.float64, device=params[0].device)
        for _ in range(iters):
            cv = apply(v)
            lam = _dot(v, cv)
            norm = torch.sqrt(_dot(cv, cv)).clamp(min=torch.finfo(torch.float64).tiny)
            v = [x.detach() / norm.to(x.dtype) for x in cv]
    return lam.detach()


def adam_horizon(num_steps: int, beta1: float = 0.9) -> Tuple[float, Tuple[float, float]]:
    """(lr, (beta1, beta2)) for a run of ``num_steps`` (N) steps: beta2 = 1 - 1/N, so the second
    moment averages over about the whole run, and lr = 1 / sqrt(N)."""
    n = check_count("adam_horizon", "num_steps", num_steps, 2)
    beta1 = check_range("adam_horizon", "beta1", beta1, 0.0, 1.0, high_open=True)
    return 1.0 / math.sqrt(n), (beta1, 1.0 - 1.0 / n)


class RescaledHparams(NamedTuple):
    """What :func:`rescale_hparams` returns; unpacks as ``lr, weight_decay``."""
    lr: float
    weight_decay: float


def rescale_hparams(lr: float, batch_size: int, weight_decay: float, new_batch_size: int, *,
                    rule: str = "linear") -> RescaledHparams:
    """LR and weight decay for ``new_batch_size`` from settings tuned at ``batch_size``, momentum
    unchanged.

    Smith & Topin (2018, "A disciplined approach to neural network hyper-parameters: Part 1")
    tie LR, batch size, momentum and weight decay together through the SGD noise scale of
    Smith & Le (2018), g = lr N / (B (1 - m)) for N samples, batch B and momentum m: runs at
    the same g follow the same stochastic differential equation in epochs. With k =
    new_batch_size / batch_size:

    - ``rule="linear"`` holds g: lr' = k lr (Goyal et al. 2017's linear scaling rule).
      ``rule="sqrt"`` holds the variance of one update per sample instead: lr' = sqrt(k) lr
      (Krizhevsky 2014; Hoffer et al. 2017), so g falls by sqrt(k).
    - Weight decay holds the shrink of the weights per epoch: an epoch of N / B steps of SGD
      with L2 decay wd (torch's ``weight_decay``, or AdamW's lr-scaled decoupled decay)
      multiplies them by about exp(-lr wd N / (B (1 - m))) = exp(-g wd), so g wd is held:
      wd' = wd g / g'. Under ``"linear"`` wd' = wd; under ``"sqrt"`` wd' = sqrt(k) wd.

    The rule is first order in lr: k steps of batch B at lr and one of batch kB at k lr move
    the weights alike only while the gradient changes little over those k steps, so it breaks
    down at large lr and large k (Goyal et al. warm up past k = 8 for that reason).
    """
    op = "rescale_hparams"
    lr = check_range(op, "lr", lr, 0.0, low_open=True, high_open=True)
    weight_decay = check_range(op, "weight_decay", weight_decay, 0.0, high_open=True)
    b = check_count(op, "batch_size", batch_size, 1)
    new_b = check_count(op, "new_batch_size", new_batch_size, 1)
    if rule not in BATCH_RULES:
        raise ValueError(f"{op}: rule must be one of {BATCH_RULES}, got {rule!r}")
    k = new_b / b
    new_lr = lr * (k if rule == "linear" else math.sqrt(k))
    # g' / g = (new_lr / new_b) / (lr / b); wd' = wd g / g'.
    return RescaledHparams(new_lr, weight_decay * (lr * k) / new_lr)
