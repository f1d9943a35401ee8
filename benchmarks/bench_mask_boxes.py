"""Box masking: Cutout on an ImageNet batch and SpecAugment masks on log-mel spectrograms. In
place against in place: a slice-assignment loop over the boxes (``x[n, :, y0:y1, x0:x1] = 0``,
how Cutout and torchaudio's masking write it); out of place against the reference (a boolean
(N, H, W) mask from the boxes, then torch.where), eager and under torch.compile. The boxes come
from the same Philox draw for every provider.

Floor: out of place, read x and write the result (2 x bytes(x)); in place only the boxes are
written (the floor column still counts 2 x bytes, so in-place GB/s reads as an upper bound).
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.common import Case, Provider, ours
from tricks_ext import functional as F
from tricks_ext._sampling import cutout_boxes, spec_augment_boxes
from tricks_ext.reference.mask_boxes import mask_boxes as reference

OP = "mask_boxes"
SEED, OFFSET = 12345, 0


def cases(device: torch.device, quick: bool) -> List[Case]:
    n = 32 if quick else 256
    image, spec = (n, 3, 224, 224), (n // 4, 1, 128, 1000)
    return [Case(f"cutout 1x16px {n}x3x224x224", torch.float32, "fwd", 2 * torch.Size(image).numel() * 4,
                 {"shape": image, "kind": "cutout"}),
            Case(f"SpecAugment 2F+2T {spec[0]}x1x128x1000", torch.float32, "fwd", 2 * torch.Size(spec).numel() * 4,
                 {"shape": spec, "kind": "spec"})]


def _boxes(case: Case, device: torch.device) -> torch.Tensor:
    n, _, h, w = case.params["shape"]
    if case.params["kind"] == "cutout":
        return cutout_boxes(SEED, OFFSET, n, 1, 16, h, w, device)
    return spec_augment_boxes(SEED, OFFSET, n, h, w, 27, 100, 2, 2, device)


def _runner(fn, inplace: bool = False):
    def setup(case: Case, device: torch.device):
        x = torch.randn(case.params["shape"], device=device)
        box = _boxes(case, device)
        return lambda: fn(x, box, inplace)
    return setup


def _reference(x, box, inplace):
    return reference(x, box, 0.0)


def _slice_loop(case: Case, device: torch.device):
    """In place, one slice assignment per box (the boxes read to the host once, before timing)."""
    x = torch.randn(case.params["shape"], device=device)
    boxes = _boxes(case, device).tolist()

    def run():
        for n, per_sample in enumerate(boxes):
            for y0, y1, x0, x1 in per_sample:
                x[n, :, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 0.0
        return x
    return run


def providers(device: torch.device) -> List[Provider]:
    compiled = torch.compile(_reference)
    return [
        Provider("slice-assignment loop, in place", _slice_loop),
        Provider("reference, eager", _runner(_reference)),
        Provider("reference, torch.compile", _runner(compiled)),
    ] + [ours(OP, b, lambda b_: _runner(lambda x, box, ip: F.mask_boxes(x, box, 0.0, ip, backend=b_)))
         for b in ("cpu", "cuda", "triton")] + [
        ours(OP, b, lambda b_: _runner(lambda x, box, ip: F.mask_boxes(x, box, 0.0, ip, backend=b_), inplace=True),
             name_suffix=" in-place") for b in ("cpu", "cuda")]
