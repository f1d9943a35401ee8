"""recipe.activation_regularization / temporal_activation_regularization against fastai's
RNNRegularizer lines, written out (fastai 2.7, callback/rnn.py):
``alpha * out.float().pow(2).mean()`` and ``beta * (raw_out[:,1:] - raw_out[:,:-1]).float().pow(2).mean()``."""
import pytest
import torch

from helpers import expect_error
from tricks_ext.recipe import activation_regularization, temporal_activation_regularization


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_fastai_formulas_and_gradients(dtype):
    torch.manual_seed(0)
    out = torch.randn(4, 7, 5, dtype=dtype, requires_grad=True)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    ar = activation_regularization(out, 2.0)
    tar = temporal_activation_regularization(out, 1.5)
    assert ar.dtype == tar.dtype == acc
    assert torch.equal(ar, 2.0 * out.to(acc).pow(2).mean())
    assert torch.equal(tar, 1.5 * (out[:, 1:] - out[:, :-1]).to(acc).pow(2).mean())
    (ar + tar).backward()
    expected = torch.autograd.grad(2.0 * out.to(acc).pow(2).mean() + 1.5 * (out[:, 1:] - out[:, :-1]).to(acc)
                                   .pow(2).mean(), out)[0]
    assert torch.equal(out.grad, expected)


def test_time_first_one_step_and_errors():
    h = torch.randn(6, 3, 4)
    assert torch.equal(temporal_activation_regularization(h, 1.0, dim=0), (h[1:] - h[:-1]).pow(2).mean())
    assert temporal_activation_regularization(h[:, :1], 1.0).item() == 0.0  # fastai adds nothing then
    expect_error(ValueError, lambda: activation_regularization(h, -1.0), "alpha")
    expect_error(TypeError, lambda: activation_regularization(torch.ones(3, dtype=torch.int64), 1.0), "float")
    expect_error(ValueError, lambda: temporal_activation_regularization(torch.randn(5), 1.0), "time")
    expect_error(ValueError, lambda: activation_regularization(torch.randn(0, 3), 1.0), "empty")
