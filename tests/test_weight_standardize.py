"""weight_standardize on every backend against tricks_ext.reference (forward, grad w, grad gain)."""
import math

import pytest
import torch

import tricks_ext
from helpers import (assert_matches_reference, backend_op, backend_params, expect_error, kernel_constant,
                     run_compiled, run_gradcheck, run_opcheck)
from tricks_ext import functional as F
from tricks_ext.reference import weight_standardize as reference
from tricks_ext.reference.weight_standardize import per_channel_multiplier

OP = "weight_standardize"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

SHAPES = [
    (8, 4),            # Linear
    (1, 1),            # O=1, fan-in 1
    (7, 5, 3, 3),      # odd conv2d
    (16, 1, 3, 3),     # depthwise: many 9-element rows share a Triton tile
    (5, 3, 7),         # Conv1d
    (4, 3, 2, 3, 3),   # Conv3d
    (3, 1),            # fan-in 1
    (1, 17),           # one output channel
    (13, 257),         # prime sizes
    (9, 127),          # the CPU's short rows (8 partial sums) end at 127
    (9, 2, 8, 8),      # K = 128: the first row of 64 partial sums
    (6, 1500),         # K > 1024: the CUDA block-per-row path, several Triton sweeps
]


def make_inputs(shape, dtype, device, with_gain, channels_last=False):
    w = torch.randn(shape, device=device) * 0.2 + 0.05  # a non-zero mean, as trained weights have
    if channels_last:
        w = w.to(memory_format=torch.channels_last)
    w = w.to(dtype)
    gain = (torch.rand(shape[0], 1, 1, 1, device=device) + 0.5) if with_gain else None
    return w, gain


def term_scales(w, gain, scale, cot, eps):
    """Per element, the size of the terms each output is formed from (the tolerance rule's
    floor), in fp64 from the quantized inputs: w_hat = a (w - mean) / sigma subtracts a mean
    summed from the row's |w|, so its error scales with a (|w| + mean|w|) / sigma, not with
    |w_hat| (a weight near the mean, or with a large common mean, cancels most of it); grad_w = (a / sigma) (g - mean(g) - w_hat mean(g w_hat))
    with g the cotangent; grad_gain sums cot * w_hat over the channel."""
    w64 = w.detach().double()
    dims = tuple(range(1, w.dim()))
    var, mean = torch.var_mean(w64, dim=dims, correction=0, keepdim=True)
    sigma = (var + eps).sqrt()
    mult = per_channel_multiplier(w64, None if gain is None else gain.double(), scale)
    a = torch.ones_like(mean) if mult is None else mult.reshape(mean.shape).abs()
    w_hat = (w64 - mean) / sigma
    g = cot.double()
    mean_abs = lambda t: t.abs().mean(dim=dims, keepdim=True)
    return (a * (w64.abs() + mean_abs(w64)) / sigma,
            a / sigma * (g.abs() + mean_abs(g) + w_hat.abs() * mean_abs(g * w_hat)),
            None if gain is None else ((g * w_hat).abs().sum(dim=dims) * abs(scale or 1.0)).reshape(gain.shape))


def check_against_reference(w, gain, scale, backend, eps=1e-6):
    """Forward and grads of `backend` vs the fp64 reference, under the tolerance rule."""
    cot = torch.randn(w.shape, device=w.device).to(w.dtype)  # autograd hands the output's dtype back

    def run(fn, w_in, gain_in):
        w_leaf = w_in.detach().clone().requires_grad_(True)
        g_leaf = None if gain_in is None else gain_in.detach().clone().requires_grad_(True)
        out = fn(w_leaf, g_leaf)
        (out.double() * cot.double()).sum().backward()
        return out.detach(), w_leaf.grad, None if g_leaf is None else g_leaf.grad

    ours = run(lambda w_, g_: F.weight_standardize(w_, eps, g_, scale, backend=backend), w, gain)
    same = run(lambda w_, g_: reference(w_, eps, g_, scale), w, gain)
    ref64 = run(lambda w_, g_: reference(w_, eps, g_, scale), w.double(), None if gain is None else gain.double())
    floors = term_scales(w, gain, scale, cot, eps)
    for name, a, s, r, floor in zip(("w_hat", "grad_w", "grad_gain"), ours, same, ref64, floors):
        if a is not None:
            assert_matches_reference(a, s, r, name=name, floor=floor, terms=w[0].numel())
    return ours


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(backend_device, dtype, shape):
    backend, device = backend_device
    w, _ = make_inputs(shape, dtype, device, with_gain=False)
    out, _, _ = check_against_reference(w, None, None, backend)
    assert out.stride() == w.stride()


