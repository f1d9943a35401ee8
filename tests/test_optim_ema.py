"""ema_decay: an EMA of the weights updated inside the fused step, against timm's ModelEmaV3
applied after each step; ema_weights(); state; AMP skips."""
import copy

import pytest
import torch

import peers
from helpers import backend_params
from tricks_ext.optim import FusedAdamW, Ranger

BACKENDS = backend_params("optim_step", torch_backend=True)
FUSED = backend_params("optim_step")
STEPS = 30


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 5))


def grads(step, params):
    """Grads of 1e-3, so 30 AdamW steps of lr 1e-2 move every param by ~0.1-0.3 (the EMA
    lags them by much more than its rounding)."""
    gen = torch.Generator().manual_seed(step)
    return [(torch.randn(p.shape, generator=gen) * 1e-3).to(p.device, p.dtype) for p in params]


def displacement_err(ours, ref, init):
    return max(((a.detach().double() - r.detach().double()).abs().max()
                / (r.detach().double() - i.double()).abs().max()).item() for a, r, i in zip(ours, ref, init))


# ModelEmaV3's arguments; ours take them with an ema_ prefix. Warmup with power 3/4 gives
# decays 0.41..0.92 over 30 steps; update_after_step = 4 makes steps 1-5 copy the params.
EMA_CASES = {
    "constant": dict(decay=0.9),
    "warmup": dict(decay=0.999, use_warmup=True, warmup_power=0.75),
    "warmup-gamma-min": dict(decay=0.95, use_warmup=True, warmup_gamma=2.0, warmup_power=1.0, min_decay=0.5),
    "after-step": dict(decay=0.8, update_after_step=4),
}
OURS_NAMES = {"decay": "ema_decay", "use_warmup": "ema_warmup", "warmup_gamma": "ema_warmup_gamma",
              "warmup_power": "ema_warmup_power", "min_decay": "ema_min_decay",
              "update_after_step": "ema_update_after_step"}
# 30 fp32 steps: the params of the two runs (ours fused, torch.optim.AdamW) drift apart by
# 3.9e-7 of their displacement (they round in another order), the EMAs by 3.3e-7 to 4.4e-7 on
# cpu, triton and simt. An EMA one step behind timm's (its decay at step + 1) scores 3.6e-4
# ("after-step") to 1.6e-2.
TOL = 1e-5
# Ranger on a fused backend against the torch backend: the params drift 8.8e-6 of their
# displacement over 30 fp32 steps (test_optim's UPDATE_TOL), the EMAs 2.0e-6 to 4.1e-6; bf16
# params, fp32 EMA: 8.9e-7.
RANGER_TOL = 1e-4


@pytest.mark.parametrize("backend_device", FUSED)
@pytest.mark.parametrize("case", EMA_CASES)
def test_equals_timm_model_ema_v3(backend_device, case):
    """FusedAdamW(ema_decay=...) equals torch.optim.AdamW + timm's ModelEmaV3.update(model,
    step=num_updates) after each step (timm's train loop), exclude_buffers=True (the optimizer
    holds params only; this model has no buffers either way)."""
    peers.timm()
    from timm.utils.model_ema import ModelEmaV3
    backend, device = backend_device
    kw = EMA_CASES[case]
    a, b = make_model().to(device), make_model().to(device)
    init = [p.detach().clone() for p in a.parameters()]
    opt_a = FusedAdamW(a.parameters(), lr=1e-2, backend=backend, **{OURS_NAMES[k]: v for k, v in kw.items()})
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2)
    ema_b = ModelEmaV3(b, exclude_buffers=True, **kw)
    for i in range(STEPS):
        for model in (a, b):
            for p, g in zip(model.parameters(), grads(i, list(model.parameters()))):
                p.grad = g
        opt_a.step()
        opt_b.step()
        ema_b.update(b, step=i + 1)
    ours = [opt_a.state[p]["ema"] for p in a.parameters()]
    assert displacement_err(ours, list(ema_b.module.parameters()), init) <= TOL
    assert displacement_err(list(a.parameters()), list(b.parameters()), init) <= TOL


@pytest.mark.parametrize("backend_device", FUSED)
def test_ranger_ema_matches_reference(backend_device):
    """Ranger with EMA (Lookahead syncs, RAdam's rectification and GC in the path) on a fused
    backend against the torch backend, fp32 and bf16 params (fp32 EMA for both)."""
    backend, device = backend_device
    for dtype in (torch.float32, torch.bfloat16):
        a = [p.to(device, dtype) for p in make_model().parameters()]
        a = [p.detach().clone().requires_grad_(True) for p in a]
        b = [p.detach().clone().requires_grad_(True) for p in a]
        init = [p.detach().clone() for p in a]
        kw = dict(lr=1e-2, k=4, ema_decay=0.9, ema_warmup=True)
        opt_a, opt_b = Ranger(a, backend=backend, **kw), Ranger(b, backend="torch", **kw)
        for i in range(STEPS):
            for ps in (a, b):
                for p, g in zip(ps, grads(i, ps)):
                    p.grad = g
            opt_a.step()
            opt_b.step()
        ema_a = [opt_a.state[p]["ema"] for p in a]
        ema_b = [opt_b.state[p]["ema"] for p in b]
        assert all(e.dtype == torch.float32 for e in ema_a + ema_b)
        assert displacement_err(ema_a, ema_b, init) <= RANGER_TOL, dtype


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_ema_weights_context(backend_device):
    """Inside ema_weights() the params hold the EMA (rounded to their dtype); after it they are
    bit-for-bit their own values again, and the fp32 EMA of bf16 params loses nothing."""
    backend, device = backend_device
    for dtype in (torch.float32, torch.bfloat16):
        ps = [torch.randn(s, device=device, dtype=dtype).requires_grad_(True) for s in ((6, 5), (5,))]
        opt = FusedAdamW(ps, lr=1e-2, ema_decay=0.5, backend=backend)
        for i in range(3):
            for p, g in zip(ps, grads(i, ps)):
                p.grad = g
            opt.step()
        before = [p.detach().clone() for p in ps]
        emas = [opt.state[p]["ema"].clone() for p in ps]
        assert not any(torch.equal(e.to(dtype), b) for e, b in zip(emas, before))
        with opt.ema_weights():
            for p, e in zip(ps, emas):
                assert torch.equal(p.detach(), e.to(dtype))
        assert all(torch.equal(p.detach(), b) for p, b in zip(ps, before))
        assert all(torch.equal(opt.state[p]["ema"], e) for p, e in zip(ps, emas))


