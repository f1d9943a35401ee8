"""recipe's tricks for imbalanced classes against their peers: class_weights against sklearn,
init_output_bias against the losses' gradients, Oversampler against imbalanced-learn's
RandomOverSampler, BalancedSampler against WeightedRandomSampler's limit, and Echo."""
import numpy as np
import pytest
import torch

from helpers import expect_error
from tricks_ext import data
from tricks_ext.recipe import BalancedSampler, Echo, Oversampler, class_weights, init_output_bias


def _labels(counts, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(labels.numel(), generator=gen)]


@pytest.mark.parametrize("counts", [[70, 20, 8, 2], [5, 5], [1, 300, 17]])
def test_class_weights_equal_sklearn(counts):
    from sklearn.utils.class_weight import compute_class_weight
    labels = _labels(counts)
    theirs = compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels.numpy())
    ours = class_weights(labels)
    assert ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-15)
    # as weight= of torch's cross_entropy: every class then weighs the same in the mean
    per_class = ours * torch.tensor(counts, dtype=torch.float64)
    assert torch.allclose(per_class, torch.full_like(per_class, labels.numel() / len(counts)))


def test_class_weights_errors():
    expect_error(ValueError, lambda: class_weights(torch.tensor([], dtype=torch.int64)), "empty")
    expect_error(ValueError, lambda: class_weights(torch.tensor([0, 2, 2])), "no samples", "[1]")
    expect_error(ValueError, lambda: class_weights(torch.tensor([0, 1, 5]), num_classes=3), "out of range")
    expect_error(ValueError, lambda: class_weights(torch.tensor([0, -1])), ">= 0")
    expect_error(TypeError, lambda: class_weights(torch.tensor([0.0, 1.0])), "integers")


def test_softmax_bias_gives_the_prior_and_zero_gradient():
    """Priors (.7, .2, .08, .02): softmax(b) is the prior, and the CE gradient in b at zero
    weights is 0 (the closed form, not one coordinate step towards it)."""
    labels = _labels([700, 200, 80, 20])
    layer = torch.nn.Linear(5, 4).double()
    torch.nn.init.zeros_(layer.weight)
    init_output_bias(layer, labels, "softmax")
    prior = torch.tensor([0.7, 0.2, 0.08, 0.02], dtype=torch.float64)
    assert torch.allclose(torch.softmax(layer.bias, 0), prior, rtol=1e-12)
    assert abs(layer.bias.sum().item()) < 1e-12  # centered
    loss = torch.nn.functional.cross_entropy(layer(torch.randn(labels.numel(), 5, dtype=torch.float64)), labels)
    loss.backward()
    assert layer.bias.grad.abs().max().item() < 1e-12


def test_sigmoid_bias_multilabel_and_unseen_class():
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=torch.float32)
    layer = torch.nn.Linear(2, 3).double()
    torch.nn.init.zeros_(layer.weight)
    init_output_bias(layer, targets, "sigmoid", eps=1e-4)
    assert torch.allclose(torch.sigmoid(layer.bias[:2]), torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert layer.bias[2].item() == pytest.approx(np.log(1e-4 / (1 - 1e-4)))  # never seen: eps, not -inf
    loss = torch.nn.functional.binary_cross_entropy_with_logits(layer(torch.randn(4, 2, dtype=torch.float64)),
                                                                targets.double())
    loss.backward()
    assert layer.bias.grad[:2].abs().max().item() < 1e-12


def test_one_sigmoid_output_takes_binary_labels():
    layer = torch.nn.Linear(3, 1).double()
    init_output_bias(layer, torch.tensor([1, 0, 0, 0]), "sigmoid")
    assert torch.sigmoid(layer.bias).item() == pytest.approx(0.25, rel=1e-12)
    expect_error(ValueError, lambda: init_output_bias(layer, torch.tensor([2, 0]), "sigmoid"), "[0, 1]")


def test_linear_bias_is_the_mean_and_errors():
    layer = torch.nn.Linear(3, 2)
    values = torch.tensor([[1.0, 10.0], [3.0, 20.0]])
    init_output_bias(layer, values, "linear")
    assert torch.equal(layer.bias.detach(), torch.tensor([2.0, 15.0]))
    expect_error(ValueError, lambda: init_output_bias(layer, values, "relu"), "kind")
    expect_error(TypeError, lambda: init_output_bias(torch.nn.Linear(3, 2, bias=False), values, "linear"), "bias")
    expect_error(ValueError, lambda: init_output_bias(layer, torch.ones(2, 3), "linear"), "outputs")
    expect_error(ValueError, lambda: init_output_bias(layer, torch.tensor([0, 2]), "softmax"), "out of range")
    expect_error(ValueError, lambda: init_output_bias(layer, torch.full((2, 2), 2.0), "sigmoid"), "[0, 1]")
    expect_error(ValueError, lambda: init_output_bias(layer, torch.full((2, 2), float("nan")), "linear"), "NaN")


@pytest.mark.parametrize("counts", [[70, 20, 8, 2], [3, 3, 3], [1, 50]])
def test_oversampler_has_random_over_samplers_counts(counts):
    imblearn = pytest.importorskip("imblearn.over_sampling")
    labels = _labels(counts)
    _, resampled = imblearn.RandomOverSampler(random_state=0).fit_resample(labels.numpy()[:, None], labels.numpy())
    sampler = Oversampler(labels, seed=3)
    idx = torch.tensor(list(sampler))
    assert len(sampler) == idx.numel() == resampled.size
    assert torch.equal(torch.bincount(labels[idx]), torch.from_numpy(np.bincount(resampled)))
    assert (torch.bincount(idx, minlength=labels.numel()) >= 1).all()  # every original index
    unshuffled = Oversampler(labels, seed=3, shuffle=False).indices()
    assert torch.equal(unshuffled[:labels.numel()], torch.arange(labels.numel()))


def test_samplers_are_deterministic_per_epoch_and_shard_over_ranks():
    labels = _labels([700, 200, 80, 21])
    for make in (lambda **kw: Oversampler(labels, seed=5, **kw),
                 lambda **kw: BalancedSampler(labels, 999, seed=5, **kw)):
        one = make(num_replicas=1, rank=0)
        first = one.indices()
        assert torch.equal(first, make(num_replicas=1, rank=0).indices())
        one.set_epoch(1)
        assert not torch.equal(first, one.indices())
        one.set_epoch(0)
        assert torch.equal(first, one.indices())
        shards = [make(num_replicas=3, rank=r) for r in range(3)]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) * 3 >= first.numel()
        # the ranks take strides of the one-rank list, padded by its first indices (at most 2)
        interleaved = torch.stack([s.indices() for s in shards], 1).reshape(-1)
        assert torch.equal(interleaved[:first.numel()], first)
        assert torch.equal(interleaved[first.numel():], first[:interleaved.numel() - first.numel()])
        assert interleaved.numel() - first.numel() <= 2
        dropped = [make(num_replicas=3, rank=r, drop_last=True) for r in range(3)]
        assert sum(len(s) for s in dropped) == first.numel() // 3 * 3
        assert torch.cat([s.indices() for s in dropped]).unique().numel() <= first.numel()


