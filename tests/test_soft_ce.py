"""Soft-target cross-entropy on every backend vs the reference (loss and gradients), against
timm's SoftTargetCrossEntropy and torch's cross_entropy, with O(N) saved target memory."""
import itertools

import pytest
import torch

import peers
from helpers import (assert_matches_reference, assert_same_loss_and_grad, backend_op, backend_params, expect_error,
                     loss_and_grad, run_compiled, run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.data import MixedTargets
from tricks_ext.targets import mixed_targets
from tricks_ext.triton_kernels import soft_ce as soft_ce_triton
from tricks_ext.triton_kernels._common import row_pieces

OP = "soft_ce"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (N, C, logit scale): logits of +-1e3..1e4 overflow exp() without the max subtraction (fp32
# exp overflows past 88.7); C = 70,001 is several Triton BLOCKs and CUDA tiles per row.
SHAPES = [(37, 1000, 4.0), (5, 3, 1e4), (4, 1, 1e3), (2, 70_001, 30.0), (16, 257, 1e3)]


def dense_of(targets, kw, c):
    """The (N, C) target a label or MixedTargets stands for (an ignored row: zeros)."""
    if isinstance(targets, MixedTargets):
        return targets.dense()
    s = kw.get("label_smoothing", 0.0)
    keep = targets != -100
    t = torch.nn.functional.one_hot(torch.where(keep, targets, 0), c).double() * (1 - s) + s / c
    return t * keep[:, None]


def make_targets(kind, n, c, device, gen):
    a = torch.randint(0, c, (n,), generator=gen).to(device)
    if kind == "mixed":
        return MixedTargets(a, a.flip(0), torch.rand(n, generator=gen).to(device), 0.1, c), {}
    if kind == "hard":
        if n > 2:
            a[1] = -100
        return a, {"label_smoothing": 0.1}
    return torch.softmax(torch.randn(n, c, generator=gen), -1).to(device), {}


def term_scales(logits64, targets64, loss_grad, reduction, divisor=None):
    """Per output element, the size of the terms it is formed from (the tolerance rule's floor),
    in fp64 from the quantized inputs (targets with their class weights): loss_i = lse_i T_i -
    sum_c t_ic z_ic (T_i = sum_c t_ic, 1 without class weights) cancels terms of size
    |lse_i| T_i + sum_c |t_ic z_ic|; dz_ic = g_i (p_ic T_i - t_ic) with p = exp(z - lse), whose
    error is p T_i times that of z - lse, i.e. p T_i (|z| + |lse|). 'mean' divides by
    ``divisor`` (N unless given)."""
    lse = torch.logsumexp(logits64, -1, keepdim=True)
    finite = torch.where(torch.isfinite(logits64), logits64, 0.0)
    total = targets64.sum(-1, keepdim=True).abs().clamp(min=1.0)
    loss_floor = (lse.abs() * total).squeeze(-1) + (targets64 * finite).abs().sum(-1)
    p = torch.exp(logits64 - lse)
    g = loss_grad.abs()[:, None] if loss_grad.dim() else loss_grad.abs()
    if reduction == "mean":
        divisor = logits64.shape[0] if divisor is None else divisor
        loss_floor, g = loss_floor.sum() / divisor, g / divisor
    dz_floor = g * (p * total * (1 + finite.abs() + lse.abs()) + targets64.abs())
    return loss_floor, dz_floor


def class_weights(c, device, gen):
    """Class weights in [0.25, 1.75], class 0's at 0 (it takes no part)."""
    w = torch.rand(c, generator=gen, dtype=torch.float64) * 1.5 + 0.25
    w[0] = 0.0
    return w.to(device)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["mixed", "hard", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_matches_reference(backend_device, dtype, shape, kind, reduction):
    check_against_reference(*backend_device, dtype, shape, kind, reduction, weighted=False)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(37, 1000, 4.0), (2, 70_001, 30.0), (16, 257, 1e3)], ids=str)
@pytest.mark.parametrize("kind", ["mixed", "hard", "dense"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_class_weights_match_reference(backend_device, dtype, shape, kind, reduction):
    """weight=: every target scaled by its class weight (one class at 0), and 'mean' over hard
    labels divided by the weights of the labels kept, on every backend."""
    check_against_reference(*backend_device, dtype, shape, kind, reduction, weighted=True)


def check_against_reference(backend, device, dtype, shape, kind, reduction, weighted):
    n, c, scale = shape
    gen = torch.Generator().manual_seed(n * c)
    logits = (torch.randn(n, c, generator=gen) * scale).to(device)
    targets, kw = make_targets(kind, n, c, device, gen)
    grad = torch.randn(n, generator=gen, dtype=torch.float64).to(device)
    weight = class_weights(c, device, gen).float() if weighted else None
    if weighted:
        kw = dict(kw, weight=weight)

    def ours(z):
        return F.soft_target_cross_entropy(z, targets, reduction=reduction, backend=backend, **kw)

    def ref(z):
        return F.soft_target_cross_entropy(z, targets if kind != "dense" else targets.to(z.dtype) if z.dtype ==
                                           torch.float64 else targets, reduction=reduction, backend="torch", **kw)

    x = logits.to(dtype)
    if kind == "dense":
        targets = targets.to(dtype)
    loss, dz = loss_and_grad(ours, x, grad)
    loss_s, dz_s = loss_and_grad(ref, x, grad)
    loss_64, dz_64 = loss_and_grad(ref, x.double(), grad, dtype)  # quantized logits and cotangent
    dense64 = targets.double() if kind == "dense" else dense_of(targets, kw, c).double()
    divisor = None
    if weighted:
        dense64 = dense64 * weight.double()
        if kind == "hard":
            divisor = torch.where(targets != -100, weight.double()[targets.clamp(min=0)], 0.0).sum()
    loss_floor, dz_floor = term_scales(x.double(), dense64, grad, reduction, divisor)
    assert_matches_reference(loss, loss_s, loss_64, name="loss", floor=loss_floor, terms=c)
    assert_matches_reference(dz, dz_s, dz_64, name="grad logits", floor=dz_floor, terms=c)


@pytest.mark.parametrize("backend_device", backend_params(OP, torch_backend=True))
def test_equals_timm_and_torch(backend_device):
    """fp64, against timm 1.0's own SoftTargetCrossEntropy on its mixup_target's dense targets,
    and torch's cross_entropy (label smoothing, ignore_index), losses and gradients."""
    backend, device = backend_device
    timm = peers.timm()
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(16, 50, generator=gen, dtype=torch.float64) * 3).to(device)
    a = torch.randint(0, 50, (16,), generator=gen).to(device)
    lam = torch.rand(16, generator=gen, dtype=torch.float64).to(device)
    mixed = MixedTargets(a, a.flip(0), lam, 0.1, 50)
    # timm's mixup_target takes one lam for the batch (mode 'batch') or a column of per-sample ones
    dense = timm.data.mixup.mixup_target(a, 50, lam[:, None], 0.1).double()
    # timm builds its targets in fp32 (on/off values and lam products rounded: 6e-8 relative)
    cases = [(lambda t: F.soft_target_cross_entropy(t, mixed, backend=backend),
              lambda t: timm.loss.SoftTargetCrossEntropy()(t, dense), 2e-7)]
    labels = a.clone()
    labels[3] = -100
    cases.append((lambda t: F.soft_target_cross_entropy(t, labels, label_smoothing=0.2, backend=backend),
                  lambda t: torch.nn.functional.cross_entropy(t, labels, label_smoothing=0.2), 1e-12))
    for ours, theirs, tol in cases:
        assert_same_loss_and_grad(ours, theirs, z, tol)


@pytest.mark.parametrize("backend_device", backend_params(OP, torch_backend=True))
def test_class_weights_equal_torch_cross_entropy(backend_device):
    """fp64 against torch's cross_entropy(weight=): integer labels with label_smoothing and
    ignore_index ('mean' divides by the kept labels' weights), and class-probability targets
    (mixed, dense: 'mean' over N), every reduction, losses and gradients."""
    backend, device = backend_device
    gen = torch.Generator().manual_seed(1)
    n, c = 12, 40
    z = (torch.randn(n, c, generator=gen, dtype=torch.float64) * 3).to(device)
    w = class_weights(c, device, gen)
    labels = torch.randint(0, c, (n,), generator=gen).to(device)
    labels[2], labels[5], labels[7] = -100, 0, 0  # an ignored row, two rows of the weight-0 class
    mixed = MixedTargets(labels.clamp(min=1), labels.flip(0).clamp(min=1),
                         torch.rand(n, generator=gen, dtype=torch.float64).to(device), 0.1, c)
    dense = torch.softmax(torch.randn(n, c, generator=gen, dtype=torch.float64), -1).to(device)
    ce = torch.nn.functional.cross_entropy
    cases = [(labels, {"label_smoothing": 0.2, "ignore_index": -100}, labels, {"label_smoothing": 0.2}),
             (mixed, {}, mixed_targets(mixed.a, mixed.b, mixed.lam, 0.1, c, torch.float64), {}),
             (dense, {}, dense, {})]
    for targets, theirs_kw, their_targets, ours_kw in cases:
        theirs_kw = {k: v for k, v in theirs_kw.items() if k != "ignore_index"}
        for reduction in ("none", "sum", "mean"):
            assert_same_loss_and_grad(
                lambda t: F.soft_target_cross_entropy(t, targets, reduction, weight=w, backend=backend, **ours_kw),
                lambda t: ce(t, their_targets, weight=w, reduction=reduction, **theirs_kw), z, 1e-12)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c", [7, 3000])
def test_masked_huge_logits_equal_torch_cross_entropy(backend_device, dtype, c):
    """Logits of +-1e4 with a third of each row masked with -inf (never the label), one row
    masked but for its label: loss and gradient against torch.nn.functional.cross_entropy in
    fp64 on the same quantized logits, under the tolerance rule (its fp32/fp16 run as the
    same-dtype error)."""
    backend, device = backend_device
    gen = torch.Generator().manual_seed(c)
    n = 6
    z = torch.randn(n, c, generator=gen) * 1e4
    labels = torch.randint(0, c, (n,), generator=gen)
    masked = torch.rand(n, c, generator=gen) < 1 / 3
    masked[0] = True
    masked[torch.arange(n), labels] = False
    z = z.masked_fill(masked, -torch.inf).to(dtype).to(device)
    labels = labels.to(device)
    grad = torch.randn(n, generator=gen, dtype=torch.float64).to(device)

    def torch_ce(t):
        return torch.nn.functional.cross_entropy(t, labels, reduction="none")

    loss, dz = loss_and_grad(lambda t: F.soft_target_cross_entropy(t, labels, "none", backend=backend), z, grad)
    loss_64, dz_64 = loss_and_grad(torch_ce, z.double(), grad, dtype)
    same = loss_and_grad(torch_ce, z if dtype == torch.float32 else z.float(), grad, dtype)
    loss_s, dz_s = same[0].to(dtype), same[1].to(dtype)
    assert torch.isfinite(loss).all() and loss[0] == 0 and (dz[masked] == 0).all()
    onehot = torch.nn.functional.one_hot(labels, c).double()
    loss_floor, dz_floor = term_scales(z.double(), onehot, grad, "none")
    assert_matches_reference(loss, loss_s, loss_64, name="loss", floor=loss_floor, terms=c)
    assert_matches_reference(dz, dz_s, dz_64, name="grad logits", floor=dz_floor, terms=c)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_long_rows_in_pieces_equal_torch_cross_entropy(backend_device, label_smoothing):
    """Few rows of 9000 classes, which the Triton kernels cut into 3 pieces each (row_pieces; the
    other backends run the same case): the first row -inf but for its last 3000 classes (a
    piece wholly -inf: its empty sum must not turn the row's to NaN), an ignored row, an
    out-of-range label, class weights. fp64 against torch's cross_entropy per row."""
    backend, device = backend_device
    n, c = 4, 9000
    assert row_pieces(n, c, 2048)[0] == 3
    gen = torch.Generator().manual_seed(9)
    z = torch.randn(n, c, generator=gen, dtype=torch.float64) * 3
    if label_smoothing == 0:  # with smoothing a -inf logit makes the loss inf, as in torch
        z[0, :6000] = -torch.inf
    labels = torch.tensor([7000, -100, c, 4321])
    weight = class_weights(c, "cpu", gen)
    grad = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    z, labels, weight, grad = (t.to(device) for t in (z, labels, weight, grad))

    def ours(t):
        return F.soft_target_cross_entropy(t, labels, "none", weight=weight, label_smoothing=label_smoothing,
                                           backend=backend)

    loss, dz = loss_and_grad(ours, z, grad)
    keep = torch.tensor([0, 1, 3], device=device)
    ref, dz_ref = loss_and_grad(lambda t: torch.nn.functional.cross_entropy(
        t, labels[keep], weight=weight, label_smoothing=label_smoothing, reduction="none"), z[keep], grad[keep])
    torch.testing.assert_close(loss[keep], ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dz[keep], dz_ref, rtol=1e-12, atol=1e-15)
    assert loss[2].isnan() and dz[2].isnan().all() and loss[1] == 0 and (dz[1] == 0).all()


def test_triton_and_cuda_cut_rows_by_one_rule():
    """row_pieces is written twice, in triton_kernels/_common.py and csrc/common/math.h (each over
    its own sweep): the two hold the same constants."""
    import re
    from pathlib import Path

    from tricks_ext.triton_kernels import _common
    header = (Path(__file__).resolve().parents[1] / "csrc" / "common" / "math.h").read_text()
    found = dict(re.findall(r"constexpr int64_t (kRowPrograms|kMinPieceSweeps) = (\d+);", header))
    assert found == {"kRowPrograms": str(_common.ROW_PROGRAMS), "kMinPieceSweeps": str(_common.MIN_PIECE_SWEEPS)}


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_one_row_in_many_pieces_equals_torch_cross_entropy(backend_device):
    """One row of 600,000 classes: 147 pieces in the Triton kernels, more than their merge takes in
    one step (MERGE_BLOCK), with the row's max in the last piece, 1000 above the others (exp of the
    difference overflows fp64: every piece's sum must be scaled to the row's max). fp64 against
    torch."""
    backend, device = backend_device
    c = 600_000
    assert row_pieces(1, c, 2048)[0] > soft_ce_triton.MERGE_BLOCK
    gen = torch.Generator().manual_seed(10)
    z = torch.randn(1, c, generator=gen, dtype=torch.float64)
    z[0, -5] = 1000.0
    labels = torch.tensor([123_456])
    grad = torch.tensor([0.75], dtype=torch.float64)
    z, labels, grad = z.to(device), labels.to(device), grad.to(device)
    loss, dz = loss_and_grad(lambda t: F.soft_target_cross_entropy(t, labels, "none", label_smoothing=0.1,
                                                                   backend=backend), z, grad)
    ref, dz_ref = loss_and_grad(lambda t: torch.nn.functional.cross_entropy(t, labels, label_smoothing=0.1,
                                                                            reduction="none"), z, grad)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(dz, dz_ref, rtol=1e-10, atol=1e-18)


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


@pytest.mark.parametrize("backend_device", BACKENDS)
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


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    fwd, bwd = backend_op("soft_ce_fwd", backend), backend_op("soft_ce_bwd", backend)
    z = torch.randn(5, 11, device=device, requires_grad=True)
    a = torch.randint(0, 11, (5,), device=device)
    lam = torch.rand(5, device=device)
    dense = torch.softmax(torch.randn(5, 11, device=device), -1)
    weight = torch.rand(11, device=device) + 0.5
    for targets, w in itertools.product(((a, a.flip(0), lam, None), (a, None, None, None), (None, None, None, dense)),
                                        (None, weight)):
        args = targets + (w,)
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
    torch.testing.assert_close(loss_fn(z, t), torch.sum(-t * torch.log_softmax(z, -1), -1).mean())
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
        labels = torch.arange(4)
        expect_error(ValueError, lambda: F.soft_target_cross_entropy(z, labels, weight=torch.ones(4)), "weight", "C=5")
        ce = F.soft_target_cross_entropy
        expect_error(TypeError, lambda: ce(z, labels, weight=torch.ones(5, dtype=torch.int64)), "weight")
        expect_error(ValueError, lambda: ce(z, labels, weight=torch.ones(5, requires_grad=True)), "weight", "gradient")
        expect_error(TypeError, lambda: F.soft_target_cross_entropy(z, labels, weight=[1.0] * 5), "weight", "list")
