"""Clipping folded into the fused step, with no host sync: max_grad_norm (clip_grad_norm_),
clip_value (clip_grad_value_) and agc_clip_factor (timm's adaptive_clip_grad)."""
import pytest
import torch

import peers
from helpers import backend_params, kernel_constant
from tricks_ext.ops.optim import ROW_MAX
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger

BACKENDS = backend_params("optim_step", torch_backend=True)
STEPS = 30
SHAPES = [(8, 4, 3, 3), (6, 5), (6,), (1,)]
MAX_NORM = 1.0
# 30 fp32 steps. Unclipped, FusedRAdam already drifts 9.2e-6 of the displacement from
# torch.optim.RAdam over them (the ops round in another order); the clipped grad, g * c in
# clip_grad_norm_ and g / (1 / c) here, adds an ulp per element. A step that ignores
# max_grad_norm scores 0.37 (Ranger) to 1.15 (Adam): 1e-4 sits between. clip_value and AGC
# measure 6e-7 to 3.4e-5 on cpu, triton and simt; ignoring them scores 0.34 to 6.7.
TOL = 1e-4


def grads(step, params):
    """Total norms from 0.3 to 3 x MAX_NORM: some steps clip, some do not."""
    gen = torch.Generator().manual_seed(step)
    gs = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    total = torch.sqrt(sum((g * g).sum() for g in gs))
    target = MAX_NORM * (0.3 + 2.7 * (step % 5) / 4)
    return [(g * target / total).to(p.device, p.dtype) for g, p in zip(gs, params)]


def update_err(ours, ref, init):
    return max(((a.detach().double() - r.detach().double()).abs().max()
                / (r.detach().double() - i.double()).abs().max()).item() for a, r, i in zip(ours, ref, init))


PAIRS = [
    ("adam", lambda ps, be: FusedAdam(ps, lr=1e-2, max_grad_norm=MAX_NORM, backend=be),
     lambda ps: torch.optim.Adam(ps, lr=1e-2)),
    ("adamw", lambda ps, be: FusedAdamW(ps, lr=1e-2, max_grad_norm=MAX_NORM, backend=be),
     lambda ps: torch.optim.AdamW(ps, lr=1e-2)),
    ("radam", lambda ps, be: FusedRAdam(ps, lr=1e-2, max_grad_norm=MAX_NORM, backend=be),
     lambda ps: torch.optim.RAdam(ps, lr=1e-2)),
    ("ranger", lambda ps, be: Ranger(ps, lr=1e-2, weight_decay=0.01, max_grad_norm=MAX_NORM, backend=be),
     lambda ps: Ranger(ps, lr=1e-2, weight_decay=0.01, backend="torch")),
]


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("name,ours,theirs", PAIRS, ids=[p[0] for p in PAIRS])
def test_equals_clip_grad_norm_then_step(backend_device, name, ours, theirs):
    """Each step equals clip_grad_norm_ followed by the unclipped optimizer (torch.optim's, or the
    reference Ranger), and last_grad_norm is the norm clip_grad_norm_ returns."""
    backend, device = backend_device
    a = [torch.randn(s, device=device).requires_grad_(True) for s in SHAPES]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    init = [p.detach().clone() for p in a]
    opt_a, opt_b = ours(a, backend), theirs(b)
    clipped = 0
    for i in range(STEPS):
        gs = grads(i, a)
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        norm = torch.nn.utils.clip_grad_norm_(b, MAX_NORM)
        opt_b.step()
        clipped += bool(norm > MAX_NORM)
        torch.testing.assert_close(opt_a.last_grad_norm, norm, rtol=1e-6, atol=0)
        assert all(torch.equal(p.grad, g) for p, g in zip(a, gs)), "the user's grads must not change"
    assert 0 < clipped < STEPS
    assert update_err(a, b, init) <= TOL


CLIP_VALUE = 0.05  # the grads' elements are ~0.015-0.15: a third to two thirds clamp
AGC_FACTOR = 0.1  # rows of |p| ~ 2.2-6 and |g| ~ 0.03-0.9: some rows clip, some do not


def timm_agc(params, factor):
    peers.timm()
    from timm.utils.agc import adaptive_clip_grad
    adaptive_clip_grad(params, clip_factor=factor)


CLIPS = {
    "value": (dict(clip_value=CLIP_VALUE), lambda ps: torch.nn.utils.clip_grad_value_(ps, CLIP_VALUE)),
    "agc": (dict(agc_clip_factor=AGC_FACTOR), lambda ps: timm_agc(ps, AGC_FACTOR)),
}
OPTIMIZERS = [
    ("adamw", lambda ps, be, kw: FusedAdamW(ps, lr=1e-2, backend=be, **kw), lambda ps: torch.optim.AdamW(ps, lr=1e-2)),
    ("ranger", lambda ps, be, kw: Ranger(ps, lr=1e-2, weight_decay=0.01, backend=be, **kw),
     lambda ps: Ranger(ps, lr=1e-2, weight_decay=0.01, backend="torch")),
]
FUSED = [p for p in BACKENDS if p.values[0][0] != "torch"]


