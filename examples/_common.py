"""What the digits comparison examples share: the training loop, and the Markdown result table
(one row per setting, mean (min-max) over seeds per column, titled with the commit that ran it;
tests check the README's copies against the committed files)."""
from __future__ import annotations

import argparse
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
import torch


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, batches: Iterable[torch.Tensor],
        loss_of: Callable[[torch.Tensor], Callable[[], torch.Tensor]], line_search: bool = False) -> List[torch.Tensor]:
    """Train ``model`` on each batch of indices: ``loss_of(indices)`` prepares the batch (its
    augmentation drawn once) and returns a function computing its loss. With ``line_search``
    the optimizer's step gets statopt's closure, ``closure(eval_mode)``: that loss again, without
    grad, in eval mode when asked. The losses as device tensors (no read per step); the model is
    left in eval mode."""
    model.train()
    losses = []
    for idx in batches:
        compute = loss_of(idx)
        loss = compute()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if line_search:
            def closure(eval_mode: bool = True) -> torch.Tensor:
                model.train(not eval_mode)
                with torch.no_grad():
                    value = compute()
                model.train()
                return value
            opt.step(closure)
        else:
            opt.step()
        losses.append(loss.detach())
    model.eval()
    return losses


def results_table(title: str, first_column: str, runs: Dict[str, List[Dict[str, float]]],
                  decimals: Dict[str, int]) -> str:
    """``title``, then a row per setting of ``runs`` (setting -> one dict of results per seed):
    each column's mean (min-max) over the seeds, with ``decimals[column]`` digits (default 1)."""
    keys = list(next(iter(runs.values()))[0])
    lines = [title, "", f"| {first_column} | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, results in runs.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in results])
            d = decimals.get(k, 1)
            cells.append(f"{v.mean():.{d}f} ({v.min():.{d}f}-{v.max():.{d}f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_main(doc: str, table: Callable[[int, int], str], steps: int, seeds: int,
             argv: Optional[List[str]] = None) -> None:
    """An example's command line: ``--steps``, ``--seeds``, ``--out``; prints the table and
    writes it to ``--out`` when given."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    text = table(args.steps, args.seeds)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
