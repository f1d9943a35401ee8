"""max_grad_norm: clip_grad_norm_ folded into the fused step, with no host sync."""
import pytest
import torch

from helpers import backend_params
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger

BACKENDS = backend_params("optim_step", torch_backend=True)
STEPS = 30
SHAPES = [(8, 4, 3, 3), (6, 5), (6,), (1,)]
MAX_NORM = 1.0
# 30 fp32 steps. Unclipped, FusedRAdam already drifts 9.2e-6 of the displacement from
# torch.optim.RAdam over them (the ops round in another order); the clipped grad, g * c in
# clip_grad_norm_ and g / (1 / c) here, adds an ulp per element. A step that ignores
# max_grad_norm scores 0.37 (Ranger) to 1.15 (Adam): 1e-4 sits between.
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


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "torch"])
def test_no_host_sync(backend_device, monkeypatch):
    """The fused step with clipping reads no tensor on the host (CUDA-graph friendly)."""
    backend, device = backend_device
    ps = [torch.randn(s, device=device).requires_grad_(True) for s in SHAPES]
    opt = Ranger(ps, max_grad_norm=MAX_NORM, backend=backend)
    for i in range(2):  # the first step plans; the second runs from the cache
        for p, g in zip(ps, grads(i, ps)):
            p.grad = g

        def sync(*args, **kwargs):
            raise AssertionError("host sync in the step")

        with monkeypatch.context() as m:
            for name in ("item", "cpu", "tolist", "__bool__", "__float__", "__int__", "numpy"):
                m.setattr(torch.Tensor, name, sync)
            opt.step()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "1", torch.tensor(1.0)], ids=repr)
def test_rejects_bad_max_grad_norm(bad):
    with pytest.raises(ValueError, match="max_grad_norm"):
        Ranger([torch.nn.Parameter(torch.randn(3))], max_grad_norm=bad)