# 4 steps of RAdam before its rectification move a param by lr times its grads, 1e-2 at most,
# so one ulp of the largest |p| (~4.5 among 49K elements) is ~4e-5 of the displacement: measured
# 2.7e-5 to 7.6e-5 (1-2 ulps) on cpu, triton and simt; the clip ignored scores 0.1 (AGC) to
# 0.98 (clip_value).
LONG_TOL = 3e-4


def elementwise_grads(step, params):
    """Elements of std 0.03-0.12 whatever the tensor's size (grads() spreads a total norm)."""
    gen = torch.Generator().manual_seed(step)
    return [(torch.randn(p.shape, generator=gen) * 0.03 * (1 + step % 4)).to(p.device, p.dtype) for p in params]


def run_pair(backend, device, shapes, clip, name, steps=STEPS, grad_fn=grads):
    """Ours with ``clip`` against the clip function then the unclipped optimizer; returns the
    displacement error and the fraction of grad elements the clip changed."""
    kw, clip_fn = CLIPS[clip]
    _, ours, theirs = dict((o[0], o) for o in OPTIMIZERS)[name]
    a = [torch.randn(s, device=device) for s in shapes]
    a[1][::3] = 0.0  # zero rows (biases start at zero): AGC caps their grads at agc_eps * factor
    a = [p.requires_grad_(True) for p in a]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    init = [p.detach().clone() for p in a]
    opt_a, opt_b = ours(a, backend, kw), theirs(b)
    changed = total = 0
    for i in range(steps):
        gs = grad_fn(i, a)
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        clip_fn(b)
        changed += sum(int((q.grad != g).sum()) for q, g in zip(b, gs))
        total += sum(g.numel() for g in gs)
        opt_b.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(a, gs)), "the user's grads must not change"
    return update_err(a, b, init), changed / total


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("name", [o[0] for o in OPTIMIZERS])
def test_equals_clip_then_step(backend_device, clip, name):
    """clip_value / agc_clip_factor equal torch's clip_grad_value_ / timm's adaptive_clip_grad
    followed by the unclipped optimizer, over 30 steps that clip part of the grads."""
    backend, device = backend_device
    err, changed = run_pair(backend, device, SHAPES, clip, name)
    assert 0.1 < changed < 0.9, changed
    assert err <= TOL


@pytest.mark.parametrize("backend_device", FUSED)
@pytest.mark.parametrize("clip", CLIPS)
def test_clip_on_rows_too_long_for_chip(backend_device, clip):
    """Rows past ROW_MAX take the two-level path (clipped and centralized by torch ops before the
    kernel, which must not clamp them again): same numbers."""
    backend, device = backend_device
    err, changed = run_pair(backend, device, [(2, ROW_MAX + 5), (3, 4), (ROW_MAX + 3,)], clip, "ranger", steps=4,
                            grad_fn=elementwise_grads)
    assert 0.1 < changed < 0.9, changed
    assert err <= LONG_TOL


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_with_grad_scaler(backend_device):
    """Under GradScaler the norm is the unscaled one: ours equals unscale_ + clip_grad_norm_ +
    step, and an inf step changes nothing."""
    backend, device = backend_device
    if not hasattr(torch.amp, "GradScaler"):
        pytest.skip("torch.amp.GradScaler missing")
    a = [torch.randn(s, device=device).requires_grad_(True) for s in SHAPES]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    init = [p.detach().clone() for p in a]
    opt_a = FusedAdamW(a, lr=1e-2, max_grad_norm=MAX_NORM, backend=backend)
    opt_b = torch.optim.AdamW(b, lr=1e-2)
    sa, sb = (torch.amp.GradScaler(device, init_scale=2.0 ** 10) for _ in range(2))
    for i in range(12):
        gs = grads(i, a)
        if i == 5:
            gs[1] = gs[1].clone()
            gs[1].view(-1)[2] = float("inf")
        for params, opt, scaler in ((a, opt_a, sa), (b, opt_b, sb)):
            scaler.scale(sum((p * g).sum() for p, g in zip(params, gs))).backward()
            if opt is opt_b:
                scaler.unscale_(opt)
                norm = torch.nn.utils.clip_grad_norm_(b, MAX_NORM)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        if i != 5:
            torch.testing.assert_close(opt_a.last_grad_norm, norm, rtol=1e-6, atol=0)
    assert sa.get_scale() == sb.get_scale() < 2.0 ** 10
    assert update_err(a, b, init) <= TOL


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_agc_with_grad_scaler(backend_device):
    """AGC compares the unscaled grads' norms: ours under GradScaler equals unscale_ + timm's
    adaptive_clip_grad + step."""
    backend, device = backend_device
    a = [torch.randn(s, device=device).requires_grad_(True) for s in SHAPES]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    init = [p.detach().clone() for p in a]
    opt_a = Ranger(a, lr=1e-2, agc_clip_factor=AGC_FACTOR, backend=backend)
    opt_b = Ranger(b, lr=1e-2, backend="torch")
    sa, sb = (torch.amp.GradScaler(device, init_scale=2.0 ** 10) for _ in range(2))
    for i in range(12):
        gs = grads(i, a)
        for params, opt, scaler in ((a, opt_a, sa), (b, opt_b, sb)):
            scaler.scale(sum((p * g).sum() for p, g in zip(params, gs))).backward()
            if opt is opt_b:
                scaler.unscale_(opt)
                timm_agc(b, AGC_FACTOR)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
    assert update_err(a, b, init) <= TOL


