"""recipe.critical_lr against numpy's eigvalsh (linear regression: the Hessian is 2/n A^T A)
and against the full Hessian of a small MLP; gradient descent just under and just over it;
recipe.adam_horizon."""
import numpy as np
import pytest
import torch

import tricks_ext.functional as F
from helpers import backend_params, expect_error, host_reads_raise
from tricks_ext.recipe import adam_horizon, critical_lr, top_curvature_eigenvalue


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
