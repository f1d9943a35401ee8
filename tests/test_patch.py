"""tricks_ext.patch on torch and real timm models, and the timm-exact layers it swaps in.

The comparisons run in fp64, where both sides compute the same function almost exactly, so a
wrong padding, eps, gain or group split shows as a large error rather than hiding in fp32
rounding; one fp32 run checks the default dtype too."""
import copy
import inspect
import io
import subprocess
import sys
from functools import partial

import pytest
import torch

import peers
import tricks_ext
from helpers import expect_error
from tricks_ext import nn as tnn

FP64_TOL = dict(rtol=1e-10, atol=1e-12)
# timm's EvoNorm2dS0 takes the group variance in fp32 whatever the input dtype (x.float().var()):
# a relative error of a few fp32 ulps (2^-24 = 6e-8) on every output and gradient.
TIMM_EVONORM_TOL = dict(rtol=1e-6, atol=1e-6)

# (tricks_ext class, timm class name, argument sets): positional and keyword, every default path
# (symmetric, static and dynamic 'SAME', 'valid', explicit padding, bias on and off, groups).
LAYER_CASES = [
    (tnn.StdConv2d, "StdConv2d", [((4, 6, 3), {}), ((4, 6, 3, 2), {}), ((4, 6, (3, 5)), dict(stride=(2, 1), dilation=2)),
                                  ((4, 6, 3), dict(bias=True, padding=0, groups=2, eps=1e-8))]),
    (tnn.StdConv2dSame, "StdConv2dSame", [((4, 6, 3), {}), ((4, 6, 3, 2), {}), ((4, 6, 4), dict(dilation=2)),
                                          ((4, 6, 3), dict(padding="valid", bias=True))]),
    (tnn.ScaledStdConv2d, "ScaledStdConv2d", [((4, 6, 3), {}), ((4, 6, 3, 2), dict(gamma=1.7, gain_init=0.5)),
                                              ((4, 6, 3), dict(padding="same", bias=False, eps=1e-4))]),
    (tnn.ScaledStdConv2dSame, "ScaledStdConv2dSame", [((4, 6, 3), {}), ((4, 6, 4, 2), dict(gamma=2.0)),
                                                      ((4, 6, 3), dict(padding="valid"))]),
    (tnn.EvoNorm2dS0, "EvoNorm2dS0", [((32,), {}), ((8, 2), {}), ((8,), dict(group_size=4, eps=1e-3)),
                                      ((8, 4, None, False), {}), ((8,), dict(groups=4, act_layer=torch.nn.ReLU))]),
]


def _randomize(module):
    torch.manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(0.5, 1.5) if p.dim() != 4 else p.normal_()


