"""tricks_ext.optim.SASA against statopt 0.2's SASA (fp64, same seeds, thousands of steps: the
same LR drops at the same steps), its state, its errors, and a loop that reads nothing on the
host; recipe.SASAController against statopt's bucket and test on the same statistic."""
import io
import warnings

import pytest
import torch

from helpers import expect_error, host_reads_raise
from tricks_ext.optim import SASA, FusedAdamW
from tricks_ext.recipe import SASAController

KW = dict(lr=0.1, weight_decay=1e-4, warmup=200, drop_factor=10, significance=0.05, leak_ratio=4, minN_stats=100,
          testfreq=50)


def _data(steps, seed=0):
    """A small tanh regression in fp64, minibatches of 16 drawn from 1024 noisy samples: noisy
    enough that the test fires within a few hundred steps."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 8, dtype=torch.float64, generator=gen)
    w = torch.randn(8, 1, dtype=torch.float64, generator=gen)
    y = torch.tanh(x @ w) + 0.3 * torch.randn(1024, 1, dtype=torch.float64, generator=gen)
    return x, y, torch.randint(0, 1024, (steps, 16), generator=gen)


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()


def _run(net, opt, x, y, batches):
    """Train over the batches; the first group's LR after each step."""
    lrs = []
    for idx in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
        opt.step()
        lr = opt.param_groups[0]["lr"]
        lrs.append(lr.item() if isinstance(lr, torch.Tensor) else lr)
    return lrs


def _drops(lrs):
    return [i for i in range(1, len(lrs)) if lrs[i] != lrs[i - 1]]


@pytest.mark.parametrize("var_mode,momentum,qhm_nu,lr", [("iid", 0.9, 1.0, 0.3), ("olbm", 0.9, 0.7, 0.1),
                                                         ("mb", 0.0, 1.0, 0.1)])
def test_equals_statopt(var_mode, momentum, qhm_nu, lr):
    """Same drops, same LR sequence, params to a few ulps after 3000 steps. statopt's ``"mb"``
    computes the iid variance (its bucket knows only ``"bm"``), so our ``"mb"`` is compared with
    statopt's bucket set to ``"bm"``, its batch-means variance."""
    statopt = pytest.importorskip("statopt")
    kw = dict(KW, lr=lr, momentum=momentum, qhm_nu=qhm_nu)

    def theirs(params):
        opt = statopt.SASA(params, var_mode="olbm" if var_mode == "olbm" else "iid", **kw)
        if var_mode == "mb":
            opt.state["var_mode"] = "bm"
        return opt

    x, y, batches = _data(3000)
    net_a, net_b = _net(), _net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statopt's add_(Number, Tensor)
        lrs_a = _run(net_a, theirs(net_a.parameters()), x, y, batches)
    opt = SASA(net_b.parameters(), var_mode=var_mode, **kw)
    lrs_b = _run(net_b, opt, x, y, batches)
    assert len(_drops(lrs_a)) >= 2
    assert _drops(lrs_b) == _drops(lrs_a)
    assert lrs_b == lrs_a
    assert opt.state["sasa"]["drops"].item() == len(_drops(lrs_a))
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-13)


def test_drop_keeps_the_groups_ratio_and_zeroes_momentum():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1).double()
    opt = SASA([{"params": [net.weight]}, {"params": [net.bias], "lr": 0.01}], lr=0.1, momentum=0.9, warmup=0,
               leak_ratio=1, minN_stats=100, testfreq=10)
    x = torch.randn(4096, 4, dtype=torch.float64)
    y = x.sum(1, keepdim=True) + torch.randn(4096, 1, dtype=torch.float64)
    for i in range(2000):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[i * 2 % 4096:][:16]), y[i * 2 % 4096:][:16]).backward()
        opt.step()
        if opt.state["sasa"]["drops"].item() == 1:
            break
    assert opt.state["sasa"]["drops"].item() == 1
    lrs = [g["lr"].item() for g in opt.param_groups]
    assert lrs == [0.1 / 10, 0.01 / 10]
    assert all(s["momentum_buffer"].abs().max() == 0 for p, s in opt.state.items() if isinstance(p, torch.Tensor))
    assert not opt.state["sasa"]["composite"].item()
    assert opt.state["sasa"]["total"].item() == 0


