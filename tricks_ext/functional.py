"""Stateless API (naming after torch.nn.functional). Every function takes ``backend=`` (one of
``auto``, ``torch``, ``cpu``, ``cuda``, ``triton``; default: the backend in force, see
:func:`tricks_ext.use_backend`)."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple, Union

import torch
from torch import Tensor

from tricks_ext import _backend
from tricks_ext._dtypes import stats_dtype
from tricks_ext._checks import (check_eps, check_float_tensor, check_same_device, check_unit, is_int, is_number,
                                renamed)
from tricks_ext._gradients import centralize
from tricks_ext.targets import MixedTargets

__all__ = ["weight_standardize", "centralize_gradients_", "dropout", "dropout_add", "drop_path", "draw_seed_offset",
           "mixup", "soft_target_cross_entropy", "soft_target_binary_cross_entropy", "soft_f1_loss", "flood", "mask_boxes",
           "cutout", "spec_augment", "evonorm_s0"]


def _autocast_fp32(t: Tensor) -> Tensor:
    """torch's autocast policy for norms and losses: group_norm, layer_norm, cross_entropy and
    binary_cross_entropy_with_logits run in fp32 inside an autocast region. A float16/bfloat16
    input of EvoNorm or of a loss is upcast there, so the result is fp32 as torch's would be."""
    if (t.dtype in (torch.float16, torch.bfloat16) and torch.amp.is_autocast_available(t.device.type)
            and torch.is_autocast_enabled(t.device.type)):
        return t.float()
    return t