def _forward_backward(module, x, seed=0):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = module(x)
    y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape))
    grads = [x.grad] + [p.grad for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return [y.detach()] + grads


def _assert_all_close(ours, theirs, **tol):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("ours,name", [(c[0], c[1]) for c in LAYER_CASES], ids=[c[1] for c in LAYER_CASES])
def test_signature_is_timms(ours, name):
    """Every timm parameter, in timm's order, with timm's default; ours only adds ``backend``."""
    theirs = getattr(peers.timm().layers, name)
    mine = [p for p in inspect.signature(ours.__init__).parameters.values() if p.name != "backend"]
    timms = list(inspect.signature(theirs.__init__).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine] == [(p.name, p.kind, p.default) for p in timms]


@pytest.mark.parametrize("ours,name,args,kwargs", [(c[0], c[1], a, k) for c in LAYER_CASES for a, k in c[2]],
                         ids=[f"{c[1]}-{i}" for c in LAYER_CASES for i in range(len(c[2]))])
def test_layer_is_drop_in_for_timm(ours, name, args, kwargs):
    """Built with the same arguments, timm's state dict loads strictly and outputs and gradients
    agree; input sizes odd and even so dynamic 'SAME' pads asymmetrically."""
    theirs = getattr(peers.timm().layers, name)(*args, **kwargs).double()
    mine = ours(*args, **kwargs).double()
    assert [(k, v.shape) for k, v in mine.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    _randomize(theirs)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    for attr in ("padding", "eps", "scale", "same_pad", "groups", "apply_act"):
        if hasattr(theirs, attr):
            assert getattr(mine, attr) == getattr(theirs, attr), attr
    tol = TIMM_EVONORM_TOL if name == "EvoNorm2dS0" else FP64_TOL
    for size in ((2, args[0], 9, 11), (2, args[0], 8, 8)):
        x = torch.randn(size, dtype=torch.float64)
        _assert_all_close(_forward_backward(mine, x), _forward_backward(theirs, x), **tol)


def test_conv2d_style_layers_keep_torch_defaults():
    conv = tnn.WSConv2d(4, 6, 3)
    assert conv.bias is not None and conv.padding == (0, 0)
    assert tnn.ScaledWSConv2d(4, 6, 3).padding == (0, 0)
    assert tnn.StdConv2d(4, 6, 3).bias is None and tnn.StdConv2d(4, 6, 3).padding == (1, 1)
    assert tnn.ScaledStdConv2d(4, 6, 3).padding == (1, 1)
    norm = tnn.EvoNormS0(8, 2, None, 1e-3, False)  # nn-style order: eps before apply_act
    assert norm.eps == 1e-3 and not norm.apply_act
    timm_order = tnn.EvoNorm2dS0(8, 2, None, False, 1e-3)
    assert timm_order.eps == 1e-3 and not timm_order.apply_act
    layer = tnn.EvoNorm2dS0(8, 2, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in layer.parameters())


EVOS_SMALL = dict(layers=[1, 1, 1, 1], channels=(128, 256, 512, 1024), num_classes=10)


def _timm_models():
    """Real timm architectures, no weights: BiT ResNetV2 (StdConv2d, GroupNorm, DropPath, Dropout
    head), ResNetV2-D with EvoNorm2dS0, NF-ResNet-26 (ScaledStdConv2d), made small enough for a
    CPU test where timm's builders let us."""
    timm = peers.timm()
    from timm.layers import GroupNormAct
    from timm.models.resnetv2 import ResNetV2
    small = dict(layers=[1, 1, 1, 1], channels=(32, 64, 128, 256), stem_chs=16, num_classes=10)
    return {
        "resnetv2_bit": lambda: ResNetV2(**small, norm_layer=partial(GroupNormAct, num_groups=8), drop_rate=0.2,
                                         drop_path_rate=0.1),
        # EvoNorm's 32 groups need 32 channels in every bottleneck (a quarter of the block width)
        "resnetv2_50d_evos": lambda: timm.create_model("resnetv2_50d_evos", pretrained=False, drop_path_rate=0.1,
                                                       **EVOS_SMALL),
        "nf_resnet26": lambda: timm.create_model("nf_resnet26", pretrained=False, num_classes=10, drop_rate=0.2,
                                                 drop_path_rate=0.1),
    }


# The kinds each architecture must contain, so a model that lost them fails instead of passing
# with nothing patched.
KINDS = {"resnetv2_bit": {"timm.StdConv2d", "timm.DropPath", "torch.nn.Dropout"},
         "resnetv2_50d_evos": {"timm.EvoNorm2dS0", "timm.DropPath", "torch.nn.Dropout"},
         "nf_resnet26": {"timm.ScaledStdConv2d", "timm.DropPath", "torch.nn.Dropout"}}


def _count_patchable(model):
    """Modules per patchable class, counted by exact type (subclasses such as EvoNorm2dS0a are not
    patched)."""
    layers = peers.timm().layers
    classes = {getattr(layers, n): f"timm.{n}" for n in ("DropPath", "EvoNorm2dS0", "StdConv2d", "StdConv2dSame",
                                                        "ScaledStdConv2d", "ScaledStdConv2dSame")}
    classes[torch.nn.Dropout] = "torch.nn.Dropout"
    counts = {}
    for m in model.modules():
        if type(m) in classes:
            counts[classes[type(m)]] = counts.get(classes[type(m)], 0) + 1
    return counts


@pytest.mark.parametrize("arch", sorted(KINDS))
def test_patch_timm_model_equal_outputs(arch):
    """Forward and backward (eval mode: dropout and drop path are the identity) equal the
    unpatched model's in fp64; the parameters are the same objects, an optimizer built before
    the patch steps them, and unpatch restores classes and outputs."""
    torch.manual_seed(0)
    model = _timm_models()[arch]().double().eval()
    original = copy.deepcopy(model)
    params_before = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected = _forward_backward(original, x)
    counts = _count_patchable(original)
    assert set(counts) == KINDS[arch]
    report = tricks_ext.patch(model)
    assert report.replaced == counts and not report.skipped
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    assert list(model.state_dict()) == list(original.state_dict())
    for m in model.modules():
        if hasattr(type(m), "_tricks_original"):
            assert isinstance(m, type(m)._tricks_original)
    _assert_all_close(_forward_backward(model, x), expected, **(TIMM_EVONORM_TOL if "evos" in arch else FP64_TOL))
    assert tricks_ext.patch(model).total == 0  # already patched
    y = model(x)
    y.sum().backward()
    before = params_before[0].detach().clone()
    opt.step()
    assert not torch.equal(params_before[0], before)
    opt.zero_grad()
    with torch.no_grad():
        for a, b in zip(original.parameters(), model.parameters()):
            a.copy_(b)
    assert tricks_ext.unpatch(model).replaced == counts
    assert [type(m) for m in model.modules()] == [type(m) for m in original.modules()]
    assert not any(hasattr(m, "_tricks_patch_added") or "backend" in m.__dict__ for m in model.modules())
    torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)


def test_patch_timm_model_fp32_train_step():
    """The default dtype in train mode: dropout and drop path draw other masks than timm's, so
    compare the eval outputs and check that a training step runs and keeps the scale."""
    torch.manual_seed(0)
    model = _timm_models()["nf_resnet26"]()
    original = copy.deepcopy(model).eval()
    tricks_ext.patch(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.eval()(x), original(x), rtol=2e-4, atol=2e-5)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_patch_torch_dropout_statistics_hooks_and_flags():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Dropout(0.3), torch.nn.Dropout1d(0.5))
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert tricks_ext.patch(model, dropout=False).total == 0
    report = tricks_ext.patch(model, backend="cpu")
    assert report.replaced == {"torch.nn.Dropout": 1}  # Dropout1d is another class: left alone
    assert isinstance(model[1], tnn.Dropout) and isinstance(model[1], torch.nn.Dropout)
    assert model[1].p == 0.3 and model[1].backend == "cpu"
    x = torch.ones(512, 64)
    y = model[1](x)
    assert seen == [y.shape]
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert torch.equal(model[1].eval()(x), x)