NO_SYNC_OPTIONS = {"norm": dict(max_grad_norm=MAX_NORM), "value-ema": dict(clip_value=CLIP_VALUE, ema_decay=0.9),
                   "agc-ema-warmup": dict(agc_clip_factor=AGC_FACTOR, ema_decay=0.99, ema_warmup=True)}


@pytest.mark.parametrize("backend_device", FUSED)
@pytest.mark.parametrize("options", NO_SYNC_OPTIONS)
def test_no_host_sync(backend_device, options, monkeypatch):
    """The fused step with clipping and EMA reads no tensor on the host (CUDA-graph friendly)."""
    backend, device = backend_device
    ps = [torch.randn(s, device=device).requires_grad_(True) for s in SHAPES]
    opt = Ranger(ps, backend=backend, **NO_SYNC_OPTIONS[options])
    for i in range(2):  # the first step plans; the second runs from the cache
        for p, g in zip(ps, grads(i, ps)):
            p.grad = g

        def sync(*args, **kwargs):
            raise AssertionError("host sync in the step")

        with monkeypatch.context() as m:
            for name in ("item", "cpu", "tolist", "__bool__", "__float__", "__int__", "numpy"):
                m.setattr(torch.Tensor, name, sync)
            opt.step()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("-inf"), "1", torch.tensor(1.0)], ids=repr)
def test_rejects_bad_max_grad_norm(bad):
    with pytest.raises(ValueError, match="max_grad_norm"):
        Ranger([torch.nn.Parameter(torch.randn(3))], max_grad_norm=bad)


@pytest.mark.parametrize("backend_device", backend_params("optim_step"))
@pytest.mark.parametrize("key", ["max_grad_norm", "clip_value"])
def test_infinite_clip_measures_without_clipping(backend_device, key):
    """max_grad_norm=inf (clip_grad_norm_'s way to read the norm) and clip_value=inf: the
    steps equal unclipped ones bit for bit; last_grad_norm is clip_grad_norm_'s return value."""
    backend, device = backend_device
    ps = [torch.nn.Parameter(torch.randn(5, 3, device=device) * 3), torch.nn.Parameter(torch.randn(4, device=device))]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt, ref = Ranger(ps, lr=0.1, backend=backend, **{key: float("inf")}), Ranger(plain, lr=0.1, backend=backend)
    for step in range(3):
        for p, q, g in zip(ps, plain, grads(step, ps)):
            p.grad, q.grad = g.clone(), g.clone()
        norm = torch.nn.utils.clip_grad_norm_(plain, float("inf"))
        opt.step()
        ref.step()
        if key == "max_grad_norm":
            torch.testing.assert_close(opt.last_grad_norm, norm.float(), rtol=1e-6, atol=0)
    assert all(torch.equal(p, q) for p, q in zip(ps, plain))


@pytest.mark.parametrize("kwargs,words", [
    (dict(clip_value=0.0), "clip_value"), (dict(clip_value=float("nan")), "clip_value"),
    (dict(agc_clip_factor=-1.0), "agc_clip_factor"), (dict(agc_clip_factor=0.01, agc_eps=0.0), "agc_eps"),
    (dict(max_grad_norm=1.0, clip_value=1.0), "one clipping mode"),
    (dict(clip_value=1.0, agc_clip_factor=0.01), "one clipping mode"), (dict(clip_norm=1.0), "clip_norm"),
])
def test_rejects_bad_clipping(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        Ranger([torch.nn.Parameter(torch.randn(3))], **kwargs)


@pytest.mark.skipif(not __import__("tricks_ext").HAS_C, reason="C++ extension not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_cpu_grad_norm(dtype, two_threads):
    """The CPU kernels' norm (max_grad_norm): tensors that cross its task chunks, odd sizes, a
    channels_last and a strided one, on two threads, against the fp64 sum of the same values."""
    task = kernel_constant("optim/cpu.cpp", "kTask")
    gen = torch.Generator().manual_seed(0)
    ts = [torch.randn(n, generator=gen).to(dtype) for n in (3 * task + 5, 1, task - 1)]
    ts.append(torch.randn(6, 5, 3, 3, generator=gen).to(dtype).to(memory_format=torch.channels_last))
    ts.append(torch.randn(40, 7, generator=gen).to(dtype)[:, ::2])  # not dense: copied first
    got = torch.ops.tricks_ext.optim_grad_norm(ts)
    exact = torch.sqrt(sum((t.double() ** 2).sum() for t in ts))
    # sums of ~200K squares in fp32 lanes (fp64 for fp64): measured within 1e-8 of the fp64 sum
    assert got.dtype == torch.float32 and got.shape == ()
    torch.testing.assert_close(got.double(), exact, rtol=1e-6, atol=0)
