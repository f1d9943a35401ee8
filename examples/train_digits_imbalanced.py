"""The digits network of train_digits.py on an imbalanced training split: one class keeps a
tenth of its images. Four runs from the same initial weights and batches' seed: no remedy, the
output bias set to the prior (``recipe.init_output_bias``), balanced class weights in the loss
(``recipe.class_weights``), and the oversampler (``recipe.Oversampler``). Each is scored by the
held-out balanced accuracy (the mean of the per-class recalls; the held-out split keeps every
class whole) and the mean training loss of its first 20 steps, over several seeds.

    python examples/train_digits_imbalanced.py [--steps 200] [--seeds 3] [--out FILE.md]

prints a Markdown table and writes it to ``--out`` (the README's table is that file).
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tricks_ext  # noqa: E402
from benchmarks.common import commit_label  # noqa: E402
from examples._common import fit, results_table, run_main  # noqa: E402
from examples.train_digits import BATCH, LR, WEIGHT_DECAY, build_model, load_data, tricks_layers  # noqa: E402
from tricks_ext.recipe import Oversampler, class_weights, init_output_bias  # noqa: E402

RARE = 3  # the digit that keeps a tenth of its training images
KEEP = 0.1
REMEDIES = ("none", "bias init", "class weights", "oversampler")


def imbalanced(data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The training split with RARE's images cut to the first KEEP of them (the held-out split as is)."""
    y = data["y_train"]
    rare = torch.nonzero(y == RARE).reshape(-1)
    drop = rare[int(round(KEEP * rare.numel())):]
    keep = torch.ones_like(y, dtype=torch.bool)
    keep[drop] = False
    return dict(data, x_train=data["x_train"][keep], y_train=y[keep])


def _batches(labels: torch.Tensor, remedy: str, seed: int, steps: int) -> List[torch.Tensor]:
    """``steps`` batches of indices: reshuffled epochs of the training split, or of the oversampler's."""
    out: List[torch.Tensor] = []
    sampler = Oversampler(labels, seed=seed) if remedy == "oversampler" else None
    order = torch.Generator().manual_seed(seed)
    epoch = 0
    while len(out) < steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
            perm = sampler.indices()
        else:
            perm = torch.randperm(labels.numel(), generator=order)
        out += [perm[i:i + BATCH] for i in range(0, perm.numel() - BATCH + 1, BATCH)]
        epoch += 1
    return out[:steps]


def train(remedy: str, data: Dict[str, torch.Tensor], steps: int, seed: int) -> Dict[str, float]:
    """One run; returns the held-out balanced accuracy (%) and the first 20 steps' mean loss."""
    from sklearn.metrics import balanced_accuracy_score
    torch.manual_seed(seed)
    model = build_model(tricks_layers(None))
    if remedy == "bias init":
        init_output_bias(model[-1], data["y_train"], "softmax")
    weight = class_weights(data["y_train"], 10).float() if remedy == "class weights" else None
    opt = tricks_ext.optim.Ranger(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    losses = fit(model, opt, _batches(data["y_train"], remedy, seed, steps),
                 lambda idx: lambda: torch.nn.functional.cross_entropy(model(data["x_train"][idx]),
                                                                       data["y_train"][idx], weight=weight))
    with torch.no_grad():
        predicted = model(data["x_test"]).argmax(1)
    return {"balanced accuracy": 100.0 * balanced_accuracy_score(data["y_test"].numpy(), predicted.numpy()),
            "rare recall": 100.0 * (predicted[data["y_test"] == RARE] == RARE).float().mean().item(),
            "first 20 steps' loss": torch.stack(losses[:20]).mean().item()}


def table(steps: int, seeds: int) -> str:
    data = imbalanced(load_data())
    counts = torch.bincount(data["y_train"], minlength=10)
    others = torch.cat([counts[:RARE], counts[RARE + 1:]])
    runs = {r: [train(r, data, steps, s) for s in range(seeds)] for r in REMEDIES}
    title = (f"Digits with digit {RARE} cut to {counts[RARE].item()} training images (the others "
             f"{others.min().item()}-{others.max().item()}); {steps} steps of Ranger, batch {BATCH}, "
             f"seeds 0-{seeds - 1}: mean (min-max). CPU, commit {commit_label()}, "
             f"`python examples/train_digits_imbalanced.py --steps {steps} --seeds {seeds}`.")
    return results_table(title, "remedy", runs, {"first 20 steps' loss": 3})


if __name__ == "__main__":
    run_main(__doc__, table, steps=200, seeds=3)
