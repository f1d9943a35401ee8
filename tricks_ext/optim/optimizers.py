"""Ranger, FusedAdam, FusedAdamW, FusedRAdam: one implementation (TricksOptimizer), four sets
of defaults. With gc=False and no Lookahead the last three equal torch.optim.Adam/AdamW/RAdam."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

from typing_extensions import Unpack

from tricks_ext.optim._base import StepOptions, TricksOptimizer


class FusedAdam(TricksOptimizer):
    """Adam (torch.optim.Adam defaults) with optional Gradient Centralization and Lookahead.

    Args:
        params: iterable of params or of param-group dicts.
        lr, betas, eps, weight_decay, maximize: as torch.optim.Adam.
        decoupled_weight_decay: AdamW-style ``p *= 1 - lr * wd`` instead of L2 ``g += wd * p``.
        gc: centralize gradients of tensors with dim > 1 (``gc_conv_only``: dim > 3) first.
        lookahead_k: Lookahead sync period (None: off); lookahead_alpha: slow-weight step.
        slow_in_param_dtype: keep slow weights in the param dtype (saves memory for bf16/fp16).
        backend: tricks_ext backend (None: the one in force, see tricks_ext.use_backend).
        **options: clipping (``max_grad_norm``, ``clip_value``, ``agc_clip_factor``) and an EMA of
            the weights (``ema_decay``, ``ema_warmup``...) inside the step: see
            :class:`tricks_ext.optim._base.StepOptions`.
    """

    _RECTIFY = False

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
                 gc: bool = False, gc_conv_only: bool = False, lookahead_k: Optional[int] = None,
                 lookahead_alpha: float = 0.5, maximize: bool = False, slow_in_param_dtype: bool = False,
                 backend: Optional[str] = None, **options: Unpack[StepOptions]) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, rectify=self._RECTIFY, gc=gc,
                         gc_conv_only=gc_conv_only, lookahead_k=lookahead_k, lookahead_alpha=lookahead_alpha,
                         maximize=maximize, slow_in_param_dtype=slow_in_param_dtype, backend=backend, **options)


class FusedAdamW(TricksOptimizer):
    """AdamW (torch.optim.AdamW defaults: weight_decay=1e-2, decoupled); knobs as FusedAdam."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, gc: bool = False, gc_conv_only: bool = False,
                 lookahead_k: Optional[int] = None, lookahead_alpha: float = 0.5, maximize: bool = False,
                 slow_in_param_dtype: bool = False, backend: Optional[str] = None,
                 **options: Unpack[StepOptions]) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=True, rectify=False, gc=gc, gc_conv_only=gc_conv_only,
                         lookahead_k=lookahead_k, lookahead_alpha=lookahead_alpha, maximize=maximize,
                         slow_in_param_dtype=slow_in_param_dtype, backend=backend, **options)


class FusedRAdam(FusedAdam):
    """RAdam (torch.optim.RAdam defaults, ``decoupled_weight_decay`` as there); knobs as FusedAdam."""

    _RECTIFY = True


class Ranger(TricksOptimizer):
    """Ranger = Gradient Centralization + RAdam (decoupled weight decay) + Lookahead(k, alpha).

    Same math as lessw2020's ranger.py and pytorch-optimizer's Ranger(degenerated_to_sgd=True),
    without their quirks: GC can be turned off, alpha is per group, state is fp32.
    The other knobs (``**options`` included) as FusedAdam.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: Tuple[float, float] = (0.95, 0.999),
                 eps: float = 1e-5, weight_decay: float = 0.0, k: int = 6, alpha: float = 0.5, gc: bool = True,
                 gc_conv_only: bool = False, maximize: bool = False, slow_in_param_dtype: bool = False,
                 backend: Optional[str] = None, **options: Unpack[StepOptions]) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=True, rectify=True, gc=gc, gc_conv_only=gc_conv_only,
                         lookahead_k=k, lookahead_alpha=alpha, maximize=maximize,
                         slow_in_param_dtype=slow_in_param_dtype, backend=backend, **options)
