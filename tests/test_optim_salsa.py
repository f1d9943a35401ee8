"""tricks_ext.optim.SALSA against statopt 0.2's SALSA (fp64, same seeds, thousands of steps: the
same switch, the same LR at every step, the same params), both switches (the loss's slope and
SASA's test), the manual mode, group ratios, state, errors and a loop that reads nothing on the
host."""
import contextlib
import io
import warnings

import pytest
import torch

from helpers import expect_error, host_reads_raise
from test_optim_sasa import _data, _net, resumed
from tricks_ext.optim import SALSA

KW = dict(lr=0.5, momentum=0.9, weight_decay=1e-4, gamma=0.05, drop_factor=10, significance=0.05, leak_ratio=4,
          minN_stats=100, testfreq=50)


def _train(net, opt, x, y, batches, switched):
    """Steps with statopt's closure (the minibatch loss, no grad); the first group's LR after each
    step and the first step after which ``switched(opt)`` holds."""
    lrs, first = [], None
    for i, idx in enumerate(batches):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()

        def closure(eval_mode=True, idx=idx):
            with torch.no_grad():
                return torch.nn.functional.mse_loss(net(x[idx]), y[idx])
        opt.step(closure)
        lr = opt.param_groups[0]["lr"]
        lrs.append(lr.item() if isinstance(lr, torch.Tensor) else lr)
        if first is None and switched(opt):
            first = i
    return lrs, first


def _statopt(net, x, y, batches, **kw):
    statopt = pytest.importorskip("statopt")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()) as printed:
        warnings.simplefilter("ignore")  # statopt's add_(Number, Tensor)
        lrs, first = _train(net, statopt.SALSA(net.parameters(), **kw), x, y, batches,
                            lambda opt: opt.state["switched"])
    return lrs, first, printed.getvalue()


def _ours(net, x, y, batches, **kw):
    return _train(net, SALSA(net.parameters(), **kw), x, y, batches,
                  lambda opt: opt.state["salsa"]["switched"].item())


@pytest.mark.parametrize("case", [
    dict(momentum=0.9, qhm_nu=1.0, var_mode="iid", why="non-descreasing"),
    dict(momentum=0.9, qhm_nu=0.7, var_mode="olbm", ls_dir="d", ls_cos=1, lr=0.2, why="non-descreasing"),
    dict(momentum=0.0, qhm_nu=1.0, var_mode="iid", gamma=0.01, leak_ratio=1, testfreq=10, why="stationarity"),
], ids=["g", "d-cos", "stationary"])
def test_equals_statopt(case):
    """Same switch step (by the reason statopt prints), same LR at every step, params to the bit
    after 3000 steps. statopt's ``var_mode="mb"`` is its iid variance: our ``"iid"``."""
    kw = dict(KW, **{k: v for k, v in case.items() if k != "why"})
    ours_kw = dict(kw)
    kw["var_mode"] = "mb" if kw["var_mode"] == "iid" else kw["var_mode"]
    x, y, batches = _data(3000)
    net_a, net_b = _net(), _net()
    lrs_a, first_a, printed = _statopt(net_a, x, y, batches, **kw)
    lrs_b, first_b = _ours(net_b, x, y, batches, **ours_kw)
    assert case["why"] in printed and first_a is not None
    assert first_b == first_a
    assert lrs_b == lrs_a
    assert len({lr for lr in lrs_a[first_a + 1:]}) >= 2  # SASA's drops after the switch
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(a, b)


def test_manual_switch_equals_statopt():
    kw = dict(KW, auto_switch=0, warmup=300, var_mode="olbm")
    x, y, batches = _data(1500)
    net_a, net_b = _net(), _net()
    lrs_a, _, _ = _statopt(net_a, x, y, batches, **kw)
    lrs_b, _ = _ours(net_b, x, y, batches, **kw)
    assert len(set(lrs_a[:300])) > 10 and lrs_a[300] == lrs_a[299]  # searched, then held
    assert lrs_b == lrs_a
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(a, b)


def test_groups_keep_their_ratio_and_the_closure_runs_every_trial():
    net = _net()
    opt = SALSA([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.05}], **dict(KW, ls_max=3))
    x, y, batches = _data(200)
    calls = []
    for idx in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()

        def closure(eval_mode=True, idx=idx):
            calls.append(eval_mode)
            with torch.no_grad():
                return torch.nn.functional.mse_loss(net(x[idx]), y[idx])
        opt.step(closure)
        first, second = (g["lr"].item() for g in opt.param_groups)
        assert second == pytest.approx(first * 0.1, rel=1e-15)
    assert calls == [True] * (4 * 200)  # ls_max + 1 calls per step, in eval mode (ls_evl=1)
    assert opt.state["salsa"]["lr"].item() != 0.5


