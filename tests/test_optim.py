"""Optimizers (Ranger, FusedAdam/AdamW/RAdam) on every backend that implements optim_step:
against torch.optim and the reference, resume, AMP skip, groups, errors."""
import copy

import pytest
import torch

import peers
from helpers import backend_params, expect_error, kernel_constant, ulp
from tricks_ext.functional import centralize_gradients_
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger
from tricks_ext.reference.optim import optimizer_step

OP = "optim_step"
BACKENDS = backend_params(OP)
# Behaviour every backend shares (state, AMP, groups): the torch backend too.
ALL_BACKENDS = backend_params(OP, torch_backend=True)
STEPS = 100

# conv, linear, bias, norm weight, depthwise, 1-element
SHAPES = [(8, 4, 3, 3), (6, 5), (6,), (4,), (4, 1, 3, 3), (1,)]
# Gradient scales of real training, one per tensor of SHAPES: at 1e-8 Adam's eps (1e-8) halves
# the update and Ranger's (1e-5) is 1000x sqrt(v), so dropping or misplacing eps changes those
# tensors' whole update; at 1e-4 the update is m / sqrt(v).
GRAD_SCALES = [1e-4, 1e-6, 1e-8, 1e-5, 1e-7, 3e-5]


def make_params(device, dtype=torch.float32):
    return [torch.randn(s, device=device, dtype=dtype).requires_grad_(True) for s in SHAPES]


def grads_for(step, params, scales=GRAD_SCALES):
    gen = torch.Generator().manual_seed(1000 + step)
    return [(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scales[i % len(scales)]).to(p.device, p.dtype)
            for i, p in enumerate(params)]


def run(opt, params, steps=STEPS, start=0):
    for i in range(start, start + steps):
        for p, g in zip(params, grads_for(i, params)):
            p.grad = g
        opt.step()


def max_rel(a, b):
    return max(((x.detach().double() - y.detach().double()).abs().max() / y.detach().double().abs().max()).item()
               for x, y in zip(a, b))


def update_err(ours, ref, init):
    """Worst, over tensors, of max|ours - ref| / max|ref - init|: the error measured against how
    far the reference moved each tensor (not against the params' own size, under which a
    tensor that never moved would score its update over its magnitude, ~1e-3)."""
    return max(((a.detach().double() - r.detach().double()).abs().max()
                / (r.detach().double() - i.double()).abs().max()).item() for a, r, i in zip(ours, ref, init))


TORCH_EQUIV = [
    ("adam", lambda ps, be: FusedAdam(ps, backend=be), lambda ps: torch.optim.Adam(ps)),
    ("adam-l2", lambda ps, be: FusedAdam(ps, weight_decay=0.1, backend=be),
     lambda ps: torch.optim.Adam(ps, weight_decay=0.1)),
    ("adam-maximize", lambda ps, be: FusedAdam(ps, maximize=True, backend=be),
     lambda ps: torch.optim.Adam(ps, maximize=True)),
    ("adamw", lambda ps, be: FusedAdamW(ps, lr=3e-3, backend=be), lambda ps: torch.optim.AdamW(ps, lr=3e-3)),
    ("radam", lambda ps, be: FusedRAdam(ps, weight_decay=0.05, backend=be),
     lambda ps: torch.optim.RAdam(ps, weight_decay=0.05)),
    ("radam-decoupled", lambda ps, be: FusedRAdam(ps, weight_decay=0.05, decoupled_weight_decay=True, backend=be),
     lambda ps: torch.optim.RAdam(ps, weight_decay=0.05, decoupled_weight_decay=True)),
]


