"""recipe.lr_range_test against torch-lr-finder's range_test (the same LRs and smoothed losses to
the bit), the state it must leave as it found it, its host reads and its suggestions."""
import contextlib

import pytest
import torch

from helpers import HOST_READS, expect_error
from tricks_ext import nn as tnn
from tricks_ext.optim import FusedAdam, Ranger
from tricks_ext.recipe import lr_range_test

torch_lr_finder = pytest.importorskip("torch_lr_finder")


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long())


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), tnn.Dropout(0.2), torch.nn.Linear(16, 3))


def _loader(seed=0):
    return torch.utils.data.DataLoader(_data(seed=seed), batch_size=16, shuffle=True)


@pytest.mark.parametrize("optimizer", ["torch-adam", "fused-adam"])
@pytest.mark.parametrize("step_mode,end_lr,smooth_f", [("exp", 10.0, 0.05), ("linear", 0.5, 0.0)])
def test_equals_torch_lr_finder(optimizer, step_mode, end_lr, smooth_f):
    """Same model, optimizer, batches (a shuffled DataLoader, restarted when exhausted) and seed:
    the LRs and smoothed losses equal torch-lr-finder's history exactly, the early stop
    included (checked every 7 steps: the steps past it are dropped)."""
    make = torch.optim.Adam if optimizer == "torch-adam" else FusedAdam
    criterion = torch.nn.CrossEntropyLoss()
    histories = []
    for ours in (False, True):
        model = _model()
        opt = make(model.parameters(), lr=1e-3)
        torch.manual_seed(1)
        if ours:
            result = lr_range_test(model, opt, _loader(), criterion, start_lr=1e-5, end_lr=end_lr, num_iter=100,
                                   step_mode=step_mode, smooth_f=smooth_f, check_every=7)
            histories.append((result.lrs, result.losses))
        else:
            finder = torch_lr_finder.LRFinder(model, opt, criterion)
            finder.range_test(_loader(), start_lr=1e-5, end_lr=end_lr, num_iter=100, step_mode=step_mode,
                              smooth_f=smooth_f)
            histories.append((finder.history["lr"], finder.history["loss"]))
            matplotlib = pytest.importorskip("matplotlib")
            matplotlib.use("Agg")
            _ax, steepest = finder.plot(ax=matplotlib.pyplot.figure().gca(), suggest_lr=True)
    (lrs, losses), (our_lrs, our_losses) = histories
    assert our_lrs == lrs and our_losses == losses
    assert result.suggestion("steep") == steepest
    if step_mode == "exp":
        assert len(lrs) < 100  # Adam at LR 10 diverges: the early stop was exercised
        assert result.diverged and len(result.raw_losses) == len(lrs)


def _train(model, opt, scaler, loader, steps):
    it = iter(loader)
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        opt.zero_grad()
        scaler.scale(torch.nn.functional.cross_entropy(model(x), y)).backward()
        scaler.step(opt)
        scaler.update()


