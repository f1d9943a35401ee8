"""Soft F1 loss on every backend vs the reference (loss and gradients), against
pytorch-optimizer's SoftF1Loss and the macro formula, with bad input refused."""
import pytest
import torch

import peers
from helpers import (assert_matches_reference, assert_same_loss_and_grad, backend_op, backend_params, expect_error,
                     loss_and_grad, run_compiled, run_gradcheck, run_opcheck)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.data import MixedTargets
from tricks_ext.ops.soft_f1 import f1_loss_from_sums
from tricks_ext.reference.soft_f1 import soft_f1_loss as reference_loss, soft_f1_probabilities, soft_f1_sums

OP = "soft_f1"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (N, C, logit scale): C = 5000 is several Triton sweeps (2048) and CUDA column blocks (256);
# N = 300 at C = 1000 is several chunks of rows (65536 / C = 65 rows each); scale 30 saturates
# the sigmoid and the softmax.
SHAPES = [(300, 1000, 3.0), (5, 3, 30.0), (3, 5000, 2.0), (64, 17, 1.0)]
KINDS = ["labels", "multi-label", "dense softmax"]


def make_targets(kind, n, c, device, gen):
    """(targets, multi_label) of a kind."""
    if kind == "labels":
        return torch.randint(0, c, (n,), generator=gen).to(device), None
    t = (torch.rand(n, c, generator=gen) < 0.3).double() if kind == "multi-label" else \
        torch.softmax(torch.randn(n, c, generator=gen, dtype=torch.float64), -1)
    return t.to(device), kind == "multi-label"


def floors(logits64, targets, multi_label, average, cot):
    """The tolerance rule's floors: the loss is 1 - F of sums over N rows (scale 1); dz_ic is
    p-weighted dL/dp = g0 t + g1 (minus the row's sum of dL/dp p for softmax), so its terms are
    |g0 t| + |g1| times p (1 - p), or p (|dL/dp| + |sum dL/dp p|), from the fp64 counts."""
    a = targets if not targets.dtype.is_floating_point else None
    dense = targets.double() if a is None else None
    sums = soft_f1_sums(logits64, a, dense, multi_label).requires_grad_(True)
    (g,) = torch.autograd.grad(f1_loss_from_sums(sums, average, 1.0, 1e-6) * cot, sums)
    p, t = soft_f1_probabilities(logits64, a, dense, multi_label)
    dp = (g[0] * t).abs() + g[1].abs()
    if multi_label:
        return 1.0, dp * p * (1 - p)
    return 1.0, p * (dp + (dp * p).sum(-1, keepdim=True))


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_matches_reference(backend_device, dtype, shape, kind, average):
    backend, device = backend_device
    n, c, scale = shape
    gen = torch.Generator().manual_seed(n * c)
    logits = (torch.randn(n, c, generator=gen) * scale).to(device)
    targets, multi_label = make_targets(kind, n, c, device, gen)
    cot = torch.randn((), generator=gen, dtype=torch.float64).to(device)

    def loss_fn(be, tg):
        return lambda z: F.soft_f1_loss(z, tg, average, multi_label=multi_label, backend=be)

    x = logits.to(dtype)
    tgt = targets.to(dtype) if targets.dtype.is_floating_point else targets
    loss, dz = loss_and_grad(loss_fn(backend, tgt), x, cot)
    loss_s, dz_s = loss_and_grad(loss_fn("torch", tgt), x, cot)
    tgt64 = tgt.double() if tgt.dtype.is_floating_point else tgt
    loss_64, dz_64 = loss_and_grad(loss_fn("torch", tgt64), x.double(), cot, dtype)
    loss_floor, dz_floor = floors(x.double(), tgt64, bool(multi_label), average, cot.to(dtype).double())
    assert_matches_reference(loss, loss_s, loss_64, name="loss", floor=loss_floor, terms=n)
    assert_matches_reference(dz, dz_s, dz_64, name="grad logits", floor=dz_floor, terms=c)


