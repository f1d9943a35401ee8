"""Regressions of what a new user hit: memory safety on bad boxes, -inf logits, stale caches,
optimizers left half-changed by an error, torch's Adam numbers, edge shapes and clear errors.
Each test failed before its fix."""
import copy
import math

import pytest
import torch
import torch.nn.functional as TF

from helpers import backend_params, expect_error
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.data import MixedTargets, Mixup
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger
from tricks_ext.reference.mixup import mix as mix_reference

MIXUP = backend_params("mixup_apply")
MASK = backend_params("mask_boxes")
SOFT_CE = backend_params("soft_ce", torch_backend=True)
OPTIM = backend_params("optim_step", torch_backend=True)

# ---- 1. boxes outside the image never touch memory outside it --------------------------------

# (y0, y1, x0, x1) rows: far past the image, one past each edge, negative, reversed, and int64
# edges that wrap to small int32 values (2**32 + 3 -> 3) when cast without clipping.
BAD_BOXES = [
    [0, 100, 0, 100], [0, 8, 7, 9], [-5, 3, -7, 2], [6, 2, 5, 1],
    [-(2 ** 40), 2 ** 40, 2 ** 32 + 3, 2 ** 33], [2 ** 31 - 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31 - 1],
]


@pytest.mark.parametrize("backend_device", MIXUP)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_mixup_boxes_outside_the_image(backend_device, dtype, layout):
    backend, device = backend_device
    x = torch.randn(6, 3, 8, 8, device=device)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    lam = torch.rand(6, dtype=torch.float64)
    coef = torch.stack([lam, 1 - lam], 1).float()
    coef[::2] = torch.tensor([1.0, 0.0])
    rows = [b for b in BAD_BOXES if dtype == torch.int64 or all(abs(v) < 2 ** 31 for v in b)]
    box = torch.tensor([rows[i % len(rows)] for i in range(6)], dtype=dtype)
    expected = mix_reference(x.cpu(), coef, box).to(device)
    assert torch.equal(F.mixup(x, coef.to(device), box.to(device), backend=backend), expected)
    y = x.clone()
    F.mixup(y, coef.to(device), box.to(device), inplace=True, backend=backend)
    assert torch.equal(y, expected)


@pytest.mark.parametrize("backend_device", MASK)
def test_mask_boxes_outside_the_image(backend_device):
    backend, device = backend_device
    x = torch.randn(3, 2, 7, 9, device=device)
    box = torch.tensor(BAD_BOXES, dtype=torch.int64).view(3, 2, 4).to(device)
    expected = F.mask_boxes(x, box, -1.5, backend="torch")
    assert torch.equal(F.mask_boxes(x, box, -1.5, backend=backend), expected)


# ---- 2. logits masked with -inf give torch's value, not NaN ----------------------------------

def masked_logits(device, dtype=torch.float32):
    z = torch.randn(5, 7, dtype=torch.float64) * 3
    z[:, 2] = -math.inf  # a masked class (a padded vocabulary)
    z[3, 4:] = -math.inf
    return z.to(device, dtype)