# 100 steps of fp32 updates, each rounded once per param: the two implementations order their
# fp32 operations differently, so they drift apart by a few ulp of the params per step; 1e-4
# of the displacement is ~30 such ulp over the run. Dropping eps moves the 1e-8-gradient
# tensor's update by 50 %, an off-by-one bias correction moves early steps by 5 %.
UPDATE_TOL = 1e-4


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("name,ours,theirs", TORCH_EQUIV, ids=[t[0] for t in TORCH_EQUIV])
def test_equals_torch_optim(backend_device, name, ours, theirs):
    backend, device = backend_device
    ps = make_params(device)
    init = [p.detach().clone() for p in ps]
    ref = [p.detach().clone().requires_grad_(True) for p in ps]
    run(ours(ps, backend), ps)
    run(theirs(ref), ref)
    assert update_err(ps, ref, init) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", [p for p in BACKENDS if p.values[0][0] != "triton"])
def test_fp64_params_equal_torch_optim(backend_device):
    """fp64 params step in fp64 on every backend that takes them (the Triton kernel computes in
    fp32 and refuses them; the CUDA kernel, run here through simt, keeps fp64 state)."""
    backend, device = backend_device
    ps = make_params(device, torch.float64)
    init = [p.detach().clone() for p in ps]
    ref = [p.detach().clone().requires_grad_(True) for p in ps]
    run(FusedAdamW(ps, lr=3e-3, gc=False, backend=backend), ps)
    run(torch.optim.AdamW(ref, lr=3e-3), ref)
    assert update_err(ps, ref, init) <= 1e-12


def side_by_side(ps, backend, steps, lr=1e-2, weight_decay=0.0, k=6, scales=GRAD_SCALES):
    """Our Ranger steps ``ps`` while the reference's per-tensor step (fp32 state) steps copies,
    on the same gradients; returns (the optimizer, the initial params, the reference's params)."""
    init = [p.detach().clone() for p in ps]
    ref = [p.detach().clone() for p in ps]
    opt = Ranger(ps, lr=lr, weight_decay=weight_decay, k=k, backend=backend)
    acc = [torch.promote_types(p.dtype, torch.float32) for p in ps]
    state = [(torch.zeros_like(p, dtype=a), torch.zeros_like(p, dtype=a), p.to(a, copy=True)) for p, a in zip(ref, acc)]
    for i in range(steps):
        gs = grads_for(i, ps, scales)
        for p, g in zip(ps, gs):
            p.grad = g
        opt.step()
        for r, g, (m, v, slow) in zip(ref, gs, state):
            optimizer_step(r, g, m, v, slow, i + 1, lr=lr, beta1=0.95, beta2=0.999, eps=1e-5,
                           weight_decay=weight_decay, decoupled_weight_decay=True, rectify=True, gc=True,
                           gc_conv_only=False, lookahead_k=k, lookahead_alpha=0.5, maximize=False)
    return opt, init, ref


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_ranger_matches_reference(backend_device):
    backend, device = backend_device
    ps = make_params(device)
    _, init, ref = side_by_side(ps, backend, STEPS, weight_decay=0.01)
    assert update_err(ps, ref, init) <= UPDATE_TOL


def peer_ranger_trajectory(backend, device, steps, **kw):
    """Ours and pytorch-optimizer's Ranger from the same params and gradients; the worst
    update_err over every step (steps 1-5 unrectified, rectified from 6; Lookahead syncs at
    every k-th). pytorch-optimizer's default ``degenerated_to_sgd=False`` steps *up* the
    gradient before rectification (its step size is -lr/bc1); True is RAdam's SGD-with-momentum
    warm-up, which torch.optim.RAdam and ours take."""
    po = peers.pytorch_optimizer()
    ps = make_params(device)
    init = [p.detach().clone() for p in ps]
    ref = [p.detach().clone().requires_grad_(True) for p in ps]
    ours = Ranger(ps, backend=backend, **kw)
    theirs = po.Ranger(ref, degenerated_to_sgd=True, foreach=False, **kw)
    worst = 0.0
    for i in range(steps):
        for p, r, g in zip(ps, ref, grads_for(i, ps)):
            p.grad, r.grad = g, g.clone()
        ours.step()
        theirs.step()
        worst = max(worst, update_err(ps, ref, init))
    return worst


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("kw", [dict(lr=1e-2, weight_decay=0.01), dict(lr=3e-3, k=4, alpha=0.8, gc_conv_only=True),
                                dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, k=5)],
                         ids=["wd", "conv-only", "betas-eps"])
