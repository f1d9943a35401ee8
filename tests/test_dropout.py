"""dropout on every backend: the reference's mask bit for bit, regenerated (not stored) in
backward, the right statistics, identities, errors."""
import math
import os
import subprocess
import sys

import pytest
import torch

import tricks_ext
from helpers import (assert_matches_reference, backend_op, backend_params, expect_error, kernel_constant,
                     run_compiled, run_gradcheck, run_opcheck, saved_bytes)
from tricks_ext import functional as F
from tricks_ext import _philox as philox
from tricks_ext.reference.dropout import keep_mask
from tricks_ext.reference.dropout import dropout as reference
from tricks_ext.reference.dropout import dropout_add as reference_add

OP = "dropout_apply"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SHAPES = [(3, 5, 7), (1,), (1001,), (64, 33), (2, 1, 4, 4)]
SEED, OFFSET = 2 ** 40 + 11, 77


# (seed, offset) pairs: zero, small, a counter past 2^32 (its high word), one whose low word
# wraps inside the first batch of blocks (the carry), the largest seed
STREAMS = [(0, 0), (1234, 5), (2 ** 40 + 7, 2 ** 33 + 3), (5, 2 ** 32 - 3), (2 ** 63 - 1, 17)]


def so(device):
    return torch.tensor([SEED, OFFSET], device=device)


def test_philox_known_answers():
    """Random123's known-answer vectors for philox4x32-10 (the Triton rounds are the same)."""
    vectors = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in vectors:
        out = philox.philox_rounds([torch.tensor([c]) for c in ctr], *key)
        assert tuple(int(w) for w in out) == expected


def test_stream_layout():
    """Element i uses counter offset + i // 4 and word i % 4."""
    seed, offset = 99, 10
    words = philox.philox4x32_10(seed, torch.arange(offset, offset + 3))
    expected = torch.stack([philox.to_uniform(w) for w in words], dim=1).flatten()
    assert torch.equal(philox.uniform(seed, offset, 12), expected)


def test_uniform_statistics():
    u = philox.uniform(7, 0, 200_000)
    assert 0.0 <= u.min() and u.max() <= 1.0
    assert abs(u.mean().item() - 0.5) < 0.005  # sd of the mean: 0.29 / sqrt(2e5) = 6.5e-4
    keep = keep_mask(7, 0, 200_000, 0.1).float().mean().item()
    assert abs(keep - 0.9) < 0.004  # 6 sd of a Binomial(2e5, 0.9) rate


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("seed,offset", STREAMS, ids=str)
def test_streams_bit_identical(backend_device, seed, offset):
    """Every backend draws the reference's bits for extreme seeds and counters too."""
    backend, device = backend_device
    x = torch.randn(1001, device=device)
    y = F.dropout(x, 0.5, seed_offset=torch.tensor([seed, offset], device=device), backend=backend)
    assert torch.equal(y, reference(x, 0.5, seed, offset))