@pytest.mark.parametrize("backend_device", SOFT_CE)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_ce_masked_logits_labels(backend_device, smoothing):
    backend, device = backend_device
    z = masked_logits(device)
    labels = torch.tensor([0, 1, 3, 2 if smoothing else 1, 6], device=device)  # row 3 labels a masked class
    for reduction in ("none", "mean"):
        zz = z.clone().requires_grad_(True)
        zr = z.clone().requires_grad_(True)
        ours = F.soft_target_cross_entropy(zz, labels, reduction, label_smoothing=smoothing, backend=backend)
        theirs = TF.cross_entropy(zr, labels, reduction=reduction, label_smoothing=smoothing)
        torch.testing.assert_close(ours, theirs, equal_nan=False, rtol=1e-6, atol=1e-6)
        if torch.isfinite(theirs).all():
            ours.sum().backward()
            theirs.sum().backward()
            torch.testing.assert_close(zz.grad, zr.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend_device", SOFT_CE)
def test_soft_ce_masked_logits_mixed_and_dense(backend_device):
    """MixedTargets equal the mix of torch's label losses, lam * CE(a) + (1 - lam) * CE(b); a
    zero-weight partner at a masked class (lam == 1) takes no part. Dense targets with zeros at
    the masked classes give the label value too (torch's dense path gives NaN there: 0 * -inf)."""
    backend, device = backend_device
    z = masked_logits(device)
    a = torch.tensor([0, 1, 3, 5, 6], device=device)
    b = torch.tensor([2, 2, 0, 1, 2], device=device)  # rows 0, 1, 4: the partner is masked
    lam = torch.tensor([1.0, 1.0, 0.3, 0.6, 1.0], device=device)
    for s in (0.0, 0.2):
        ours = F.soft_target_cross_entropy(z, MixedTargets(a, b, lam, s, 7), "none", backend=backend)
        ce = lambda t: TF.cross_entropy(z.double(), t, reduction="none", label_smoothing=s)  # noqa: E731
        want = lam.double() * ce(a) + torch.where(lam == 1, 0.0, (1 - lam.double()) * ce(b))
        torch.testing.assert_close(ours.double(), want, rtol=1e-5, atol=1e-5)
    dense = TF.one_hot(a, 7).float()
    torch.testing.assert_close(F.soft_target_cross_entropy(z, dense, "none", backend=backend),
                               TF.cross_entropy(z, a, reduction="none"), rtol=1e-6, atol=1e-6)


# ---- 3. WSConv2d never serves a stale standardized weight ------------------------------------

@pytest.mark.parametrize("cls", [tnn.WSConv2d, tnn.ScaledWSConv2d])
def test_wsconv_eval_follows_weight_data_writes_and_eps(cls):
    m = cls(3, 4, 3).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        m(x)
        m.weight.data.copy_(torch.randn_like(m.weight) * 5 + 3)  # the hand-written EMA update
        fresh = copy.deepcopy(m)
        torch.testing.assert_close(m(x), fresh(x), rtol=0, atol=0)
        m.eps = fresh.eps = 0.5
        torch.testing.assert_close(m(x), fresh(x), rtol=0, atol=0)
        w = m.weight
        expected = TF.conv2d(x, F.weight_standardize(w, 0.5, getattr(m, "gain", None), getattr(m, "scale", None)),
                             m.bias)
        torch.testing.assert_close(m(x), expected, rtol=0, atol=0)


def test_wsconv_padding_none_is_timm_symmetric():
    x = torch.randn(2, 3, 9, 9)
    for k, stride, dilation in [(3, 1, 1), (3, 2, 1), (5, 1, 2), (1, 1, 1), (4, 2, 1)]:
        m = tnn.WSConv2d(3, 4, k, stride=stride, dilation=dilation, padding=None)
        assert m.padding == ((((stride - 1) + dilation * (k - 1)) // 2),) * 2
        assert m(x).shape[-1] == TF.conv2d(x, m.weight, stride=stride, dilation=dilation, padding=m.padding).shape[-1]


# ---- 4. optimizers: a failed call leaves everything as it was --------------------------------

def snapshot(opt):
    sd = opt.state_dict()
    return copy.deepcopy(sd), [copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in opt.param_groups], \
        [len(g["params"]) for g in opt.param_groups]


def assert_same(a, b):
    (sd_a, groups_a, n_a), (sd_b, groups_b, n_b) = a, b
    assert groups_a == groups_b and n_a == n_b
    assert sd_a["param_groups"] == sd_b["param_groups"]
    assert sd_a["state"].keys() == sd_b["state"].keys()
    for k in sd_a["state"]:
        for key, v in sd_a["state"][k].items():
            assert torch.equal(v, sd_b["state"][k][key]), key


def stepped(cls, **kw):
    w, b = torch.randn(4, 3, requires_grad=True), torch.randn(4, requires_grad=True)
    opt = cls([w, b], **kw)
    w.grad, b.grad = torch.randn_like(w), torch.randn_like(b)
    opt.step()
    return opt, w, b


BAD_GROUPS = [{"lr": -1.0}, {"lr": float("nan")}, {"betas": (0.9, 0.99, 0.5)}, {"betas": 0.9},
              {"betas": (0.9, 1.0)}, {"eps": -1e-8}, {"weight_decay": -0.1}, {"lookahead_k": 0},
              {"gc": "yes"}, {"amsgrad": True}]


@pytest.mark.parametrize("cls", [FusedAdam, FusedAdamW, FusedRAdam, Ranger])
@pytest.mark.parametrize("bad", BAD_GROUPS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_add_param_group_is_transactional(cls, bad):
    opt, w, b = stepped(cls)
    before = snapshot(opt)
    extra = torch.randn(5, requires_grad=True)
    key = next(iter(bad))
    expect_error((ValueError, TypeError), lambda: opt.add_param_group({"params": [extra], **bad}), key)
    assert_same(snapshot(opt), before)
    opt.add_param_group({"params": [extra], "lr": 1e-2})  # a retry with good values is accepted
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 1e-2


@pytest.mark.parametrize("bad", [dict(betas=(0.9, 0.99, 0.5)), dict(betas=0.9), dict(lr=-1.0), dict(eps=None),
                                 dict(backend=True), dict(backend="gpu")],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_constructor_errors_name_the_argument(bad):
    key = next(iter(bad))
    expect_error((ValueError, TypeError), lambda: FusedAdam([torch.randn(3, requires_grad=True)], **bad), key)


def test_bad_hyperparameter_set_by_hand_changes_nothing():
    opt, w, b = stepped(FusedAdam)
    opt.add_param_group({"params": [torch.randn(3, requires_grad=True)]})
    before = snapshot(opt)
    w0 = w.detach().clone()
    opt.param_groups[1]["lr"] = -1.0
    for p in (w, b, opt.param_groups[1]["params"][0]):
        p.grad = torch.randn_like(p)
    expect_error(ValueError, opt.step, "param group 1", "lr")
    assert torch.equal(w, w0)  # group 0 was not stepped either
    opt.param_groups[1]["lr"] = before[1][1]["lr"]
    assert_same(snapshot(opt), before)


@pytest.mark.parametrize("flag", ["amsgrad", "capturable", "differentiable"])
def test_load_state_dict_refuses_unsupported_torch_flags(flag):
    w = torch.randn(4, 3, requires_grad=True)
    theirs = torch.optim.Adam([w], **{flag: True})
    w.grad = torch.randn_like(w)
    if flag == "amsgrad":  # capturable steps need a CUDA device; differentiable ones a graph
        theirs.step()
    opt = FusedAdam([torch.randn(4, 3, requires_grad=True)])
    before = snapshot(opt)
    expect_error(ValueError, lambda: opt.load_state_dict(theirs.state_dict()), flag, "not supported")
    assert_same(snapshot(opt), before)


@pytest.mark.parametrize("flags", [dict(foreach=True), dict(fused=True), dict(foreach=False)], ids=str)
def test_load_state_dict_takes_torch_implementation_choices(flags):
    """foreach/fused only choose torch's implementation of the same Adam: the run continues
    as torch's would."""
    w = torch.randn(4, 3, requires_grad=True)
    theirs = torch.optim.Adam([w], lr=1e-2, **flags)
    for _ in range(3):
        w.grad = torch.randn_like(w)
        theirs.step()
    mine = w.detach().clone().requires_grad_(True)
    ours = FusedAdam([mine], lr=1e-2, backend="cpu")
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))  # as from a file: no tensor shared with theirs
    assert not any(k in ours.param_groups[0] for k in ("foreach", "fused", "amsgrad"))
    g = torch.randn_like(w)
    w.grad, mine.grad = g, g.clone()
    theirs.step()
    ours.step()
    torch.testing.assert_close(mine, w, rtol=1e-6, atol=1e-7)


def test_load_state_dict_shape_mismatch_changes_nothing():
    opt, w, b = stepped(FusedAdam)
    other, _, _ = stepped(FusedAdam)
    sd = other.state_dict()
    sd["state"][0]["exp_avg"] = torch.zeros(2, 2)
    before = snapshot(opt)
    expect_error(ValueError, lambda: opt.load_state_dict(sd), "exp_avg", "(2, 2)")
    assert_same(snapshot(opt), before)


# ---- 5. the fused Adam update is torch's to fp32 rounding ------------------------------------

@pytest.mark.parametrize("backend_device", OPTIM)
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.95, 0.9999)], ids=str)
def test_adam_update_matches_torch_per_element(backend_device, betas):
    """Every element's update within 1e-6 of the largest update, against torch.optim.Adam's.
    Params and updates of similar size (1e-2) keep the fp32 rounding of p - update out of the
    measurement. The fp32 1 - beta2 of the old kernels made every update 6.8e-6 too large."""
    backend, device = backend_device
    gen = torch.Generator().manual_seed(5)
    p0 = (torch.randn(64, 33, generator=gen) * 1e-2).to(device)
    ours_p, ref_p = p0.clone().requires_grad_(True), p0.clone().requires_grad_(True)
    ours = FusedAdam([ours_p], lr=1e-2, betas=betas, backend=backend)
    ref = torch.optim.Adam([ref_p], lr=1e-2, betas=betas)
    for step in range(5):
        before = ref_p.detach().clone()
        g = (torch.randn(64, 33, generator=gen) * 1e-3).to(device)
        ours_p.grad, ref_p.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
        du, du_ref = (ours_p - before).double(), (ref_p - before).double()
        rel = ((du - du_ref).abs().max() / du_ref.abs().max()).item()
        assert rel <= 1e-6, f"step {step + 1}: update off by {rel:.3g} relative"
        with torch.no_grad():
            ours_p.copy_(ref_p)


