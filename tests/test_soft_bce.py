"""Soft-target binary cross-entropy on every backend vs the reference (loss and gradients), against
timm's BinaryCrossEntropy and torch's binary_cross_entropy_with_logits, with O(N) saved target
memory for mixed targets."""
import pytest
import torch

import peers
from helpers import (assert_matches_reference, assert_same_loss_and_grad, backend_op, backend_params, expect_error,
                     loss_and_grad, run_compiled, run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.data import MixedTargets
from tricks_ext.reference.soft_bce import soft_bce_targets

OP = "soft_bce"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (N, C, logit scale): at 30 and 1e3 exp(-|z|) underflows and log(1 + exp(-|z|)) needs log1p's
# accuracy (a class with target 1 has nothing else); C = 5000 is several Triton BLOCKs (1024)
# and CUDA block sweeps (256) per row, C = 3 less than one.
SHAPES = [(37, 1000, 4.0), (5, 3, 30.0), (3, 5000, 2.0), (16, 257, 1e3)]


def make_targets(kind, n, c, device, gen):
    a = torch.randint(0, c, (n,), generator=gen).to(device)
    if kind == "mixed":
        return MixedTargets(a, a.flip(0), torch.rand(n, generator=gen).to(device), 0.1, c)
    if kind == "hard":
        return a
    return torch.rand(n, c, generator=gen).to(device)


def dense_of(logits, targets, smoothing, threshold):
    """The fp64 (N, C) targets the kernels stand for (the reference's own expansion)."""
    if isinstance(targets, MixedTargets):
        return soft_bce_targets(logits.double(), targets.a, targets.b, targets.lam, None, targets.smoothing, threshold)
    if targets.dtype.is_floating_point:
        return soft_bce_targets(logits.double(), None, None, None, targets, 0.0, threshold)
    return soft_bce_targets(logits.double(), targets, None, None, None, smoothing, threshold)


def term_scales(z64, t64, pos_weight, cot, reduction, t_exact, weight=None):
    """The tolerance rule's floor per output element, in fp64 from the quantized inputs. The
    loss (1 - t) z + lw softplus(-z) has terms |1 - t| |z| and lw softplus(-z), plus |t| |z| for
    the rounding of a target the kernel computes (t_exact: dense or thresholded targets, read or
    set exactly); dz = g ((1 - t) - lw sigmoid(-z)) likewise. Where t = 1 exactly and z >> 0
    only lw softplus(-z) ~ exp(-z) is left, so a log(1 + x) that loses x fails. Class weights
    scale both."""
    lw = 1.0 if pos_weight is None else (1.0 + (pos_weight.double() - 1.0) * t64).abs()
    t_err = 0.0 if t_exact else t64.abs()
    w = 1.0 if weight is None else weight.double()
    loss_floor = w * (z64.abs() * ((1 - t64).abs() + t_err) + lw * torch.nn.functional.softplus(-z64))
    g = w * (cot.abs() if cot.dim() else cot.abs().expand_as(z64))
    if reduction == "mean":
        loss_floor, g = loss_floor.mean(), g / z64.numel()
    elif reduction == "sum":
        loss_floor = loss_floor.sum()
    return loss_floor, g * ((1 - t64).abs() + t_err + lw * torch.sigmoid(-z64))


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["mixed", "hard", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_matches_reference(backend_device, dtype, shape, kind, reduction):
    backend, device = backend_device
    n, c, scale = shape
    gen = torch.Generator().manual_seed(n * c)
    logits = (torch.randn(n, c, generator=gen) * scale).to(device)
    targets = make_targets(kind, n, c, device, gen)
    cot = torch.randn((n, c) if reduction == "none" else (), generator=gen, dtype=torch.float64).to(device)
    x = logits.to(dtype)
    if kind == "dense":
        targets = targets.to(dtype)

    def loss_fn(be, tgt):
        return lambda z: F.soft_target_binary_cross_entropy(z, tgt, 0.1, reduction=reduction, backend=be)

    loss, dz = loss_and_grad(loss_fn(backend, targets), x, cot)
    loss_s, dz_s = loss_and_grad(loss_fn("torch", targets), x, cot)
    targets64 = targets.double() if kind == "dense" else targets
    loss_64, dz_64 = loss_and_grad(loss_fn("torch", targets64), x.double(), cot, dtype)
    t64 = dense_of(x, targets64, 0.1, None)
    loss_floor, dz_floor = term_scales(x.double(), t64, None, cot, reduction, t_exact=kind == "dense")
    terms = 1 if reduction == "none" else n * c
    assert_matches_reference(loss, loss_s, loss_64, name="loss", floor=loss_floor, terms=terms)
    assert_matches_reference(dz, dz_s, dz_64, name="grad logits", floor=dz_floor)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("kind", ["mixed", "hard", "dense"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_threshold_and_pos_weight(backend_device, kind, reduction, weighted):
    """timm's target_threshold (targets become exactly 0 / 1) with per-class pos_weight (and
    class weights, one at 0), fp32 and bf16; logits of scale 20, so that many classes with
    target 1 have z > 17, where the loss is log(1 + exp(-z)) alone (below 4e-8)."""
    backend, device = backend_device
    n, c = 9, 300
    gen = torch.Generator().manual_seed(c)
    targets = make_targets(kind, n, c, device, gen)
    pos_weight = (torch.rand(c, generator=gen) * 3).to(device)
    weight = (torch.rand(c, generator=gen) * 1.5 + 0.25).index_fill(0, torch.tensor([0]), 0.0).to(device)
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(n, c, generator=gen) * 20).to(device, dtype)
        tgt = targets.to(dtype) if kind == "dense" else targets
        cot = torch.randn((n, c) if reduction == "none" else (), generator=gen, dtype=torch.float64).to(device)
        kw = dict(target_threshold=0.05 if kind != "dense" else 0.5, pos_weight=pos_weight, reduction=reduction,
                  weight=weight if weighted else None)

        def loss_fn(be, tg):
            return lambda z: F.soft_target_binary_cross_entropy(z, tg, 0.1, backend=be, **kw)

        loss, dz = loss_and_grad(loss_fn(backend, tgt), x, cot)
        loss_s, dz_s = loss_and_grad(loss_fn("torch", tgt), x, cot)
        tgt64 = tgt.double() if kind == "dense" else tgt
        loss_64, dz_64 = loss_and_grad(loss_fn("torch", tgt64), x.double(), cot, dtype)
        t64 = dense_of(x, tgt64, 0.1, kw["target_threshold"])
        assert set(t64.unique().tolist()) == {0.0, 1.0}
        loss_floor, dz_floor = term_scales(x.double(), t64, pos_weight, cot, reduction, t_exact=True,
                                           weight=kw["weight"])
        assert_matches_reference(loss, loss_s, loss_64, name="loss", floor=loss_floor,
                                 terms=1 if reduction == "none" else n * c)
        assert_matches_reference(dz, dz_s, dz_64, name="grad logits", floor=dz_floor)


@pytest.mark.parametrize("backend_device", backend_params(OP, torch_backend=True))
def test_equals_timm_and_torch(backend_device):
    """fp64, against timm 1.0's own BinaryCrossEntropy on its mixup_target's dense targets and on
    labels (its smoothing, threshold, pos_weight), and torch's binary_cross_entropy_with_logits
    with reduction 'none'; losses and gradients."""
    backend, device = backend_device
    timm = peers.timm()
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(16, 50, generator=gen, dtype=torch.float64) * 3).to(device)
    a = torch.randint(0, 50, (16,), generator=gen).to(device)
    lam = torch.rand(16, generator=gen, dtype=torch.float64).to(device)
    mixed = MixedTargets(a, a.flip(0), lam, 0.1, 50)
    dense = timm.data.mixup.mixup_target(a, 50, lam[:, None], 0.1).double()
    pw = (torch.rand(50, generator=gen, dtype=torch.float64) * 2).to(device)
    BCE = timm.loss.BinaryCrossEntropy
    # timm builds its mixed targets in fp32 (on/off values and lam products: 6e-8 relative)
    cases = [
        (lambda t: F.soft_target_binary_cross_entropy(t, mixed, backend=backend), lambda t: BCE()(t, dense), 2e-7),
        (lambda t: F.soft_target_binary_cross_entropy(t, mixed, target_threshold=0.2, backend=backend),
         lambda t: BCE(target_threshold=0.2)(t, dense), 1e-12),
        (lambda t: F.soft_target_binary_cross_entropy(t, a, 0.2, pos_weight=pw, backend=backend),
         lambda t: BCE(smoothing=0.2, pos_weight=pw)(t, a), 1e-12),
        (lambda t: F.soft_target_binary_cross_entropy(t, a, 0.0, pos_weight=1.5, reduction="sum", backend=backend),
         lambda t: BCE(smoothing=0.0, pos_weight=1.5, reduction="sum")(t, a), 1e-12),
        (lambda t: F.soft_target_binary_cross_entropy(t, dense, pos_weight=pw, reduction="none", backend=backend),
         lambda t: torch.nn.functional.binary_cross_entropy_with_logits(t, dense, pos_weight=pw, reduction="none"),
         1e-12),
    ]
    # class weights, timm's weight= (broadcast over the rows) and torch's, with pos_weight
    w = (torch.rand(50, generator=gen, dtype=torch.float64) * 2).to(device)
    for reduction in ("none", "sum", "mean"):
        cases.append((lambda t, r=reduction: F.soft_target_binary_cross_entropy(t, dense, pos_weight=pw, weight=w,
                                                                                reduction=r, backend=backend),
                      lambda t, r=reduction: torch.nn.functional.binary_cross_entropy_with_logits(
                          t, dense, weight=w, pos_weight=pw, reduction=r), 1e-12))
    cases.append((lambda t: F.soft_target_binary_cross_entropy(t, a, 0.2, weight=w, backend=backend),
                  lambda t: BCE(smoothing=0.2, weight=w)(t, a), 1e-12))
    for ours, theirs, tol in cases:
        assert_same_loss_and_grad(ours, theirs, z, tol)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_reductions_and_invalid_labels(backend_device):
    backend, device = backend_device
    z = torch.randn(6, 9, device=device, requires_grad=True)
    labels = torch.tensor([0, 8, 4, 3, 2, 1], device=device)
    dense = torch.full((6, 9), 0.1 / 9, device=device).scatter_(1, labels[:, None], 1 - 0.1 + 0.1 / 9)
    for red in ("none", "sum", "mean"):
        ours = F.soft_target_binary_cross_entropy(z, labels, 0.1, reduction=red, backend=backend)
        ref = torch.nn.functional.binary_cross_entropy_with_logits(z.detach(), dense, reduction=red)
        torch.testing.assert_close(ours.detach(), ref, rtol=1e-5, atol=1e-6)
    bad = torch.tensor([0, 9, 1, 2, 3, -1], device=device)
    rows = F.soft_target_binary_cross_entropy(z, bad, reduction="none", backend=backend)
    assert rows[[1, 5]].isnan().all() and rows[[0, 2, 3, 4]].isfinite().all()
    F.soft_target_binary_cross_entropy(z, bad, reduction="sum", backend=backend).backward()
    assert z.grad[[1, 5]].isnan().all() and z.grad[[0, 2, 3, 4]].isfinite().all()
    assert F.soft_target_binary_cross_entropy(z[:0], labels[:0], backend=backend).isnan()  # 0 / 0, as torch


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    t = torch.rand(4, 7, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    pw = torch.rand(7, generator=gen, dtype=torch.float64).to(device) + 0.5
    for reduction in ("none", "mean"):  # dense targets get a gradient too
        run_gradcheck(lambda z_, t_: F.soft_target_binary_cross_entropy(z_, t_, reduction=reduction, pos_weight=pw,
                                                                         backend=backend), (z, t))
    a = torch.tensor([1, 6, 0, 3], device=device)
    mt = MixedTargets(a, a.flip(0), torch.tensor([0.25, 0.5, 1.0, 0.75], device=device), 0.1, 7)
    run_gradcheck(lambda z_: F.soft_target_binary_cross_entropy(z_, mt, reduction="none", backend=backend), (z,))
    run_gradcheck(lambda z_: F.soft_target_binary_cross_entropy(z_, a, 0.3, reduction="sum", backend=backend), (z,))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_saves_no_dense_targets(backend_device):
    """Mixed targets cost O(N) memory: saved for backward are the logits, the labels and lam,
    never an (N, C) target tensor."""
    backend, device = backend_device
    n, c = 64, 1000
    z = torch.randn(n, c, device=device, requires_grad=True)
    a = torch.randint(0, c, (n,), device=device)
    mt = MixedTargets(a, a.flip(0), torch.rand(n, device=device), 0.1, c)
    saved = saved_bytes(lambda: F.soft_target_binary_cross_entropy(z, mt, backend=backend))
    assert sum(saved) <= z.numel() * 4 + n * (8 + 8 + 4), saved


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    fwd, bwd = backend_op("soft_bce_fwd", backend), backend_op("soft_bce_bwd", backend)
    z = torch.randn(5, 11, device=device, requires_grad=True)
    a = torch.randint(0, 11, (5,), device=device)
    lam = torch.rand(5, device=device)
    dense = torch.rand(5, 11, device=device)
    pw = torch.rand(11, device=device)
    w = torch.rand(11, device=device) + 0.5
    for args in ((a, a.flip(0), lam, None), (a, None, None, None), (None, None, None, dense)):
        for pos_weight, weight, threshold in ((None, None, None), (pw, None, 0.3), (None, w, None), (pw, w, 0.3)):
            for reduction in (0, 2):
                run_opcheck(fwd, (z,) + args + (pos_weight, weight, 0.1, threshold, reduction))
                grad = torch.randn((5, 11) if reduction == 0 else (), device=device)
                run_opcheck(bwd, (grad, z.detach()) + args + (pos_weight, weight, 0.1, threshold, reduction))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph(backend_device):
    backend, device = backend_device
    a = torch.randint(0, 13, (6,), device=device)
    mt = MixedTargets(a, a.flip(0), torch.rand(6, device=device), 0.1, 13)
    eager, compiled = run_compiled(
        lambda z: F.soft_target_binary_cross_entropy(z * 2.0, mt, reduction="none", backend=backend),
        torch.randn(6, 13, device=device, requires_grad=True))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(e, c)


def test_module_state_dict_like_timm():
    """SoftTargetBCE keeps pos_weight as a buffer under timm's name, so timm's state dict loads."""
    timm = peers.timm()
    theirs = timm.loss.BinaryCrossEntropy(smoothing=0.2, pos_weight=torch.rand(5))
    ours = tnn.SoftTargetBCE(smoothing=0.2, pos_weight=torch.zeros(5))
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k != "weight"})
    z, labels = torch.randn(4, 5), torch.tensor([0, 4, 2, 1])
    torch.testing.assert_close(ours(z, labels), theirs(z, labels), rtol=1e-6, atol=1e-7)
    assert tnn.SoftTargetBCE(pos_weight=2.0).pos_weight.shape == ()


class TestBadInput:
    def test_errors(self):
        z = torch.randn(4, 5)
        f = F.soft_target_binary_cross_entropy
        expect_error(ValueError, lambda: f(z[0], torch.arange(4)), "(N, C)")
        expect_error(ValueError, lambda: f(z, torch.arange(3)), "labels", "(4,)")
        expect_error(ValueError, lambda: f(z, torch.rand(4, 6)), "dense", "(4, 5)")
        expect_error(ValueError, lambda: f(z, torch.arange(4), reduction="avg"), "reduction", "avg")
        expect_error(ValueError, lambda: f(z, torch.arange(4), 1.0), "smoothing", "[0, 1)")
        expect_error(ValueError, lambda: f(z, torch.arange(4), target_threshold=float("nan")), "target_threshold")
        expect_error(ValueError, lambda: f(z, torch.arange(4), pos_weight=torch.ones(3)), "pos_weight", "C=5")
        expect_error(ValueError, lambda: f(z, torch.arange(4), pos_weight=torch.ones(5, requires_grad=True)),
                     "pos_weight", "detached")
        expect_error(TypeError, lambda: f(z, torch.arange(4), pos_weight="2"), "pos_weight")
        expect_error(ValueError, lambda: f(z, torch.arange(4), weight=torch.ones(2, 5)), "weight", "C=5")
        expect_error(ValueError, lambda: f(z, torch.arange(4), weight=torch.ones(5, requires_grad=True)),
                     "weight", "detached")
        mt = MixedTargets(torch.arange(4), torch.arange(4), torch.ones(4), 0.1, 7)
        expect_error(ValueError, lambda: f(z, mt), "num_classes=7", "5")
        expect_error(TypeError, lambda: f(z, [1, 2, 3, 4]), "targets", "list")
        expect_error(TypeError, lambda: f(z.long(), torch.arange(4)), "logits", "int64")
        expect_error(ValueError, lambda: tnn.SoftTargetBCE(reduction="avg"), "reduction")
