"""Host-side draws of the augmentation ops' boxes: CutMix's box and lambda correction (timm's
``rand_bbox``), cutout's and SpecAugment's boxes from the Philox stream (reproducible from
(seed, offset) on any device, without a host sync). Used by tricks_ext.functional and
tricks_ext.data."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from tricks_ext._philox import Seed, uniform


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
