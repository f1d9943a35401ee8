"""Class priors from the labels: balanced class weights (sklearn's rule) and the last layer's
bias set to the prior (linear, sigmoid, softmax outputs)."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from tricks_ext._checks import check_count, check_range

__all__ = ["class_weights", "init_output_bias"]

BIAS_KINDS = ("linear", "sigmoid", "softmax")


def check_labels(op: str, labels: Any, num_classes: Optional[int] = None, every_class: bool = True) -> tuple:
    """``labels`` as a 1-D int64 CPU tensor and the class count (``num_classes``, else max + 1);
    ValueError for no labels, a negative or out-of-range label, and (``every_class``) a class
    without samples; TypeError for float or bool labels."""
    t = torch.as_tensor(labels)
    if t.numel() == 0:  # before the dtype: [] becomes a float tensor
        raise ValueError(f"{op}: labels is empty")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{op}: labels must be integers, got {t.dtype}")
    t = t.reshape(-1).to(device="cpu", dtype=torch.int64)
    low, high = int(t.min()), int(t.max())
    if low < 0:
        raise ValueError(f"{op}: labels must be >= 0, got {low}")
    classes = high + 1 if num_classes is None else check_count(op, "num_classes", num_classes, 1)
    if high >= classes:
        raise ValueError(f"{op}: label {high} is out of range for num_classes={classes}")
    counts = torch.bincount(t, minlength=classes)
    if every_class and bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).reshape(-1)[:5].tolist()
        raise ValueError(f"{op}: classes {missing} have no samples; a weight or a resampling needs every class "
                         f"present (pass the labels of the classes you train on)")
    return t, classes, counts


def class_weights(labels: Any, num_classes: Optional[int] = None) -> Tensor:
    """Balanced class weights, sklearn's ``compute_class_weight("balanced")``:
    w_c = N / (C * n_c), float64 (N labels, C classes, n_c labels of class c). For
    ``F.cross_entropy(weight=)`` or our losses' ``weight=``. Every class in range(C) must have a
    label (sklearn raises too)."""
    _, classes, counts = check_labels("class_weights", labels, num_classes)
    return counts.sum().to(torch.float64) / (classes * counts.to(torch.float64))


def _prior(op: str, targets: Tensor, outputs: int, kind: str) -> Tensor:
    """The mean target per output, float64: class frequencies for int labels, the column means
    of (N, outputs) values (one-hot, soft or multi-label), the mean of (N,) values for one output."""
    if not isinstance(targets, Tensor):
        targets = torch.as_tensor(targets)
    if not targets.dtype.is_floating_point:
        if kind == "linear" or (kind == "sigmoid" and outputs == 1):  # values; one sigmoid: 0/1 labels
            targets = targets.to(torch.float64)
        else:
            labels, _, counts = check_labels(op, targets, outputs, every_class=False)
            return counts.to(torch.float64) / labels.numel()
    t = targets.detach().to(device="cpu", dtype=torch.float64)
    if t.numel() == 0:
        raise ValueError(f"{op}: targets is empty")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{op}: targets hold NaN or inf")
    t = t.reshape(-1, 1) if t.dim() == 1 else t.reshape(t.shape[0], -1)
    if t.shape[1] != outputs:
        raise ValueError(f"{op}: targets give {t.shape[1]} outputs per sample, the layer has {outputs}")
    if kind != "linear" and bool(((t < 0) | (t > 1)).any()):
        raise ValueError(f"{op}: {kind} targets must be probabilities in [0, 1]")
    return t.mean(0)


@torch.no_grad()
def init_output_bias(layer: nn.Module, targets: Any, kind: str, eps: float = 1e-6) -> Tensor:
    """Set the output layer's bias to the targets' prior, so the first steps do not spend
    themselves learning it; returns the bias (changed in place).

    ``targets``: int class labels (N,), or float values (N,) / (N, outputs) (one-hot, soft or
    multi-label targets; regression values for "linear"; for one sigmoid output, 0/1 labels).
    p is the mean target per output.

    - ``"linear"``: b = p, the mean target (MSE at zero weights is minimized there).
    - ``"sigmoid"``: b = logit(p), p clamped to [eps, 1 - eps] (a class never seen would be
      -inf), so sigmoid(b) = p: the BCE gradient with respect to b, mean(sigmoid(b) - t), is 0.
    - ``"softmax"``: b = log p - mean(log p) (p clamped to >= eps), so softmax(b) = p up to the
      clamp: the CE gradient with respect to b at zero weights, softmax(b) - p, is 0. Any constant
      gives the same softmax; the mean is subtracted so the bias is centered. This is the exact
      minimizer in closed form: a coordinate step on one bias at a time only approaches it.
    """
    if not isinstance(layer, nn.Module) or not isinstance(getattr(layer, "bias", None), Tensor):
        raise TypeError(f"init_output_bias: layer must be a module with a bias tensor (nn.Linear(..., bias=True), "
                        f"a conv), got {type(layer).__name__}")
    if kind not in BIAS_KINDS:
        raise ValueError(f"init_output_bias: kind must be one of {', '.join(BIAS_KINDS)}, got {kind!r}")
    eps = check_range("init_output_bias", "eps", eps, 0.0, 0.5, low_open=True, high_open=True)
    bias = layer.bias
    p = _prior("init_output_bias", targets, bias.numel(), kind)
    if kind == "linear":
        value = p
    elif kind == "sigmoid":
        p = p.clamp(eps, 1.0 - eps)
        value = torch.log(p) - torch.log1p(-p)
    else:
        if bias.numel() < 2:
            raise ValueError("init_output_bias: a softmax needs at least 2 outputs")
        log_p = torch.log(p.clamp(min=eps))
        value = log_p - log_p.mean()
    bias.copy_(value.reshape(bias.shape).to(bias.dtype))
    return bias
