"""Second derivatives and forward-mode AD through every differentiable op, on every backend.

A backward run with ``create_graph=True`` takes each op's graph backward (the gradients
differentiated out of the torch backend, tricks_ext/ops/_library.py); ``gradgradcheck`` in fp64
checks it against finite differences. Hessian-vector products of a small network of our layers
(reverse over reverse) equal the same network on the torch backend. Under forward-mode AD and
torch.func transforms, ``auto`` runs the torch backend and an explicit kernel backend raises:
no tangent or gradient is ever dropped silently.
"""
import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call, grad, jvp, vjp

import tricks_ext
import tricks_ext.functional as F
import tricks_ext.nn as tnn
from tricks_ext import BackendUnavailableError
from tricks_ext.targets import MixedTargets

from helpers import backend_params, expect_error

D = torch.float64
SEED = torch.tensor([5, 7])


def _leaf(*shape):
    return torch.randn(*shape, dtype=D, requires_grad=True)


def _evonorm():
    return (lambda x, v, w, b, be: F.evonorm_s0(x, v, w, b, groups=2, backend=be),
            (_leaf(2, 4, 3, 3), _leaf(4), _leaf(4), _leaf(4)))


def _ws():
    return lambda w, be: F.weight_standardize(w, backend=be), (_leaf(3, 2, 2, 3),)


def _ws_gain():
    return (lambda w, g, be: F.weight_standardize(w, gain=g, scale=0.4, backend=be), (_leaf(3, 2, 2, 3), _leaf(3)))


def _dropout():
    return lambda x, be: F.dropout(x, 0.3, seed_offset=SEED, backend=be), (_leaf(3, 7),)


def _dropout_add():
    return (lambda x, r, g, be: F.dropout_add(x, r, 0.3, gate=g, seed_offset=SEED, backend=be),
            (_leaf(3, 7), _leaf(3, 7), _leaf(1)))


def _drop_path():
    return (lambda x, r, be: F.drop_path(x, 0.5, residual=r, seed_offset=SEED, backend=be),
            (_leaf(4, 2, 3), _leaf(4, 2, 3)))


def _mask_boxes():
    box = torch.tensor([[[1, 3, 0, 2]], [[0, 5, 2, 4]]])
    return lambda x, be: F.mask_boxes(x, box, 0.5, backend=be), (_leaf(2, 3, 5, 6),)


def _soft_ce_dense():
    t = torch.softmax(torch.randn(4, 6, dtype=D), 1).requires_grad_()
    return lambda z, t, be: F.soft_target_cross_entropy(z, t, backend=be), (_leaf(4, 6), t)


def _soft_ce_labels():
    labels = torch.tensor([0, 5, -100, 2])
    return (lambda z, be: F.soft_target_cross_entropy(z, labels, label_smoothing=0.1, reduction="sum", backend=be),
            (_leaf(4, 6),))


def _soft_ce_mixed():
    targets = MixedTargets(torch.tensor([0, 5, 1, 2]), torch.tensor([2, 1, 5, 0]), torch.rand(4), 0.1, 6)
    return lambda z, be: F.soft_target_cross_entropy(z, targets, reduction="none", backend=be), (_leaf(4, 6),)


def _soft_bce_dense():
    t = torch.rand(4, 6, dtype=D, requires_grad=True)
    return lambda z, t, be: F.soft_target_binary_cross_entropy(z, t, pos_weight=1.5, backend=be), (_leaf(4, 6), t)


def _soft_bce_mixed():
    targets = MixedTargets(torch.tensor([0, 5, 1, 2]), torch.tensor([2, 1, 5, 0]), torch.rand(4), 0.0, 6)
    return (lambda z, be: F.soft_target_binary_cross_entropy(z, targets, label_smoothing=0.1, target_threshold=0.3,
                                                             backend=be), (_leaf(4, 6),))


CASES = {"evonorm_s0": ("evonorm_s0", _evonorm), "weight_standardize": ("weight_standardize", _ws),
         "weight_standardize-gain": ("weight_standardize", _ws_gain), "dropout": ("dropout_apply", _dropout),
         "dropout_add-gate": ("dropout_apply", _dropout_add), "drop_path-residual": ("dropout_apply", _drop_path),
         "mask_boxes": ("mask_boxes", _mask_boxes), "soft_ce-dense": ("soft_ce", _soft_ce_dense),
         "soft_ce-labels": ("soft_ce", _soft_ce_labels), "soft_ce-mixed": ("soft_ce", _soft_ce_mixed),
         "soft_bce-dense": ("soft_bce", _soft_bce_dense), "soft_bce-mixed": ("soft_bce", _soft_bce_mixed)}


def _params():
    return [pytest.param(case, bd.values[0], id=f"{case}-{bd.id}", marks=bd.marks)
            for case, (op, _) in CASES.items() for bd in backend_params(op, torch_backend=True)]


