"""tricks_ext::sasa_step_ (SASA+'s fused step) on every backend against the reference
(tricks_ext/reference/sasa.py): the update of params and momentum buffers per element, and the
statistic's two sums, on fresh random data across dtypes, the three direction forms and sizes
that cross each backend's chunk."""
from __future__ import annotations

import pytest
import torch

from helpers import assert_matches_reference, backend_params, expect_error
from tricks_ext import _backend
from tricks_ext.ops.sasa import CHUNK
from tricks_ext.reference.sasa import sasa_step as reference

OP = "sasa_step"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# (momentum, qhm_nu, with buffers): d = h, d = (1 - nu) g + nu h, d = g
FORMS = [(0.9, 1.0, True), (0.9, 0.7, True), (0.0, 1.0, False)]
# Partial sums per chunk in the backends, at least: the CPU kernel's 16 lanes (the CUDA
# kernel's 256 threads and the Triton kernel's 1024 lanes have more).
LANES = 16


def _shapes(backend: str) -> list:
    chunk = CHUNK[backend]
    return [(1,), (7, 5, 3), (chunk + 1,), (2 * chunk - 1,), (0,), (3, 64)]


def _inputs(shapes, dtype, with_bufs, seed):
    gen = torch.Generator().manual_seed(seed)
    rand = lambda s, scale: (torch.randn(s, generator=gen, dtype=torch.float64) * scale).to(dtype)
    params = [rand(s, 1.0) for s in shapes]
    grads = [rand(s, 1e-2) for s in shapes]
    bufs = [rand(s, 1e-2) for s in shapes] if with_bufs else []
    return params, grads, bufs


def _sum_bound(new_params, ref_sums, dtype, max_len):
    """|sums - reference sums| allowed: the recursive-summation bound (m - 1) u sum|t| for the
    m = max_len / LANES + log2(LANES) + 1 additions of a lane's chain and its fold, per chunk (the
    chunks are added in float64), plus 4 u sum|t| for each term's own roundings (the backends
    may fuse a multiply-add the reference rounds twice); u of fp32 (fp64 for fp64 params). For
    fp16/bf16 an element stored one ulp apart moves its term by one ulp of the stored dtype: that
    much of sum|t| too. sum|t| is ||d||^2 for the second sum and, for the first, at most
    ||x_new|| ||d|| (Cauchy-Schwarz), from the reference's values."""
    u = 2.0 ** -53 if dtype == torch.float64 else 2.0 ** -24
    slack = (max_len / LANES + 10) * u
    if dtype in (torch.float16, torch.bfloat16):
        slack += torch.finfo(dtype).eps
    x_norm = torch.sqrt(sum(p.double().pow(2).sum() for p in new_params))
    d_norm = torch.sqrt(ref_sums[1])
    return slack * torch.stack([x_norm * d_norm, ref_sums[1]])


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("form", FORMS, ids=["momentum", "qhm", "sgd"])
def test_matches_reference(backend_device, dtype, form):
    backend, device = backend_device
    if _backend.unavailable_reason(backend, torch.device(device), OP, dtype) is not None:
        pytest.skip(_backend.unavailable_reason(backend, torch.device(device), OP, dtype))
    momentum, nu, with_bufs = form
    shapes = _shapes(backend)
    step = _backend.implementation(OP, torch.device(device), backend, dtype)
    lr = torch.tensor(0.05, dtype=torch.float64, device=device)
    wd = 1e-3
    params, grads, bufs = _inputs(shapes, dtype, with_bufs, seed=hash((str(dtype), form)) % 1000)
    ours = [t.to(device, copy=True) for t in params], [t.to(device, copy=True) for t in bufs]
    same = [t.clone() for t in params], [t.clone() for t in bufs]
    wide = [t.to(torch.float64, copy=True) for t in params], [t.to(torch.float64, copy=True) for t in bufs]
    cache: dict = {}
    for k in range(3):  # the plan is reused across steps, and the buffers carry over
        sums = step(ours[0], [g.to(device) for g in grads], ours[1], lr, momentum, nu, wd, cache)
        ref_sums = reference(same[0], grads, same[1], lr.cpu(), momentum, nu, wd)
        reference(wide[0], [g.double() for g in grads], wide[1], lr.cpu(), momentum, nu, wd)
        for name, got, s, w in zip(["param"] * len(shapes) + ["buffer"] * len(bufs), ours[0] + ours[1],
                                   same[0] + same[1], wide[0] + wide[1]):
            assert_matches_reference(got.cpu(), s, w, name=f"{name} after step {k + 1}")
        assert sums.dtype == torch.float64 and sums.shape == (2,) and sums.device.type == device
        bound = _sum_bound(same[0], ref_sums, dtype, CHUNK[backend])
        assert ((sums.cpu() - ref_sums).abs() <= bound).all(), (sums, ref_sums, bound)
        # the sums follow the inputs: not a constant, not the input's own norms
        assert ref_sums[1] > 0 and not torch.equal(sums.cpu(), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_result_does_not_depend_on_thread_count(backend_device, two_threads):
    """Each chunk's sums land in their own row, added in a fixed order: one thread and two give
    the same bits."""
    backend, device = backend_device
    shapes = [(CHUNK[backend] * 5 + 3,), (1000,)]
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        params, grads, bufs = _inputs(shapes, torch.float32, True, seed=5)
        step = _backend.implementation(OP, torch.device(device), backend, torch.float32)
        lr = torch.tensor(0.1, dtype=torch.float64, device=device)
        out.append(step([p.to(device) for p in params], [g.to(device) for g in grads], [h.to(device) for h in bufs],
                        lr, 0.9, 1.0, 0.0, {}).cpu())
    assert torch.equal(out[0], out[1])


def test_bad_inputs():
    op = torch.ops.tricks_ext.sasa_step_
    p = [torch.randn(10)]
    g = [torch.randn(10)]
    lr = torch.tensor(0.1, dtype=torch.float64)
    work = torch.tensor([[0, 0, 10]])
    expect_error(RuntimeError, lambda: op(p, g, [], lr.float(), work, None, 0.9, 1.0, 0.0), "lr", "float64")
    expect_error(RuntimeError, lambda: op(p, [], [], lr, work, None, 0.9, 1.0, 0.0), "same length")
    expect_error(RuntimeError, lambda: op(p, [torch.randn(10).double()], [], lr, work, None, 0.9, 1.0, 0.0),
                 "grad", "dtype")
    expect_error(RuntimeError, lambda: op(p, g, [torch.randn(11)], lr, work, None, 0.9, 1.0, 0.0), "buffer", "shape")
    expect_error(RuntimeError, lambda: op([torch.randn(10, 2)[:, 0]], [torch.randn(10, 2)[:, 0]], [], lr, work, None,
                                          0.9, 1.0, 0.0), "dense")
    expect_error(RuntimeError, lambda: op(p, g, [], lr, torch.tensor([[0, 5, 10]]), None, 0.9, 1.0, 0.0),
                 "outside its tensor")
    expect_error(RuntimeError, lambda: op(p, g, [], lr, work, None, float("nan"), 1.0, 0.0), "finite")
    expect_error(TypeError, lambda: op([torch.randn(10).int()], [torch.randn(10).int()], [], lr, work, None,
                                       0.9, 1.0, 0.0), "sasa_step_", "float32")
