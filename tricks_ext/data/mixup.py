"""Mixup / CutMix with label smoothing (timm ``Mixup`` semantics), mixing the batch in one fused
pass and returning compact targets instead of a dense (N, C) tensor."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from tricks_ext import functional as F
from tricks_ext._backend import check_backend_name
from tricks_ext._checks import is_int, is_number
from tricks_ext._dtypes import round_fp32
from tricks_ext._sampling import box_lam, cutmix_box
from tricks_ext.targets import MixedTargets

_MODES = ("batch", "pair", "elem")


class MixParams(NamedTuple):
    """Per-sample mixing parameters (CPU tensors): coef fp32 (B, 2) = (fp32(lam), fp32(1 - lam))
    for Mixup or (1, 0) for CutMix / unmixed; box int32 (B, 4) = (y0, y1, x0, x1), empty for
    Mixup; lam float64 (B,) the target weight of each sample's own label (area-corrected for
    CutMix; MixedTargets keep it in fp32)."""
    coef: Tensor
    box: Tensor
    lam: Tensor


class Mixup:
    """timm-compatible Mixup / CutMix: ``x, targets = mixup(x, labels)``.

    Same arguments and semantics as ``timm.data.Mixup``: the partner of sample i is sample
    B - 1 - i; ``mode`` 'batch' (one lam / box for the batch), 'pair' (per pair of partners) or
    'elem' (per sample); lam ~ Beta(alpha, alpha); CutMix boxes of area ratio 1 - lam (or
    ``cutmix_minmax`` ratios), lam corrected to the clipped box area when ``correct_lam``;
    ``prob`` of mixing at all, ``switch_prob`` of CutMix when both are enabled.

    Differences from timm, all deliberate: the images are mixed in one fused pass (out of place
    by default; ``inplace=True`` writes into ``x`` like timm); the targets come back as compact
    :class:`MixedTargets` (``.dense()`` gives timm's tensor); random draws come from torch's
    global generator (``torch.manual_seed`` reproduces a run), not numpy's; lam stays fp32 for
    fp16/bf16 images (timm rounds it to the image dtype); an odd batch is accepted (timm asserts):
    its middle sample is its own partner and stays as it is (pair mode) or mixes with itself.
    """

    def __init__(self, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 cutmix_minmax: Optional[Sequence[float]] = None, prob: float = 1.0, switch_prob: float = 0.5,
                 mode: str = "batch", correct_lam: bool = True, label_smoothing: float = 0.1,
                 num_classes: int = 1000, backend: Optional[str] = None) -> None:
        for name, v in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha), ("prob", prob),
                        ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not (is_number(v) and math.isfinite(v)):
                raise TypeError(f"Mixup: {name} must be a finite number, got {v!r}")
        if not is_int(num_classes):
            raise TypeError(f"Mixup: num_classes must be an int, got {num_classes!r}")
        check_backend_name("Mixup", backend)
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"Mixup: mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha!r}, {cutmix_alpha!r}")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"Mixup: cutmix_minmax must be (min, max) with 0 <= min < max <= 1, got {cutmix_minmax!r}")
            cutmix_alpha = 1.0  # as timm: minmax boxes switch CutMix on
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("Mixup: one of mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax must be set")
        for name, v in (("prob", prob), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Mixup: {name} must be in [0, 1], got {v!r}")
        if mode not in _MODES:
            raise ValueError(f"Mixup: mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if num_classes < 1:
            raise ValueError(f"Mixup: num_classes must be >= 1, got {num_classes!r}")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.cutmix_minmax = None if cutmix_minmax is None else tuple(float(v) for v in cutmix_minmax)
        self.mix_prob, self.switch_prob = float(prob), float(switch_prob)
        self.mode, self.correct_lam = mode, bool(correct_lam)
        self.label_smoothing, self.num_classes = float(label_smoothing), int(num_classes)
        self.mixup_enabled = True  # as timm: the training loop may switch mixing off
        self.backend = backend

    # ---- parameter sampling (timm's _params_per_batch / _params_per_elem) ----

    def _beta(self, alpha: float, n: int) -> Tensor:
        a = torch.tensor(alpha, dtype=torch.float64)
        return torch.distributions.Beta(a, a).sample((n,))

    def _draw(self, n: int) -> Tuple[Tensor, Tensor]:
        """(lam float64 (n,), use_cutmix bool (n,)) for n independent draws."""
        lam = torch.ones(n, dtype=torch.float64)
        use_cutmix = torch.zeros(n, dtype=torch.bool)
        if not self.mixup_enabled or n == 0:
            return lam, use_cutmix
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = torch.rand(n, dtype=torch.float64) < self.switch_prob
            lam_mix = torch.where(use_cutmix, self._beta(self.cutmix_alpha, n), self._beta(self.mixup_alpha, n))
        elif self.mixup_alpha > 0:
            lam_mix = self._beta(self.mixup_alpha, n)
        else:
            use_cutmix = torch.ones(n, dtype=torch.bool)
            lam_mix = self._beta(self.cutmix_alpha, n)
        apply = torch.rand(n, dtype=torch.float64) < self.mix_prob
        return torch.where(apply, lam_mix, lam), use_cutmix & apply

    def _box(self, height: int, width: int, lam: float) -> Tuple[Tuple[int, int, int, int], float]:
        if self.cutmix_minmax is not None:  # timm rand_bbox_minmax
            lo, hi = self.cutmix_minmax
            cut_h = int(torch.randint(int(height * lo), int(height * hi), ()))
            cut_w = int(torch.randint(int(width * lo), int(width * hi), ()))
            y0 = int(torch.randint(0, height - cut_h + 1, ()))
            x0 = int(torch.randint(0, width - cut_w + 1, ()))
            box = (y0, y0 + cut_h, x0, x0 + cut_w)
        else:
            box = cutmix_box(height, width, lam, int(torch.randint(0, height, ())), int(torch.randint(0, width, ())))
        if self.correct_lam or self.cutmix_minmax is not None:
            lam = box_lam(box, height, width)
        return box, lam

    def sample_params(self, batch_size: int, image_hw: Optional[Tuple[int, int]]) -> MixParams:
        """Draw the mixing parameters of one batch (``image_hw`` None: no CutMix possible)."""
        coef = torch.tensor([[1.0, 0.0]], dtype=torch.float32).repeat(batch_size, 1)
        box = torch.zeros(batch_size, 4, dtype=torch.int32)
        lam_out = torch.ones(batch_size, dtype=torch.float64)
        if self.mode == "batch":
            lam, cut = self._draw(1)
            owners = [(list(range(batch_size)), float(lam[0]), bool(cut[0]))]
        else:
            n = batch_size // 2 if self.mode == "pair" else batch_size
            lam, cut = self._draw(n)
            lam = lam.to(torch.float32).double()  # timm keeps per-element lam in a float32 array
            owners = [([i, batch_size - 1 - i] if self.mode == "pair" else [i], float(lam[i]), bool(cut[i]))
                      for i in range(n)]
        for idx, lam_i, cut_i in owners:
            if lam_i == 1.0:
                continue
            if cut_i:
                if image_hw is None:
                    raise ValueError("Mixup: CutMix needs inputs with at least 3 dims (N, ..., H, W)")
                b, lam_i = self._box(image_hw[0], image_hw[1], lam_i)
                if self.mode != "batch":
                    lam_i = round_fp32(lam_i)
                box[idx] = torch.tensor(b, dtype=torch.int32)
            else:
                coef[idx] = torch.tensor([lam_i, 1.0 - lam_i], dtype=torch.float64).to(torch.float32)
            lam_out[idx] = lam_i
        return MixParams(coef, box, lam_out)

    # ---- application ----

    def __call__(self, x: Tensor, target: Tensor, inplace: bool = False) -> Tuple[Tensor, MixedTargets]:
        """Mix ``x`` (N, ...) and its integer labels ``target`` (N,). Returns the mixed batch
        (``x`` itself when ``inplace``) and the :class:`MixedTargets`."""
        if not isinstance(target, Tensor) or target.dim() != 1 or target.dtype.is_floating_point:
            raise TypeError("Mixup: target must be a 1-D tensor of integer class labels")
        if x.dim() < 1 or x.shape[0] != target.shape[0]:
            raise ValueError(f"Mixup: x has {x.shape[0] if x.dim() else 0} samples but target has {target.shape[0]}")
        image_hw = tuple(x.shape[-2:]) if x.dim() >= 3 else None
        params = self.sample_params(x.shape[0], image_hw)
        mixed = F.mixup(x, params.coef, params.box, inplace=inplace, backend=self.backend)
        return mixed, MixedTargets(target, target.flip(0), params.lam.to(target.device), self.label_smoothing,
                                   self.num_classes)
