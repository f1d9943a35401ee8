"""create_optimizer: timm 1.0's parameter groups (bias / 1-D params and the model's
no_weight_decay() patterns without decay, frozen params left out) and the right optimizer."""
import pytest
import torch

import peers
from helpers import expect_error
from tricks_ext import optim


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.norm = torch.nn.BatchNorm2d(8)
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 4, 8))
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])
        for b in self.blocks:
            b.gamma = torch.nn.Parameter(torch.ones(8, 8))
        self.frozen = torch.nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.head = torch.nn.Linear(8, 5)

    def no_weight_decay(self):
        return {"pos_embed", "blocks.*.gamma"}


def _names(model, groups):
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [(sorted(name_of[id(p)] for p in g["params"]), g["weight_decay"]) for g in groups]


@pytest.mark.parametrize("weight_decay, filter_bias_and_bn", [(0.05, True), (0.05, False), (0.0, True)])
def test_groups_equal_timms(weight_decay, filter_bias_and_bn):
    peers.timm()
    from timm.optim._param_groups import param_groups_weight_decay as timm_groups
    model = Net()
    ours = optim.param_groups_weight_decay(model, weight_decay, filter_bias_and_bn, model.no_weight_decay())
    theirs = timm_groups(model, weight_decay, filter_bias_and_bn, model.no_weight_decay())
    assert _names(model, ours) == _names(model, theirs)
    opt = optim.create_optimizer(model, "adamw", lr=1e-3, weight_decay=weight_decay,
                                 filter_bias_and_bn=filter_bias_and_bn)
    assert _names(model, opt.param_groups) == _names(model, theirs)
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_expected_split_and_optimizers():
    model = Net()
    opt = optim.create_optimizer(model, "Ranger", lr=3e-3, weight_decay=0.1, gc_conv_only=True, k=5)
    assert isinstance(opt, optim.Ranger)
    (no_decay, wd0), (decay, wd) = _names(model, opt.param_groups)
    assert wd0 == 0.0 and wd == 0.1
    assert decay == ["blocks.0.weight", "blocks.1.weight", "conv.weight", "head.weight"]
    assert "pos_embed" in no_decay and "blocks.0.gamma" in no_decay and "conv.bias" in no_decay
    assert not any(n.startswith("frozen") for n in no_decay + decay)
    assert opt.param_groups[0]["gc_conv_only"] and opt.param_groups[0]["lookahead_k"] == 5
    for name, cls in (("adam", optim.FusedAdam), ("radam", optim.FusedRAdam), ("adamw", optim.FusedAdamW)):
        assert type(optim.create_optimizer(model, name)) is cls
    params = list(model.head.parameters())
    opt = optim.create_optimizer(params, "adamw", weight_decay=0.01)  # parameters pass through
    assert opt.param_groups[0]["weight_decay"] == 0.01 and len(opt.param_groups[0]["params"]) == 2
    opt.zero_grad()
    model.head(torch.randn(2, 8)).sum().backward()
    opt.step()


def test_bad_names():
    expect_error(ValueError, lambda: optim.create_optimizer(Net(), "sgd"), "opt", "ranger", "sgd")
    expect_error(ValueError, lambda: optim.create_optimizer(Net(), None), "opt")