# ---- 6. edge shapes and devices behave alike on every backend --------------------------------

@pytest.mark.parametrize("backend_device", MASK)
@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 0, 4, 5), (2, 3, 4, 0), (0, 3, 4, 5)], ids=str)
def test_masking_empty_dims(backend_device, shape):
    backend, device = backend_device
    x = torch.randn(shape, device=device)
    assert F.cutout(x, backend=backend).shape == shape
    assert F.spec_augment(x, backend=backend).shape == shape
    box = torch.zeros(shape[0], 1, 4, dtype=torch.int32, device=device)
    assert F.mask_boxes(x, box, backend=backend).shape == shape
    assert F.mask_boxes(x.clone(), box, inplace=True, backend=backend).shape == shape


@pytest.mark.parametrize("backend_device", MIXUP)
@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 0, 4, 5), (0, 3, 4, 5)], ids=str)
def test_mixup_empty_dims(backend_device, shape):
    backend, device = backend_device
    x = torch.randn(shape, device=device)
    coef = torch.tensor([[0.3, 0.7]], device=device).expand(shape[0], 2)
    assert F.mixup(x, coef, backend=backend).shape == shape


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_box_and_coef_on_another_device(backend):
    x = torch.randn(4, 3, 8, 8)
    coef, box = torch.tensor([[1.0, 0.0]] * 4), torch.zeros(4, 4, dtype=torch.int32)
    expect_error(RuntimeError, lambda: F.mixup(x, coef.to("meta"), box, backend=backend), "coef", "meta")
    expect_error(RuntimeError, lambda: F.mixup(x, coef, box.to("meta"), backend=backend), "box", "meta")
    expect_error(RuntimeError, lambda: F.mask_boxes(x, box.view(4, 1, 4).to("meta"), backend=backend), "box", "meta")