def test_params_over_several_cpu_runs_equal_statopt():
    """550k params, so the CPU step takes them in several runs of passes: each step's params
    and statistic as statopt's, which goes tensor by tensor."""
    statopt = pytest.importorskip("statopt")
    shapes = [(300, 300), (600, 300), (10,), (700, 400)]
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, dtype=torch.float64, generator=gen) for s in shapes]
    grads = [[torch.randn(s, dtype=torch.float64, generator=gen) for s in shapes] for _ in range(5)]
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, testfreq=1000)
    ours, theirs = ([p.clone().requires_grad_(True) for p in start] for _ in range(2))
    opt, ref = SASA(ours, **kw), statopt.SASA(theirs, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statopt's add_(Number, Tensor)
        for gs in grads:
            for a, b, g in zip(ours, theirs, gs):
                a.grad, b.grad = g.clone(), g.clone()
            opt.step()
            ref.step()
            for a, b in zip(ours, theirs):
                assert torch.equal(a, b)
            assert opt.state["sasa"]["stats_val"].item() == pytest.approx(ref.state["stats_val"], rel=1e-12)


def resumed(net, opt, make_opt):
    """A fresh net (other initial weights) and optimizer loaded from ``net``'s and ``opt``'s
    state dicts through torch.save and torch.load."""
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    net2 = _net(seed=1)
    net2.load_state_dict(saved["model"])
    opt2 = make_opt(net2.parameters())
    opt2.load_state_dict(saved["opt"])
    return net2, opt2


def test_state_dict_resumes_exactly():
    """Save mid-run (after a drop), load into a fresh model and optimizer, go on: bit-identical
    params and LRs, and the loaded optimizer shares no tensor with the saved one."""
    kw = dict(KW, momentum=0.9)
    x, y, batches = _data(1700)
    net = _net()
    opt = SASA(net.parameters(), **kw)
    before = _run(net, opt, x, y, batches[:1000])
    assert _drops(before)
    net2, opt2 = resumed(net, opt, lambda ps: SASA(ps, **kw))
    after = _run(net, opt, x, y, batches[1000:])
    assert _run(net2, opt2, x, y, batches[1000:]) == after
    assert len(_drops(before + after)) > len(_drops(before))  # a drop after the resume too
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    mine = {id(v) for v in opt.state["sasa"].values() if isinstance(v, torch.Tensor)}
    assert not mine & {id(v) for v in opt2.state["sasa"].values() if isinstance(v, torch.Tensor)}


def test_a_loop_reads_nothing_on_the_host():
    """1100 steps with a test every 10 of them and the buffer growing, every host read raising."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    opt = SASA(net.parameters(), lr=0.05, momentum=0.9, qhm_nu=0.7, weight_decay=1e-4, warmup=0, leak_ratio=1,
               minN_stats=100, testfreq=10, var_mode="olbm")
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with host_reads_raise():
        for i in range(1100):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[i % 48:][:16]), y[i % 48:][:16]).backward()
            opt.step()
    assert opt.state["sasa"]["n_values"] == 1100
    assert opt.state["sasa"]["drops"].item() >= 1  # the test ran and decided on the device


def test_half_precision_params_and_grads_untouched():
    """bf16 params step in fp32, rounded once (tricks_ext/reference/sasa.py); statopt's torch ops
    round after each op in bf16: the two are at most one bf16 ulp apart."""
    from tricks_ext.reference.sasa import sasa_step
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64, dtype=torch.bfloat16))
    opt = SASA([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = torch.randn(64, dtype=torch.bfloat16)
    grad, start = p.grad.clone(), p.detach().clone()
    opt.step()
    assert torch.equal(p.grad, grad)
    ref_x, ref_h = start.clone(), torch.zeros_like(start)
    sasa_step([ref_x], [grad], [ref_h], torch.tensor(0.1, dtype=torch.float64), 0.9, 1.0, 0.1)
    assert torch.equal(p.detach(), ref_x) and torch.equal(opt.state[p]["momentum_buffer"], ref_h)
    h = torch.zeros_like(start).mul_(0.9).add_(grad.add(start, alpha=0.1), alpha=0.1)
    theirs = start.add(h, alpha=-0.1)
    for ours, statopt_value in ((opt.state[p]["momentum_buffer"], h), (p.detach(), theirs)):
        ulp = torch.finfo(torch.bfloat16).eps * statopt_value.float().abs()
        assert ((ours.float() - statopt_value.float()).abs() <= ulp).all()
    assert opt.state["sasa"]["stats_val"].dtype == torch.float64 and torch.isfinite(opt.state["sasa"]["stats_val"])


def test_errors():
    p = torch.nn.Parameter(torch.randn(3))
    expect_error(ValueError, lambda: SASA([p], lr=0), "lr")
    expect_error(ValueError, lambda: SASA([p], lr=float("nan")), "lr")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, momentum=1.5), "momentum")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, weight_decay=-1), "weight_decay")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, var_mode="bm"), "var_mode", "mb")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, minN_stats=50), "minN_stats")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, leak_ratio=0), "leak_ratio")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, testfreq=0), "testfreq")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, drop_factor=0.5), "drop_factor")
    expect_error(ValueError, lambda: SASA([p], lr=0.1, significance=1.0), "significance")
    expect_error(ValueError, lambda: SASA([p], lr=torch.tensor(0.1)), "float64")
    expect_error(TypeError, lambda: SASA([torch.zeros(3, dtype=torch.int64)], lr=0.1), "float")
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = SASA(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    expect_error(RuntimeError, opt.step, "sparse")


@pytest.mark.parametrize("var_mode", ["iid", "olbm", "mb"])
def test_controller_decides_as_statopts_bucket_on_the_norm_change(var_mode):
    """recipe.SASAController on FusedAdamW: its drops are those of statopt's LeakyBucket and test
    fed the same statistic, ||x_{k+1}||^2 - ||x_k||^2 computed on the host in float64. (Weight
    decay makes the iterates' distribution stationary; without it the tanh net's norm grows.)"""
    bucket_mod = pytest.importorskip("statopt.bucket")
    kw = dict(warmup=200, drop_factor=10, significance=0.05, leak_ratio=4, minN_stats=100, testfreq=50)
    x, y, batches = _data(3000)
    net = _net()
    opt = FusedAdamW(net.parameters(), lr=0.01, weight_decay=0.1)
    ctl = SASAController(opt, var_mode=var_mode, **kw)
    bucket = bucket_mod.LeakyBucket(1000, kw["leak_ratio"], torch.float64, "cpu")
    composite, lr, previous = True, 0.01, None
    ours, theirs = [], []
    for i, idx in enumerate(batches):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
        opt.step()
        ours.append(ctl.step().item())
        current = sum(float(p.detach().pow(2).sum()) for p in net.parameters())
        drop = False
        if previous is not None:
            bucket.add(current - previous)
            calls = i
            if calls % kw["testfreq"] == 0 and calls > kw["warmup"] and bucket.count > kw["minN_stats"]:
                drop = bucket.stats_test(kw["significance"], "bm" if var_mode == "mb" else var_mode, composite)[0]
                if drop:
                    bucket.reset()
                    composite, lr = False, lr / kw["drop_factor"]
        previous = current
        theirs.append(bool(drop))
        assert opt.param_groups[0]["lr"].item() == lr
    assert sum(theirs) >= 2
    assert ours == theirs


def test_controller_state_dict_and_no_host_reads():
    torch.manual_seed(0)
    x, y, batches = _data(2000)
    nets = [_net(), _net()]
    opts = [FusedAdamW([{"params": n[0].parameters()}, {"params": n[2].parameters(), "lr": 0.003}], lr=0.01,
                       weight_decay=0.1) for n in nets]
    kw = dict(warmup=200, leak_ratio=4, minN_stats=100, testfreq=50, var_mode="olbm")  # drops after 651, 1851
    ctls = [SASAController(o, **kw) for o in opts]

    def run(net, opt, ctl, part):
        for idx in part:
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
            opt.step()
            ctl.step()

    with host_reads_raise():
        run(nets[0], opts[0], ctls[0], batches[:1000])
    assert ctls[0].test.state["drops"].item() >= 1
    lrs = [g["lr"].item() for g in opts[0].param_groups]
    assert lrs[1] / lrs[0] == pytest.approx(0.3, rel=1e-15)  # ratios kept
    nets[1].load_state_dict(nets[0].state_dict())
    opts[1].load_state_dict(opts[0].state_dict())
    ctls[1].load_state_dict(ctls[0].state_dict())
    for net, opt, ctl in zip(nets, opts, ctls):
        run(net, opt, ctl, batches[1000:])
    assert ctls[0].test.state["drops"].item() == ctls[1].test.state["drops"].item() == 2
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
    expect_error(ValueError, lambda: SASAController(opts[0], var_mode="bm"), "var_mode")
    expect_error(ValueError, lambda: SASAController(opts[0], drop_factor=0.5), "drop_factor")
