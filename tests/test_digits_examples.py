"""The digits comparison examples: train_digits_imbalanced.py's split and a short run of each
remedy, compare_optimizers_digits.py's optimizers for a few steps, and the README's tables equal
to the committed results they were copied from."""
from pathlib import Path

import pytest
import torch

from examples import compare_optimizers_digits, train_digits, train_digits_imbalanced as ex

ROOT = Path(__file__).resolve().parents[1]


def test_the_rare_class_keeps_a_tenth():
    full = train_digits.load_data()
    cut = ex.imbalanced(full)
    before, after = torch.bincount(full["y_train"]), torch.bincount(cut["y_train"])
    assert after[ex.RARE] == round(ex.KEEP * before[ex.RARE].item())
    others = [c for c in range(10) if c != ex.RARE]
    assert torch.equal(after[others], before[others]) and torch.equal(cut["y_test"], full["y_test"])


def test_each_remedy_trains():
    data = ex.imbalanced(train_digits.load_data())
    for remedy in ex.REMEDIES:
        result = ex.train(remedy, data, steps=3, seed=0)
        assert 0.0 <= result["balanced accuracy"] <= 100.0
        assert torch.isfinite(torch.tensor(result["first 20 steps' loss"]))


def test_each_optimizer_trains():
    data = train_digits.load_data()
    for make in compare_optimizers_digits.OPTIMIZERS.values():
        result = compare_optimizers_digits.train(make, data, steps=3, seed=0)
        assert 0.0 <= result["held-out accuracy"] <= 100.0 and result["LR drops"] == 0


@pytest.mark.parametrize("name", ["digits_imbalanced.md", "digits_optimizers.md", "digits_convergence.md"])
def test_readme_table_is_the_committed_result(name):
    assert (ROOT / "benchmarks" / "results" / name).read_text() in (ROOT / "README.md").read_text()
