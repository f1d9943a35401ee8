"""tricks_ext.recipe: schedules against torch / fastai / Hugging Face formulas, the plateau
controller against torch's ReduceLROnPlateau, Keras' rule and its own reference, the loss meter,
and a training loop that reads nothing on the host."""
import math

import pytest
import torch

from helpers import HostRead, expect_error, host_reads_raise
from tricks_ext import _backend
from tricks_ext.optim import FusedAdamW, Ranger
from tricks_ext.recipe import WSD, FlatCos, LossMeter, OneCycle, PlateauController, WarmupCosine, \
    fluctuation_reference


def _opt(lr=1e-2, groups=1, tensor_lr=False):
    params = [torch.nn.Parameter(torch.randn(3)) for _ in range(groups)]
    if tensor_lr:
        return FusedAdamW([{"params": [p], "lr": torch.tensor(lr * (i + 1), dtype=torch.float64)}
                           for i, p in enumerate(params)])
    return FusedAdamW([{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)])


def _lrs(opt, sched, steps):
    out = []
    for _ in range(steps):
        out.append([float(g["lr"]) for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_one_cycle_equals_torch(tensor_lr):
    ours = _opt(groups=2, tensor_lr=tensor_lr)
    theirs = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.randn(3))]} for _ in range(2)], lr=1e-2)
    kw = dict(max_lr=[0.1, 0.3], total_steps=50, pct_start=0.25, three_phase=True)
    a = OneCycle(ours, **kw)
    b = torch.optim.lr_scheduler.OneCycleLR(theirs, **kw)
    for _ in range(50):
        assert [float(g["lr"]) for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
        assert [g["betas"][0] for g in ours.param_groups] == [g["betas"][0] for g in theirs.param_groups]
        ours.step(), theirs.step(), a.step(), b.step()


def _fastai_flat_cos(lr, pos, pct_start, div_final):
    """fastai's combine_scheds([pct, 1 - pct], [SchedNo(lr, lr), SchedCos(lr, lr / div_final)])
    in float64 (fastai evaluates the phase position in float32 tensors)."""
    if pos >= 1.0:
        return lr / div_final
    if pos < pct_start:
        return lr
    p = (pos - pct_start) / (1 - pct_start)
    start, end = lr, lr / div_final
    return start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
def test_flat_cos_equals_fastai(tensor_lr):
    opt = _opt(groups=2, tensor_lr=tensor_lr)
    got = _lrs(opt, FlatCos(opt, total_steps=40, pct_start=0.6), 41)
    for t, row in enumerate(got):
        for g, lr in enumerate(row):
            assert abs(lr - _fastai_flat_cos(1e-2 * (g + 1), t / 40, 0.6, 1e5)) <= 1e-12 * 1e-2


def test_warmup_cosine_equals_hugging_face():
    def hf(step, warmup, total):  # transformers' get_cosine_schedule_with_warmup lr_lambda
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    opt = _opt()
    for t, (lr,) in enumerate(_lrs(opt, WarmupCosine(opt, 5, 30), 31)):
        assert abs(lr - 1e-2 * hf(t, 5, 30)) <= 1e-12 * 1e-2


@pytest.mark.parametrize("decay", WSD.DECAYS)
def test_wsd(decay):
    opt = _opt()
    lrs = [r[0] for r in _lrs(opt, WSD(opt, 4, 6, 10, min_lr_ratio=0.1, decay=decay), 24)]
    assert lrs[:5] == pytest.approx([0.0, 2.5e-3, 5e-3, 7.5e-3, 1e-2], abs=1e-15)
    assert lrs[4:11] == [1e-2] * 7
    assert lrs[20:] == pytest.approx([1e-3] * 4, abs=1e-15)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_schedule_errors():
    opt = _opt()
    expect_error(ValueError, lambda: FlatCos(opt, total_steps=0), "total_steps")
    expect_error(ValueError, lambda: WarmupCosine(opt, 10, 5), "warmup_steps")
    expect_error(ValueError, lambda: WSD(opt, 1, 1, 1, decay="exp"), "decay")


# ---- plateau -------------------------------------------------------------------------------

def _noisy(kind, n, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64)
    base = 2.0 / (1.0 + 0.05 * t) if kind == "falling" else torch.full((n,), 0.5, dtype=torch.float64)
    return ((base + 0.02 * noise) * scale).tolist()


def _decisions(controller, losses):
    return [bool(controller.step(torch.tensor(x, dtype=torch.float64))) for x in losses]


def test_fluctuation_never_cuts_a_falling_noisy_loss():
    for seed in range(5):
        opt = _opt()
        cuts = _decisions(PlateauController(opt), _noisy("falling", 120, seed))
        assert not any(cuts), seed
        assert float(opt.param_groups[0]["lr"]) == 1e-2


def test_fluctuation_cuts_a_flat_noisy_loss_within_two_windows():
    for seed in range(5):
        opt = _opt(groups=2)
        cuts = _decisions(PlateauController(opt), _noisy("flat", 33, seed))
        assert any(cuts[:33]), seed
        lrs = [float(g["lr"]) for g in opt.param_groups]
        assert lrs[1] == 2 * lrs[0] and lrs[0] < 1e-2  # both groups cut, ratio kept


@pytest.mark.parametrize("kind", ["falling", "flat"])
def test_fluctuation_equals_its_reference_and_is_scale_free(kind):
    losses = _noisy(kind, 200, 3) + _noisy("flat", 200, 4)
    ref = fluctuation_reference(losses)
    assert _decisions(PlateauController(_opt()), losses) == ref
    assert _decisions(PlateauController(_opt()), [100 * x for x in losses]) == ref
    assert sum(ref) >= 2  # it cut, and the patience grew between the cuts


@pytest.mark.parametrize("kw", [dict(), dict(metric_mode="max", factor=0.5, patience=2, cooldown=3),
                                dict(threshold_mode="abs", threshold=0.01, patience=0, min_lr=2e-4),
                                dict(patience=3, cooldown=1, min_lr=[1e-4, 5e-3], eps=1e-3)])
def test_torch_mode_equals_reduce_lr_on_plateau(kw):
    ours = _opt(groups=2)
    theirs = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-2 * (i + 1)}
                              for i in range(2)], lr=1.0)
    torch_kw = dict(kw)
    if "metric_mode" in torch_kw:
        torch_kw["mode"] = torch_kw.pop("metric_mode")
    ctl = PlateauController(ours, "torch", **kw)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **torch_kw)
    gen = torch.Generator().manual_seed(1)
    metric = (torch.rand(150, generator=gen, dtype=torch.float64) + torch.linspace(1, 0.8, 150,
                                                                                   dtype=torch.float64)).tolist()
    for x in metric:
        ctl.step(torch.tensor(x, dtype=torch.float64))
        ref.step(x)
        assert [float(g["lr"]) for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
    assert theirs.param_groups[0]["lr"] < 1e-2  # it did cut


def _keras_reference(losses, factor=0.1, patience=10, min_delta=1e-4, cooldown=0, min_lr=0.0, lr=1e-2):
    """Keras' ReduceLROnPlateau.on_epoch_end (mode min), in Python floats."""
    best, wait, cooldown_counter, out = math.inf, 0, 0, []
    for x in losses:
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        if x < best - min_delta:
            best, wait = x, 0
        elif not cooldown_counter > 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr = max(lr * factor, min_lr)
                cooldown_counter, wait = cooldown, 0
        out.append(lr)
    return out


@pytest.mark.parametrize("kw", [dict(), dict(patience=3, cooldown=2, factor=0.5, min_lr=1e-4, min_delta=0.01)])
def test_keras_mode_equals_keras_rule(kw):
    opt = _opt()
    ctl = PlateauController(opt, "keras", **kw)
    losses = _noisy("falling", 60, 2) + _noisy("flat", 90, 5)
    got = []
    for x in losses:
        ctl.step(torch.tensor(x, dtype=torch.float64))
        got.append(float(opt.param_groups[0]["lr"]))
    assert got == _keras_reference(losses, **kw)
    assert got[-1] < 1e-2


def test_plateau_state_dict_resumes_exactly():
    losses = _noisy("flat", 80, 7)
    full_opt = _opt()
    full = _decisions(PlateauController(full_opt), losses)
    opt = _opt()
    first = PlateauController(opt)
    head = _decisions(first, losses[:37])
    state = first.state_dict()
    opt2 = _opt()
    second = PlateauController(opt2)
    second.load_state_dict(state)
    assert head + _decisions(second, losses[37:]) == full
    assert float(opt2.param_groups[0]["lr"]) == float(full_opt.param_groups[0]["lr"])


def test_plateau_errors():
    opt = _opt()
    expect_error(ValueError, lambda: PlateauController(opt, "sometimes"), "mode")
    expect_error(ValueError, lambda: PlateauController(opt, factor=1.0), "factor")
    expect_error(ValueError, lambda: PlateauController(opt, min_lr=[0.0, 0.0]), "min_lr")


# ---- meter and the no-sync loop --------------------------------------------------------------

def test_loss_meter():
    meter = LossMeter()
    assert math.isnan(float(meter.mean()))
    meter.update(torch.tensor(2.0), 3)
    meter.update(torch.tensor(4.0, dtype=torch.float16), torch.tensor(1))
    assert float(meter.mean()) == (2.0 * 3 + 4.0) / 4 and meter.sum.dtype == torch.float64
    meter.reset()
    meter.update(torch.tensor(1.5))
    assert float(meter.mean()) == 1.5
    expect_error(ValueError, lambda: meter.update(torch.ones(2)), "one-element")


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_a_training_loop_reads_nothing_on_the_host(backend):
    """Schedule + plateau controller + fused step (clipping, GradScaler-style scale, grad
    divisor, EMA) + loss meter, 30 iterations, with every host read raising."""
    if _backend.unavailable_reason(backend, torch.device("cpu"), "optim_step") is not None:
        pytest.skip(f"{backend} backend unavailable here")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    opt = Ranger(model.parameters(), lr=torch.tensor(1e-2, dtype=torch.float64), max_grad_norm=1.0, ema_decay=0.9,
                 backend=backend)
    sched = WarmupCosine(opt, 5, 30)  # reads the peak once, at construction
    ctl = PlateauController(opt, patience=4)
    meter = LossMeter()
    scale = torch.tensor(8.0)
    with host_reads_raise(), pytest.raises(HostRead):
        float(scale)
    with host_reads_raise():
        for _ in range(30):
            loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
            (loss * scale).backward()
            opt.grad_scale, opt.found_inf = scale, torch.zeros(())  # as GradScaler.step hands them over
            opt.step(grad_divisor=torch.tensor(16.0))
            opt.zero_grad()
            sched.step()
            ctl.step(loss / 16)
            meter.update(loss / 16)
    assert 0.0 < float(meter.mean()) < 2.0
    assert float(opt.param_groups[0]["lr"]) < 1e-2


@pytest.mark.gpu
def test_a_training_iteration_replays_as_one_cuda_graph():
    """Step (tensor LR, clipping, EMA) + schedule-free LR change + controller + meter captured
    once in a CUDA graph and replayed: the replays equal the same iterations run eagerly, and
    an LR written in place between replays takes effect."""
    def setup():
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 10).cuda()
        x, y = torch.randn(32, 64, device="cuda"), torch.randint(0, 10, (32,), device="cuda")
        opt = FusedAdamW(model.parameters(), lr=torch.tensor(1e-2, dtype=torch.float64, device="cuda"),
                         max_grad_norm=1.0, ema_decay=0.9, backend="cuda")
        return model, x, y, opt, PlateauController(opt, patience=4), LossMeter()

    def iteration(model, x, y, opt, ctl, meter):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        ctl.step(loss.detach())
        meter.update(loss.detach())

    eager = setup()
    for i in range(8):
        if i == 5:
            eager[3].param_groups[0]["lr"].fill_(3e-3)
        iteration(*eager)
        eager[3].zero_grad(set_to_none=False)

    model, x, y, opt, ctl, meter = graphed = setup()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up outside the graph: plans, state, caches
            iteration(*graphed)
            opt.zero_grad(set_to_none=False)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        iteration(*graphed)
        opt.zero_grad(set_to_none=False)
    for i in range(3, 8):
        if i == 5:
            opt.param_groups[0]["lr"].fill_(3e-3)
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager[0].parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