def test_ranger_equals_pytorch_optimizer(backend_device, kw):
    """30 steps (5 before rectification, 5 Lookahead syncs at k=6) against the peer users
    replace, on gradients of 1e-8..1e-4 where eps and weight decay shape the update."""
    backend, device = backend_device
    assert peer_ranger_trajectory(backend, device, 30, **kw) <= UPDATE_TOL


# Rows that cross the CPU kernel's partial sums (kLanes, then blocks of 8, then single elements).
_LANES = kernel_constant("optim/cpu.cpp", "kLanes")
GC_ROW_SHAPES = [(4, 3, 3, 3), (4, _LANES - 1), (4, _LANES), (4, 2 * _LANES + 8 + 3)]


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("shape", GC_ROW_SHAPES, ids=str)
def test_gc_removes_the_row_mean(backend_device, shape):
    """A gradient constant along dims 1.. centralizes to zero: Adam leaves those params alone,
    while 1-D params (never centralized) move. Any element left out of a row's sum, or counted
    twice, leaves a residual that Adam's normalization turns into a full step."""
    backend, device = backend_device
    w = torch.randn(shape, device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    w0, b0 = w.detach().clone(), b.detach().clone()
    opt = FusedAdam([w, b], lr=0.1, gc=True, backend=backend)
    w.grad = torch.arange(4.0, device=device).view((4,) + (1,) * (len(shape) - 1)).expand(shape).contiguous()
    b.grad = torch.ones(4, device=device)
    g_before = w.grad.clone()
    opt.step()
    torch.testing.assert_close(w.detach(), w0, atol=1e-7, rtol=0)
    assert (b.detach() - b0).abs().min() > 0.09
    assert torch.equal(w.grad, g_before), "the user's grad must not be modified"


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gc_conv_only(backend_device):
    backend, device = backend_device
    lin = torch.randn(3, 5, device=device, requires_grad=True)
    lin0 = lin.detach().clone()
    opt = FusedAdam([lin], lr=0.1, gc=True, gc_conv_only=True, backend=backend)
    lin.grad = torch.ones(3, 5, device=device)
    opt.step()
    assert (lin.detach() - lin0).abs().min() > 0.09  # 2-D: not centralized with conv_only


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_lookahead_sync_every_k(backend_device):
    """alpha=0 pulls params back to their initial values on every k-th step; alpha=1 is plain Adam."""
    backend, device = backend_device
    ps = make_params(device)
    init = [p.detach().clone() for p in ps]
    opt = FusedAdam(ps, lr=0.1, lookahead_k=3, lookahead_alpha=0.0, backend=backend)
    run(opt, ps, steps=2)
    assert max_rel(ps, init) > 1e-3
    run(opt, ps, steps=1, start=2)
    assert max_rel(ps, init) == 0.0
    a = make_params(device)
    init = [p.detach().clone() for p in a]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    run(FusedAdam(a, lookahead_k=2, lookahead_alpha=1.0, backend=backend), a, steps=10)
    run(FusedAdam(b, backend=backend), b, steps=10)
    assert update_err(a, b, init) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_state_dict_resume_is_exact(backend_device):
    """Saved at step 16, between Lookahead syncs (k=6: 12 and 18) and after RAdam's rectification
    starts (step 6), resumed to step 30: equal to the run that never stopped."""
    backend, device = backend_device
    steps, stop = 30, 16
    a = make_params(device)
    b = [p.detach().clone().requires_grad_(True) for p in a]
    opt_a = Ranger(a, lr=1e-2, backend=backend)
    run(opt_a, a, steps=steps)
    opt_b = Ranger(b, lr=1e-2, backend=backend)
    run(opt_b, b, steps=stop)
    saved = copy.deepcopy(opt_b.state_dict())
    c = [p.detach().clone().requires_grad_(True) for p in b]
    opt_c = Ranger(c, lr=0.5, k=2, backend=backend)  # hyperparameters come from the state dict
    opt_c.load_state_dict(saved)
    run(opt_c, c, steps=steps - stop, start=stop)
    assert max_rel(c, a) == 0.0
    assert opt_c.state[c[0]]["step"].item() == steps


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_loading_a_live_optimizer_shares_no_state(backend_device):
    """torch's loader keeps the saved tensors: loaded from a live optimizer's state_dict() (no
    copy), both go on as two runs that never stopped, each stepping its own counter."""
    backend, device = backend_device
    a = make_params(device)
    b = [p.detach().clone().requires_grad_(True) for p in a]
    opt_a = Ranger(a, lr=1e-2, ema_decay=0.9, backend=backend)
    run(opt_a, a, steps=8)
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)
    opt_b = Ranger(b, lr=1e-2, ema_decay=0.9, backend=backend)
    opt_b.load_state_dict(opt_a.state_dict())
    mine = {id(v) for st in opt_a.state.values() for v in st.values() if isinstance(v, torch.Tensor)}
    assert not mine & {id(v) for st in opt_b.state.values() for v in st.values() if isinstance(v, torch.Tensor)}
    run(opt_a, a, steps=8, start=8)
    run(opt_b, b, steps=8, start=8)
    assert max_rel(b, a) == 0.0
    assert opt_a.state[a[0]]["step"].item() == opt_b.state[b[0]]["step"].item() == 16


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_loads_torch_adamw_state(backend_device):
    backend, device = backend_device
    a = make_params(device)
    b = [p.detach().clone().requires_grad_(True) for p in a]
    torch_opt = torch.optim.AdamW(a, lr=2e-3)
    run(torch_opt, a, steps=30)
    ours = FusedAdamW(b, backend=backend)
    run(torch.optim.AdamW(b, lr=2e-3), b, steps=30)
    mid = [p.detach().clone() for p in a]
    ours.load_state_dict(copy.deepcopy(torch_opt.state_dict()))  # as if saved to disk
    run(torch_opt, a, steps=30, start=30)
    run(ours, b, steps=30, start=30)
    assert update_err(b, a, mid) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_found_inf_changes_nothing(backend_device):
    backend, device = backend_device
    ps = make_params(device)
    opt = Ranger(ps, backend=backend)
    run(opt, ps, steps=3)
    before = copy.deepcopy(opt.state_dict())
    params_before = [p.detach().clone() for p in ps]
    for p, g in zip(ps, grads_for(3, ps)):
        p.grad = g
    opt.found_inf = torch.ones((), device=device)
    opt.grad_scale = torch.full((), 1024.0, device=device)
    opt.step()
    assert max_rel(ps, params_before) == 0.0
    after = opt.state_dict()
    for i, st in before["state"].items():
        for key, value in st.items():
            assert torch.equal(after["state"][i][key], value), key


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_grad_scale_is_divided_out(backend_device):
    """Gradients scaled by 512 and stepped with grad_scale=512 move the params exactly as the
    unscaled ones. The update depends on the gradients' scale here (L2 decay adds wd * p to
    1e-8..1e-4 gradients, eps = 1e-8 is their size), so a step that kept the scale moves the
    params elsewhere: checked too, so the comparison can fail."""
    backend, device = backend_device
    a = make_params(device)
    init = [p.detach().clone() for p in a]
    b, c = ([p.detach().clone().requires_grad_(True) for p in a] for _ in range(2))
    opt_a, opt_b, opt_c = (FusedAdam(ps, weight_decay=1e-3, backend=backend) for ps in (a, b, c))
    for i in range(5):
        gs = grads_for(i, a)
        for p, q, r, g in zip(a, b, c, gs):
            p.grad, q.grad, r.grad = g * 512.0, g.clone(), g * 512.0
        opt_a.grad_scale, opt_a.found_inf = torch.full((), 512.0, device=device), torch.zeros((), device=device)
        opt_a.step()
        opt_b.step()
        opt_c.step()
    assert update_err(a, b, init) <= UPDATE_TOL
    assert update_err(c, b, init) > 0.1


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_per_group_hyperparameters(backend_device):
    backend, device = backend_device
    a, b = make_params(device), make_params(device)
    ra, rb = [p.detach().clone().requires_grad_(True) for p in a], [p.detach().clone().requires_grad_(True) for p in b]
    ours = FusedAdamW([{"params": a}, {"params": b, "lr": 1e-2, "weight_decay": 0.0, "betas": (0.8, 0.99)}],
                      backend=backend)
    theirs = torch.optim.AdamW([{"params": ra}, {"params": rb, "lr": 1e-2, "weight_decay": 0.0, "betas": (0.8, 0.99)}])
    init = [p.detach().clone() for p in a + b]
    for i in range(20):
        for p, r, g in zip(a + b, ra + rb, grads_for(i, a + b)):
            p.grad, r.grad = g, g.clone()
        ours.step()
        theirs.step()
    assert update_err(a + b, ra + rb, init) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_params_without_grad_are_skipped(backend_device):
    backend, device = backend_device
    ps = make_params(device)
    frozen = ps[0].detach().clone()
    opt = Ranger(ps, backend=backend)
    for p, g in zip(ps[1:], grads_for(0, ps[1:])):
        p.grad = g
    opt.step()
    assert torch.equal(ps[0].detach(), frozen) and ps[0] not in opt.state


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_slow_weights_swap(backend_device):
    backend, device = backend_device
    ps = make_params(device)
    opt = Ranger(ps, k=4, backend=backend)
    run(opt, ps, steps=6)
    fast = [p.detach().clone() for p in ps]
    buffers = [opt.state[p]["slow_buffer"].clone() for p in ps]
    with opt.slow_weights():
        slow = [p.detach().clone() for p in ps]
        assert all(torch.equal(s, buf) for s, buf in zip(slow, buffers))
    assert max_rel(ps, fast) == 0.0
    assert max_rel(slow, fast) > 0  # steps 5-6 moved the fast weights away from the step-4 sync


