"""Mixup / CutMix: the fused mixing op on every backend equals the reference bit for bit, the
sampler follows timm's formulas, and MixedTargets equal timm's dense targets."""
import sys

import numpy as np
import pytest
import torch

import peers
from helpers import backend_op, backend_params, expect_error, run_opcheck
from tricks_ext import functional as F
from tricks_ext.data import MixedTargets, Mixup
from tricks_ext._sampling import box_lam, cutmix_box
from tricks_ext.reference.mixup import mix as reference

OP = "mixup_apply"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def random_params(batch, h, w, gen):
    lam = torch.rand(batch, generator=gen, dtype=torch.float64)
    coef = torch.stack([lam, 1 - lam], 1).float()
    cut = torch.rand(batch, generator=gen) < 0.5
    coef[cut] = torch.tensor([1.0, 0.0])
    y = torch.randint(0, h + 1, (batch, 2), generator=gen).sort(1).values
    x = torch.randint(0, w + 1, (batch, 2), generator=gen).sort(1).values
    box = torch.cat([y, x], 1).int() * cut[:, None]
    coef[0] = torch.tensor([1.0, 0.0])  # an unmixed sample too
    return coef, box


def layouts(shape, device, dtype):
    x = torch.randn(shape, device=device).to(dtype)
    yield "contiguous", x
    if len(shape) == 4:
        yield "channels_last", x.to(memory_format=torch.channels_last)
        yield "strided", torch.randn(shape[0], shape[1], shape[3], shape[2], device=device).to(dtype).transpose(2, 3)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(6, 3, 9, 11), (5, 2, 7, 4), (1, 3, 4, 4), (4, 2, 3, 5, 6), (7, 33)], ids=str)
def test_bit_identical_to_reference(backend_device, dtype, shape):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(sum(shape))
    coef, box = random_params(shape[0], *((shape[-2], shape[-1]) if len(shape) >= 3 else (1, 1)), gen)
    if len(shape) < 3:
        box.zero_()
    for name, x in layouts(shape, device, dtype):
        expected = reference(x, coef, box)
        out = F.mixup(x, coef, box, backend=backend)
        assert torch.equal(out, expected), name
        if name != "strided":
            assert out.stride() == x.stride(), name
        y = x.clone()
        assert F.mixup(y, coef, box, inplace=True, backend=backend) is y
        assert torch.equal(y, expected), f"{name} in place"


def timm_mixup(mode, draws, boxes, x, target):
    """timm's own ``Mixup.__call__`` (real timm, in place on ``x``) fed the random draws our
    sampler made: its numpy draws (lam, use_cutmix) and its ``cutmix_bbox_and_lam`` boxes are
    replaced by ours, in the order timm asks for them; everything else is timm's code."""
    timm = peers.timm()
    mixup_module = sys.modules["timm.data.mixup"]
    lam, cut = draws
    theirs = timm.data.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, label_smoothing=0.1, num_classes=10)
    theirs._params_per_elem = lambda n: (lam.numpy().astype(np.float32)[:n], cut.numpy()[:n])
    theirs._params_per_batch = lambda: (float(lam[0]), bool(cut[0]))
    queue = list(boxes)
    original = mixup_module.cutmix_bbox_and_lam
    mixup_module.cutmix_bbox_and_lam = lambda *args, **kwargs: queue.pop(0)
    try:
        return theirs(x, target)
    finally:
        mixup_module.cutmix_bbox_and_lam = original


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_equals_timm(backend_device, mode):
    """Mixed images bit for bit and dense targets against timm 1.0's Mixup on the same draws."""
    backend, device = backend_device
    x = torch.randn(8, 3, 12, 10, device=device)
    target = torch.randint(0, 10, (8,), device=device)
    m = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, label_smoothing=0.1, num_classes=10, backend=backend)
    draw, box = m._draw, m._box
    for seed in range(6):
        draws, boxes = [], []
        m._draw = lambda n: draws.append(draw(n)) or draws[-1]
        m._box = lambda *args: boxes.append(box(*args)) or boxes[-1]
        torch.manual_seed(seed)
        mixed, targets = m(x, target)
        expected, dense = timm_mixup(mode, draws[0], boxes, x.cpu().clone(), target.cpu())
        assert torch.equal(mixed.cpu(), expected), seed
        torch.testing.assert_close(targets.dense().cpu(), dense, rtol=0, atol=1e-7)
    m._draw, m._box = draw, box


