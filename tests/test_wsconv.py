"""Weight-standardized convolutions: timm StdConv2d / ScaledStdConv2d numbers and state dicts,
eval-mode caching, folding into plain convolutions."""
import torch

import peers
from helpers import expect_error
from tricks_ext import nn as tnn


def timm_twin(conv):
    """timm's own StdConv2d / ScaledStdConv2d with ``conv``'s arguments and its state dict."""
    layers = peers.timm().layers
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
              bias=conv.bias is not None, eps=conv.eps)
    if isinstance(conv, tnn.ScaledWSConv2d):
        twin = layers.ScaledStdConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, **kw)
        twin.scale = conv.scale
    else:
        twin = layers.StdConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, **kw)
    twin.load_state_dict(conv.state_dict())
    return twin.to(conv.weight.dtype)


def test_wsconv2d_matches_timm_and_grads():
    torch.manual_seed(0)
    conv = tnn.WSConv2d(6, 8, 3, stride=2, padding=1, groups=2).double()
    assert set(conv.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    twin = timm_twin(conv)
    torch.testing.assert_close(conv(x), twin(x))
    assert torch.autograd.gradcheck(lambda t: conv(t), (x,))
    conv(x).sum().backward()
    twin(x).sum().backward()
    torch.testing.assert_close(conv.weight.grad, twin.weight.grad)
    torch.testing.assert_close(conv.bias.grad, twin.bias.grad)
    same = tnn.WSConv2d(4, 4, 3, padding="same", bias=False)
    assert same(torch.randn(1, 4, 5, 6)).shape == (1, 4, 5, 6)


def test_scaled_wsconv2d_matches_timm():
    torch.manual_seed(1)
    conv = tnn.ScaledWSConv2d(4, 6, 3, padding=1, gamma=1.7, gain_init=0.5).double()
    assert set(conv.state_dict()) == {"weight", "bias", "gain"} and conv.gain.shape == (6, 1, 1, 1)
    with torch.no_grad():
        conv.gain.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    twin = timm_twin(conv)
    torch.testing.assert_close(conv(x), twin(x))
    conv(x).sum().backward()
    twin(x).sum().backward()
    torch.testing.assert_close(conv.gain.grad, twin.gain.grad)


def test_eval_follows_weight_updates():
    conv = tnn.WSConv2d(3, 4, 3).eval()
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        conv.standardized_weight()
        conv.weight.mul_(2.0).add_(0.1)
        torch.testing.assert_close(conv(x), timm_twin(conv)(x))
    conv.train()
    assert conv.standardized_weight().requires_grad  # training builds a graph


def test_fold_weight_standardization():
    torch.manual_seed(2)
    model = torch.nn.Sequential(tnn.WSConv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                tnn.ScaledWSConv2d(8, 4, 1), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 7, 7)
    folded = tnn.fold_weight_standardization(model)
    assert not any(isinstance(m, tnn.WSConv2d) for m in folded.modules())
    assert isinstance(model[0], tnn.WSConv2d)  # the original is left alone
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_errors():
    expect_error(ValueError, lambda: tnn.WSConv2d(3, 4, 3, groups=2), "divisible")
