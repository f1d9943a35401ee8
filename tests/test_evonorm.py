"""EvoNorm-S0 on every backend vs the reference (forward and all grads), timm equality, layouts,
odd shapes, gradcheck, opcheck, compile, modules and errors."""
import pytest
import torch

from helpers import (assert_matches_reference, backend_op, backend_params, expect_error, run_compiled,
                     run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import nn as tnn
from tricks_ext.reference.evonorm import evonorm_s0 as reference, timm_evonorm2d_s0

OP = "evonorm_s0"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (shape, groups): C = G (groups of one channel), C/G = 1, H = W = 1, N = 1, odd sizes, 3-D, 5-D
CASES = [((2, 64, 6, 5), 32), ((3, 6, 7, 5), 6), ((4, 8, 1, 1), 2), ((1, 12, 9, 4), 3), ((3, 6, 7, 5), 1),
         ((2, 6, 9), 3), ((2, 4, 3, 4, 5), 2)]


def make(shape, device, gen):
    c = shape[1]
    x = (torch.randn(shape, generator=gen) * 2 + 0.5).to(device)
    params = [(torch.rand(c, generator=gen) + 0.5).to(device), torch.randn(c, generator=gen).to(device),
              torch.randn(c, generator=gen).to(device)]
    return x, params, torch.randn(shape, generator=gen).to(device)


def run(fn, x, params, dy, memory_format=torch.contiguous_format):
    xx = x.detach().clone().contiguous(memory_format=memory_format).requires_grad_(True)
    ps = [p.detach().clone().requires_grad_(True) for p in params]
    y = fn(xx, *ps)
    y.backward(dy.to(y.dtype))
    return [y.detach(), xx.grad] + [p.grad for p in ps], y


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,groups", CASES, ids=str)
def test_matches_reference(backend_device, dtype, shape, groups):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(sum(shape) + groups)
    x, params, dy = make(shape, device, gen)
    formats = [torch.contiguous_format] + ([torch.channels_last] if len(shape) == 4 else [])
    for fmt in formats:
        ours, y = run(lambda t, v, w, b: F.evonorm_s0(t, v, w, b, groups, backend=backend), x.to(dtype), params, dy, fmt)
        if fmt == torch.channels_last:
            assert y.is_contiguous(memory_format=torch.channels_last)
        same, _ = run(lambda t, v, w, b: reference(t, v, w, b, groups, 1e-5), x.to(dtype), params, dy)
        ref64, _ = run(lambda t, v, w, b: reference(t, v, w, b, groups, 1e-5), x.double(),
                       [p.double() for p in params], dy.double())
        for name, a, s, r in zip(("y", "dx", "dv", "dweight", "dbias"), ours, same, ref64):
            assert_matches_reference(a, s.to(a.dtype), r, name=f"{name} {fmt}")


def test_reference_equals_timm():
    gen = torch.Generator().manual_seed(0)
    x, (v, w, b), _ = make((2, 16, 5, 6), "cpu", gen)
    torch.testing.assert_close(reference(x.double(), v, w, b, 4, 1e-5), timm_evonorm2d_s0(x.double(), v.double(),
                                                                                           w.double(), b.double(), 4, 1e-5))


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


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "torch"])
def test_saves_only_x_and_stats(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(2)
    x, params, _ = make((4, 32, 8, 8), device, gen)
    x.requires_grad_(True)
    saved = saved_bytes(lambda: F.evonorm_s0(x, *params, 8, backend=backend))
    assert sum(saved) <= x.numel() * 4 + 2 * 4 * 8 * 4 + 2 * 32 * 4, saved


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "torch"])
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


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] in ("cuda", "triton")])
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