def param_ulps(actual, expected, dtype):
    """|actual - expected| per element in units of the param dtype's ulp at |expected|."""
    e = expected.detach().double()
    ulp = torch.finfo(dtype).eps * torch.exp2(torch.floor(torch.log2(e.abs().clamp_min(torch.finfo(dtype).tiny))))
    return (actual.detach().double() - e).abs() / ulp


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_params_track_fp32(backend_device, dtype):
    """bf16/fp16 params with fp32 state: each step is the fp32 math rounded once to the param
    dtype (the reference's rule). Over 20 steps (rectification at 6, syncs at 4, 8, ...) every
    element stays within 2 param ulps of the reference run in the same dtype, while the
    reference moved the median element by more than 8 ulps: a step that rounds twice, truncates,
    or never writes the params fails. Gradients of 1e-3, far above eps: with 1e-8 ones the
    update (1e-3 lr) is below half an ulp and bf16 params rightly never move."""
    backend, device = backend_device
    ps = [(0.02 * p.detach()).to(dtype).requires_grad_(True) for p in make_params(device)]
    opt, init, ref = side_by_side(ps, backend, 20, k=4, weight_decay=0.1, scales=[1e-3])
    assert all(opt.state[p]["exp_avg"].dtype == torch.float32 for p in ps)
    moved = torch.cat([param_ulps(r, i, dtype).flatten() for r, i in zip(ref, init)])
    assert moved.median() > 8
    worst = max(param_ulps(p, r, dtype).max().item() for p, r in zip(ps, ref))
    assert worst <= 2, f"{worst} ulps from the reference"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_centralize_gradients_(dtype):
    """Against the row means written out element by element in fp64 (not the reference's
    ``centralize``, which the function calls): each output channel's gradient loses its own
    mean; 1-D gradients, and 2-D ones with conv_only, are left bit-identical."""
    w = torch.randn(4, 3, 2, 2, dtype=dtype, requires_grad=True)
    b = torch.randn(4, dtype=dtype, requires_grad=True)
    w.grad = (torch.randn(4, 3, 2, 2) + torch.arange(4.0).view(4, 1, 1, 1) * 10).to(dtype)
    b.grad = torch.randn(4, dtype=dtype)
    g64 = w.grad.double()
    expected = torch.stack([row - sum(row.flatten().tolist()) / row.numel() for row in g64])
    b_grad = b.grad.clone()
    centralize_gradients_([w, b])
    # Per element: the mean of n fp32 terms and the subtraction err by at most (n + 1) fp32 units
    # of roundoff of the row's largest term; a bf16 result is that fp32 value rounded once (half
    # a bf16 ulp at the element). A bound of the row's terms, not of the element, because the
    # element is a difference of terms up to 30x larger (rows offset by 10 i).
    n = g64[0].numel()
    terms = g64.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    bound = (n + 1) * 2.0 ** -24 * terms
    if dtype != torch.float32:
        bound = bound + 0.5 * ulp(expected, dtype)
    err = (w.grad.double() - expected).abs()
    assert (err <= bound).all(), (err / bound).max()
    assert torch.equal(b.grad, b_grad)
    lin = torch.randn(3, 5, dtype=dtype)
    lin_before = lin.clone()
    centralize_gradients_(lin, conv_only=True)  # a gradient tensor given directly
    assert torch.equal(lin, lin_before)
    centralize_gradients_(lin)
    assert not torch.equal(lin, lin_before)


