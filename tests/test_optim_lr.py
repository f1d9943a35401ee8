"""The LR as a device tensor and the grad divisor, on every backend of optim_step: a tensor LR
gives the float LR's trajectory bit for bit and an in-place change takes effect at the next
step; step(grad_divisor=) makes micro-batch accumulation over uneven token counts equal one
batch, with clipping and a grad scale."""
import copy

import pytest
import torch

from helpers import backend_params, expect_error
from test_optim import grads_for, make_params
from tricks_ext.optim import FusedAdam, FusedAdamW, Ranger

OP = "optim_step"
ALL_BACKENDS = backend_params(OP, torch_backend=True)
STEPS = 12

OPTIMIZERS = [
    ("adamw", lambda ps, lr, be: FusedAdamW(ps, lr=lr, weight_decay=0.1, backend=be)),
    ("adam-l2", lambda ps, lr, be: FusedAdam(ps, lr=lr, weight_decay=0.1, backend=be)),
    ("ranger-ema", lambda ps, lr, be: Ranger(ps, lr=lr, k=3, weight_decay=0.01, ema_decay=0.9, backend=be)),
]


def trajectory(backend, device, make, lrs, tensor_lr=None):
    """Params after len(lrs) steps, the LR set to lrs[i] before step i: as a float in the
    group, or (tensor_lr: its dtype) written in place into a tensor LR."""
    torch.manual_seed(0)
    params = make_params(device)
    lr = lrs[0] if tensor_lr is None else torch.tensor(lrs[0], dtype=tensor_lr, device=device)
    opt = make(params, lr, backend)
    for i, value in enumerate(lrs):
        if tensor_lr is None:
            opt.param_groups[0]["lr"] = value
        else:
            lr.fill_(value)
        for p, g in zip(params, grads_for(i, params)):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
@pytest.mark.parametrize("name,make", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_tensor_lr_changed_in_place_equals_float_lr(backend_device, name, make):
    backend, device = backend_device
    lrs = [1e-2 * (0.7 ** i) for i in range(STEPS)]
    expected = trajectory(backend, device, make, lrs)
    for a, b in zip(trajectory(backend, device, make, lrs, torch.float64), expected):
        assert torch.equal(a, b), name
    # a float32 tensor LR is its float32 value
    lrs32 = [float(torch.tensor(v, dtype=torch.float32)) for v in lrs]
    for a, b in zip(trajectory(backend, device, make, lrs32, torch.float32),
                    trajectory(backend, device, make, lrs32)):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_torch_schedulers_drive_a_tensor_lr(backend_device):
    """torch's LRScheduler fills a tensor LR in place (no host read of it), so its schedules
    run with the LR on the device; the trajectory is the float LR's."""
    backend, device = backend_device
    runs = []
    for lr in (1e-2, torch.tensor(1e-2, dtype=torch.float64, device=device)):
        torch.manual_seed(0)
        params = make_params(device)
        opt = FusedAdamW(params, lr=lr, backend=backend)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-2, total_steps=STEPS, cycle_momentum=False)
        for i in range(STEPS):
            for p, g in zip(params, grads_for(i, params)):
                p.grad = g
            opt.step()
            sched.step()
        assert opt.param_groups[0]["lr"] is lr or not isinstance(lr, torch.Tensor)
        runs.append(params)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_tensor_lr_errors():
    p = torch.nn.Parameter(torch.zeros(3))
    expect_error(ValueError, lambda: FusedAdam([p], lr=torch.tensor([1e-3, 2e-3])), "lr", "one floating value")
    expect_error(ValueError, lambda: FusedAdam([p], lr=torch.tensor(1, dtype=torch.int64)), "lr", "int64")
    expect_error(ValueError, lambda: FusedAdam([p], lr=torch.tensor(1e-3, requires_grad=True)), "lr", "requires_grad")
    opt = FusedAdam([p])
    p.grad = torch.ones(3)
    expect_error(ValueError, lambda: opt.step(grad_divisor=0.0), "grad_divisor", "> 0")
    expect_error(ValueError, lambda: opt.step(grad_divisor=torch.ones(2)), "grad_divisor", "one number")


def _model(device):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).to(device, torch.float64)


def _per_token_loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y, reduction="sum")


@pytest.mark.parametrize("backend_device", [p for p in ALL_BACKENDS if p.values[0][0] != "triton"])
@pytest.mark.parametrize("scaler", [False, True], ids=["plain", "grad-scale"])
def test_grad_divisor_makes_uneven_micro_batches_one_batch(backend_device, scaler):
    """Micro-batches of 3, 7 and 2 tokens, each loss summed over its tokens, backward each,
    then step(grad_divisor=12 as a device tensor) == one batch of 12 with the mean loss, with
    max_grad_norm clipping (and a grad scale of 1024 handed over as GradScaler does). fp64
    grads, which the two sum in another order; the bound is the step's float32 divisor (grad
    scale over the clip coefficient, as GradScaler's scale is float32): the two runs' norms
    agree to ~1e-16 and round to float32 each, a relative 2^-24 on the grads each step, which
    Adam passes on at most linearly (m / sqrt(v) has it once): 3 steps x lr x 2^-23."""
    backend, device = backend_device
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(12, 6, generator=gen, dtype=torch.float64).to(device)
    y = torch.randint(0, 3, (12,), generator=gen).to(device)
    sizes = (3, 7, 2)
    results, norms = [], []
    for accumulate in (False, True):
        model = _model(device)
        opt = FusedAdamW(model.parameters(), lr=1e-2, max_grad_norm=0.05, backend=backend)
        scale = torch.tensor(1024.0, device=device) if scaler else None
        for step in range(3):
            if scaler:
                opt.grad_scale, opt.found_inf = scale, torch.zeros((), device=device)
            if accumulate:
                start = 0
                for n in sizes:
                    loss = _per_token_loss(model, x[start:start + n], y[start:start + n])
                    (loss * (1024.0 if scaler else 1.0)).backward()
                    start += n
                opt.step(grad_divisor=torch.tensor(12, device=device))
            else:
                loss = _per_token_loss(model, x, y) / 12
                (loss * (1024.0 if scaler else 1.0)).backward()
                opt.step()
            norms.append(opt.last_grad_norm.clone())
            opt.zero_grad()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=3 * 1e-2 * 2.0 ** -23)
    torch.testing.assert_close(torch.stack(norms[:3]), torch.stack(norms[3:]), rtol=2.0 ** -23, atol=0)
    assert float(norms[0]) > 0.05  # clipping acted


@pytest.mark.parametrize("backend_device", ALL_BACKENDS)
def test_grad_divisor_number_equals_tensor(backend_device):
    backend, device = backend_device
    outs = []
    for divisor in (4.0, torch.tensor(4.0, device=device)):
        torch.manual_seed(0)
        params = make_params(device)
        opt = FusedAdam(params, lr=1e-2, clip_value=1e-6, backend=backend)
        for i in range(4):
            for p, g in zip(params, grads_for(i, params)):
                p.grad = g * 4
            opt.step(grad_divisor=divisor)
        outs.append(params)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_a_copied_optimizer_keeps_its_tensor_lr():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = FusedAdam([p], lr=torch.tensor(1e-3, dtype=torch.float64))
    clone = copy.deepcopy(opt)
    assert isinstance(clone.param_groups[0]["lr"], torch.Tensor)
    state = opt.state_dict()
    other = FusedAdam([torch.nn.Parameter(torch.zeros(3))], lr=torch.tensor(5.0, dtype=torch.float64))
    other.load_state_dict(state)
    assert float(other.param_groups[0]["lr"]) == 1e-3
