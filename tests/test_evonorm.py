"""EvoNorm-S0 on every backend vs the reference (forward and all grads), timm equality, layouts,
odd shapes, gradcheck, opcheck, compile, modules and errors."""
import pytest
import torch

import peers
from helpers import (assert_matches_reference, backend_op, backend_params, expect_error, run_compiled,
                     run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.reference.evonorm import evonorm_s0 as reference

OP = "evonorm_s0"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (shape, groups, x_std): C = G (groups of one channel), C/G = 1, H = W = 1, N = 1, odd sizes,
# 3-D, 5-D; groups whose variance is eps (x_std = 3.2e-3: dropping eps scales y by sqrt(2)) and
# 1/16 of it; two groups of 16,640 elements, which the CUDA launcher (simt: 132 SMs) splits in
# two chunks each (choose_split_cuda: fewer groups than 2 per SM, >= 2 x 8192 elements); a group
# of 40 channels of 25 that Triton's backward sums in tiles of 16 channels (the last one 8).
EPS = 1e-5
CASES = [((2, 64, 6, 5), 32, 2.0), ((3, 6, 7, 5), 6, 2.0), ((4, 8, 1, 1), 2, 2.0), ((1, 12, 9, 4), 3, 2.0),
         ((3, 6, 7, 5), 1, 2.0), ((2, 6, 9), 3, 2.0), ((2, 4, 3, 4, 5), 2, 2.0), ((2, 8, 5, 7), 4, EPS ** 0.5),
         ((3, 4, 9), 2, 0.25 * EPS ** 0.5), ((1, 4, 64, 130), 2, 1.0), ((2, 40, 5, 5), 1, 2.0)]


def make(shape, device, gen, x_std=2.0):
    c = shape[1]
    x = (torch.randn(shape, generator=gen) * x_std + 0.25 * x_std).to(device)
    params = [(torch.rand(c, generator=gen) + 0.5).to(device), torch.randn(c, generator=gen).to(device),
              torch.randn(c, generator=gen).to(device)]
    return x, params, torch.randn(shape, generator=gen).to(device)


def run(fn, x, params, dy, memory_format=torch.contiguous_format):
    xx = x.detach().clone().contiguous(memory_format=memory_format).requires_grad_(True)
    ps = [p.detach().clone().requires_grad_(True) for p in params]
    y = fn(xx, *ps)
    y.backward(dy.to(y.dtype))
    return [y.detach(), xx.grad] + [p.grad for p in ps], y


def term_scales(x, v, w, b, dy, groups, eps):
    """Per output element, the summed magnitude of the terms it is formed from (the tolerance
    rule's floor), in fp64 from the quantized inputs. With s = sigmoid(v x), std over the group
    of M elements: y = w x s / std + b; dv, dweight, dbias sum dy w x^2 s'(vx) / std,
    dy x s / std and dy over (N, spatial); dx_j = dy_j w_j (s_j + x_j v_j s'_j) / std
    - (x_j - mean) / (M std^3) sum_i dy_i w_i x_i s_i."""
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.dim() - 2)
    x, dy = x.double(), dy.double()
    v, w, b = (t.double().view(shape) for t in (v, w, b))
    grouped = x.reshape(n, groups, -1)
    var, mean = torch.var_mean(grouped, dim=-1, correction=0, keepdim=True)
    std = (var + eps).sqrt()
    per_elem = lambda t: t.expand_as(grouped).reshape(x.shape)
    std_e, mean_e = per_elem(std), per_elem(mean)
    sig = torch.sigmoid(v * x)
    dsig = sig * (1 - sig)
    reduce_dims = (0,) + tuple(range(2, x.dim()))
    chan_sum = lambda t: t.abs().sum(dim=reduce_dims)
    cross = (dy * w * x * sig).abs().reshape(n, groups, -1).sum(-1, keepdim=True)
    m = grouped.shape[-1]
    dx = (dy * w * (sig + x * v * dsig)).abs() / std_e + (x - mean_e).abs() / (m * std_e ** 3) * per_elem(cross)
    return ((w * x * sig / std_e).abs() + b.abs(), dx, chan_sum(dy * w * x * x * dsig / std_e),
            chan_sum(dy * x * sig / std_e), chan_sum(dy))


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,groups,x_std", CASES, ids=str)
def test_matches_reference(backend_device, dtype, shape, groups, x_std):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(sum(shape) + groups)
    x, params, dy = make(shape, device, gen, x_std)
    x, dy = x.to(dtype), dy.to(dtype)  # the fp64 reference takes the same quantized values
    floors = term_scales(x, *params, dy, groups, EPS)
    group_numel = x[0].numel() // groups
    channel_numel = x.numel() // x.shape[1]
    formats = [torch.contiguous_format] + ([torch.channels_last] if len(shape) == 4 else [])
    for fmt in formats:
        ours, y = run(lambda t, v, w, b: F.evonorm_s0(t, v, w, b, groups, backend=backend), x, params, dy, fmt)
        if fmt == torch.channels_last:
            assert y.is_contiguous(memory_format=torch.channels_last)
        same, _ = run(lambda t, v, w, b: reference(t, v, w, b, groups, EPS), x, params, dy)
        ref64, _ = run(lambda t, v, w, b: reference(t, v, w, b, groups, EPS), x.double(),
                       [p.double() for p in params], dy.double())
        terms = (group_numel, group_numel, channel_numel, channel_numel, channel_numel)
        for name, a, s, r, floor, k in zip(("y", "dx", "dv", "dweight", "dbias"), ours, same, ref64, floors, terms):
            assert_matches_reference(a, s.to(a.dtype), r, name=f"{name} {fmt}", floor=floor, terms=k)


