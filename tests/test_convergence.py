"""Convergence on a real data set: examples/train_digits.py's residual CNN (WSConv2d, EvoNormS0,
DropPath, ReZeroResidual, Dropout) trained on scikit-learn's digits with Mixup + CutMix, the
soft-target cross-entropy and Ranger, 200 steps of 64 images.

(a) the C++ backend against the plain-PyTorch reference backend: every backend draws the same
    Philox bits for dropout and the same mixing parameters, so the two loss curves differ only
    by rounding; (b) the same network from timm's layers, timm's Mixup and loss and
    pytorch-optimizer's Ranger, from the same initial weights (other random draws, so only the
    outcome is compared); (c) the accuracy of our run (its CPU time is the benchmarks' business:
    a wall-clock bound depends on the machine and on what else it runs, ASan included)."""
import numpy as np
import pytest

import peers
import tricks_ext
from examples import train_digits

pytest.importorskip("sklearn", reason="scikit-learn ships the digits data set (make test installs it)")

STEPS = 200
# (a) per-step relative loss difference; (b) accuracy points and relative mean loss of the last 20 steps
BACKEND_RTOL = 1e-4
PEER_ACCURACY_POINTS = 1.5
PEER_LOSS_RTOL = 0.03
# (c)
MIN_ACCURACY = 95.0


@pytest.fixture(scope="module")
def setup():
    return train_digits.load_data(), train_digits.initial_state(0)


@pytest.fixture(scope="module")
def cpu_run(setup):
    if not tricks_ext.HAS_C:
        pytest.skip("the C++ extension is not built")
    data, init = setup
    return train_digits.train("tricks", "cpu", STEPS, 0, init, data)


def test_cpu_backend_equals_reference_backend(setup, cpu_run):
    data, init = setup
    reference = train_digits.train("tricks", "torch", STEPS, 0, init, data)
    ours, ref = np.array(cpu_run.losses), np.array(reference.losses)
    assert len(ours) == len(ref) == STEPS
    worst = np.max(np.abs(ours - ref) / np.abs(ref))
    assert worst <= BACKEND_RTOL, f"step {np.argmax(np.abs(ours - ref) / np.abs(ref))}: {worst:.2e}"
    assert ref[-20:].mean() < 0.75 * ref[:20].mean()  # it learned: the comparison is not of two flat curves


def test_learns_as_timm_and_pytorch_optimizer(setup, cpu_run):
    peers.timm()
    peers.pytorch_optimizer()
    data, init = setup
    theirs = train_digits.train("peers", None, STEPS, 0, init, data)
    assert abs(cpu_run.accuracy - theirs.accuracy) <= PEER_ACCURACY_POINTS, (cpu_run.accuracy, theirs.accuracy)
    ours_tail, their_tail = np.mean(cpu_run.losses[-20:]), np.mean(theirs.losses[-20:])
    assert abs(ours_tail - their_tail) <= PEER_LOSS_RTOL * their_tail, (ours_tail, their_tail)


def test_accuracy(cpu_run):
    assert cpu_run.accuracy >= MIN_ACCURACY