def test_slow_weights_context_keeps_fp32_slow_weights_of_bf16_params():
    ps = [torch.randn(6, 5, dtype=torch.bfloat16).requires_grad_(True)]
    opt = Ranger(ps, k=2)
    for i in range(2):
        ps[0].grad = grads(i, ps)[0]
        opt.step()
    opt.state[ps[0]]["slow_buffer"].add_(1e-3)  # off the bf16 grid
    slow = opt.state[ps[0]]["slow_buffer"].clone()
    before = ps[0].detach().clone()
    with opt.slow_weights():
        assert torch.equal(ps[0].detach(), slow.to(torch.bfloat16))
    assert torch.equal(ps[0].detach(), before) and torch.equal(opt.state[ps[0]]["slow_buffer"], slow)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_state_dict_resume_with_ema(backend_device):
    """10 steps straight equal 6 steps, state_dict into a fresh optimizer, 4 more: params, slow
    weights and EMA bit for bit (the EMA is state "ema", saved and loaded like the moments)."""
    backend, device = backend_device
    kw = dict(lr=1e-2, k=4, ema_decay=0.9, ema_warmup=True, backend=backend)
    a = [p.to(device).detach().clone().requires_grad_(True) for p in make_model().parameters()]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    opt_a = Ranger(a, **kw)
    for i in range(10):
        for p, g in zip(a, grads(i, a)):
            p.grad = g
        opt_a.step()
    opt_b = Ranger(b, **kw)
    for i in range(6):
        for p, g in zip(b, grads(i, b)):
            p.grad = g
        opt_b.step()
    saved = copy.deepcopy(opt_b.state_dict())
    opt_b = Ranger(b, **kw)
    opt_b.load_state_dict(saved)
    for i in range(6, 10):
        for p, g in zip(b, grads(i, b)):
            p.grad = g
        opt_b.step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)
        for key in ("ema", "slow_buffer", "exp_avg"):
            assert torch.equal(opt_a.state[p][key], opt_b.state[q][key]), key


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_skipped_step_leaves_the_ema(backend_device):
    """A GradScaler step with an inf grad changes no param, so the EMA stays too."""
    backend, device = backend_device
    ps = [torch.randn(6, 5, device=device).requires_grad_(True)]
    opt = FusedAdamW(ps, ema_decay=0.5, backend=backend)
    ps[0].grad = grads(0, ps)[0]
    opt.step()
    ema = opt.state[ps[0]]["ema"].clone()
    opt.found_inf = torch.ones((), device=device)
    opt.grad_scale = torch.ones((), device=device)
    ps[0].grad = grads(1, ps)[0]
    opt.step()
    assert torch.equal(opt.state[ps[0]]["ema"], ema)


def test_memory_is_one_fp32_copy():
    """Per param one fp32 EMA tensor of its shape, nothing else beside the Adam moments."""
    ps = [torch.randn(6, 5, dtype=torch.bfloat16).requires_grad_(True), torch.randn(5).requires_grad_(True)]
    opt = FusedAdamW(ps, ema_decay=0.99)
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    for p in ps:
        st = opt.state[p]
        assert set(st) == {"step", "exp_avg", "exp_avg_sq", "ema"}
        assert st["ema"].dtype == torch.float32 and st["ema"].shape == p.shape


@pytest.mark.parametrize("kwargs,words", [
    (dict(ema_decay=1.5), "ema_decay"), (dict(ema_decay=-0.1), "ema_decay"), (dict(ema_decay="0.9"), "ema_decay"),
    (dict(ema_decay=0.9, ema_warmup=1), "ema_warmup"), (dict(ema_decay=0.9, ema_warmup_gamma=0.0), "ema_warmup_gamma"),
    (dict(ema_decay=0.9, ema_update_after_step=-1), "ema_update_after_step"),
    (dict(ema_decay=0.9, ema_min_decay=2.0), "ema_min_decay"), (dict(ema_warmup=True), "without ema_decay"),
])
def test_rejects_bad_ema_options(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        FusedAdamW([torch.nn.Parameter(torch.randn(3))], **kwargs)


def test_ema_weights_needs_ema():
    opt = FusedAdamW([torch.nn.Parameter(torch.randn(3))])
    with pytest.raises(RuntimeError, match="ema_decay"):
        opt.ema_weights()