def _tile_boundaries():
    """Row lengths on each side of the kernels' tile switches: CUDA's warp-per-row limit
    (kWarpRowMaxK; a block per row above it) and one Triton tile (_TILE; several sweeps above)."""
    from tricks_ext.triton_kernels.weight_standardize import _TILE
    warp = kernel_constant("weight_standardize/cuda.cu", "kWarpRowMaxK")
    return sorted({warp, warp + 1, _TILE, _TILE + 1})


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("K", _tile_boundaries())
def test_row_lengths_at_tile_boundaries(backend_device, K):
    backend, device = backend_device
    w, gain = make_inputs((3, K), torch.float32, device, with_gain=True)
    check_against_reference(w, gain.view(-1), None, backend)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mean", [1.0, -30.0], ids=["mean-1", "mean-30"])
@pytest.mark.parametrize("shape", [(6, 4, 3, 3), (3, 1100)], ids=str)  # one Triton tile, several sweeps
def test_large_common_mean(backend_device, dtype, mean, shape):
    """Rows whose mean is 100-3000x their spread (fp16/bf16: the quantized rows keep a spread
    of a few ulps of the mean): a one-pass E[w^2] - E[w]^2 variance loses all its digits here."""
    backend, device = backend_device
    w = (torch.randn(shape, device=device) * 0.01 + mean).to(dtype)
    check_against_reference(w, None, None, backend)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gain_and_scale(backend_device, dtype):
    backend, device = backend_device
    w, gain = make_inputs((6, 4, 3, 3), dtype, device, with_gain=True)
    check_against_reference(w, gain, 36 ** -0.5, backend, eps=1e-5)  # ScaledStdConv2d settings
    check_against_reference(w, None, 0.7, backend)


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_channels_last_keeps_layout(backend_device, dtype):
    backend, device = backend_device
    w, gain = make_inputs((6, 5, 3, 3), dtype, device, with_gain=True, channels_last=True)
    out, grad_w, _ = check_against_reference(w, gain, None, backend)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert grad_w.shape == w.shape


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_strided_weights(backend_device):
    """Weights whose output channels are not dense blocks (transposed, sliced) still work."""
    backend, device = backend_device
    transposed = torch.randn(9, 6, device=device).t()
    sliced = torch.randn(5, 8, 3, 3, device=device)[:, ::2]
    constant_rows = torch.randn(4, 1, 1, 1, device=device).expand(4, 3, 3, 3)  # var == 0, stride 0
    for w in (transposed, sliced, constant_rows):
        check_against_reference(w, None, None, backend)


