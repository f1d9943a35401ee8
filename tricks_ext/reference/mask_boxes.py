"""Box masking in plain PyTorch (cutout, SpecAugment masks): the specification of mask_boxes.
The boxes are drawn by tricks_ext/_sampling.py."""
from __future__ import annotations

import torch
from torch import Tensor


def mask_boxes(x: Tensor, box: Tensor, value: float) -> Tensor:
    """``value`` where (h, w) over x's last two dims lies in any box (B, K, 4) = (y0, y1, x0, x1)
    of its sample, else x. Rank < 3 has H = W = 1."""
    batch = x.shape[0]
    hh_n, ww_n = (x.shape[-2], x.shape[-1]) if x.dim() >= 3 else (1, 1)
    box = box.to(x.device, torch.int64)
    hh = torch.arange(hh_n, device=x.device).view(1, 1, -1, 1)
    ww = torch.arange(ww_n, device=x.device).view(1, 1, 1, -1)
    y0, y1, x0, x1 = (box[..., k].view(batch, box.shape[1], 1, 1) for k in range(4))
    inside = ((hh >= y0) & (hh < y1) & (ww >= x0) & (ww < x1)).any(1)  # (B, H, W)
    inside = inside.view((batch,) + (1,) * max(x.dim() - 3, 0) + ((hh_n, ww_n) if x.dim() >= 3 else ()))
    if x.dim() < 3:
        inside = inside.view((batch,) + (1,) * (x.dim() - 1))
    return torch.where(inside, torch.tensor(value, dtype=x.dtype, device=x.device), x)
