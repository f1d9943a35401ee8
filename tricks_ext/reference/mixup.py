"""Mixup / CutMix and label-smoothed mixed targets in plain PyTorch (timm ``Mixup`` semantics):
the specification of the mixing op and of the compact targets.

Sample i is mixed with its partner j = B - 1 - i (timm's ``x.flip(0)``). Per sample, a
coefficient pair (a, b) = (fp32(lam), fp32(1 - lam)) and a box [y0, y1) x [x0, x1) over the last
two dims (H, W): inside the box out_i = x_j (CutMix); outside, out_i = x_i when b == 0, else
a x_i + b x_j (Mixup; the products rounded separately, as timm computes x * lam + x_flip * (1 - lam)).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from tricks_ext._dtypes import stats_dtype


def mix(x: Tensor, coef: Tensor, box: Tensor) -> Tensor:
    """Mix a batch with its flip. ``x`` (B, ...), ``coef`` fp32 (B, 2), ``box`` int (B, 4)
    (y0, y1, x0, x1) over x's last two dims (an empty box for rank < 3 or plain Mixup)."""
    acc = stats_dtype(x.dtype)
    xa = x.to(acc)
    xp = xa.flip(0)
    batch = x.shape[0]
    shape = (batch,) + (1,) * (x.dim() - 1)
    a = coef[:, 0].to(x.device, acc).view(shape)
    b = coef[:, 1].to(x.device, acc).view(shape)
    out = torch.where(b == 0, xa, xa * a + xp * b)
    if x.dim() >= 3:
        box = box.to(x.device, torch.int64)
        hh = torch.arange(x.shape[-2], device=x.device).view(1, -1, 1)
        ww = torch.arange(x.shape[-1], device=x.device).view(1, 1, -1)
        y0, y1, x0, x1 = (box[:, k].view(batch, 1, 1) for k in range(4))
        inside = (hh >= y0) & (hh < y1) & (ww >= x0) & (ww < x1)  # (B, H, W)
        inside = inside.view((batch,) + (1,) * (x.dim() - 3) + tuple(x.shape[-2:]))
        out = torch.where(inside, xp, out)
    return out.to(x.dtype)


def cutmix_box(height: int, width: int, lam: float, cy: int, cx: int) -> Tuple[int, int, int, int]:
    """timm ``rand_bbox`` given its random centre (cy, cx): a box of side ratio sqrt(1 - lam),
    clipped to the image. Returns (y0, y1, x0, x1)."""
    ratio = (1.0 - lam) ** 0.5
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    y0 = min(max(cy - cut_h // 2, 0), height)
    y1 = min(max(cy + (cut_h + 1) // 2, 0), height)
    x0 = min(max(cx - cut_w // 2, 0), width)
    x1 = min(max(cx + (cut_w + 1) // 2, 0), width)
    return y0, y1, x0, x1


def box_lam(box: Tuple[int, int, int, int], height: int, width: int) -> float:
    """timm's lam correction: 1 - (box area) / (image area)."""
    y0, y1, x0, x1 = box
    return 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)


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
