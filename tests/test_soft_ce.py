"""Soft-target cross-entropy on every backend vs the reference (loss and gradients), against
timm's SoftTargetCrossEntropy and torch's cross_entropy, with O(N) saved target memory."""
import pytest
import torch

from helpers import (assert_matches_reference, backend_op, backend_params, expect_error, run_compiled,
                     run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.data import MixedTargets
from tricks_ext.reference.soft_ce import soft_ce_rows, timm_soft_target_cross_entropy

OP = "soft_ce"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(37, 1000), (5, 3), (4, 1), (2, 70_001)]


def make_targets(kind, n, c, device, gen):
    a = torch.randint(0, c, (n,), generator=gen).to(device)
    if kind == "mixed":
        return MixedTargets(a, a.flip(0), torch.rand(n, generator=gen).to(device), 0.1, c), {}
    if kind == "hard":
        if n > 2:
            a[1] = -100
        return a, {"label_smoothing": 0.1}
    return torch.softmax(torch.randn(n, c, generator=gen), -1).to(device), {}


def run(fn, logits, grad):
    z = logits.detach().clone().requires_grad_(True)
    loss = fn(z)
    (loss.double() * grad).sum().backward()
    return loss.detach(), z.grad


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["mixed", "hard", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_matches_reference(backend_device, dtype, shape, kind, reduction):
    backend, device = backend_device
    n, c = shape
    gen = torch.Generator().manual_seed(n * c)
    logits = (torch.randn(n, c, generator=gen) * 4).to(device)
    targets, kw = make_targets(kind, n, c, device, gen)
    grad = torch.randn(n, generator=gen, dtype=torch.float64).to(device)

    def ours(z):
        return F.soft_target_cross_entropy(z, targets, reduction=reduction, backend=backend, **kw)

    def ref(z):
        return F.soft_target_cross_entropy(z, targets if kind != "dense" else targets.to(z.dtype) if z.dtype ==
                                           torch.float64 else targets, reduction=reduction, backend="torch", **kw)

    x = logits.to(dtype)
    if kind == "dense":
        targets = targets.to(dtype)
    loss, dz = run(ours, x, grad)
    loss_s, dz_s = run(ref, x, grad)
    loss_64, dz_64 = run(ref, logits.double(), grad)
    assert_matches_reference(loss, loss_s, loss_64, name="loss")
    assert_matches_reference(dz, dz_s, dz_64, name="grad logits")


def test_reference_equals_timm_and_torch():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 50, generator=gen, dtype=torch.float64)
    a = torch.randint(0, 50, (16,), generator=gen)
    t = MixedTargets(a, a.flip(0), torch.rand(16, generator=gen), 0.1, 50)
    torch.testing.assert_close(F.soft_target_cross_entropy(z, t, backend="torch"),
                               timm_soft_target_cross_entropy(z, t.dense().double()))
    a[3] = -100
    torch.testing.assert_close(F.soft_target_cross_entropy(z, a, label_smoothing=0.2, backend="torch"),
                               torch.nn.functional.cross_entropy(z, a, label_smoothing=0.2))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_reductions_ignore_and_invalid(backend_device):
    backend, device = backend_device
    z = torch.randn(6, 9, device=device, requires_grad=True)
    labels = torch.tensor([0, 8, -100, 3, -100, 1], device=device)
    full = torch.nn.functional.cross_entropy(z.detach(), labels, label_smoothing=0.1, reduction="none")
    for red in ("none", "sum", "mean"):
        ours = F.soft_target_cross_entropy(z, labels, red, label_smoothing=0.1, backend=backend)
        ref = torch.nn.functional.cross_entropy(z.detach(), labels, label_smoothing=0.1, reduction=red)
        torch.testing.assert_close(ours.detach(), ref, rtol=1e-5, atol=1e-6)
    F.soft_target_cross_entropy(z, labels, label_smoothing=0.1, backend=backend).backward()
    assert torch.equal(z.grad[2], torch.zeros(9, device=device)) and full[2] == 0
    all_ignored = torch.full((6,), -100, device=device)
    assert F.soft_target_cross_entropy(z, all_ignored, backend=backend).isnan()  # 0 / 0, as torch
    bad = torch.tensor([0, 9, 1, 2, 3, -1], device=device)
    rows = F.soft_target_cross_entropy(z, bad, "none", backend=backend)
    assert rows[1].isnan() and rows[5].isnan() and rows[[0, 2, 3, 4]].isfinite().all()


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    t = torch.softmax(torch.randn(4, 7, generator=gen, dtype=torch.float64), -1).to(device).requires_grad_(True)
    for reduction in ("none", "mean"):  # dense targets get a gradient too, scaled per reduction
        run_gradcheck(lambda z_, t_: F.soft_target_cross_entropy(z_, t_, reduction, backend=backend), (z, t))
    a = torch.tensor([1, 6, 0, 3], device=device)
    mt = MixedTargets(a, a.flip(0), torch.tensor([0.25, 0.5, 1.0, 0.75], device=device), 0.1, 7)
    run_gradcheck(lambda z_: F.soft_target_cross_entropy(z_, mt, "none", backend=backend), (z,))
    run_gradcheck(lambda z_: F.soft_target_cross_entropy(z_, mt, "mean", backend=backend), (z,))
    run_gradcheck(lambda z_: F.soft_target_cross_entropy(z_, a, "sum", label_smoothing=0.3, backend=backend), (z,))


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "torch"])
def test_saves_no_dense_targets(backend_device):
    """Mixed targets cost O(N) memory: saved for backward are the logits, the labels, lam and
    three stats per row, never an (N, C) target tensor."""
    backend, device = backend_device
    n, c = 64, 1000
    z = torch.randn(n, c, device=device, requires_grad=True)
    a = torch.randint(0, c, (n,), device=device)
    mt = MixedTargets(a, a.flip(0), torch.rand(n, device=device), 0.1, c)
    saved = saved_bytes(lambda: F.soft_target_cross_entropy(z, mt, backend=backend))
    assert sum(saved) <= z.numel() * 4 + n * (8 + 8 + 4 + 12), saved


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "torch"])
def test_opcheck(backend_device):
    backend, device = backend_device
    fwd, bwd = backend_op("soft_ce_fwd", backend), backend_op("soft_ce_bwd", backend)
    z = torch.randn(5, 11, device=device, requires_grad=True)
    a = torch.randint(0, 11, (5,), device=device)
    lam = torch.rand(5, device=device)
    dense = torch.softmax(torch.randn(5, 11, device=device), -1)
    for args in ((a, a.flip(0), lam, None), (a, None, None, None), (None, None, None, dense)):
        smoothing = 0.1 if args[3] is None else 0.0
        for reduction in (0, 1, 2):
            run_opcheck(fwd, (z,) + args + (smoothing, -100, reduction))
            _loss, stats = fwd(z.detach(), *args, smoothing, -100, reduction)
            grad = torch.randn(5 if reduction == 0 else (), device=device)
            run_opcheck(bwd, (grad, z.detach()) + args + (stats, smoothing, -100, reduction))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph(backend_device):
    backend, device = backend_device
    a = torch.randint(0, 13, (6,), device=device)
    mt = MixedTargets(a, a.flip(0), torch.rand(6, device=device), 0.1, 13)
    eager, compiled = run_compiled(lambda z: F.soft_target_cross_entropy(z * 2.0, mt, "none", backend=backend),
                                   torch.randn(6, 13, device=device, requires_grad=True))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(e, c)


