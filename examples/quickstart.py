"""The pieces together: a model patched, mixup/cutmix with label smoothing, the soft-target loss
on compact targets, Ranger with clipping and an EMA in its step, evaluation with the EMA
weights. `python examples/quickstart.py` trains on a synthetic 10-class batch (each class its own
mean colour) and prints the loss before and after; tests/test_examples.py runs it."""
import torch

import tricks_ext
from tricks_ext.data import Mixup
from tricks_ext.nn import EvoNormS0, SoftTargetCrossEntropy, WSConv2d
from tricks_ext.optim import Ranger


def main(steps: int = 40) -> tuple:
    torch.manual_seed(0)
    model = torch.nn.Sequential(WSConv2d(3, 32, 3, padding=1), EvoNormS0(32, groups=8), torch.nn.Dropout(0.1),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    tricks_ext.patch(model)  # torch's Dropout -> the one whose mask is regenerated, never stored
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=10)
    loss_fn = SoftTargetCrossEntropy()  # takes mixup's compact targets as they are
    opt = Ranger(model.parameters(), lr=1e-2, max_grad_norm=1.0, ema_decay=0.9)
    y = torch.randint(0, 10, (64,))
    x = torch.randn(64, 3, 16, 16) + 2 * torch.randn(10, 3, 1, 1)[y]
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(model.eval()(x), y).item()
    model.train()
    for _ in range(steps):
        images, targets = mixup(x, y)
        loss = loss_fn(model(images), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with opt.ema_weights(), torch.no_grad():  # evaluate with the EMA of the weights
        return before, torch.nn.functional.cross_entropy(model(x), y).item()


if __name__ == "__main__":
    print("cross-entropy before training {:.4f}, of the EMA weights after {:.4f}".format(*main()))
