"""Box masking in plain PyTorch (cutout, SpecAugment masks): the specification of mask_boxes,
and the counter-based draws of the boxes (the Philox stream of the dropout family, so boxes
are reproducible from (seed, offset) on any device, without a host sync)."""
from __future__ import annotations

import torch
from torch import Tensor

from tricks_ext.reference.dropout import Seed, uniform


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


def cutout_boxes(seed: Seed, offset: Seed, batch: int, holes: int, length: int, height: int, width: int,
                 device: torch.device) -> Tensor:
    """Cutout (arXiv 1708.04552, DeVries' reference code): per sample ``holes`` squares of side
    ``length`` centred at uniform pixels, clipped to the image. int32 (B, holes, 4)."""
    u = uniform(seed, offset, batch * holes * 2, device).view(batch, holes, 2)
    cy = (u[..., 0] * height).long().clamp(max=height - 1)
    cx = (u[..., 1] * width).long().clamp(max=width - 1)
    half = length // 2
    return torch.stack([(cy - half).clamp(0, height), (cy + half).clamp(0, height),
                        (cx - half).clamp(0, width), (cx + half).clamp(0, width)], -1).to(torch.int32)


def spec_augment_boxes(seed: Seed, offset: Seed, batch: int, freq: int, time: int, freq_param: int, time_param: int,
                       freq_masks: int, time_masks: int, device: torch.device) -> Tensor:
    """SpecAugment (arXiv 1904.08779) masks as torchaudio's ``mask_along_axis_iid`` draws them
    per sample: width = u * param, start = u' * (size - width), mask [int(start), int(start +
    width)). Frequency masks span all time steps, time masks all frequencies. int32 (B, K, 4)."""
    k = freq_masks + time_masks
    u = uniform(seed, offset, batch * k * 2, device).view(batch, k, 2).double()
    size = torch.tensor([freq] * freq_masks + [time] * time_masks, dtype=torch.float64, device=device)
    param = torch.tensor([freq_param] * freq_masks + [time_param] * time_masks, dtype=torch.float64, device=device)
    width = u[..., 0] * param
    start = u[..., 1] * (size - width)
    s, e = start.long(), (start + width).long()
    is_freq = (torch.arange(k, device=device) < freq_masks).expand(batch, k)
    zero = torch.zeros_like(s)
    return torch.stack([torch.where(is_freq, s, zero), torch.where(is_freq, e, zero + freq),
                        torch.where(is_freq, zero, s), torch.where(is_freq, zero + time, e)], -1).to(torch.int32)