def weight_standardize(w: Tensor, eps: float = 1e-6, gain: Optional[Tensor] = None,
                       scale: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """Standardize a weight per output channel: ``(w - mean) / sqrt(var + eps) * gain * scale``.

    Statistics (mean, biased variance) run over every dim but the first, in fp32 (fp64 for fp64
    weights), whatever ``w``'s dtype. Same numbers as timm ``StdConv2d`` (``gain=None``) and
    ``ScaledStdConv2d`` (``gain`` of O elements, ``scale = fan_in ** -0.5``).

    Args:
        w: weight of rank >= 2, ``(out_channels, ...)``: Linear, Conv1d/2d/3d, depthwise; any
            strides. The result has ``w``'s strides when ``w`` is contiguous or channels_last
            (more generally when each output channel is one dense block), else is contiguous.
        eps: added to the variance (timm StdConv2d: 1e-6; ScaledStdConv2d: 1e-5).
        gain: optional per-output-channel multiplier with ``out_channels`` elements (any shape,
            e.g. (O, 1, 1, 1)); differentiable.
        scale: optional constant multiplier.
        backend: see module docstring.

    NaN/Inf policy: no check is made (it would cost a host sync); a non-finite element makes
    its own output channel non-finite and leaves the other channels untouched.
    """
    op = "weight_standardize"
    check_float_tensor(op, "w", w)
    if w.dim() < 2:
        raise ValueError(f"{op}: w must have at least 2 dims (out_channels, ...), got shape {tuple(w.shape)}")
    if gain is not None:
        check_float_tensor(op, "gain", gain)
        check_same_device(op, "gain", gain, w, "w")
        if gain.numel() != w.shape[0]:
            raise ValueError(f"{op}: gain must have out_channels={w.shape[0]} elements, got shape {tuple(gain.shape)}")
    check_eps(op, eps, allow_zero=True)
    if scale is not None and not (is_number(scale) and math.isfinite(scale)):
        raise ValueError(f"{op}: scale must be a finite number or None, got {scale!r}")
    return _backend.implementation(op, w.device, backend)(w, eps, gain, scale)


@torch.no_grad()
def centralize_gradients_(params_or_grads: Union[Tensor, Iterable[Tensor]], conv_only: bool = False) -> None:
    """Gradient Centralization in place, for use with any optimizer (call before ``step``).

    Each gradient with dim > 1 (dim > 3 with ``conv_only``) loses its mean over all dims but the
    first; 1-D gradients are left alone. Accepts params (their ``.grad`` is centralized; params
    without a grad are skipped) or gradient tensors. Mean computed in fp32 for fp16/bf16.
    """
    items = [params_or_grads] if isinstance(params_or_grads, Tensor) else list(params_or_grads)
    for t in items:
        g = t.grad if isinstance(t, torch.nn.Parameter) or t.requires_grad else t
        if g is None:
            continue
        if g.is_sparse:
            raise RuntimeError("centralize_gradients_: sparse gradients are not supported")
        check_float_tensor("centralize_gradients_", "gradient", g)
        g.copy_(centralize(g.to(stats_dtype(g.dtype)), conv_only))


def draw_seed_offset(device: torch.device, generator: Optional[torch.Generator] = None) -> Tensor:
    """A fresh (seed, offset) pair for the dropout family, drawn from torch's generator (so
    ``torch.manual_seed`` makes runs reproducible) as an int64 tensor on ``device``: for CUDA
    from the device generator, without a host round trip."""
    return torch.randint(0, 2 ** 62, (2,), dtype=torch.int64, device=device, generator=generator)


def _seed_offset_for(op: str, x: Tensor, generator: Optional[torch.Generator],
                     seed_offset: Optional[Tensor]) -> Tensor:
    if seed_offset is None:
        return draw_seed_offset(x.device, generator)
    if not (isinstance(seed_offset, Tensor) and seed_offset.dtype == torch.int64 and seed_offset.numel() == 2):
        raise ValueError(f"{op}: seed_offset must be an int64 tensor of 2 elements (seed, offset)")
    check_same_device(op, "seed_offset", seed_offset, x, "x")
    return seed_offset.reshape(2).contiguous()


def _as_residual(op: str, residual: Tensor, x: Tensor) -> Tuple[Tensor, Tensor, bool]:
    """(x, residual, fused) for ``residual + branch(x)`` with torch's semantics for ``+``: both
    promoted to their common dtype (the fp32 residual stream beside a bf16 branch under
    autocast gives fp32), and ``residual`` broadcast. ``fused``: the one-pass op applies, i.e.
    the result has x's shape (residual broadcast to it); otherwise x is the smaller operand and
    the caller adds after the branch, so the mask still covers x's own elements as in torch."""
    check_float_tensor(op, "residual", residual)
    check_same_device(op, "residual", residual, x, "x")
    try:
        shape = torch.broadcast_shapes(x.shape, residual.shape)
    except RuntimeError:
        raise ValueError(f"{op}: residual of shape {tuple(residual.shape)} does not broadcast with x of shape "
                         f"{tuple(x.shape)}") from None
    dtype = torch.promote_types(x.dtype, residual.dtype)
    x, residual = x.to(dtype), residual.to(dtype)
    fused = shape == x.shape
    if fused and residual.shape != shape:
        residual = residual.expand(shape)
    return x, residual, fused


def dropout(x: Tensor, p: float = 0.5, training: bool = True, generator: Optional[torch.Generator] = None,
            seed_offset: Optional[Tensor] = None, backend: Optional[str] = None) -> Tensor:
    """Dropout whose mask is regenerated in backward from a (seed, offset) pair, never stored.

    Same distribution as ``torch.nn.functional.dropout`` (each element kept with probability
    1 - p, kept ones scaled by 1 / (1 - p)), and the same mask on every backend and device for
    the same ``seed_offset`` (Philox4x32-10 as Triton's ``tl.randint4x``). ``p == 0`` and
    ``training=False`` return ``x`` itself; ``p == 1`` gives zeros. ``seed_offset``: an int64
    tensor (seed, offset) on x's device, drawn with :func:`draw_seed_offset` when None.

    Two differences from torch's dropout, on purpose:

    * Any shape and strides are taken, and the mask follows x's logical (contiguous) element
      order, so every layout of the same values gets the same mask; the result is contiguous
      (torch keeps channels_last). The one-pass kernels write in that order.
    * A dropped element is an exact 0 whatever x holds there: a NaN or inf that is dropped does
      not reach the output (torch multiplies by the mask, giving NaN). The kernels select
      instead of multiplying, which keeps the gradient of a dropped element an exact 0 too.
    """
    op = "dropout"
    check_float_tensor(op, "x", x)
    check_unit(op, "p", p)
    if not training or p == 0.0:
        return x
    seed_offset = _seed_offset_for(op, x, generator, seed_offset)
    return _backend.implementation("dropout_apply", x.device, backend, caller=op)(
        x, None, None, seed_offset, float(p), _keep_scale(p), 1)


def _keep_scale(p: float) -> float:
    """Scale of the kept elements: 1 / (1 - p), 0 for p = 1 (everything dropped, no inf * 0)."""
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


def dropout_add(x: Tensor, residual: Tensor, p: float = 0.5, gate: Optional[Tensor] = None, training: bool = True,
                generator: Optional[torch.Generator] = None, seed_offset: Optional[Tensor] = None,
                backend: Optional[str] = None) -> Tensor:
    """``residual + gate * dropout(x)`` in one pass, the mask regenerated in backward.

    ``gate`` is an optional one-element tensor, e.g. the ReZero scalar alpha (arXiv 2003.04887,
    initialized to 0; see :class:`tricks_ext.nn.ReZeroResidual`); its gradient is the full
    reduction sum(grad * dropout(x)). ``residual`` follows torch's ``+``: it may have another
    float dtype (both are promoted: an fp32 residual stream beside a bf16 branch under autocast
    gives fp32) and broadcasts; the mask always covers x's own elements. One pass when the
    result has x's shape; when x is the one broadcast, the dropout runs first and the add after.
    Mask, seeds and identities as :func:`dropout`: with ``training=False`` or ``p == 0`` the
    result is ``residual + gate * x``.
    """
    op = "dropout_add"
    check_float_tensor(op, "x", x)
    x, residual, fused = _as_residual(op, residual, x)
    p = check_unit(op, "p", p)
    if gate is not None:
        check_float_tensor(op, "gate", gate)
        check_same_device(op, "gate", gate, x, "x")
        if gate.numel() != 1:
            raise ValueError(f"{op}: gate must have one element, got shape {tuple(gate.shape)}")
    if not training or p == 0.0:
        return residual + (x if gate is None else gate.reshape(()).to(x.dtype) * x)
    seed_offset = _seed_offset_for(op, x, generator, seed_offset)
    run = _backend.implementation("dropout_apply", x.device, backend, caller=op)
    if not fused:
        return residual + run(x, None, gate, seed_offset, p, _keep_scale(p), 1)
    return run(x, residual, gate, seed_offset, p, _keep_scale(p), 1)


def drop_path(x: Tensor, p: float = 0.0, training: bool = True, scale_by_keep: bool = True,
              residual: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
              seed_offset: Optional[Tensor] = None, backend: Optional[str] = None) -> Tensor:
    """Drop path (stochastic depth, timm ``drop_path``): each sample along dim 0 is zeroed with
    probability ``p``, kept ones scaled by 1 / (1 - p) when ``scale_by_keep``.

    One Philox draw per sample (element n of the stream ``seed_offset``), regenerated in
    backward: nothing but the 16-byte (seed, offset) is saved. ``residual`` fuses timm's
    ``shortcut + drop_path(branch)`` into the same pass (promoted and broadcast as torch's
    ``+``, see :func:`dropout_add`). ``p == 0`` and
    ``training=False`` return ``x`` (or ``residual + x``); ``p == 1`` drops every sample.
    """
    op = "drop_path"
    check_float_tensor(op, "x", x)
    p = check_unit(op, "p", p)
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have a batch dim (rank >= 1), got a 0-d tensor")
    fused = True
    if residual is not None:
        x, residual, fused = _as_residual(op, residual, x)
    if not training or p == 0.0:
        return x if residual is None else residual + x
    seed_offset = _seed_offset_for(op, x, generator, seed_offset)
    group = max(1, x.numel() // max(1, x.shape[0]))
    scale = _keep_scale(p) if scale_by_keep else 1.0
    run = _backend.implementation("dropout_apply", x.device, backend, caller=op)
    if not fused:
        return residual + run(x, None, None, seed_offset, p, scale, group)
    return run(x, residual, None, seed_offset, p, scale, group)


def mixup(x: Tensor, coef: Tensor, box: Optional[Tensor] = None, inplace: bool = False,
          backend: Optional[str] = None) -> Tensor:
    """Mix a batch with its flip in one pass (the image side of timm ``Mixup``; parameters from
    :meth:`tricks_ext.data.Mixup.sample_params` or your own).

    Sample i's partner is j = N - 1 - i. Inside sample i's box (rows y0:y1, cols x0:x1 of the
    last two dims) the output is x_j (CutMix); elsewhere x_i when b_i == 0, else
    a_i x_i + b_i x_j (Mixup), math in fp32 (fp64 for fp64 x).

    Args:
        x: (N, ...) floating batch; CutMix boxes need rank >= 3. Contiguous and channels_last
            are mixed in place of their layout; other strides are copied first. Must not
            require grad (mixing is a data transform).
        coef: (N, 2) per-sample (a, b).
        box: (N, 4) integer per-sample (y0, y1, x0, x1); None means no boxes.
        inplace: write into ``x`` (as timm does) instead of a new tensor.
    """
    op = "mixup"
    check_float_tensor(op, "x", x)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have a batch dim")
    if x.requires_grad:
        raise RuntimeError(f"{op}: x requires grad; mixing is a data transform without a gradient: pass x.detach()")
    n = x.shape[0]
    if not (isinstance(coef, Tensor) and coef.shape == (n, 2) and coef.dtype.is_floating_point):
        raise ValueError(f"{op}: coef must be a floating tensor of shape ({n}, 2), got "
                         f"{tuple(coef.shape) if isinstance(coef, Tensor) else type(coef).__name__}")
    check_same_device(op, "coef", coef, x, "x")
    if box is None:
        box = torch.zeros(n, 4, dtype=torch.int32, device=x.device)
    elif not (isinstance(box, Tensor) and box.shape == (n, 4) and _is_integer(box.dtype)):
        raise ValueError(f"{op}: box must be an integer tensor of shape ({n}, 4), got "
                         f"{f'{tuple(box.shape)} {box.dtype}' if isinstance(box, Tensor) else type(box).__name__}")
    check_same_device(op, "box", box, x, "x")
    if x.dim() < 3 and bool(((box[:, 0] < box[:, 1]) & (box[:, 2] < box[:, 3])).any()):
        raise ValueError(f"{op}: CutMix boxes need x of rank >= 3 (N, ..., H, W), got shape {tuple(x.shape)}")
    return _backend.implementation("mixup_apply", x.device, backend, caller=op)(x, coef, box, inplace)


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


_REDUCTIONS = ("mean", "sum", "none")


def _check_logits_and_reduction(op: str, logits: Tensor, reduction: str) -> None:
    """The checks every classification loss makes first: floating (N, C) logits, a known reduction."""
    check_float_tensor(op, "logits", logits)
    if logits.dim() != 2:
        raise ValueError(f"{op}: logits must be (N, C), got shape {tuple(logits.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def _split_targets(op: str, logits: Tensor, targets: object):
    """(logits, a, b, lam, dense, the mix's smoothing or None) from MixedTargets, integer labels
    (N,) or dense (N, C) targets; dense targets and logits are promoted to their common dtype."""
    n, classes = logits.shape
    a = b = lam = dense = mix_smoothing = None
    if isinstance(targets, MixedTargets):
        if targets.num_classes != classes:
            raise ValueError(f"{op}: targets have num_classes={targets.num_classes} but logits have {classes} classes")
        if len(targets) != n:
            raise ValueError(f"{op}: targets hold {len(targets)} rows but logits have {n} (logits are (N, C))")
        a, b, lam, mix_smoothing = targets.a, targets.b, targets.lam, targets.smoothing
    elif isinstance(targets, Tensor) and not targets.dtype.is_floating_point and not targets.dtype.is_complex:
        if targets.shape != (n,):
            raise ValueError(f"{op}: integer labels must have shape ({n},), got {tuple(targets.shape)}")
        a = targets
    elif isinstance(targets, Tensor) and targets.dtype.is_floating_point:
        if targets.shape != logits.shape:
            raise ValueError(f"{op}: dense targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        common = torch.promote_types(logits.dtype, targets.dtype)
        logits, dense = logits.to(common), targets.to(common)
    else:
        raise TypeError(f"{op}: targets must be MixedTargets, integer labels (N,) or a dense (N, C) float tensor, "
                        f"got {type(targets).__name__}")
    for name, t in (("targets", a), ("partner labels", b), ("lam", lam), ("targets", dense)):
        check_same_device(op, name, t, logits, "logits")
    return logits, a, b, lam, dense, mix_smoothing


def soft_target_cross_entropy(logits: Tensor, targets: object, reduction: str = "mean", label_smoothing: float = 0.0,
                              ignore_index: int = -100, backend: Optional[str] = None, *,
                              weight: Optional[Tensor] = None) -> Tensor:
    """Cross-entropy against soft targets in one forward and one backward kernel, with the
    targets kept compact: loss_i = -sum_c t_ic log_softmax(logits_i)_c.

    ``targets`` is one of:

    * :class:`tricks_ext.data.MixedTargets` (from :class:`tricks_ext.data.Mixup`): label-smoothed
      mixed one-hots, never expanded (O(N) target memory); equals timm
      ``SoftTargetCrossEntropy()(logits, mixup_target(...))``.
    * integer labels (N,): torch ``cross_entropy(logits, labels, label_smoothing=...,
      ignore_index=...)``; 'mean' divides by the number of rows not ignored (NaN when all are).
    * a dense floating (N, C) tensor: timm ``SoftTargetCrossEntropy`` (targets need not sum to
      1; a dtype other than the logits' is handled by promoting both to the common dtype).

    ``weight``: C class weights (torch ``cross_entropy``'s ``weight=``): every target is scaled,
    t_ic -> w_c t_ic, the label-smoothing term included, so on integer labels the loss equals
    ``cross_entropy(logits, labels, weight=w, label_smoothing=, ignore_index=)`` and 'mean'
    divides by the sum of the weights of the labels not ignored; on mixed or dense targets it is
    the dense formula -sum_c w_c t_ic log_softmax(logits_i)_c, 'mean' over the N rows (torch's
    rule for class-probability targets). A constant: it gets no gradient. Its values are not
    checked (that would read the device); see :func:`tricks_ext.recipe.class_weights`.

    Statistics in fp32 (fp64 for fp64 logits) whatever the logits' dtype; the result has the
    logits' dtype, like torch. Any C: rows stream through an online log-sum-exp on the GPU
    backends. A label outside [0, C) (and not ``ignore_index``) makes that row's loss NaN
    rather than raising, which would need a device-to-host sync. ``reduction``: 'mean', 'sum'
    or 'none'.
    """
    op = "soft_target_cross_entropy"
    _check_logits_and_reduction(op, logits, reduction)
    logits = _autocast_fp32(logits)
    check_unit(op, "label_smoothing", label_smoothing)
    if label_smoothing and isinstance(targets, MixedTargets):
        raise ValueError(f"{op}: MixedTargets carry their own smoothing; leave label_smoothing at 0")
    logits, a, b, lam, dense, mix_smoothing = _split_targets(op, logits, targets)
    if label_smoothing and dense is not None:
        raise ValueError(f"{op}: label_smoothing applies to integer labels, not dense targets")
    smoothing = float(label_smoothing) if mix_smoothing is None else mix_smoothing
    weight = _class_vector(op, "weight", weight, logits)
    return _backend.implementation("soft_ce", logits.device, backend, caller=op)(
        logits, a, b, lam, dense, weight, smoothing, int(ignore_index), reduction)


def _class_vector(op: str, name: str, v: Union[Tensor, float, None], logits: Tensor) -> Optional[Tensor]:
    """A per-class constant of a loss (``weight``, ``pos_weight``) as C values in the statistics
    dtype: a number is broadcast, a tensor must hold 1 or C values on the logits' device and
    must not require grad (the kernels give it none)."""
    if v is None:
        return None
    classes = logits.shape[1]
    if is_number(v) and not isinstance(v, Tensor):
        return torch.full((classes,), float(v), dtype=stats_dtype(logits.dtype), device=logits.device)
    if not isinstance(v, Tensor):
        raise TypeError(f"{op}: {name} must be a number, a tensor or None, got {type(v).__name__}")
    check_float_tensor(op, name, v)
    check_same_device(op, name, v, logits, "logits")
    if v.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"{op}: {name} gets no gradient here; pass it detached")
    if v.numel() not in (1, classes) or v.dim() > 1:
        raise ValueError(f"{op}: {name} must be a number or have C={classes} elements, got shape {tuple(v.shape)}")
    return v.reshape(-1).expand(classes)


def soft_target_binary_cross_entropy(logits: Tensor, targets: object, label_smoothing: float = 0.1,
                                     target_threshold: Optional[float] = None,
                                     pos_weight: Union[Tensor, float, None] = None, reduction: str = "mean",
                                     backend: Optional[str] = None, *, smoothing: Optional[float] = None,
                                     weight: Union[Tensor, float, None] = None) -> Tensor:
    """Binary cross-entropy with logits against soft targets (timm ``BinaryCrossEntropy``, the
    loss of its mixup/cutmix recipes) in one forward and one backward kernel, the targets kept
    compact: per element ``(1 - t) z + lw log(1 + exp(-z))`` with ``lw = 1 + (pos_weight - 1) t``.

    ``targets`` is one of:

    * :class:`tricks_ext.data.MixedTargets` (from :class:`tricks_ext.data.Mixup`): never
      expanded; equals timm ``BinaryCrossEntropy()(logits, mixup_target(...))``. The mix
      carries its smoothing, and ``label_smoothing`` is not applied again (as timm, which smooths
      only integer labels).
    * integer labels (N,): timm's one-hot with ``label_smoothing`` (off ``s / C``, on
      ``1 - s + s / C``).
    * a dense floating (N, C) tensor, used as it is (``label_smoothing`` not applied, as timm).

    ``target_threshold``: targets become 1 where ``t > target_threshold``, else 0 (timm).
    ``pos_weight``: a number or C weights of the positive term (torch's ``pos_weight``; a
    constant: it gets no gradient).
    ``weight``: a number or C class weights that scale each element's loss (torch's ``weight=``
    broadcast over the rows, timm's ``weight``; a constant: it gets no gradient); 'mean' still
    divides by N * C, as torch does.
    ``reduction``: 'mean' over all N * C elements (torch's), 'sum', or 'none' ((N, C) losses).
    Math in fp32 (fp64 for fp64 logits); the result has the logits' dtype. A label outside
    [0, C) makes its row NaN rather than raising (no device-to-host sync).
    ``smoothing``: the former name of ``label_smoothing`` (timm's), accepted with a FutureWarning
    for one release.
    """
    op = "soft_target_binary_cross_entropy"
    label_smoothing = renamed(op, "smoothing", smoothing, "label_smoothing", label_smoothing, 0.1)
    _check_logits_and_reduction(op, logits, reduction)
    logits = _autocast_fp32(logits)
    check_unit(op, "label_smoothing", label_smoothing)
    if label_smoothing >= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if target_threshold is not None and not (is_number(target_threshold) and math.isfinite(target_threshold)):
        raise ValueError(f"{op}: target_threshold must be a finite number or None, got {target_threshold!r}")
    logits, a, b, lam, dense, mix_smoothing = _split_targets(op, logits, targets)
    pos_weight = _class_vector(op, "pos_weight", pos_weight, logits)
    weight = _class_vector(op, "weight", weight, logits)
    label_smoothing = float(label_smoothing) if mix_smoothing is None else mix_smoothing
    return _backend.implementation("soft_bce", logits.device, backend, caller=op)(
        logits, a, b, lam, dense, pos_weight, weight, label_smoothing,
        None if target_threshold is None else float(target_threshold), reduction)


def soft_f1_loss(logits: Tensor, targets: object, average: str = "macro", beta: float = 1.0, eps: float = 1e-6,
                 multi_label: Optional[bool] = None, backend: Optional[str] = None) -> Tensor:
    """Soft F-beta loss from logits, 1 - F: the batch's soft counts TP_c = sum_i t_ic p_ic,
    FP_c = sum_i (1 - t_ic) p_ic and FN_c = sum_i t_ic (1 - p_ic) reduced by one fused kernel
    (the probabilities never stored), then P = TP / (TP + FP + eps), R = TP / (TP + FN + eps)
    and F = (1 + beta^2) P R / (beta^2 P + R + eps).

    ``targets``: integer labels (N,) (multi-class: one-hot), a dense floating (N, C) tensor, or
    :class:`tricks_ext.data.MixedTargets` (expanded to dense). ``multi_label``: p = sigmoid(logits)
    per class (True) or the softmax of each row (False); None takes True for dense targets and
    False otherwise. ``average``: 'macro' (F per class, averaged) or 'micro' (F of the counts
    summed over the classes; pytorch-optimizer's ``SoftF1Loss(beta, eps)`` applied to p, whose
    precision and recall exchange names: the same F at beta = 1). A ratio whose denominator is 0
    (eps = 0 only) counts as 0. A label outside [0, C) makes the loss NaN (no host sync). Counts
    in fp32 (fp64 for fp64 logits); the result has the logits' dtype.
    """
    op = "soft_f1_loss"
    _check_logits_and_reduction(op, logits, "mean")
    logits = _autocast_fp32(logits)
    if average not in ("macro", "micro"):
        raise ValueError(f"{op}: average must be 'macro' or 'micro', got {average!r}")
    if not (is_number(beta) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"{op}: beta must be a finite number > 0, got {beta!r}")
    if not (is_number(eps) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    if multi_label is not None and not isinstance(multi_label, bool):
        raise TypeError(f"{op}: multi_label must be a bool or None, got {type(multi_label).__name__}")
    if isinstance(targets, MixedTargets):
        if targets.num_classes != logits.shape[1]:
            raise ValueError(f"{op}: targets have num_classes={targets.num_classes} but logits have "
                             f"{logits.shape[1]} classes")
        targets = targets.dense().to(logits.device, logits.dtype)  # the logits keep their dtype
        multi_label = False if multi_label is None else multi_label
    logits, a, _b, _lam, dense, _smoothing = _split_targets(op, logits, targets)
    if multi_label is None:
        multi_label = dense is not None
    return _backend.implementation("soft_f1", logits.device, backend, caller=op)(
        logits, a, dense, average, float(beta), float(eps), multi_label)


def flood(loss: Tensor, b: float) -> Tensor:
    """Flooding (arXiv 2002.08709): ``|loss - b| + b``. Above the flood level ``b`` the
    gradient is unchanged; below it the sign flips, so training loss floats around ``b``."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"flood: loss must be a tensor, got {type(loss).__name__}")
    if not (is_number(b) and math.isfinite(b) and b >= 0):
        raise ValueError(f"flood: b must be a finite number >= 0, got {b!r}")
    return (loss - b).abs() + b


def mask_boxes(x: Tensor, box: Tensor, value: float = 0.0, inplace: bool = False, backend: Optional[str] = None) -> Tensor:
    """Fill boxes of each sample with ``value`` in one pass: element (n, ..., h, w) becomes
    ``value`` when (h, w) lies in any box ``box[n, k] = (y0, y1, x0, x1)`` (half-open; over x's
    last two dims), else keeps x. The primitive of :func:`cutout` and :func:`spec_augment`.
    Differentiable (out of place): the gradient is masked the same way. Contiguous and
    channels_last x keep their layout."""
    return _mask_boxes("mask_boxes", x, box, value, inplace, backend)


def _mask_boxes(op: str, x: Tensor, box: Tensor, value: float, inplace: bool, backend: Optional[str]) -> Tensor:
    """mask_boxes on behalf of ``op``, the function the user called (named in errors)."""
    check_float_tensor(op, "x", x)
    if x.dim() < 3:
        raise ValueError(f"{op}: x must be (N, ..., H, W), got shape {tuple(x.shape)}")
    if not (isinstance(box, Tensor) and box.dim() == 3 and box.shape[0] == x.shape[0] and box.shape[2] == 4
            and _is_integer(box.dtype)):
        raise ValueError(f"{op}: box must be an integer tensor ({x.shape[0]}, K, 4), got "
                         f"{f'{tuple(box.shape)} {box.dtype}' if isinstance(box, Tensor) else type(box).__name__}")
    check_same_device(op, "box", box, x, "x")
    if not is_number(value):
        raise TypeError(f"{op}: value must be a number, got {type(value).__name__}")
    if inplace and x.requires_grad:
        raise RuntimeError(f"{op}: inplace=True on a tensor that requires grad; use inplace=False")
    return _backend.implementation("mask_boxes", x.device, backend, caller=op)(x, box, float(value), inplace)


def cutout(x: Tensor, holes: int = 1, length: int = 16, value: float = 0.0, inplace: bool = False,
           generator: Optional[torch.Generator] = None, seed_offset: Optional[Tensor] = None,
           backend: Optional[str] = None) -> Tensor:
    """Cutout (arXiv 1708.04552): per sample, ``holes`` squares of side ``length`` centred at
    uniform pixels (clipped to the image) are set to ``value``. The centres come from the
    Philox stream ``seed_offset`` (drawn from torch's generator when None): reproducible, the
    same on every device, no host sync. x (N, ..., H, W)."""
    from tricks_ext._sampling import cutout_boxes

    if not (is_int(holes) and holes >= 1 and is_int(length) and length >= 0):
        raise ValueError(f"cutout: holes must be an int >= 1 and length an int >= 0, got {holes!r}, {length!r}")
    check_float_tensor("cutout", "x", x)
    if x.dim() < 3:
        raise ValueError(f"cutout: x must be (N, ..., H, W), got shape {tuple(x.shape)}")
    so = _seed_offset_for("cutout", x, generator, seed_offset)
    box = cutout_boxes(so[0], so[1], x.shape[0], holes, length, x.shape[-2], x.shape[-1], x.device)
    return _mask_boxes("cutout", x, box, value, inplace, backend)


def spec_augment(x: Tensor, freq_mask_param: int = 27, time_mask_param: int = 100, freq_masks: int = 1,
                 time_masks: int = 1, value: float = 0.0, inplace: bool = False,
                 generator: Optional[torch.Generator] = None, seed_offset: Optional[Tensor] = None,
                 backend: Optional[str] = None) -> Tensor:
    """SpecAugment frequency and time masking (arXiv 1904.08779) of spectrograms
    x (N, ..., F, T) in one pass: per sample, ``freq_masks`` bands of up to ``freq_mask_param``
    frequency bins and ``time_masks`` spans of up to ``time_mask_param`` frames, drawn as
    torchaudio's ``mask_along_axis_iid`` does, from the Philox stream ``seed_offset``."""
    from tricks_ext._sampling import spec_augment_boxes

    op = "spec_augment"
    for name, v in (("freq_mask_param", freq_mask_param), ("time_mask_param", time_mask_param),
                    ("freq_masks", freq_masks), ("time_masks", time_masks)):
        if not (is_int(v) and v >= 0):
            raise ValueError(f"{op}: {name} must be an int >= 0, got {v!r}")
    check_float_tensor(op, "x", x)
    if x.dim() < 3:
        raise ValueError(f"{op}: x must be (N, ..., F, T), got shape {tuple(x.shape)}")
    if freq_masks + time_masks == 0:
        return x
    so = _seed_offset_for(op, x, generator, seed_offset)
    box = spec_augment_boxes(so[0], so[1], x.shape[0], x.shape[-2], x.shape[-1], freq_mask_param, time_mask_param,
                             freq_masks, time_masks, x.device)
    return _mask_boxes(op, x, box, value, inplace, backend)


def evonorm_s0(x: Tensor, v: Optional[Tensor], weight: Tensor, bias: Tensor, groups: int = 32, eps: float = 1e-5,
               apply_act: bool = True, backend: Optional[str] = None) -> Tensor:
    """EvoNorm-S0 (arXiv 2004.02967; timm ``EvoNorm2dS0``) in one forward and one backward
    kernel: ``y = weight * x * sigmoid(v * x) / sqrt(var + eps) + bias``, var the biased variance
    of each sample's group of C / groups channels over all spatial positions.

    x is (N, C, *spatial) with rank >= 3 (N x C x L, N x C x H x W, N x C x D x H x W); NCHW and
    channels_last come back in the same layout. Statistics in fp32 (fp64 for fp64 x) for
    fp16/bf16 too. Saved for backward: x and two fp32 numbers per (sample, group); the reductions
    for dv, dweight, dbias are deterministic. ``apply_act=False`` is timm's affine-only S0:
    ``y = weight * x + bias`` (v unused; plain PyTorch ops).
    """
    op = "evonorm_s0"
    check_float_tensor(op, "x", x)
    x = _autocast_fp32(x)
    if x.dim() < 3:
        raise ValueError(f"{op}: x must be (N, C, *spatial) with rank >= 3, got shape {tuple(x.shape)}")
    c = x.shape[1]
    names = (("weight", weight), ("bias", bias)) + ((("v", v),) if apply_act else ())
    for name, t in names:
        check_float_tensor(op, name, t)
        check_same_device(op, name, t, x, "x")
        if t.numel() != c:
            raise ValueError(f"{op}: x of shape {tuple(x.shape)} has C={c} channels (dim 1; x is (N, C, *spatial)) "
                             f"but {name} has {t.numel()} elements")
    if apply_act and not (is_int(groups) and groups >= 1 and c % groups == 0):
        raise ValueError(f"{op}: C={c} is not divisible by groups={groups!r}")
    check_eps(op, eps)
    if not apply_act:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * weight.reshape(shape).to(x.dtype) + bias.reshape(shape).to(x.dtype)
    return _backend.implementation(op, x.device, backend)(x, v, weight, bias, int(groups), float(eps))