def _everything(model, opt, scaler):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state.update({f"grad.{i}": p.grad.clone() for i, p in enumerate(model.parameters()) if p.grad is not None})
    for i, st in enumerate(opt.state.values()):
        state.update({f"opt.{i}.{k}": v.clone() for k, v in st.items()})
    state["lr"] = opt.param_groups[0]["lr"].clone()
    state["scale"] = scaler.get_scale()
    state["rng"] = torch.get_rng_state()
    return state


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_leaves_everything_as_it_was():
    """Ranger with Lookahead, EMA and clipping, a tensor LR, a GradScaler and tricks_ext
    dropout, 5 steps in: after the test, the model, optimizer state, LR tensor (the same
    object), scaler and RNG are as before, and 20 more steps equal 20 steps without the test,
    bit for bit."""
    runs = []
    for with_test in (False, True):
        model = _model(seed=3)
        opt = Ranger(model.parameters(), lr=torch.tensor(3e-3, dtype=torch.float64), max_grad_norm=1.0,
                     ema_decay=0.9)
        lr = opt.param_groups[0]["lr"]
        scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=3)
        torch.manual_seed(5)
        loader = _loader(seed=2)
        _train(model, opt, scaler, loader, 5)
        model.eval()
        before = _everything(model, opt, scaler)
        if with_test:
            result = lr_range_test(model, opt, loader, torch.nn.functional.cross_entropy, num_iter=30, scaler=scaler)
            assert len(result) >= 10
            assert opt.param_groups[0]["lr"] is lr and not model.training
            _assert_same(_everything(model, opt, scaler), before)
        model.train()
        _train(model, opt, scaler, loader, 20)
        with opt.ema_weights():
            ema = [p.detach().clone() for p in model.parameters()]
        runs.append((_everything(model, opt, scaler), ema))
    _assert_same(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@contextlib.contextmanager
def _counting_reads():
    reads = []

    def counted(name, original):
        def read(self, *args, **kwargs):
            reads.append(name)
            return original(self, *args, **kwargs)
        return read
    with pytest.MonkeyPatch.context() as mp:
        for name in HOST_READS:
            mp.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
        yield reads


@pytest.mark.parametrize("check_every", [1, 10])
def test_host_reads(check_every):
    """One integer read per check_every steps, two lists at the end; nothing else (reads
    inside C++ are not seen)."""
    model = torch.nn.Linear(8, 3)
    opt = FusedAdam(model.parameters(), lr=torch.tensor(1e-3, dtype=torch.float64))
    batches = [tuple(t) for t in zip(torch.randn(30, 4, 8), torch.randint(0, 3, (30, 4)))]
    with _counting_reads() as reads:
        lr_range_test(model, opt, batches, torch.nn.functional.cross_entropy, num_iter=30, end_lr=1e-2,
                      check_every=check_every)
    assert sorted(reads) == sorted(["__int__"] * (30 // check_every + 1) + ["tolist"] * 2)


def test_suggestions():
    lrs = [10.0 ** (i / 10 - 7) for i in range(40)]
    losses = [3.0] * 12 + [3.0 - 0.1 * i for i in range(1, 21)] + [1.0 + 0.5 * i for i in range(8)]
    from tricks_ext.recipe.lr_finder import LRRangeTest
    result = LRRangeTest(lrs, losses, losses, False)
    # steepest: torch-lr-finder's np.gradient rule, fastai's valley and minimum/10
    import numpy as np
    trimmed = losses[10:-5]
    assert result.suggestion("steep") == lrs[10 + int(np.gradient(np.asarray(trimmed)).argmin())]
    assert result.suggestion("minimum") == lrs[31] / 10
    # the run of decreasing losses is indices 12..31 (20 points, found ending at 31): 2/3 down it
    valley = result.suggestion("valley")
    assert lrs[20] <= valley <= lrs[28]
    expect_error(ValueError, lambda: result.suggestion("best"), "steep, valley, minimum")
    expect_error(ValueError, lambda: LRRangeTest(lrs[:10], losses[:10], losses[:10], False).suggestion(),
                 "at least 17 steps")


def test_errors():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 2), torch.randn(4, 1))]
    mse = torch.nn.functional.mse_loss
    expect_error(ValueError, lambda: lr_range_test(model, opt, batches, mse, step_mode="cos"), "step_mode")
    expect_error(ValueError, lambda: lr_range_test(model, opt, batches, mse, num_iter=1), "num_iter")
    expect_error(ValueError, lambda: lr_range_test(model, opt, batches, mse, smooth_f=1.0), "smooth_f")
    expect_error(ValueError, lambda: lr_range_test(model, opt, batches, mse, start_lr=0.0), "start_lr")
    expect_error(ValueError, lambda: lr_range_test(model, opt, [], mse), "no batch")
    expect_error(TypeError, lambda: lr_range_test(model, model, batches, mse), "torch.optim.Optimizer")
    model.eval()
    expect_error(ValueError, lambda: lr_range_test(model, opt, batches, lambda out, y: (out - y) ** 2),
                 "one-element")
    assert not model.training  # restored after an error too
