"""Train a small residual CNN on scikit-learn's digits with every tricks_ext layer, and the same
network built from timm's layers, timm's Mixup / SoftTargetCrossEntropy and pytorch-optimizer's
Ranger, from the same initial weights.

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 grey images of 10 digits; it ships inside
scikit-learn, nothing is downloaded), split 1,437 train / 360 held out, stratified.
Network: WSConv2d + EvoNorm-S0 stem, two ReZero residual blocks (WSConv2d, EvoNorm-S0, DropPath,
dropout on the branch), a stride-2 transition, global pooling, Dropout, Linear. Training: Mixup
with CutMix (per-sample, label smoothing 0.1), soft-target cross-entropy, Ranger.

    python examples/train_digits.py [--steps 200] [--out digits.png] [--table FILE.md]

prints the losses and accuracies of each run as a Markdown table (``--table`` writes it too: the
README's is benchmarks/results/digits_convergence.md) and writes a PNG of the loss curves and
the accuracies. tests/test_convergence.py runs the same functions.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from types import SimpleNamespace
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script: benchmarks.peers loads the real timm
    sys.path.insert(0, ROOT)

import tricks_ext  # noqa: E402
from tricks_ext import nn as tnn  # noqa: E402

WIDTH = 32
GROUPS = 8
DROP_PATH = 0.1
DROP = 0.1
LR = 1e-2
WEIGHT_DECAY = 1e-3
BATCH = 64
MIX = dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1, num_classes=10)


def load_data(seed: int = 0) -> Dict[str, torch.Tensor]:
    """Digits as (N, 1, 8, 8) fp32 standardized with the training split's mean and std."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.images.astype(np.float32), digits.target,
                                                        test_size=0.2, random_state=seed, stratify=digits.target)
    mean, std = x_train.mean(), x_train.std()
    as_images = lambda a: torch.from_numpy((a - mean) / std).unsqueeze(1).contiguous()  # noqa: E731
    return dict(x_train=as_images(x_train), y_train=torch.from_numpy(y_train).long(),
                x_test=as_images(x_test), y_test=torch.from_numpy(y_test).long())


class TorchReZero(nn.Module):
    """``x + alpha * dropout(sublayer(x))`` in plain torch, with ReZeroResidual's parameter names."""

    def __init__(self, sublayer: nn.Module, p: float = 0.0) -> None:
        super().__init__()
        self.sublayer = sublayer
        self.alpha = nn.Parameter(torch.zeros(()))
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.alpha * self.dropout(self.sublayer(x))


def tricks_layers(backend: Optional[str]) -> SimpleNamespace:
    return SimpleNamespace(
        conv=lambda cin, cout, stride=1: tnn.WSConv2d(cin, cout, 3, stride, 1, bias=False, backend=backend),
        norm=lambda c: tnn.EvoNormS0(c, groups=GROUPS, backend=backend),
        drop_path=lambda: tnn.DropPath(DROP_PATH, backend=backend),
        dropout=lambda: tnn.Dropout(DROP, backend=backend),
        rezero=lambda sub: tnn.ReZeroResidual(sub, DROP, backend=backend))


def peer_layers(timm) -> SimpleNamespace:
    layers = timm.layers
    return SimpleNamespace(
        conv=lambda cin, cout, stride=1: layers.StdConv2d(cin, cout, 3, stride, 1, bias=False),
        norm=lambda c: layers.EvoNorm2dS0(c, groups=GROUPS),
        drop_path=lambda: layers.DropPath(DROP_PATH),
        dropout=lambda: nn.Dropout(DROP),
        rezero=lambda sub: TorchReZero(sub, DROP))


def build_model(layers: SimpleNamespace) -> nn.Module:
    w = WIDTH

    def block(c: int) -> nn.Module:
        return layers.rezero(nn.Sequential(layers.conv(c, c), layers.norm(c), layers.conv(c, c), layers.drop_path()))

    return nn.Sequential(
        layers.conv(1, w), layers.norm(w), block(w),
        layers.conv(w, 2 * w, stride=2), layers.norm(2 * w), block(2 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), layers.dropout(), nn.Linear(2 * w, 10))


@dataclasses.dataclass
class Run:
    name: str
    losses: List[float]
    accuracy: float  # on the held-out split, in percent
    cpu_seconds: float  # process CPU time of the training loop and the evaluation


def _setup(impl: str, backend: Optional[str], model: nn.Module):
    """(mixup, loss, optimizer) of one implementation: tricks_ext's, or timm + pytorch-optimizer."""
    if impl == "tricks":
        return (tricks_ext.data.Mixup(**MIX, backend=backend), tnn.SoftTargetCrossEntropy(backend=backend),
                tricks_ext.optim.Ranger(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, backend=backend))
    from benchmarks.peers import load_pytorch_optimizer, load_timm
    timm, po = load_timm()[0], load_pytorch_optimizer()[0]
    # degenerated_to_sgd=True: RAdam's SGD warm-up, as torch.optim.RAdam and tricks_ext take
    # (its default False steps up the gradient before rectification).
    return (timm.data.Mixup(**MIX), timm.loss.SoftTargetCrossEntropy(),
            po.Ranger(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, degenerated_to_sgd=True))


