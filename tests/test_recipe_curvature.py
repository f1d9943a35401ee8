"""recipe.critical_lr against numpy's eigvalsh (linear regression: the Hessian is 2/n A^T A)
and against the full Hessian of a small MLP; gradient descent just under and just over it;
recipe.adam_horizon; recipe.rescale_hparams against SGD run at both batch sizes."""
import numpy as np
import pytest
import torch

import tricks_ext.functional as F
from helpers import backend_params, expect_error, host_reads_raise
from tricks_ext.recipe import adam_horizon, critical_lr, rescale_hparams, top_curvature_eigenvalue


def _regression(n=200, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=gen) * torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    y = x @ torch.randn(d, 1, dtype=torch.float64, generator=gen) + 0.1 * torch.randn(n, 1, dtype=torch.float64,
                                                                                       generator=gen)
    torch.manual_seed(seed)
    return torch.nn.Linear(d, 1).double(), x, y


def _gd_final_loss(model, x, y, lr, steps=3000):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


@pytest.mark.parametrize("curvature", ["hessian", "gauss_newton"])
def test_linear_regression_matches_eigvalsh_and_separates_convergence(curvature):
    model, x, y = _regression()
    a = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1).numpy()
    top = np.linalg.eigvalsh(2.0 / len(x) * a.T @ a)[-1]
    lr = critical_lr(model, torch.nn.functional.mse_loss, (x, y), iters=300, curvature=curvature)
    assert lr == pytest.approx(2.0 / top, rel=1e-5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    below = _gd_final_loss(model, x, y, 0.98 * lr)
    model.load_state_dict(start)
    above = _gd_final_loss(model, x, y, 1.02 * lr)
    assert below < 0.02 and not above < 1e6  # converged to the noise floor / blown up (or NaN)


def _mlp():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    return model, torch.randn(64, 4, dtype=torch.float64), torch.randint(0, 3, (64,))


def test_mlp_within_one_percent_of_the_full_hessian():
    model, x, labels = _mlp()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(theta):
        chunks = torch.split(theta, [s.numel() for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return torch.nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), labels)

    eig = np.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat).numpy())
    top = np.abs(eig).max()
    lr = critical_lr(model, torch.nn.functional.cross_entropy, (x, labels), iters=200)
    assert lr == pytest.approx(2.0 / top, rel=1e-2)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("backend_device", backend_params("soft_ce"))
def test_through_our_loss_the_same_curvature(backend_device):
    """Double backward through the fused soft-target CE: torch's cross_entropy's curvature."""
    backend, device = backend_device
    model, x, labels = _mlp()
    model, x, labels = model.to(device), x.to(device), labels.to(device)
    theirs = top_curvature_eigenvalue(model, torch.nn.functional.cross_entropy, (x, labels), iters=50)
    ours = top_curvature_eigenvalue(model, lambda z, t: F.soft_target_cross_entropy(z, t, backend=backend),
                                    (x, labels), iters=50)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)


def test_no_host_read_inside_the_iterations():
    """The eigenvalue comes back as a device tensor with every Python host read raising; the
    critical LR reads it once."""
    model, x, y = _regression()
    with host_reads_raise():
        lam = top_curvature_eigenvalue(model, torch.nn.functional.mse_loss, (x, y), iters=40,
                                       curvature="gauss_newton")
    assert lam.dtype == torch.float64 and lam.dim() == 0
    assert critical_lr(model, torch.nn.functional.mse_loss, (x, y), iters=40, curvature="gauss_newton") == \
        2.0 / abs(lam.item())


def test_errors_and_horizon():
    model, x, y = _regression()
    expect_error(ValueError, lambda: critical_lr(model, torch.nn.functional.mse_loss, (x, y), curvature="fisher"),
                 "curvature")
    expect_error(ValueError, lambda: critical_lr(model, torch.nn.functional.mse_loss, (x, y), iters=0), "iters")
    expect_error(TypeError, lambda: critical_lr(model, torch.nn.functional.mse_loss, x), "batch")
    lr, betas = adam_horizon(10000)
    assert lr == 0.01 and betas == (0.9, 0.9999)
    expect_error(ValueError, lambda: adam_horizon(1), "num_steps")
    expect_error(ValueError, lambda: adam_horizon(100, beta1=1.0), "beta1")


def test_rescale_hparams_rules():
    assert rescale_hparams(0.1, 256, 5e-4, 1024) == (0.4, 5e-4)
    lr, wd = rescale_hparams(0.1, 256, 5e-4, 1024, rule="sqrt")
    assert lr == pytest.approx(0.2, rel=1e-15) and wd == pytest.approx(1e-3, rel=1e-15)
    assert rescale_hparams(0.1, 256, 5e-4, 64).lr == 0.025
    for rule in ("linear", "sqrt"):
        for new_b in (3, 64, 1000):
            new = rescale_hparams(0.03, 48, 2e-3, new_b, rule=rule)
            # the weight decay's shrink per epoch, g wd ~ lr wd / B, is held by both rules
            assert new.lr * new.weight_decay / new_b == pytest.approx(0.03 * 2e-3 / 48, rel=1e-13)
    expect_error(ValueError, lambda: rescale_hparams(0.0, 32, 0.0, 64), "lr")
    expect_error(ValueError, lambda: rescale_hparams(0.1, 0, 0.0, 64), "batch_size")
    expect_error(ValueError, lambda: rescale_hparams(0.1, 32, -1e-4, 64), "weight_decay")
    expect_error(ValueError, lambda: rescale_hparams(0.1, 32, 0.0, 64.0), "new_batch_size")
    expect_error(ValueError, lambda: rescale_hparams(0.1, 32, 0.0, 64, rule="cube"), "rule")


def _sgd_epoch(x, y, batch, lr, weight_decay):
    """One epoch of plain SGD with L2 decay over (x, y) in order; the final weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1).double()
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    for i in range(0, x.shape[0], batch):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[i:i + batch]), y[i:i + batch]).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_rescale_hparams_linear_rule_keeps_the_sgd_epoch():
    """An epoch at batch 4 and one at batch 32 with the linear rule's LR and weight decay end at
    nearly the same weights (first order in lr); the sqrt rule's do not."""
    _, x, y = _regression(n=512)
    lr, wd = 2e-3, 0.5
    start = _sgd_epoch(x, y, 4, 0.0, 0.0)
    small = _sgd_epoch(x, y, 4, lr, wd)
    moved = (small - start).norm()
    gaps = {rule: (_sgd_epoch(x, y, 32, *rescale_hparams(lr, 4, wd, 32, rule=rule)) - small).norm() / moved
            for rule in ("linear", "sqrt")}
    assert gaps["linear"] < 0.05 and gaps["sqrt"] > 10 * gaps["linear"], gaps  # 0.014 and 0.33 here