def test_evonorm_affine_only_any_groups():
    m = tnn.EvoNormS0(16, apply_act=False)
    x = torch.randn(2, 16, 3, 3)
    torch.testing.assert_close(m(x), x * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1), rtol=0, atol=0)


# ---- 7. clear errors where the mistake is made -----------------------------------------------

def test_mixed_targets_take_scalar_lam_and_label_lists():
    a, b = [1, 0, 2], [2, 0, 1]
    for lam in (0.7, torch.tensor(0.7), [0.7, 0.7, 0.7]):
        t = MixedTargets(a, b, lam, 0.1, 3)
        assert t.lam.shape == (3,) and t.a.dtype == torch.int64
        ref = 0.7 * TF.one_hot(torch.tensor(a), 3) * 0.9 + 0.3 * TF.one_hot(torch.tensor(b), 3) * 0.9 + 0.1 / 3
        torch.testing.assert_close(t.dense(), ref.float())
    expect_error(TypeError, lambda: MixedTargets(a, b, 0.5, None, 3), "smoothing")
    expect_error(TypeError, lambda: MixedTargets([0.5], [1], 0.5, 0.0, 3), "a", "integer")
    expect_error(ValueError, lambda: MixedTargets(a, b, [0.5, 0.5], 0.0, 3), "lam")


@pytest.mark.parametrize("kwargs,words", [
    (dict(num_features=16, groups=0), ("groups", "0")),
    (dict(num_features=16, group_size=0), ("group_size",)),
    (dict(num_features=16, eps=0.0), ("eps",)),
    (dict(num_features=16, eps=float("nan")), ("eps",)),
    (dict(num_features=16, backend="cuda:0"), ("backend", "cuda:0")),
])
def test_evonorm_constructor_errors(kwargs, words):
    expect_error(ValueError, lambda: tnn.EvoNormS0(**kwargs), *words)


def test_module_constructor_errors():
    expect_error(ValueError, lambda: tnn.WSConv2d(3, 4, 3, eps=-1.0), "eps")
    expect_error(ValueError, lambda: tnn.WSConv2d(3, 4, 3, backend="fast"), "backend", "fast")
    expect_error(ValueError, lambda: tnn.Dropout(0.1, backend=True), "backend")
    expect_error(TypeError, lambda: tnn.Dropout(0.1, "cpu"), "inplace")
    expect_error(ValueError, lambda: tnn.DropPath(0.1, backend="x"), "backend")
    expect_error(ValueError, lambda: tnn.SoftTargetCrossEntropy(reduction="avg"), "reduction")
    expect_error(ValueError, lambda: tnn.SoftTargetCrossEntropy(backend="x"), "backend")
    expect_error(ValueError, lambda: Mixup(backend="x"), "backend")
    expect_error(TypeError, lambda: Mixup(mixup_alpha=None), "mixup_alpha")


def test_dropout_inplace_as_torch():
    m = tnn.Dropout(0.1, True)
    assert m.inplace
    x = torch.randn(1000)
    y = m(x)
    assert y is x and (x == 0).any()
    assert "inplace=True" in repr(m)
    x = torch.randn(1000)
    m.eval()
    assert m(x) is x