class TestBadInput:
    def p(self):
        return [torch.randn(3, 3, requires_grad=True)]

    @pytest.mark.parametrize("kwargs,words", [
        ({"lr": -1.0}, ["lr"]), ({"betas": (1.0, 0.999)}, ["betas[0]"]), ({"betas": (0.9, -0.1)}, ["betas[1]"]),
        ({"eps": -1e-8}, ["eps"]), ({"weight_decay": -0.1}, ["weight_decay"]), ({"k": 0}, ["k"]),
        ({"alpha": 1.5}, ["alpha"]), ({"k": 2.5}, ["k"]),
    ])
    def test_bad_hyperparameters(self, kwargs, words):
        expect_error(ValueError, lambda: Ranger(self.p(), **kwargs), *words)

    def test_bad_hyperparameter_in_added_group(self):
        opt = FusedAdam(self.p())
        expect_error(ValueError, lambda: opt.add_param_group({"params": self.p(), "lr": -0.5}), "lr")

    def test_non_float_params(self):
        expect_error(TypeError, lambda: FusedAdam([torch.ones(3, dtype=torch.int64)]), "params", "int64")

    def test_mixed_devices_in_one_group(self):
        ps = [torch.randn(3, requires_grad=True), torch.randn(3, device="meta", requires_grad=True)]
        expect_error(ValueError, lambda: FusedAdam(ps), "several devices", "meta", "cpu")

    def test_sparse_grad(self):
        p = torch.randn(4, 3, requires_grad=True)
        opt = FusedAdam([p])
        p.grad = torch.randn(4, 3).to_sparse()
        expect_error(RuntimeError, opt.step, "sparse")

    def test_unknown_backend(self):
        expect_error(ValueError, lambda: Ranger(self.p(), backend="tpu"), "tpu")

    @pytest.mark.parametrize("cls", [Ranger, FusedAdam, FusedAdamW, FusedRAdam])
    def test_param_listed_twice(self, cls):
        """torch warns, then steps such a param twice per step; refused here, naming positions.
        Across groups (and through add_param_group) torch's own error."""
        w, b = torch.randn(3, 3, requires_grad=True), torch.randn(3, requires_grad=True)
        expect_error(ValueError, lambda: cls([w, b, w]), "position 2", "position 0", "once")
        expect_error(ValueError, lambda: cls([{"params": [w]}, {"params": [b, w]}]), "more than one")
        opt = cls([w])
        expect_error(ValueError, lambda: opt.add_param_group({"params": [b, w]}), "more than one")
        assert len(opt.param_groups) == 1