@pytest.mark.parametrize("backend_device", backend_params(OP, torch_backend=True))
def test_module_equals_timm(backend_device):
    """Our EvoNormS0 module against timm 1.0's own EvoNorm2dS0 on the same state dict, fp64:
    outputs and every gradient. timm takes the group variance in fp32 whatever x's dtype
    (group_std: x.float().var), so the two agree to fp32's 6e-8, a few times over."""
    backend, device = backend_device
    layers = peers.timm().layers
    gen = torch.Generator().manual_seed(0)
    x, (v, w, b), dy = make((2, 16, 5, 6), device, gen)
    state = {"v": v.double(), "weight": w.double(), "bias": b.double()}
    ours, theirs = tnn.EvoNormS0(16, groups=4, backend=backend), layers.EvoNorm2dS0(16, groups=4)
    for m in (ours, theirs):
        m.to(device=device, dtype=torch.float64).load_state_dict(state)
    outs = []
    for m in (ours, theirs):
        xx = x.double().requires_grad_(True)
        y = m(xx)
        y.backward(dy.double())
        outs.append([y.detach(), xx.grad, m.v.grad, m.weight.grad, m.bias.grad])
    for name, a, t in zip(("y", "dx", "dv", "dweight", "dbias"), *outs):
        torch.testing.assert_close(a, t, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_constant_group_and_affine_only(backend_device):
    backend, device = backend_device
    x = torch.full((2, 4, 3, 3), 7.0, device=device)
    v, w, b = torch.ones(4, device=device), torch.ones(4, device=device), torch.zeros(4, device=device)
    y = F.evonorm_s0(x, v, w, b, 2, backend=backend)  # var 0: y = x s / sqrt(eps), finite
    torch.testing.assert_close(y, reference(x, v, w, b, 2, 1e-5))
    x = torch.randn(2, 4, 3, 3, device=device)
    torch.testing.assert_close(F.evonorm_s0(x, None, w * 2, b + 1, 2, apply_act=False, backend=backend), 2 * x + 1)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(1)
    x, params, _ = make((2, 4, 3, 2), device, gen)
    leaves = [t.double().requires_grad_(True) for t in [x] + params]
    run_gradcheck(lambda t, v, w, b: F.evonorm_s0(t, v, w, b, 2, backend=backend), leaves)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_saves_only_x_and_stats(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(2)
    x, params, _ = make((4, 32, 8, 8), device, gen)
    x.requires_grad_(True)
    saved = saved_bytes(lambda: F.evonorm_s0(x, *params, 8, backend=backend))
    assert sum(saved) <= x.numel() * 4 + 2 * 4 * 8 * 4 + 2 * 32 * 4, saved


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck_and_compile(backend_device):
    backend, device = backend_device
    fwd = backend_op("evonorm_s0_fwd", backend)
    gen = torch.Generator().manual_seed(3)
    x, params, _ = make((2, 8, 3, 5), device, gen)
    x3 = x.flatten(2).requires_grad_(True)
    run_opcheck(fwd, (x3, *[p.requires_grad_(True) for p in params], 4, 1e-5, 0))
    eager, compiled = run_compiled(lambda t, v: F.evonorm_s0(t * 1.5, v, params[1], params[2], 4, backend=backend),
                                   x.requires_grad_(True), params[0].detach().requires_grad_(True))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(e, c, rtol=1e-5, atol=1e-5)


def test_module_timm_names_and_group_size():
    m = tnn.EvoNormS0(64, group_size=8)
    assert m.groups == 8 and set(m.state_dict()) == {"weight", "bias", "v"}
    assert tnn.EvoNormS0(16, apply_act=False).v is None
    state = {"weight": torch.randn(64), "bias": torch.randn(64), "v": torch.rand(64)}
    m.load_state_dict(state)
    x = torch.randn(2, 64, 4, 4)
    torch.testing.assert_close(m(x), reference(x, state["v"], state["weight"], state["bias"], 8, 1e-5))


class TestBadInput:
    def test_errors(self):
        x = torch.randn(2, 6, 4, 4)
        p = torch.ones(6)
        expect_error(ValueError, lambda: F.evonorm_s0(x, p, p, p, groups=4), "C=6", "groups=4")
        expect_error(ValueError, lambda: F.evonorm_s0(torch.randn(2, 6), p, p, p, 3), "rank >= 3")
        expect_error(ValueError, lambda: F.evonorm_s0(x, torch.ones(5), p, p, 3), "v", "C=6")
        expect_error(TypeError, lambda: F.evonorm_s0(x.long(), p, p, p, 3), "x", "int64")
        expect_error(ValueError, lambda: tnn.EvoNormS0(10, groups=4), "num_features=10", "groups=4")


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] in ("cuda", "triton", "simt")])
@pytest.mark.parametrize("split", [2, 3, 7, 64])
def test_split_forward_matches_one_block_per_group(backend_device, split):
    """The split-reduction forward (chunks of a group reduced apart, merged by Chan's formula)
    gives the one-block forward's result; 64 chunks of a 45-element group leave some empty."""
    backend, device = backend_device
    fwd = backend_op("evonorm_s0_fwd", backend)
    gen = torch.Generator().manual_seed(split)
    for shape, groups in (((2, 8, 9, 5), 2), ((1, 4, 33, 31), 1)):
        x, (v, w, b), _ = make(shape, device, gen)
        for fmt in (torch.contiguous_format, torch.channels_last):
            x3 = x.contiguous(memory_format=fmt).flatten(2)
            one = fwd(x3, v, w, b, groups, 1e-5, 1)
            many = fwd(x3, v, w, b, groups, 1e-5, split)
            for a, e in zip(many, one):
                torch.testing.assert_close(a, e, rtol=2e-6, atol=2e-6)
            assert many[0].stride() == x3.stride()