@pytest.mark.parametrize("backend_device", backend_params(OP, torch_backend=True))
def test_equals_pytorch_optimizer_and_the_definition(backend_device):
    """fp64 logits: micro against pytorch-optimizer's SoftF1Loss on sigmoid (multi-label) or
    softmax + one-hot (multi-class) probabilities, at beta 1 and eps 1e-6 and 0, to 4 fp32 ulps
    (it casts its counts to fp32); macro and beta 2 against the definition (counts TP, FP, FN per
    class) to 1e-12; losses and gradients."""
    backend, device = backend_device
    po = peers.pytorch_optimizer()
    gen = torch.Generator().manual_seed(3)
    z = (torch.randn(40, 12, generator=gen, dtype=torch.float64) * 2).to(device)
    labels = torch.randint(0, 12, (40,), generator=gen).to(device)
    multi = (torch.rand(40, 12, generator=gen) < 0.25).double().to(device)
    onehot = torch.nn.functional.one_hot(labels, 12).double()
    fp32_ulps = 4 * 2.0 ** -24
    cases = []
    for eps in (1e-6, 0.0):
        cases += [
            (lambda t, e=eps: F.soft_f1_loss(t, multi, "micro", eps=e, backend=backend),
             lambda t, e=eps: po.SoftF1Loss(eps=e)(torch.sigmoid(t), multi), fp32_ulps),
            (lambda t, e=eps: F.soft_f1_loss(t, labels, "micro", eps=e, backend=backend),
             lambda t, e=eps: po.SoftF1Loss(eps=e)(torch.softmax(t, -1), onehot), fp32_ulps),
        ]
    for average in ("macro", "micro"):
        for beta in (1.0, 2.0):
            cases += [(lambda t, a=average, b=beta: F.soft_f1_loss(t, multi, a, beta=b, backend=backend),
                       lambda t, a=average, b=beta: reference_loss(t, None, multi, a, b, 1e-6, True), 1e-12),
                      (lambda t, a=average, b=beta: F.soft_f1_loss(t, labels, a, beta=b, backend=backend),
                       lambda t, a=average, b=beta: reference_loss(t, labels, None, a, b, 1e-6, False), 1e-12)]
    for ours, theirs, tol in cases:  # atol relative to the largest element: a gradient's elements share its counts
        assert_same_loss_and_grad(ours, theirs, z, tol, atol=lambda y, tol=tol: tol * float(y.abs().max()),
                                  check_dtype=False)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64_and_invalid_labels(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(6, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_(True)
    labels = torch.tensor([0, 4, 2, 2, 1, 3], device=device)
    dense = torch.rand(6, 5, generator=gen, dtype=torch.float64).to(device)
    for average in ("macro", "micro"):
        run_gradcheck(lambda z_: F.soft_f1_loss(z_, labels, average, backend=backend), (z,))
        run_gradcheck(lambda z_: F.soft_f1_loss(z_, dense, average, backend=backend), (z,))
        run_gradcheck(lambda z_: F.soft_f1_loss(z_, dense, average, multi_label=False, backend=backend), (z,))
    bad = torch.tensor([0, 5, 2, 2, 1, -1], device=device)
    loss = F.soft_f1_loss(z, bad, backend=backend)
    loss.backward()
    assert loss.isnan() and z.grad.isnan().all()


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    fwd, bwd = backend_op("soft_f1_sums", backend), backend_op("soft_f1_sums_bwd", backend)
    z = torch.randn(7, 11, device=device, requires_grad=True)
    a = torch.randint(0, 11, (7,), device=device)
    dense = torch.rand(7, 11, device=device)
    for targets in ((a, None), (None, dense)):
        for multi_label in (False, True):
            run_opcheck(fwd, (z,) + targets + (multi_label,))
            run_opcheck(bwd, (torch.randn(3, 11, device=device), z.detach()) + targets + (multi_label,))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph(backend_device):
    backend, device = backend_device
    labels = torch.randint(0, 13, (6,), device=device)
    eager, compiled = run_compiled(lambda z: F.soft_f1_loss(z * 2.0, labels, backend=backend),
                                   torch.randn(6, 13, device=device, requires_grad=True))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(e, c)


def test_mixed_targets_module_and_autocast():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(8, 6, generator=gen)
    a = torch.randint(0, 6, (8,), generator=gen)
    mt = MixedTargets(a, a.flip(0), torch.rand(8, generator=gen), 0.1, 6)
    torch.testing.assert_close(F.soft_f1_loss(z, mt), F.soft_f1_loss(z, mt.dense(), multi_label=False))
    assert F.soft_f1_loss(z.bfloat16(), mt).dtype == torch.bfloat16  # the expanded targets take the logits' dtype
    module = tnn.SoftF1Loss(average="micro", beta=2.0)
    torch.testing.assert_close(module(z, a), F.soft_f1_loss(z, a, "micro", beta=2.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.soft_f1_loss(z.bfloat16(), a).dtype == torch.float32


class TestBadInput:
    def test_errors(self):
        z = torch.randn(4, 5)
        f = F.soft_f1_loss
        expect_error(ValueError, lambda: f(z[0], torch.arange(4)), "(N, C)")
        expect_error(ValueError, lambda: f(z, torch.arange(3)), "labels", "(4,)")
        expect_error(ValueError, lambda: f(z, torch.rand(4, 6)), "dense", "(4, 5)")
        expect_error(ValueError, lambda: f(z, torch.arange(4), "weighted"), "average", "weighted")
        expect_error(ValueError, lambda: f(z, torch.arange(4), beta=0.0), "beta")
        expect_error(ValueError, lambda: f(z, torch.arange(4), eps=-1.0), "eps")
        expect_error(TypeError, lambda: f(z, torch.arange(4), multi_label=1), "multi_label")
        expect_error(TypeError, lambda: f(z, [1, 2, 3, 4]), "targets", "list")
        expect_error(TypeError, lambda: f(z.long(), torch.arange(4)), "logits", "int64")
        expect_error(ValueError, lambda: tnn.SoftF1Loss(average="both"), "average")