@pytest.mark.parametrize("case,backend_device", _params())
def test_gradgradcheck(case, backend_device):
    backend, device = backend_device
    fn, inputs = CASES[case][1]()
    inputs = tuple(t.detach().to(device).requires_grad_() for t in inputs)
    assert torch.autograd.gradgradcheck(lambda *a: fn(*a, backend), inputs, fast_mode=False)


@pytest.mark.parametrize("case,backend_device", _params())
def test_second_derivative_is_not_zero(case, backend_device):
    """The failure this file exists for: a double backward that returned zeros. The second
    derivative of sum(y * y.detach()...) is nonzero for each case, and equals the torch backend's."""
    backend, device = backend_device
    fn, inputs = CASES[case][1]()
    inputs = tuple(t.detach().to(device).requires_grad_() for t in inputs)

    def second(be):
        out = fn(*inputs, be)
        g = torch.autograd.grad((out * out).sum(), inputs, create_graph=True)
        return torch.autograd.grad(sum((gi * gi).sum() for gi in g), inputs, allow_unused=True)

    ours, ref = second(backend), second("torch")
    assert any(r is not None and r.abs().max() > 0 for r in ref)
    for a, r in zip(ours, ref):
        if r is None:
            continue
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)


class _Net(torch.nn.Module):
    """Our layers in one network: WS conv, EvoNorm, a ReZero residual with dropout, a head."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.WSConv2d(3, 8, 3, padding=1)
        self.norm = tnn.EvoNormS0(8, groups=4)
        self.res = tnn.ReZeroResidual(torch.nn.Conv2d(8, 8, 1), p=0.2)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.res(self.norm(self.conv(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def net_case():
    torch.manual_seed(3)
    net = _Net().double()
    with torch.no_grad():
        net.res.alpha.fill_(0.7)  # ReZero starts at 0, where the branch's second derivatives vanish
    x = torch.randn(4, 3, 6, 6, dtype=D)
    targets = torch.softmax(torch.randn(4, 5, dtype=D), 1)
    params = {k: v.detach() for k, v in net.named_parameters()}
    vec = {k: torch.randn_like(v) for k, v in params.items()}
    return net, x, targets, params, vec


def _loss(net_case, params, backend):
    net, x, targets, _, _ = net_case
    torch.manual_seed(11)  # the same dropout seed on every backend
    with tricks_ext.use_backend(backend):
        return F.soft_target_cross_entropy(functional_call(net, params, (x,)), targets)


def _func_hvp(net_case, backend):
    _, params, vec = net_case[2], net_case[3], net_case[4]
    _, pullback = vjp(grad(lambda p: _loss(net_case, p, backend)), params)
    return pullback(vec)[0]


@pytest.mark.parametrize("backend_device", backend_params("evonorm_s0"))
def test_hessian_vector_product_reverse_over_reverse(net_case, backend_device):
    """H v by two torch.autograd.grad passes through the kernels equals torch.func's H v of the
    network on the torch backend (every parameter, dropout mask included)."""
    backend, _ = backend_device
    params, vec = net_case[3], net_case[4]
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    g = torch.autograd.grad(_loss(net_case, p, backend), list(p.values()), create_graph=True)
    hv = dict(zip(p, torch.autograd.grad(g, list(p.values()), list(vec.values()))))
    ref = _func_hvp(net_case, "torch")
    assert all(ref[k].abs().max() > 0 for k in ref)
    for k in ref:
        torch.testing.assert_close(hv[k], ref[k], rtol=1e-9, atol=1e-12, msg=k)


def test_torch_func_runs_the_torch_backend_under_auto(net_case):
    torch.testing.assert_close(_func_hvp(net_case, "auto"), _func_hvp(net_case, "torch"), rtol=0, atol=0)


@pytest.mark.parametrize("backend_device", backend_params("evonorm_s0"))
def test_transforms_refuse_an_explicit_kernel_backend(net_case, backend_device):
    """torch.func.grad / jvp and forward-mode AD with a kernel backend named: a clear error,
    never a silently dropped tangent (the kernels' autograd has no functorch or forward-AD rule)."""
    backend, _ = backend_device
    params, vec = net_case[3], net_case[4]
    expect_error(BackendUnavailableError, lambda: grad(lambda p: _loss(net_case, p, backend))(params),
                 backend, "torch.func")
    expect_error(BackendUnavailableError, lambda: jvp(lambda p: _loss(net_case, p, backend), (params,), (vec,)),
                 backend, "forward-mode AD")
    x = torch.randn(2, 4, 3, 3, dtype=D)
    v = torch.ones(4, dtype=D)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        expect_error(BackendUnavailableError, lambda: F.evonorm_s0(dual, v, v, v, groups=2, backend=backend),
                     "forward-mode AD")


def test_forward_mode_ad_under_auto_carries_the_tangent(net_case):
    params, vec = net_case[3], net_case[4]
    _, tangent = jvp(lambda p: _loss(net_case, p, "auto"), (params,), (vec,))
    _, ref = jvp(lambda p: _loss(net_case, p, "torch"), (params,), (vec,))
    assert tangent != 0 and torch.equal(tangent, ref)