def test_sampler_structure():
    x = torch.randn(9, 3, 16, 16)
    for mode in ("batch", "pair", "elem"):
        torch.manual_seed(3)
        m = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=5)
        p = m.sample_params(9, (16, 16))
        for i in range(9):
            y0, y1, x0, x1 = p.box[i].tolist()
            if p.coef[i, 1] == 0 and y0 < y1 and x0 < x1:  # CutMix sample: lam is the kept area
                assert p.lam[i].item() == pytest.approx(box_lam((y0, y1, x0, x1), 16, 16), abs=1e-7)
            elif p.coef[i, 1] != 0:
                assert p.lam[i].float() == p.coef[i, 0] and p.box[i].eq(0).all()
        if mode == "batch":
            assert (p.coef == p.coef[0]).all() and (p.box == p.box[0]).all()
        if mode == "pair":
            assert torch.equal(p.coef[:4], p.coef[5:].flip(0)) and torch.equal(p.box[:4], p.box[5:].flip(0))
            assert p.lam[4] == 1 and p.coef[4, 1] == 0  # odd batch: the middle sample is left alone
    torch.manual_seed(0)
    off = Mixup(prob=0.0, num_classes=5)
    mixed, t = off(x, torch.arange(9) % 5)
    assert torch.equal(mixed, x) and (t.lam == 1).all()


def test_seed_reproducible_and_minmax():
    x = torch.randn(4, 3, 20, 20)
    m = Mixup(cutmix_minmax=(0.2, 0.5), mode="elem", num_classes=3)
    torch.manual_seed(11)
    a, ta = m(x, torch.arange(4) % 3)
    torch.manual_seed(11)
    b, tb = m(x, torch.arange(4) % 3)
    assert torch.equal(a, b) and torch.equal(ta.lam, tb.lam)
    for _ in range(20):
        p = m.sample_params(4, (20, 20))
        for (y0, y1, x0, x1), (a, b) in zip(p.box.tolist(), p.coef.tolist()):
            if b != 0 or a != 1 or y0 == y1:
                continue  # a Mixup or unmixed sample
            assert 4 <= y1 - y0 < 10 and 4 <= x1 - x0 < 10 and 0 <= y0 and y1 <= 20 and 0 <= x0 and x1 <= 20


def test_cutmix_box_formula():
    """timm rand_bbox: side ratio sqrt(1 - lam), centred, clipped."""
    assert cutmix_box(224, 224, 0.75, 112, 112) == (56, 168, 56, 168)
    assert cutmix_box(224, 224, 0.75, 0, 223) == (0, 56, 167, 224)  # clipped at the borders
    assert box_lam((0, 56, 167, 224), 224, 224) == pytest.approx(1 - 56 * 57 / 224 ** 2)
    assert cutmix_box(10, 7, 0.0, 5, 3) == (0, 10, 0, 7)


def test_mixed_targets_dense():
    t = MixedTargets(torch.tensor([0, 2, 1]), torch.tensor([1, 2, 0]), torch.tensor([0.3, 1.0, 0.5]), 0.1, 4)
    d = t.dense()
    torch.testing.assert_close(d.sum(1), torch.ones(3))
    assert d[0, 0].item() == pytest.approx(0.025 + 0.9 * 0.3) and d[0, 1].item() == pytest.approx(0.025 + 0.9 * 0.7)
    assert d[1, 2].item() == pytest.approx(0.925)
    assert len(t) == 3 and t.to("cpu").num_classes == 4


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    ops = backend_op("mixup_apply", backend), backend_op("mixup_apply_", backend)
    coef, box = random_params(4, 5, 6, torch.Generator().manual_seed(0))
    x = torch.randn(4, 3, 5, 6, device=device)
    run_opcheck(ops[0], (x, coef.to(device), box.to(device), 5, 6, 1))
    run_opcheck(ops[1], (x.clone(), coef.to(device), box.to(device), 5, 6, 1))


class TestBadInput:
    def test_config(self):
        expect_error(ValueError, lambda: Mixup(mixup_alpha=0.0), "mixup_alpha")
        expect_error(ValueError, lambda: Mixup(mode="sample"), "mode", "sample")
        expect_error(ValueError, lambda: Mixup(prob=1.5), "prob", "1.5")
        expect_error(ValueError, lambda: Mixup(cutmix_minmax=(0.5, 0.2)), "cutmix_minmax")

    def test_call(self):
        m = Mixup(num_classes=3)
        expect_error(TypeError, lambda: m(torch.randn(4, 3, 8, 8), torch.rand(4)), "target", "integer")
        expect_error(ValueError, lambda: m(torch.randn(4, 3, 8, 8), torch.arange(3)), "samples")
        expect_error(ValueError, lambda: Mixup(mixup_alpha=0.0, cutmix_alpha=1.0)(torch.randn(4, 6), torch.arange(4)),
                     "CutMix", "3 dims")
        expect_error(RuntimeError, lambda: F.mixup(torch.randn(2, 3, requires_grad=True), torch.ones(2, 2)),
                     "requires grad")
        expect_error(ValueError, lambda: F.mixup(torch.randn(2, 3), torch.ones(3, 2)), "coef", "(2, 2)")
        expect_error(TypeError, lambda: F.mixup(torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 2)), "x", "int64")