def test_patch_leaves_other_classes_and_odd_padding_modes():
    layers = peers.timm().layers
    model = torch.nn.Sequential(layers.EvoNorm2dS0a(8, groups=2), layers.StdConv2d(8, 8, 3),
                                torch.nn.Identity())
    model[1].padding_mode = "reflect"
    report = tricks_ext.patch(model)
    assert report.total == 0 and list(report.skipped) == ["1"] and "padding_mode" in report.skipped["1"]
    assert type(model[0]) is layers.EvoNorm2dS0a


def test_patch_timm_create_model_context():
    timm = peers.timm()
    original = timm.create_model
    small = dict(pretrained=False, **EVOS_SMALL)
    with tricks_ext.patch_timm_create_model(backend="cpu") as handle:
        assert timm.create_model is not original and timm.models.create_model is timm.create_model
        model = timm.create_model("resnetv2_50d_evos", **small)
    assert timm.create_model is original and timm.models._factory.create_model is original
    plain = timm.create_model("resnetv2_50d_evos", **small)
    assert not any(hasattr(type(m), "_tricks_original") for m in plain.modules())
    assert handle.reports[0].replaced == _count_patchable(plain) == {"timm.EvoNorm2dS0": 15, "torch.nn.Dropout": 1}
    assert all(m.backend == "cpu" for m in model.modules() if hasattr(type(m), "_tricks_original"))
    expect_error(TypeError, lambda: tricks_ext.patch_timm_create_model(evo_norm=True), "evo_norm")


def test_patched_model_pickles_into_a_fresh_process():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.25))
    tricks_ext.patch(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    code = ("import io, sys, torch\n"
            "m = torch.load(io.BytesIO(sys.stdin.buffer.read()), weights_only=False)\n"
            "import tricks_ext\n"
            "assert isinstance(m[1], tricks_ext.nn.Dropout) and m[1].p == 0.25, type(m[1])\n"
            "print(type(m[1]).__qualname__)")
    out = subprocess.run([sys.executable, "-c", code], input=buf.getvalue(), capture_output=True, check=True)
    assert out.stdout.decode().strip() == "Patched_torch_nn_modules_dropout_Dropout"


def test_patch_bad_arguments():
    expect_error(TypeError, lambda: tricks_ext.patch("model"), "torch.nn.Module")
    expect_error(TypeError, lambda: tricks_ext.patch(torch.nn.Dropout(), dropout=1), "dropout", "bool")
    expect_error(ValueError, lambda: tricks_ext.patch(torch.nn.Dropout(), backend="gpu"), "backend")
    expect_error(TypeError, lambda: tricks_ext.unpatch(None), "torch.nn.Module")