@pytest.mark.parametrize("cls", [Ranger, FusedAdamW])
def test_named_parameters_numpy_scalars_and_torch_flags(cls):
    """named_parameters() as torch takes it (names kept as param_names), numpy scalars as
    hyperparameters, foreach=/fused= accepted: the steps equal the plain construction's."""
    import numpy as np
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    opt = cls(model.named_parameters(), lr=np.float32(0.01), weight_decay=np.float64(0.1), foreach=True, fused=None)
    ref = cls(twin.parameters(), lr=float(np.float32(0.01)), weight_decay=0.1)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    for _ in range(3):
        x = torch.randn(5, 4)
        for m, o in ((model, opt), (twin, ref)):
            m(x).square().sum().backward()
            o.step()
            o.zero_grad()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


@pytest.mark.parametrize("copy_fn", ["deepcopy", "pickle"])
def test_copied_optimizer_steps_as_the_original(copy_fn):
    """A deep copy or a pickle round trip of an optimizer (with its model) keeps the options
    outside torch's state (clipping, EMA, backend) and steps exactly as the original."""
    import copy
    import pickle
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = Ranger(model.parameters(), lr=0.01, max_grad_norm=0.5, ema_decay=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    pair = (model, opt)
    model2, opt2 = copy.deepcopy(pair) if copy_fn == "deepcopy" else pickle.loads(pickle.dumps(pair))
    assert opt2.max_grad_norm == 0.5 and opt2.extras == opt.extras
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters()))
    assert all(torch.equal(opt.state[p]["ema"], opt2.state[q]["ema"])
               for p, q in zip(model.parameters(), model2.parameters()))