def test_module_and_flood():
    loss_fn = tnn.SoftTargetCrossEntropy()
    z = torch.randn(4, 5)
    t = torch.softmax(torch.randn(4, 5), -1)
    torch.testing.assert_close(loss_fn(z, t), timm_soft_target_cross_entropy(z, t))
    loss = torch.tensor(0.3, requires_grad=True)
    flooded = F.flood(loss, 0.5)
    flooded.backward()
    assert flooded.item() == pytest.approx(0.7) and loss.grad.item() == -1.0  # below b: gradient ascent
    expect_error(ValueError, lambda: F.flood(loss, -1.0), "b", "-1.0")


class TestBadInput:
    def test_errors(self):
        z = torch.randn(4, 5)
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z[0], torch.arange(4)), "(N, C)")
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, torch.arange(3)), "labels", "(4,)")
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, torch.rand(4, 6)), "dense", "(4, 5)")
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, torch.arange(4), "avg"), "reduction", "avg")
        mt = MixedTargets(torch.arange(4), torch.arange(4), torch.ones(4), 0.1, 7)
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, mt), "num_classes=7", "5")
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, mt, label_smoothing=0.1), "smoothing")
        expect_error(TypeError, lambda: F.soft_target_cross_entropy(z, [1, 2, 3, 4]), "targets", "list")
        expect_error(TypeError, lambda: F.soft_target_cross_entropy(z.long(), torch.arange(4)), "logits", "int64")