def test_state_dict_resumes_exactly():
    x, y, batches = _data(1400)
    net = _net()
    opt = SALSA(net.parameters(), **dict(KW, var_mode="iid"))
    switched = lambda o: o.state["salsa"]["switched"].item()  # noqa: E731
    _train(net, opt, x, y, batches[:300], switched)
    net2, opt2 = resumed(net, opt, lambda ps: SALSA(ps, **dict(KW, var_mode="iid")))
    after, first = _train(net, opt, x, y, batches[300:], switched)
    assert first is not None  # the switch comes after the resume
    assert _train(net2, opt2, x, y, batches[300:], switched) == (after, first)
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)


def test_a_loop_reads_nothing_on_the_host():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    opt = SALSA(net.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4, leak_ratio=1, minN_stats=100,
                testfreq=10)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with host_reads_raise():
        for i in range(400):
            batch = slice(i % 48, i % 48 + 16)
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[batch]), y[batch]).backward()
            opt.step(lambda eval_mode=True, b=batch: torch.nn.functional.mse_loss(net(x[b]), y[b]))
    assert opt.state["salsa"]["switched"].item()  # decided on the device, and the host learnt it
    assert opt._switched.known


def test_errors():
    p = torch.nn.Parameter(torch.randn(3))
    expect_error(ValueError, lambda: SALSA([p], gamma=1.5), "gamma")
    expect_error(ValueError, lambda: SALSA([p], ls_sdc=0.5), "ls_sdc")
    expect_error(ValueError, lambda: SALSA([p], ls_inc=0.5), "ls_inc")
    expect_error(ValueError, lambda: SALSA([p], ls_dec=1.0), "ls_dec")
    expect_error(ValueError, lambda: SALSA([p], ls_max=0), "ls_max")
    expect_error(ValueError, lambda: SALSA([p], ls_dir="h"), "ls_dir")
    expect_error(ValueError, lambda: SALSA([p], lr=0), "lr")
    opt = SALSA([p])
    p.grad = torch.randn(3)
    expect_error(ValueError, opt.step, "closure")
    expect_error(TypeError, lambda: opt.step(lambda eval_mode=True: 1.0), "tensor")


@pytest.mark.gpu
def test_cuda_switch_reaches_the_host_without_a_sync():
    """On CUDA the host learns the switch through pinned memory and an event, a step or more
    late; the steps in between change nothing (the same LRs as on the CPU)."""
    x, y, batches = _data(600)
    net_cpu, net_gpu = _net(), _net().cuda()
    kw = dict(KW, var_mode="iid")
    lrs_cpu, first = _ours(net_cpu, x, y, batches, **kw)
    lrs_gpu, first_gpu = _train(net_gpu, SALSA(net_gpu.parameters(), **kw), x.cuda(), y.cuda(), batches.cuda(),
                                lambda opt: opt.state["salsa"]["switched"].item())
    assert first is not None and first_gpu == first
    torch.testing.assert_close(torch.tensor(lrs_gpu), torch.tensor(lrs_cpu), rtol=1e-9, atol=0)


def test_a_nan_loss_equals_statopt():
    """A batch with a NaN target makes the loss, the grads and then the params NaN: statopt
    accepts a NaN trial (its test is f > bound) and keeps eta_0 on a NaN slope; so does ours,
    step for step."""
    x, y, batches = _data(100)
    y = y.clone()
    y[batches[50, 0]] = float("nan")
    net_a, net_b = _net(), _net()
    lrs_a, _, _ = _statopt(net_a, x, y, batches, **dict(KW, var_mode="mb"))
    lrs_b, _ = _ours(net_b, x, y, batches, **dict(KW, var_mode="iid"))
    assert not all(torch.isfinite(p).all() for p in net_a.parameters())
    assert str(lrs_b) == str(lrs_a)  # nan == nan as text


def test_a_nan_trial_is_accepted_as_statopt_accepts_it():
    """At one step the first trial's loss is NaN (the closure's second call): statopt's test,
    f > bound, is False for NaN, so it accepts eta_0; ours too, and the runs stay equal."""
    statopt = pytest.importorskip("statopt")
    x, y, batches = _data(40)
    runs = []
    for make in (lambda ps: statopt.SALSA(ps, **dict(KW, var_mode="mb")),
                 lambda ps: SALSA(ps, **dict(KW, var_mode="iid"))):
        net = _net()
        opt = make(net.parameters())
        etas = []
        for step, idx in enumerate(batches):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
            calls = []

            def closure(eval_mode=True, idx=idx, step=step, calls=calls):
                calls.append(1)
                with torch.no_grad():
                    loss = torch.nn.functional.mse_loss(net(x[idx]), y[idx])
                return loss * float("nan") if step == 20 and len(calls) == 2 else loss
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                opt.step(closure)
            state = opt.state["salsa"] if "salsa" in opt.state else opt.state
            etas.append((float(state["ls_eta"]), float(opt.param_groups[0]["lr"])))
        runs.append(etas)
    assert runs[1] == runs[0]
    assert runs[0][20][0] == 2.0 * runs[0][19][1]  # eta_0 = lr * ls_inc, the NaN trial's