def test_balanced_sampler_balances_and_cycles_within_a_class():
    labels = _labels([700, 200, 80, 20])
    sampler = BalancedSampler(labels, 1002, seed=1)
    idx = sampler.indices()
    per_class = torch.bincount(labels[idx], minlength=4)
    assert per_class.sum() == 1002 and per_class.max() - per_class.min() <= 1
    small = idx[labels[idx] == 3]  # 250 draws from 20 samples: each comes 12 or 13 times
    counts = torch.bincount(small, minlength=labels.numel())[labels == 3]
    assert counts.min() >= 12 and counts.max() <= 13
    large = idx[labels[idx] == 0]  # 250 of 700: no repeat
    assert large.unique().numel() == large.numel()


def test_a_size_weighted_random_sampler_refuses():
    """torch.multinomial takes at most 2^24 categories: WeightedRandomSampler over 2^24 + 1
    samples raises; ours draws from them."""
    n = 2 ** 24 + 1
    labels = torch.arange(n) % 3
    weights = class_weights(labels)[labels]
    with pytest.raises(RuntimeError, match="2\\^24"):
        list(torch.utils.data.WeightedRandomSampler(weights, 10))
    sampler = BalancedSampler(labels, 3000, seed=0)
    assert torch.equal(torch.bincount(labels[sampler.indices()]), torch.tensor([1000, 1000, 1000]))


def test_sampler_errors():
    expect_error(ValueError, lambda: Oversampler([]), "empty")
    expect_error(ValueError, lambda: Oversampler([0, 0, 2]), "no samples")
    expect_error(ValueError, lambda: BalancedSampler([0, 1], num_samples=0), "num_samples")
    expect_error(ValueError, lambda: Oversampler([0, 1], num_replicas=2, rank=2), "rank")
    expect_error(TypeError, lambda: Oversampler(torch.tensor([0.5, 1.0])), "integers")


def test_echo_repeats_each_batch_with_fresh_augmentation():
    """Echoes are separate copies: in-place mixup on one leaves the next intact, and each echo
    draws its own lambda and permutation."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    y = torch.arange(8) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    echo = Echo(loader, 3)
    assert len(echo) == 6
    mix = data.Mixup(mixup_alpha=1.0, num_classes=4, label_smoothing=0.0)
    seen, lams = [], []
    for xb, yb in echo:
        seen.append(xb.clone())
        _, targets = mix(xb, yb, inplace=True)
        lams.append(targets.lam[0].item())
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])  # the same batch each time
    assert torch.equal(seen[0], x[:4]) and torch.equal(seen[3], x[4:])
    assert len(set(lams[:3])) == 3  # a lambda of its own per echo
    expect_error(ValueError, lambda: Echo(loader, 0), "factor")


def test_echo_passes_set_epoch_to_the_sampler():
    labels = _labels([30, 10])
    sampler = Oversampler(labels, seed=0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(labels), batch_size=8, sampler=sampler)
    echo = Echo(loader, 2)
    echo.set_epoch(4)
    assert sampler.epoch == 4 and echo.dataset is loader.dataset
