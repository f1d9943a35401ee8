"""examples/train_digits_imbalanced.py: the imbalanced split it trains on, a short run of each
remedy, and the README's table equal to the committed result it was copied from."""
from pathlib import Path

import torch

from examples import train_digits, train_digits_imbalanced as ex

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "digits_imbalanced.md"


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


def test_readme_table_is_the_committed_result():
    assert RESULT.read_text() in (ROOT / "README.md").read_text()