def test_triton_refuses_groups_of_2_31_elements():
    """The Triton kernels split the in-group index in 32 bits, like the CUDA ones: a group of
    2^31 elements is refused before any launch (meta tensors: nothing is allocated)."""
    from tricks_ext.triton_kernels.evonorm import evonorm_s0_fwd
    x = torch.empty((1, 2, 2 ** 30), device="meta")
    stats = [torch.empty(2, device="meta") for _ in range(3)]
    expect_error(RuntimeError, lambda: evonorm_s0_fwd(x, *stats, 1, 1e-5, 1), "2^31")


def _evonorm_and_grads(x, v, w, b, backend, seed=1):
    x = x.detach().requires_grad_()
    ps = [t.to(x.dtype).detach().requires_grad_() for t in (v, w, b)]
    y = F.evonorm_s0(x, *ps, groups=4, backend=backend)
    cot = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(y.dtype)
    return [y.detach()] + list(torch.autograd.grad(y, [x] + ps, cot))


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("mean,std", [(100.0, 1.0), (1e4, 1e-2), (1e3, 1e-3), (-3e4, 3e-2)], ids=str)
def test_large_offsets_keep_fp32_precision(backend_device, mean, std):
    """|mean| / std up to 1e6 in fp32: statistics about the group's first element keep every
    bit of x - mean (csrc/evonorm/math.h). The forward stays within 10x of the torch backend's
    own fp32 error (both against fp64 on the same fp32 inputs), and every gradient within 64
    fp32 ulps of its largest element; a mean rounded to fp32 before centring lost
    ulp(mean) / std of each centred value (4.5e-4 relative in y at 1e4 / 1e-2). The torch
    backend's own dx is no bound here: autograd through an fp32 var gives 3.5e-2 at 1e6."""
    backend, device = backend_device
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 8, 5, 7, generator=gen, dtype=torch.float64) * std + mean).float()
    # v scaled so that sigmoid(v x) does not saturate at this offset (its own precision is not the point)
    v = (torch.rand(8, generator=gen) + 0.5) / abs(mean)
    w, b = torch.rand(8, generator=gen) + 0.5, torch.randn(8, generator=gen)
    ref = _evonorm_and_grads(x.double(), v, w, b, "torch")
    own = _evonorm_and_grads(x, v, w, b, "torch")
    ours = _evonorm_and_grads(x.to(device), v.to(device), w.to(device), b.to(device), backend)

    def err(a, r):
        return ((a.double().cpu() - r).abs().max() / r.abs().max()).item()

    assert err(ours[0], ref[0]) <= 10 * err(own[0], ref[0]) + 1e-7, (err(ours[0], ref[0]), err(own[0], ref[0]))
    for name, a, r in zip(("dx", "dv", "dweight", "dbias"), ours[1:], ref[1:]):
        assert err(a, r) <= 64 * torch.finfo(torch.float32).eps, (name, err(a, r))
