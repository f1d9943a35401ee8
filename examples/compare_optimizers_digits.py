"""SASA+, SALSA, Ranger and AdamW on the digits network of train_digits.py (Mixup/CutMix, soft-target
cross-entropy), untuned, the same step budget and batches for each: held-out accuracy, the last
100 steps' training loss and, for the SASA and SALSA rows, the LR drops. The settings are each
optimizer's defaults (SASA's lr, momentum and weight decay from statopt's docstring example, as
SASA has no default LR); one SASA row also lowers minN_stats to statopt's least, 100, since at
its default (1000 values, leak_ratio 8) no test can pass before 8000 steps. SALSA starts from its
default LR (1e-3; its line search finds the LR) with the SASA row's momentum and weight decay:
its docstring's lr 1 diverges on this network, statopt's SALSA as ours (both reach NaN), and so
does its default without momentum. SALSA's line search evaluates the loss three more times per
step until it switches to SASA+.

    python examples/compare_optimizers_digits.py [--steps 2000] [--seeds 2] [--out FILE.md]

prints a Markdown table and writes it to ``--out`` (the README's table is that file).
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Dict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tricks_ext  # noqa: E402
from benchmarks.common import commit_label  # noqa: E402
from examples._common import fit, results_table, run_main  # noqa: E402
from examples.train_digits import BATCH, MIX, batch_indices, build_model, load_data, tricks_layers  # noqa: E402
from tricks_ext import nn as tnn  # noqa: E402
from tricks_ext.optim import SALSA, SASA, FusedAdamW, Ranger  # noqa: E402

OPTIMIZERS: Dict[str, Callable] = {
    "AdamW (lr 1e-3, weight decay 0.01)": lambda ps: FusedAdamW(ps),
    "Ranger (lr 1e-3)": lambda ps: Ranger(ps),
    "SASA+ (lr 0.1, momentum 0.9, weight decay 5e-4)": lambda ps: SASA(ps, lr=0.1, momentum=0.9,
                                                                         weight_decay=5e-4),
    "SASA+, minN_stats 100": lambda ps: SASA(ps, lr=0.1, momentum=0.9, weight_decay=5e-4, minN_stats=100),
    "SALSA (lr 1e-3, momentum 0.9, weight decay 5e-4)": lambda ps: SALSA(ps, lr=1e-3, momentum=0.9,
                                                                          weight_decay=5e-4),
}


def train(make_opt: Callable, data: Dict[str, torch.Tensor], steps: int, seed: int) -> Dict[str, float]:
    """One run from ``seed``'s initial weights and batch order; held-out accuracy (%), the last
    100 steps' mean loss and the SASA drops (SALSA's too; 0 for the others)."""
    torch.manual_seed(seed)
    model = build_model(tricks_layers(None))
    opt = make_opt(model.parameters())
    mixup, loss_fn = tricks_ext.data.Mixup(**MIX), tnn.SoftTargetCrossEntropy()

    def loss_of(idx: torch.Tensor) -> Callable[[], torch.Tensor]:
        x, targets = mixup(data["x_train"][idx], data["y_train"][idx])
        return lambda: loss_fn(model(x), targets)
    losses = fit(model, opt, batch_indices(len(data["y_train"]), steps, seed), loss_of,
                 line_search=isinstance(opt, SALSA))
    with torch.no_grad():
        accuracy = 100.0 * (model(data["x_test"]).argmax(1) == data["y_test"]).float().mean().item()
    drops = opt.state["sasa"]["drops"].item() if isinstance(opt, SASA) else 0
    return {"held-out accuracy": accuracy, "last 100 steps' loss": torch.stack(losses[-100:]).mean().item(),
            "LR drops": float(drops)}


def table(steps: int, seeds: int) -> str:
    data = load_data()
    runs = {name: [train(make, data, steps, s) for s in range(seeds)] for name, make in OPTIMIZERS.items()}
    title = (f"Digits, {steps} steps of batch {BATCH} (Mixup/CutMix, soft-target CE) from the same initial "
             f"weights and batches, seeds 0-{seeds - 1}: mean (min-max). CPU, commit {commit_label()}, "
             f"`python examples/compare_optimizers_digits.py --steps {steps} --seeds {seeds}`.")
    return results_table(title, "optimizer", runs, {"last 100 steps' loss": 3, "LR drops": 0})


if __name__ == "__main__":
    run_main(__doc__, table, steps=2000, seeds=2)