@pytest.mark.filterwarnings("ignore:var_mean")
@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 3, 3, 3), (3, 0), (4, 2, 0, 3)], ids=str)
def test_empty(backend_device, shape):
    backend, device = backend_device
    w = torch.randn(shape, device=device, requires_grad=True)
    out = F.weight_standardize(w, backend=backend)
    assert out.shape == w.shape
    out.sum().backward()
    assert w.grad.shape == w.shape


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_nan_stays_in_its_channel(backend_device):
    backend, device = backend_device
    w = torch.randn(4, 3, 3, 3, device=device)
    w[2, 1, 0, 0] = float("nan")
    w[3, 0, 1, 1] = float("inf")
    out = F.weight_standardize(w, backend=backend)
    assert torch.isnan(out[2]).all() and torch.isnan(out[3]).all()
    assert torch.isfinite(out[:2]).all()
    torch.testing.assert_close(out[:2], reference(w[:2]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradcheck_fp64(backend_device):
    backend, device = backend_device
    w = torch.randn(5, 3, 2, 2, device=device, dtype=torch.float64, requires_grad=True)
    gain = torch.rand(5, device=device, dtype=torch.float64, requires_grad=True)
    run_gradcheck(lambda w_, g_: F.weight_standardize(w_, 1e-5, g_, 0.5, backend=backend), (w, gain))
    run_gradcheck(lambda w_: F.weight_standardize(w_, backend=backend), (w,))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck(backend_device):
    backend, device = backend_device
    op = backend_op("weight_standardize_fwd", backend)
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(6, 4, 3, 3, device=device).to(dtype).requires_grad_(True)
        gain = torch.rand(6, device=device, requires_grad=True)
        run_opcheck(op, (w, 1e-6, gain))
        run_opcheck(op, (w.detach().to(memory_format=torch.channels_last).requires_grad_(True), 1e-5, None))
        run_opcheck(op, (torch.randn(5, 7, device=device, dtype=dtype, requires_grad=True), 1e-6, None))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_compile_fullgraph(backend_device):
    backend, device = backend_device
    w = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    gain = torch.rand(6, 1, 1, 1, device=device, requires_grad=True)

    def fn(w_, g_):
        return F.weight_standardize(w_, 1e-5, g_, 0.25, backend=backend) * 2.0

    eager, compiled = run_compiled(fn, w, gain)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_backend_is_honoured(backend_device, monkeypatch):
    """The call reaches the registered implementation of the requested backend."""
    backend, device = backend_device
    from tricks_ext import _backend
    calls = []
    impl = _backend.registered_ops()[OP][backend]
    monkeypatch.setitem(_backend._registry[OP], _backend._slot(backend), lambda *a: calls.append(backend) or impl(*a))
    w = torch.randn(3, 4, device=device)
    F.weight_standardize(w, backend=backend)
    with tricks_ext.use_backend(backend):
        F.weight_standardize(w)
    assert calls == [backend, backend]


class TestBadInput:
    def test_integer_weight(self):
        expect_error(TypeError, lambda: F.weight_standardize(torch.ones(3, 4, dtype=torch.int64)), "w", "int64")

    def test_one_dim_weight(self):
        expect_error(ValueError, lambda: F.weight_standardize(torch.randn(5)), "at least 2 dims", "(5,)")

    def test_gain_wrong_size(self):
        expect_error(ValueError, lambda: F.weight_standardize(torch.randn(4, 3), gain=torch.ones(3)), "gain", "4")

    def test_gain_integer(self):
        expect_error(TypeError, lambda: F.weight_standardize(torch.randn(4, 3), gain=torch.ones(4, dtype=torch.int32)),
                     "gain", "int32")

    def test_gain_on_other_device(self):
        w = torch.randn(4, 3, device="meta")
        expect_error(RuntimeError, lambda: F.weight_standardize(w, gain=torch.ones(4)), "gain", "cpu", "meta")

    def test_bad_eps_and_scale(self):
        expect_error(ValueError, lambda: F.weight_standardize(torch.randn(4, 3), eps=-1.0), "eps")
        expect_error(ValueError, lambda: F.weight_standardize(torch.randn(4, 3), scale=math.inf), "scale")

    def test_sparse_weight(self):
        expect_error(TypeError, lambda: F.weight_standardize(torch.randn(4, 3).to_sparse()), "w", "layout")

    def test_not_a_tensor(self):
        expect_error(TypeError, lambda: F.weight_standardize([[1.0, 2.0]]), "w", "list")

    def test_unknown_backend(self):
        expect_error(ValueError, lambda: F.weight_standardize(torch.randn(4, 3), backend="tpu"), "tpu", "auto")

    def test_unavailable_backend_names_what_is_missing(self):
        expect_error(tricks_ext.BackendUnavailableError,
                     lambda: F.weight_standardize(torch.randn(4, 3), backend="cuda"), "cuda", "CUDA tensors")

    @pytest.mark.skipif(not tricks_ext.HAS_C, reason="C++ extension not built")
    def test_cpp_op_rejects_what_the_functional_prepares(self):
        op = torch.ops.tricks_ext.weight_standardize_fwd
        expect_error(RuntimeError, lambda: op(torch.randn(9, 6).t(), 1e-6, None), "row-dense", ".contiguous()")
        expect_error(TypeError, lambda: op(torch.randn(4, 3), 1e-6, torch.ones(4, dtype=torch.float16)),
                     "gain", "Float")
        expect_error(RuntimeError, lambda: op(torch.randn(4), 1e-6, None), "at least 2 dims")
