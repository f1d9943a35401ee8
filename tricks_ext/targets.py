"""Compact soft targets of a mixed batch: produced by :class:`tricks_ext.data.Mixup`, consumed
by :func:`tricks_ext.functional.soft_target_cross_entropy` (both import it from here)."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from tricks_ext._checks import is_int, is_number


class MixedTargets:
    """Targets of a mixed batch without the dense (N, C) tensor:
    t_n = lam_n * onehot_s(a_n) + (1 - lam_n) * onehot_s(b_n), onehot_s the label-smoothed one-hot
    (on = 1 - s + s/C, off = s/C). ``a`` are the batch's labels, ``b`` its partners' labels
    (``a.flip(0)``), ``lam`` fp32 (N,) on the labels' device.

    :func:`tricks_ext.functional.soft_target_cross_entropy` consumes it directly (O(N) memory);
    :meth:`dense` expands it for anyone who needs the tensor (timm ``mixup_target``'s values).
    """

    def __init__(self, a: Union[Tensor, Sequence[int]], b: Union[Tensor, Sequence[int]],
                 lam: Union[Tensor, float, Sequence[float]], smoothing: float, num_classes: int) -> None:
        name = "MixedTargets"
        if not (is_int(num_classes) and num_classes >= 1):
            raise ValueError(f"{name}: num_classes must be an int >= 1, got {num_classes!r}")
        if not is_number(smoothing):
            raise TypeError(f"{name}: smoothing must be a number in [0, 1], got {type(smoothing).__name__}")
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"{name}: smoothing must be in [0, 1], got {smoothing!r}")
        a, b = (_labels(name, arg, t) for arg, t in (("a", a), ("b", b)))
        if a.dim() != 1 or a.shape != b.shape:
            raise ValueError(f"{name}: a and b must be 1-D of one length, got {tuple(a.shape)} and {tuple(b.shape)}")
        if b.device != a.device:
            raise RuntimeError(f"{name}: b is on {b.device} but a is on {a.device}")
        if isinstance(lam, Tensor):
            if lam.device != a.device:
                raise RuntimeError(f"{name}: lam is on {lam.device} but a is on {a.device}")
            if not lam.dtype.is_floating_point:
                raise TypeError(f"{name}: lam must be floating, got {lam.dtype}")
        elif not isinstance(lam, bool) and isinstance(lam, (int, float, list, tuple)):
            lam = torch.as_tensor(lam, dtype=torch.float64, device=a.device)
        else:
            raise TypeError(f"{name}: lam must be a float, a sequence or a tensor, got {type(lam).__name__}")
        if lam.dim() == 0:  # one lam for the batch, as timm's mixup_target takes it
            lam = lam.expand(a.shape)
        if lam.shape != a.shape:
            raise ValueError(f"{name}: lam must be a scalar or have a's shape {tuple(a.shape)}, got {tuple(lam.shape)}")
        self.a, self.b = a.long(), b.long()
        self.lam = lam.to(torch.float32).contiguous()
        self.smoothing, self.num_classes = float(smoothing), int(num_classes)

    def __len__(self) -> int:
        return self.a.numel()

    @property
    def device(self) -> torch.device:
        return self.a.device

    def to(self, device: torch.device) -> "MixedTargets":
        return MixedTargets(self.a.to(device), self.b.to(device), self.lam.to(device), self.smoothing, self.num_classes)

    def dense(self) -> Tensor:
        """The (N, num_classes) fp32 target tensor."""
        return mixed_targets(self.a, self.b, self.lam, self.smoothing, self.num_classes)

    def __repr__(self) -> str:
        return f"MixedTargets(n={len(self)}, smoothing={self.smoothing}, num_classes={self.num_classes})"


def _labels(owner: str, arg: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{owner}: {arg} must be integer class labels (a tensor or a sequence of ints): {e}") from e
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{owner}: {arg} must be integer class labels, got {t.dtype}")
    return t  # bool labels are classes 0 and 1, as the losses take them


def mixed_targets(a: Tensor, b: Tensor, lam: Tensor, smoothing: float, num_classes: int,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Dense targets of timm ``mixup_target``: t = lam * onehot_s(a) + (1 - lam) * onehot_s(b),
    onehot_s = one-hot with on = 1 - s + s / C, off = s / C. (N, C) in ``dtype`` (timm: fp32)."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off

    def one_hot(t: Tensor) -> Tensor:
        return torch.full((t.numel(), num_classes), off, dtype=dtype, device=t.device).scatter_(
            1, t.long().view(-1, 1), on)

    lam = lam.to(dtype).view(-1, 1)
    return one_hot(a) * lam + one_hot(b) * (1.0 - lam)