def batch_indices(n: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """``steps`` batches of BATCH indices in [0, n): passes over a fresh permutation each, from
    their own generator seeded with ``seed`` (the torch and numpy generators are left alone)."""
    order = torch.Generator().manual_seed(seed)
    perm, at = torch.randperm(n, generator=order), 0
    for _ in range(steps):
        if at + BATCH > n:
            perm, at = torch.randperm(n, generator=order), 0
        yield perm[at:at + BATCH]
        at += BATCH


def train(impl: str = "tricks", backend: Optional[str] = None, steps: int = 200, seed: int = 0,
          init_state: Optional[dict] = None, data: Optional[Dict[str, torch.Tensor]] = None,
          progress: Optional[Callable[[int, float], None]] = None) -> Run:
    """One training run; ``impl`` 'tricks' (tricks_ext on ``backend``) or 'peers' (timm's layers,
    Mixup and loss, pytorch-optimizer's Ranger). The batches come from their own generator, so
    every run sees the same images in the same order; mixing and dropout draw from torch's
    (and, for timm's Mixup, numpy's) generator seeded with ``seed``."""
    data = data or load_data()
    if impl == "tricks":
        layers = tricks_layers(backend)
    elif impl == "peers":
        from benchmarks.peers import load_timm
        layers = peer_layers(load_timm()[0])
    else:
        raise ValueError(f"train: impl must be 'tricks' or 'peers', got {impl!r}")
    torch.manual_seed(seed)
    model = build_model(layers)
    if init_state is not None:
        model.load_state_dict(init_state)
    mixup, loss_fn, opt = _setup(impl, backend, model)
    torch.manual_seed(seed)
    np.random.seed(seed)
    losses = []
    start = time.process_time()
    model.train()
    for step, idx in enumerate(batch_indices(len(data["y_train"]), steps, seed)):
        x, targets = mixup(data["x_train"][idx].clone(), data["y_train"][idx])
        loss = loss_fn(model(x), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    with torch.no_grad():  # on the params as they are (both Ranger implementations hold the fast weights)
        predicted = model(data["x_test"]).argmax(1)
    accuracy = 100.0 * (predicted == data["y_test"]).float().mean().item()
    name = f"tricks_ext ({backend or 'auto'})" if impl == "tricks" else "timm + pytorch-optimizer"
    return Run(name, losses, accuracy, time.process_time() - start)


def initial_state(seed: int = 0) -> dict:
    """The initial weights every run starts from (tricks_ext's and timm's layers share names)."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in build_model(tricks_layers(None)).state_dict().items()}


def plot(runs: List[Run], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    window = 10
    for i, run in enumerate(runs):  # dashed second curve: the cpu and torch backends coincide to rounding
        smooth = np.convolve(run.losses, np.ones(window) / window, mode="valid")
        line, = ax.plot(np.arange(window, len(run.losses) + 1), smooth, label=run.name, linestyle="--" if i == 1 else "-")
        ax.plot(run.losses, color=line.get_color(), alpha=0.2, linewidth=0.8)
    ax.set(xlabel="step", ylabel=f"mixup soft-target loss ({window}-step mean)", title="digits, batch 64")
    ax.legend()
    bars.bar(range(len(runs)), [r.accuracy for r in runs], color=[f"C{i}" for i in range(len(runs))])
    bars.set_xticks(range(len(runs)), [r.name.replace(" (", "\n(").replace(" + ", "\n+ ") for r in runs],
                    fontsize=7)
    bars.set(ylim=(80, 100), ylabel="held-out accuracy (%)")
    for i, r in enumerate(runs):
        bars.text(i, r.accuracy + 0.3, f"{r.accuracy:.1f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="digits.png", help="where to write the PNG")
    parser.add_argument("--table", help="also write the Markdown table (the README's is "
                                        "benchmarks/results/digits_convergence.md)")
    args = parser.parse_args(argv)
    from tqdm import tqdm
    from benchmarks.peers import load_pytorch_optimizer, load_timm

    data = load_data()
    init = initial_state(args.seed)
    plans = [("tricks", "cpu" if tricks_ext.HAS_C else "torch"), ("tricks", "torch")]
    if load_timm()[0] is not None and load_pytorch_optimizer()[0] is not None:
        plans.append(("peers", None))
    else:
        print("timm or pytorch-optimizer is not importable: the peer run is left out")
    runs = []
    for impl, backend in plans:
        with tqdm(total=args.steps, desc=f"{impl} {backend or ''}".strip(), leave=True) as bar:
            def progress(step: int, loss: float) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
            runs.append(train(impl, backend, args.steps, args.seed, init, data, progress))
    text = table(runs, args.steps, args.seed)
    print(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    plot(runs, args.out)
    print(f"wrote {args.out}")


def table(runs: List[Run], steps: int, seed: int) -> str:
    """The runs as the README's Markdown table, titled with the commit and command."""
    from benchmarks.common import commit_label, device_name
    lines = [f"Digits, {steps} steps of batch 64, seed {seed}, from the same initial weights. "
             f"{device_name(torch.device('cpu'))}, commit {commit_label()}, "
             f"`python examples/train_digits.py --steps {steps} --seed {seed}`.", "",
             "| run | mean loss, last 20 steps | held-out accuracy | CPU time |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.name} | {np.mean(r.losses[-20:]):.4f} | {r.accuracy:.1f} % | {r.cpu_seconds:.1f} s |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
