"""Mixup / CutMix and label-smoothed mixed targets in plain PyTorch (timm ``Mixup`` semantics):
the specification of the mixing op (the boxes and lambdas are drawn by tricks_ext/_sampling.py,
the dense targets built by tricks_ext/targets.py).

Sample i is mixed with its partner j = B - 1 - i (timm's ``x.flip(0)``). Per sample, a
coefficient pair (a, b) = (fp32(lam), fp32(1 - lam)) and a box [y0, y1) x [x0, x1) over the last
two dims (H, W): inside the box out_i = x_j (CutMix); outside, out_i = x_i when b == 0, else
a x_i + b x_j (Mixup; the products rounded separately, as timm computes x * lam + x_flip * (1 - lam)).
"""
from __future__ import annotations

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