def test_step_inside_a_weight_swap_is_refused():
    model = torch.nn.Linear(4, 3)
    opt = Ranger(model.parameters(), ema_decay=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    before = [p.detach().clone() for p in model.parameters()]
    with opt.ema_weights():
        expect_error(RuntimeError, opt.step, "ema_weights", "lost")
        expect_error(RuntimeError, lambda: opt.slow_weights().__enter__(), "ema_weights")
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_slow_weights_in_param_dtype(backend_device):
    backend, device = backend_device
    ps = [p.detach().to(torch.bfloat16).requires_grad_(True) for p in make_params(device)]
    ref = [p.detach().clone().requires_grad_(True) for p in ps]
    opt = Ranger(ps, lr=1e-2, slow_in_param_dtype=True, backend=backend)
    run(opt, ps, steps=13)
    assert all(opt.state[p]["slow_buffer"].dtype == torch.bfloat16 for p in ps)
    run(Ranger(ref, lr=1e-2, slow_in_param_dtype=True, backend="torch"), ref, steps=13)
    assert max(param_ulps(p, r, torch.bfloat16).max().item() for p, r in zip(ps, ref)) <= 2


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_channels_last_param_with_contiguous_grad(backend_device):
    backend, device = backend_device
    p = torch.randn(6, 4, 3, 3, device=device).to(memory_format=torch.channels_last).requires_grad_(True)
    r = p.detach().clone().contiguous().requires_grad_(True)
    init = r.detach().clone()
    opt, ref = Ranger([p], k=2, backend=backend), Ranger([r], k=2, backend="torch")
    for i in range(5):
        g = grads_for(i, [r])[0]
        p.grad, r.grad = g.contiguous(), g.clone()
        opt.step()
        ref.step()
    assert p.is_contiguous(memory_format=torch.channels_last)
    assert update_err([p], [r], [init]) <= UPDATE_TOL


@pytest.mark.skipif(not __import__("tricks_ext").HAS_C, reason="C++ extension not built")
def test_opcheck_fused_step():
    from helpers import run_opcheck
    from tricks_ext.ops.optim import CHUNK, Plan
    ps = [torch.randn(4, 3, 3, 3), torch.randn(5)]
    m, v, slow, ema = ([torch.rand_like(p) for p in ps] for _ in range(4))
    steps = [torch.tensor(7.0), torch.tensor(7.0)]
    grads = [torch.randn_like(p) for p in ps]
    plan = Plan(ps, m, v, slow, ema, steps, 2, CHUNK["cpu"], agc=[True, True], with_ptrs=False)
    plan.set_grads(grads)
    run_opcheck(torch.ops.tricks_ext.optim_step_,
                (ps, grads, m, v, slow, ema, steps, plan.work, plan.ptrs, None, None,
                 torch.tensor(1e-3, dtype=torch.float64), float("nan"), 0.9, 0.999, 1e-8, 0.01, True, 0.5, 7, True,
                 False, float("inf"), 0.01, 1e-3, 0.999, 0.0, 0, 1.0, 2 / 3, True))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gc_rows_longer_than_on_chip(backend_device):
    """Rows past ROW_MAX take the two-level GC path on the device backends; same numbers."""
    from tricks_ext.ops.optim import ROW_MAX
    backend, device = backend_device
    ps = [torch.randn(2, ROW_MAX + 5, device=device, requires_grad=True),
          torch.randn(3, 4, device=device, requires_grad=True)]
    _, init, ref = side_by_side(ps, backend, 3, k=2)
    assert update_err(ps, ref, init) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_buckets_cross_every_chunk_and_task(backend_device, two_threads):
    """One bucket larger than the backend's chunk (CHUNK) and, on CPU, than two parallel tasks
    (kTask), on two threads: a GC conv weight (rows never split; CPU tasks are cut between rows,
    so on CPU it has enough rows for two tasks: one device program per row makes that size
    minutes long in the interpreter and the emulator, where it is 9 rows), a 1-D tensor without
    GC over three chunks and not a multiple of one, small tensors between them; 6 steps (the
    Lookahead sync and the first rectified step)."""
    from tricks_ext.ops.optim import CHUNK
    backend, device = backend_device
    task = kernel_constant("optim/cpu.cpp", "kTask")
    chunk = CHUNK[backend]
    rows = (2 * task) // 36 + 7 if backend == "cpu" else 9
    ps = [torch.randn(rows, 4, 3, 3, device=device), torch.randn(3 * chunk + 17, device=device),
          torch.randn(5, 7, device=device), torch.randn(6, 2, 3, 3, device=device)]
    total = sum(p.numel() for p in ps)
    assert total > 3 * chunk and (backend != "cpu" or (total > 2 * task and ps[0].numel() > task))
    ps = [p.requires_grad_(True) for p in ps]
    _, init, ref = side_by_side(ps, backend, 6, weight_decay=0.01)
    assert update_err(ps, ref, init) <= UPDATE_TOL


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_with_grad_scaler(backend_device):
    """torch.amp.GradScaler drives the step through grad_scale/found_inf exactly like the
    unscaled run; an inf gradient skips the step (and the scaler backs off)."""
    backend, device = backend_device
    if not hasattr(torch.amp, "GradScaler"):
        pytest.skip("torch.amp.GradScaler missing")
    a = make_params(device)
    init = [p.detach().clone() for p in a]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    opt_a, opt_b = Ranger(a, backend=backend), Ranger(b, backend=backend)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 10)
    for i in range(8):
        gs = grads_for(i, a)
        if i == 4:
            gs[0] = gs[0].clone()
            gs[0].view(-1)[3] = float("inf")
        loss_a = sum((p * g).sum() for p, g in zip(a, gs))
        scaler.scale(loss_a).backward()
        scaler.step(opt_a)
        scaler.update()
        for p in a:
            p.grad = None
        if i != 4:
            for p, g in zip(b, gs):
                p.grad = g
            opt_b.step()
    assert scaler.get_scale() == 2.0 ** 9  # one backoff
    assert opt_a.state[a[1]]["step"].item() == 7
    assert update_err(a, b, init) <= UPDATE_TOL