@pytest.mark.skipif(not tricks_ext.HAS_C, reason="needs the C++ extension")
def test_cpu_philox_paths():
    """The CPU kernels draw Philox with AVX2 intrinsics where the CPU has AVX2 (the tests above
    check that path) and with the portable loop otherwise: run the portable one in a child
    process and compare its masks, forward and backward, with the reference."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert torch.ops.tricks_ext._cpu_philox_avx2()
    code = (
        "import torch, tricks_ext\n"
        "from tricks_ext import functional as F\n"
        "from tricks_ext.reference.dropout import dropout as reference\n"
        "assert not torch.ops.tricks_ext._cpu_philox_avx2()\n"
        f"for seed, offset in {STREAMS!r}:\n"
        "    for dtype in (torch.float32, torch.bfloat16):\n"
        "        x = torch.randn(1001).to(dtype).requires_grad_(True)\n"
        "        so = torch.tensor([seed, offset])\n"
        "        y = F.dropout(x, 0.5, seed_offset=so, backend='cpu')\n"
        "        assert torch.equal(y, reference(x.detach(), 0.5, seed, offset)), (seed, offset, dtype)\n"
        "        g = torch.randn(1001).to(dtype)\n"
        "        y.backward(g)\n"
        "        assert torch.equal(x.grad, reference(g, 0.5, seed, offset)), (seed, offset, dtype)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TRICKS_EXT_NO_AVX2": "1"})
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bit_identical_to_reference(backend_device, dtype, shape):
    backend, device = backend_device
    x = torch.randn(shape, device=device).to(dtype).requires_grad_(True)
    y = F.dropout(x, 0.3, seed_offset=so(device), backend=backend)
    expected = reference(x.detach(), 0.3, SEED, OFFSET)
    assert torch.equal(y, expected)
    grad = torch.randn(shape, device=device).to(dtype)
    y.backward(grad)
    assert torch.equal(x.grad, reference(grad, 0.3, SEED, OFFSET))  # same mask in backward


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_non_contiguous_input_follows_contiguous_order(backend_device):
    backend, device = backend_device
    x = torch.randn(6, 9, device=device).t()
    y = F.dropout(x, 0.5, seed_offset=so(device), backend=backend)
    assert torch.equal(y, reference(x.contiguous(), 0.5, SEED, OFFSET))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_no_mask_is_saved_for_backward(backend_device):
    """The kernels keep nothing but (seed, offset)."""
    backend, device = backend_device
    x = torch.randn(256, 64, device=device, requires_grad=True)
    saved = saved_bytes(lambda: F.dropout(x, 0.2, backend=backend))
    assert sum(saved) <= 16, f"saved {saved} bytes; only the int64 (seed, offset) pair may be kept"


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_keep_rate_and_scale(backend_device):
    backend, device = backend_device
    x = torch.ones(200_000, device=device)
    for p in (0.1, 0.5, 0.9):
        y = F.dropout(x, p, backend=backend)
        kept = (y != 0).double().mean().item()
        sd = ((1 - p) * p / x.numel()) ** 0.5
        assert abs(kept - (1 - p)) < 6 * sd, (p, kept)
        assert torch.allclose(y[y != 0], torch.full((), 1 / (1 - p), device=device))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_seeds(backend_device):
    backend, device = backend_device
    x = torch.randn(4096, device=device)
    torch.manual_seed(5)
    a = F.dropout(x, 0.5, backend=backend)
    torch.manual_seed(5)
    b = F.dropout(x, 0.5, backend=backend)
    c = F.dropout(x, 0.5, backend=backend)
    assert torch.equal(a, b) and not torch.equal(b, c)
    other = F.dropout(x, 0.5, seed_offset=torch.tensor([SEED, OFFSET + 1], device=device), backend=backend)
    assert not torch.equal(other, F.dropout(x, 0.5, seed_offset=so(device), backend=backend))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_identities(backend_device):
    backend, device = backend_device
    x = torch.randn(33, 7, device=device, requires_grad=True)
    assert F.dropout(x, 0.0, backend=backend) is x
    assert F.dropout(x, 0.7, training=False, backend=backend) is x
    y = F.dropout(x, 1.0, backend=backend)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert F.dropout(torch.empty(0, 3, device=device), 0.5, backend=backend).shape == (0, 3)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    x = torch.randn(5, 6, device=device, dtype=torch.float64, requires_grad=True)
    run_gradcheck(lambda t: F.dropout(t, 0.4, seed_offset=so(device), backend=backend), (x,))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    op, bwd = backend_op("dropout_apply", backend), backend_op("dropout_apply_bwd", backend)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(7, 5, device=device).to(dtype).requires_grad_(True)
        run_opcheck(op, (x, None, None, so(device), 0.25, 1 / 0.75, 1))
        res = torch.randn(7, 5, device=device).to(dtype).requires_grad_(True)
        gate = torch.tensor(0.3, device=device, requires_grad=True)
        run_opcheck(op, (x, res, gate, so(device), 0.25, 1 / 0.75, 5))
        grad = torch.randn(7, 5, device=device).to(dtype)
        run_opcheck(bwd, (grad, x.detach(), gate.detach(), so(device), 0.25, 1 / 0.75, 5))
        run_opcheck(bwd, (grad, None, None, so(device), 0.25, 1 / 0.75, 1))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph(backend_device):
    backend, device = backend_device
    x = torch.randn(9, 13, device=device, requires_grad=True)
    seed_offset = so(device)

    def fn(t):
        return F.dropout(t * 2.0, 0.3, seed_offset=seed_offset, backend=backend)

    eager, compiled = run_compiled(fn, x)
    for e, c in zip(eager, compiled):
        assert torch.equal(e, c)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph_drop_path_module(backend_device):
    """As a patched model calls it: p a module attribute, a residual, the seed drawn inside the
    graph. Rounding p and the scale to fp32 read a tensor on the host before, which broke the
    graph at every block, and Inductor then failed on the pieces (resnetv2_50d_evos)."""
    backend, device = backend_device

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = 0.3

        def forward(self, x, residual):
            return F.drop_path(x, self.p, residual=residual, backend=backend)

    x = torch.randn(16, 3, 4, 5, device=device, requires_grad=True)
    residual = torch.randn(16, 3, 4, 5, device=device, requires_grad=True)
    block = Block()
    explained = torch._dynamo.explain(block)(x, residual)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    torch._dynamo.reset()

    def run(f):
        torch.manual_seed(3)
        xs, rs = x.detach().clone().requires_grad_(), residual.detach().clone().requires_grad_()
        out = f(xs, rs)
        (out * torch.arange(out.numel(), device=device).reshape(out.shape)).sum().backward()
        return out.detach(), xs.grad, rs.grad

    eager = run(block)
    assert (eager[1] == 0).any() and (eager[1] != 0).any()  # samples both dropped and kept
    with torch._inductor.config.patch(fallback_random=True):  # the seed drawn as eager draws it
        compiled = run(torch.compile(block, fullgraph=True))
    for e, c in zip(eager, compiled):
        assert torch.equal(e, c)


def test_module():
    m = tricks_ext.nn.Dropout(0.25)
    x = torch.randn(1000)
    assert m.eval()(x) is x
    y = m.train()(x)
    assert 0.15 < (y == 0).float().mean() < 0.35
    expect_error(ValueError, lambda: tricks_ext.nn.Dropout(1.5), "p", "1.5")


class TestBadInput:
    def test_p_out_of_range(self):
        expect_error(ValueError, lambda: F.dropout(torch.randn(3), -0.1), "p", "-0.1")
        expect_error(ValueError, lambda: F.dropout(torch.randn(3), 1.1), "p", "1.1")

    def test_integer_input(self):
        expect_error(TypeError, lambda: F.dropout(torch.ones(3, dtype=torch.int32), 0.5), "x", "int32")

    def test_bad_seed_offset(self):
        expect_error(ValueError, lambda: F.dropout(torch.randn(3), 0.5, seed_offset=torch.tensor([1.0, 2.0])),
                     "seed_offset", "int64")
        expect_error(RuntimeError, lambda: F.dropout(torch.randn(3, device="meta"), 0.5, seed_offset=torch.tensor([1, 2])),
                     "seed_offset", "meta")


# ---- dropout_add: residual + gate * dropout(x) ----------------------------------------------


def _run_add(fn, x, res, gate, grad):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, res, gate)]
    y = fn(*leaves)
    (y.to(torch.float64) * grad.to(torch.float64)).sum().backward()
    return [y.detach()] + [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("with_gate", [False, True], ids=["no-gate", "gate"])
def test_dropout_add_matches_reference(backend_device, dtype, with_gate):
    backend, device = backend_device
    shape = (37, 19)
    x = torch.randn(shape, device=device).to(dtype)
    res = torch.randn(shape, device=device).to(dtype)
    gate = torch.tensor(0.7, device=device) if with_gate else None
    grad = torch.randn(shape, device=device).to(dtype)  # autograd hands y's dtype to the backward
    so_ = so(device)
    ours = _run_add(lambda a, b, g: F.dropout_add(a, b, 0.2, gate=g, seed_offset=so_, backend=backend), x, res, gate, grad)
    same = _run_add(lambda a, b, g: reference_add(a, b, g, SEED, OFFSET, 0.2), x, res, gate, grad)
    ref64 = _run_add(lambda a, b, g: reference_add(a, b, g, SEED, OFFSET, 0.2), x.double(), res.double(),
                     None if gate is None else gate.double(), grad)
    for name, a, s_, r in zip(("y", "grad_x", "grad_residual", "grad_gate"), ours, same, ref64):
        if a is None:
            continue
        if not with_gate and name != "grad_gate":
            assert torch.equal(a, s_), name  # without a gate every backend computes the same bits
        assert_matches_reference(a, s_, r.to(torch.float64), name=name)


# Past every block of work the kernels cut: 3 CPU gate partials (kCpuPartialElements, also the
# CPU forward's mask batch), over 150 CUDA partials (kCudaPartialElements) and Triton
# programs, and a ragged tail; on two threads, so the CPU tasks run apart.
def _big_numel():
    return 3 * kernel_constant("dropout/math.h", "kCpuPartialElements") + 1003


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_bit_identical_across_partials_and_tasks(backend_device, two_threads):
    assert _big_numel() > 150 * kernel_constant("dropout/math.h", "kCudaPartialElements")
    backend, device = backend_device
    x = torch.randn(_big_numel(), device=device, requires_grad=True)
    y = F.dropout(x, 0.3, seed_offset=so(device), backend=backend)
    assert torch.equal(y, reference(x.detach(), 0.3, SEED, OFFSET))
    grad = torch.randn_like(x)
    y.backward(grad)
    assert torch.equal(x.grad, reference(grad, 0.3, SEED, OFFSET))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gate_gradient_sums_every_partial(backend_device, two_threads):
    """The gate's gradient is a sum over all elements, reduced in per-partial pieces: each
    piece must count once (a sum of only the first, or a piece twice, is off by a third)."""
    backend, device = backend_device
    n = _big_numel()
    x, res, grad = (torch.randn(n, device=device) for _ in range(3))
    x = x + 0.5  # a nonzero mean, so each partial's share of the sum is of one sign
    grad = grad.abs()
    gate = torch.tensor(0.7, device=device)
    so_ = so(device)
    ours = _run_add(lambda a, b, g: F.dropout_add(a, b, 0.2, gate=g, seed_offset=so_, backend=backend), x, res, gate, grad)
    same = _run_add(lambda a, b, g: reference_add(a, b, g, SEED, OFFSET, 0.2), x, res, gate, grad)
    ref64 = _run_add(lambda a, b, g: reference_add(a, b, g, SEED, OFFSET, 0.2), x.double(), res.double(),
                     gate.double(), grad)
    for name, a, s_, r in zip(("y", "grad_x", "grad_residual", "grad_gate"), ours, same, ref64):
        assert_matches_reference(a, s_, r, name=name)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_rezero_gate_at_zero(backend_device):
    """ReZero starts at gate = 0: the block is the identity, yet the gate gets its gradient."""
    backend, device = backend_device
    x = torch.randn(64, 8, device=device, requires_grad=True)
    res = torch.randn(64, 8, device=device, requires_grad=True)
    gate = torch.zeros((), device=device, requires_grad=True)
    y = F.dropout_add(x, res, 0.3, gate=gate, seed_offset=so(device), backend=backend)
    assert torch.equal(y, res.detach())
    grad = torch.randn(64, 8, device=device)
    y.backward(grad)
    assert torch.equal(x.grad, torch.zeros_like(x))
    expected = (reference(x.detach(), 0.3, SEED, OFFSET) * grad).sum()
    torch.testing.assert_close(gate.grad, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_dropout_add_saves_no_mask(backend_device):
    backend, device = backend_device
    x = torch.randn(128, 64, device=device, requires_grad=True)
    res = torch.randn(128, 64, device=device, requires_grad=True)
    for gate, limit in ((None, 16), (torch.tensor(0.5, device=device), 16 + 4)):
        saved = saved_bytes(lambda: F.dropout_add(x, res, 0.2, gate=gate, backend=backend))
        assert sum(saved) <= limit, saved
    # a learnable gate needs x for its gradient (an input, not a mask)
    gate = torch.tensor(0.5, device=device, requires_grad=True)
    saved = saved_bytes(lambda: F.dropout_add(x, res, 0.2, gate=gate, backend=backend))
    assert sum(saved) <= 16 + 4 + x.numel() * 4, saved


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_dropout_add_identities(backend_device):
    backend, device = backend_device
    x, res = torch.randn(5, 6, device=device), torch.randn(5, 6, device=device)
    gate = torch.tensor(0.25, device=device)
    torch.testing.assert_close(F.dropout_add(x, res, 0.5, gate=gate, training=False, backend=backend), res + 0.25 * x)
    torch.testing.assert_close(F.dropout_add(x, res, 0.0, backend=backend), res + x)
    assert torch.equal(F.dropout_add(x, res, 1.0, gate=gate, backend=backend), res)


def test_rezero_residual_module():
    block = tricks_ext.nn.ReZeroResidual(torch.nn.Linear(8, 8), p=0.1)
    x = torch.randn(4, 8)
    assert torch.equal(block(x), x)  # alpha starts at 0
    block(x).sum().backward()
    assert block.alpha.grad is not None and block.alpha.grad.shape == ()
    assert set(dict(block.named_parameters())) == {"alpha", "sublayer.weight", "sublayer.bias"}


class TestDropoutAddBadInput:
    def test_shape_mismatch(self):
        expect_error(ValueError, lambda: F.dropout_add(torch.randn(3, 4), torch.randn(3), 0.1), "residual", "(3,)",
                     "broadcast")

    def test_gate_with_many_elements(self):
        expect_error(ValueError, lambda: F.dropout_add(torch.randn(3), torch.randn(3), 0.1, gate=torch.ones(2)),
                     "gate", "one element")


# ---- drop_path: one draw per sample -------------------------------------------------------

from tricks_ext.reference.dropout import drop_path as reference_path  # noqa: E402

PATH_SHAPES = [(8, 3, 5, 7), (1, 4), (5,), (3, 1001), (6, 197, 7)]


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", PATH_SHAPES, ids=str)
def test_drop_path_bit_identical(backend_device, dtype, shape):
    backend, device = backend_device
    x = torch.randn(shape, device=device).to(dtype).requires_grad_(True)
    y = F.drop_path(x, 0.4, seed_offset=so(device), backend=backend)
    assert torch.equal(y, reference_path(x.detach(), 0.4, SEED, OFFSET))
    flat = y.reshape(shape[0], -1)
    x_flat = x.detach().reshape(shape[0], -1)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    scaled = (x_flat.to(acc) * torch.tensor(1 / 0.6, dtype=torch.float32).to(acc)).to(dtype)
    for n in range(shape[0]):  # whole samples: all dropped, or all scaled by the same factor
        assert torch.equal(flat[n], torch.zeros_like(flat[n])) or torch.equal(flat[n], scaled[n])
    grad = torch.randn(shape, device=device).to(dtype)
    y.backward(grad)
    assert torch.equal(x.grad, reference_path(grad, 0.4, SEED, OFFSET))


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_drop_path_residual_and_scale(backend_device, scale_by_keep):
    backend, device = backend_device
    x = torch.randn(16, 33, device=device, requires_grad=True)
    res = torch.randn(16, 33, device=device, requires_grad=True)
    y = F.drop_path(x, 0.5, scale_by_keep=scale_by_keep, residual=res, seed_offset=so(device), backend=backend)
    expected = reference_path(x.detach(), 0.5, SEED, OFFSET, scale_by_keep, res.detach())
    assert torch.equal(y, expected)
    if not scale_by_keep:
        kept = (y != res).any(1)
        assert torch.equal(y[kept], (res + x).detach()[kept]) and torch.equal(y[~kept], res.detach()[~kept])
    grad = torch.randn(16, 33, device=device)
    y.backward(grad)
    assert torch.equal(res.grad, grad)
    assert torch.equal(x.grad, reference_path(grad, 0.5, SEED, OFFSET, scale_by_keep))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_drop_path_rate_and_identities(backend_device):
    backend, device = backend_device
    x = torch.ones(20_000, 3, device=device)
    kept = (F.drop_path(x, 0.3, backend=backend)[:, 0] != 0).double().mean().item()
    assert abs(kept - 0.7) < 6 * (0.7 * 0.3 / 20_000) ** 0.5
    assert F.drop_path(x, 0.0, backend=backend) is x
    assert F.drop_path(x, 0.3, training=False, backend=backend) is x
    assert torch.equal(F.drop_path(x, 1.0, backend=backend), torch.zeros_like(x))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_drop_path_saves_no_mask(backend_device):
    backend, device = backend_device
    x = torch.randn(32, 64, device=device, requires_grad=True)
    saved = saved_bytes(lambda: F.drop_path(x, 0.2, backend=backend))
    assert sum(saved) <= 16, saved


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_drop_path_gradcheck_and_compile(backend_device):
    backend, device = backend_device
    x = torch.randn(6, 5, device=device, dtype=torch.float64, requires_grad=True)
    run_gradcheck(lambda t: F.drop_path(t, 0.5, seed_offset=so(device), backend=backend), (x,))
    seed_offset = so(device)
    eager, compiled = run_compiled(lambda t: F.drop_path(t + 1.0, 0.5, seed_offset=seed_offset, backend=backend),
                                   torch.randn(6, 5, device=device, requires_grad=True))
    for e, c in zip(eager, compiled):
        assert torch.equal(e, c)


def test_drop_path_module_matches_timm_interface():
    m = tricks_ext.nn.DropPath(0.25)
    assert m.drop_prob == 0.25 and m.scale_by_keep and m.state_dict() == {}
    x = torch.randn(8, 4)
    assert m.eval()(x) is x
    expect_error(ValueError, lambda: tricks_ext.nn.DropPath(2.0), "drop_prob", "2.0")
    expect_error(ValueError, lambda: F.drop_path(torch.tensor(1.0), 0.5), "batch dim")
    expect_error(ValueError, lambda: F.drop_path(torch.randn(3, 2), 0.5, residual=torch.randn(3)), "residual")


def test_round_fp32_matches_torch():
    """The pure-Python rounding behind p and the scale, against torch's float64 -> float32 cast:
    ties to even, subnormals (down to half the least one, which rounds to 0) and overflow."""
    from tricks_ext._dtypes import round_fp32
    gen = torch.Generator().manual_seed(0)
    tiny, big = torch.finfo(torch.float32).tiny, torch.finfo(torch.float32).max
    values = torch.cat([torch.rand(2000, generator=gen, dtype=torch.float64),
                        torch.randn(2000, generator=gen, dtype=torch.float64) * 1e30,
                        torch.rand(2000, generator=gen, dtype=torch.float64) * tiny * 2,
                        torch.tensor([0.0, -0.0, 1 + 2 ** -24, 1 + 3 * 2 ** -24, 2 ** -150, 3 * 2 ** -150, 2 ** -151,
                                      big, big * (1 + 2 ** -25), -big * 1.01, float("inf"), float("-inf")],
                                     dtype=torch.float64)])
    for v in values.tolist():
        want = float(torch.tensor(v, dtype=torch.float32))
        got = round_fp32(v)
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (v, got, want)
    assert math.isnan(round_fp32(float("nan")))
