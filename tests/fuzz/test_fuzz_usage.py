"""Seeded fuzzing of how users call the ops, beside test_fuzz.py's fuzzing of what they pass:
second derivatives, autocast, numpy scalars for numbers, threads with their own backends,
copied optimizers, and timm patchers nested and removed in any order.

Property, per case: every backend gives the torch backend's result (second derivatives in
fp64 to 1e-9 of their largest element; under autocast the same dtypes and values within the
bf16 rounding of the layers around), numpy scalars give what Python numbers give bit for bit,
a thread sees only its own ``use_backend``, a copy steps as its original, and timm gets its
own ``create_model`` back exactly when the last patcher is removed.

Budget: TRICKS_FUZZ_CASES cases per kind from TRICKS_FUZZ_SEED (test_fuzz.py's variables; the
kinds that run every backend take a fifth, at least 4).
"""
from __future__ import annotations

import copy
import pickle
import random
import threading
from typing import Callable, List, Tuple

import numpy as np
import pytest
import torch

import tricks_ext
from tricks_ext import _backend
from tricks_ext import functional as F
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger
from tricks_ext.targets import MixedTargets

from test_fuzz import CASES, SEED

KERNELS = [b for b in ("cpu", "triton", "simt") if _backend.unavailable_reason(b, torch.device("cpu")) is None]


def cases(name: str, share: int = 1):
    n = max(4, CASES // share)
    return [pytest.param(SEED * 100_003 + i, id=f"{name}-{SEED * 100_003 + i}") for i in range(n)]


def _op_case(r: random.Random, g: torch.Generator, dtype: torch.dtype) -> Tuple[str, Callable, List[torch.Tensor]]:
    """A random differentiable op call: (name, fn(*inputs, backend), inputs) on small shapes."""
    def t(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    n, c = r.choice([1, 2, 3]), r.choice([2, 4, 6])
    so = torch.tensor([r.randrange(2 ** 40), r.randrange(2 ** 20)])
    kind = r.choice(["evonorm", "ws", "dropout_add", "drop_path", "soft_ce", "soft_bce", "mask"])
    if kind == "evonorm":
        groups = r.choice([1, 2])
        return kind, (lambda x, v, w, b, be: F.evonorm_s0(x, v, w, b, groups=groups, backend=be)), \
            [t(n, c, r.choice([1, 3]), r.choice([2, 5])), t(c, scale=0.5), t(c), t(c)]
    if kind == "ws":
        scale = r.choice([None, 0.3])
        return kind, (lambda w, gain, be: F.weight_standardize(w, gain=gain, scale=scale, backend=be)), \
            [t(c, r.choice([1, 3]), 2, 2), t(c) + 1]
    if kind == "dropout_add":
        p = r.choice([0.1, 0.5, 0.9])
        return kind, (lambda x, res, gate, be: F.dropout_add(x, res, p, gate=gate, seed_offset=so, backend=be)), \
            [t(n, c, 3), t(n, c, 3), t(1)]
    if kind == "drop_path":
        p = r.choice([0.2, 0.5])
        return kind, (lambda x, res, be: F.drop_path(x, p, residual=res, seed_offset=so, backend=be)), \
            [t(n + 2, c, 3), t(n + 2, c, 3)]
    if kind == "mask":
        box = torch.tensor([[[0, 2, 1, 3]]] * n)
        return kind, (lambda x, be: F.mask_boxes(x, box, 0.25, backend=be)), [t(n, 2, 4, 5)]
    labels = torch.randint(0, c, (n,), generator=g)
    target_kind = r.choice(["dense", "labels", "mixed"])
    if kind == "soft_ce":
        if target_kind == "dense":
            return kind, (lambda z, tt, be: F.soft_target_cross_entropy(z, torch.softmax(tt, 1), backend=be)), \
                [t(n, c), t(n, c)]
        targets = labels if target_kind == "labels" else \
            MixedTargets(labels, labels.flip(0), torch.rand(n, generator=g), 0.1, c)
        red = r.choice(["mean", "sum", "none"])
        return kind, (lambda z, be: F.soft_target_cross_entropy(z, targets, reduction=red, backend=be)), [t(n, c)]
    if target_kind == "dense":
        return kind, (lambda z, tt, be: F.soft_target_binary_cross_entropy(z, torch.sigmoid(tt), backend=be)), \
            [t(n, c), t(n, c)]
    targets = labels if target_kind == "labels" else \
        MixedTargets(labels, labels.flip(0), torch.rand(n, generator=g), 0.0, c)
    return kind, (lambda z, be: F.soft_target_binary_cross_entropy(z, targets, label_smoothing=0.1, backend=be)), [t(n, c)]


def _second(fn, inputs, backend, g):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*xs, backend)
    cot = torch.randn(out.shape, generator=g, dtype=out.dtype)
    first = torch.autograd.grad((out * cot).sum(), xs, create_graph=True)
    vec = [torch.randn(f.shape, generator=g, dtype=f.dtype) for f in first]
    total = sum((f * v).sum() for f, v in zip(first, vec))
    if not total.requires_grad:  # gradients that do not depend on the inputs (a linear op): H = 0
        return [torch.zeros_like(x) for x in xs]
    return torch.autograd.grad(total, xs, allow_unused=True)


@pytest.mark.parametrize("seed", cases("second-order", 5))
def test_second_derivatives(seed):
    r = random.Random(seed)
    kind, fn, inputs = _op_case(r, torch.Generator().manual_seed(seed), torch.float64)
    ref = _second(fn, inputs, "torch", torch.Generator().manual_seed(seed + 1))
    for backend in KERNELS:
        got = _second(fn, inputs, backend, torch.Generator().manual_seed(seed + 1))
        for i, (a, b) in enumerate(zip(got, ref)):
            if b is None:
                continue
            scale = max(1.0, b.abs().max().item())
            assert a is not None and (a - b).abs().max().item() <= 1e-9 * scale, (kind, backend, i)


@pytest.mark.parametrize("seed", cases("autocast", 5))
def test_autocast(seed):
    """The op on fp32 inputs inside autocast(bf16), each backend against the torch backend in
    the same region: same dtype, values within a few bf16 ulps (the branch rounds once)."""
    r = random.Random(seed)
    kind, fn, inputs = _op_case(r, torch.Generator().manual_seed(seed), torch.float32)
    if r.random() < 0.5:  # a low-precision branch beside an fp32 residual stream
        inputs = [inputs[0].bfloat16()] + inputs[1:]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = fn(*inputs, "torch")
        for backend in KERNELS:
            out = fn(*inputs, backend)
            assert out.dtype == ref.dtype, (kind, backend, out.dtype, ref.dtype)
            torch.testing.assert_close(out.float(), ref.float(), rtol=2 ** -6, atol=2 ** -6, msg=f"{kind} {backend}")


@pytest.mark.parametrize("seed", cases("numpy-scalars"))
def test_numpy_scalars_are_numbers(seed):
    r = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 5, generator=g)
    so = torch.tensor([seed, 1])
    value = r.choice([0.0, 0.1, 0.5, 1.0])
    wrap = r.choice([np.float32, np.float64, float])
    eps = r.choice([1e-5, 1e-3])
    calls = {
        "dropout": lambda v: F.dropout(x, v, seed_offset=so),
        "drop_path": lambda v: F.drop_path(x, v, seed_offset=so),
        "soft_ce": lambda v: F.soft_target_cross_entropy(x[0], torch.tensor([0, 2, 4, 1]), label_smoothing=v),
        "soft_bce": lambda v: F.soft_target_binary_cross_entropy(x[0], torch.tensor([0, 2, 4, 1]), label_smoothing=v * 0.9),
        "ws_scale": lambda v: F.weight_standardize(x, scale=v + 0.5),
        "evonorm_eps": lambda v: F.evonorm_s0(x, *[torch.ones(4)] * 3, groups=2, eps=type(v)(eps)),
        "lr": lambda v: _one_step(lambda ps: Ranger(ps, lr=v * 0.1, weight_decay=type(v)(0.01))),
    }
    name = r.choice(sorted(calls))
    ours, plain = calls[name](wrap(value)), calls[name](float(wrap(value)))
    assert torch.equal(ours, plain), name


def _one_step(make_opt) -> torch.Tensor:
    p = torch.nn.Parameter(torch.arange(12.0).reshape(3, 4) / 7)
    p.grad = torch.ones(3, 4) / 3
    make_opt([p]).step()
    return p.detach()


@pytest.mark.parametrize("seed", cases("threads"))
def test_threads_keep_their_own_backend(seed):
    r = random.Random(seed)
    choices = ["torch"] + [b for b in KERNELS if b != "triton"]  # the interpreter is slow under threads
    wanted = [r.choice(choices) for _ in range(r.randint(2, 3))]
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(seed))
    c = torch.ones(4)
    expected = {b: F.evonorm_s0(x, c, c, c, groups=2, backend=b) for b in set(wanted)}
    barrier = threading.Barrier(len(wanted))
    seen: List[List[Tuple[str, bool]]] = [[] for _ in wanted]

    def worker(i, backend):
        with tricks_ext.use_backend(backend):
            for _ in range(3):
                barrier.wait()
                out = F.evonorm_s0(x, c, c, c, groups=2)
                seen[i].append((tricks_ext.get_backend(), torch.equal(out, expected[backend])))

    threads = [threading.Thread(target=worker, args=(i, b)) for i, b in enumerate(wanted)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b, got in zip(wanted, seen):
        assert got == [(b, True)] * 3, (wanted, seen)
    assert tricks_ext.get_backend() == "auto"


@pytest.mark.parametrize("seed", cases("copies"))
def test_copied_optimizers_step_as_their_original(seed):
    r = random.Random(seed)
    torch.manual_seed(seed)
    cls = r.choice([Ranger, FusedAdam, FusedAdamW, FusedRAdam])
    options = r.choice([{}, {"max_grad_norm": 0.5}, {"clip_value": 0.1}, {"ema_decay": 0.9},
                        {"agc_clip_factor": 0.05, "ema_decay": 0.8}])
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    opt = cls(model.parameters(), lr=1e-2, **options)
    data = [torch.randn(2, 2, 4, 4) for _ in range(6)]
    split = r.randint(0, 5)

    def run(m, o, batches):
        for x in batches:
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()

    run(model, opt, data[:split])
    twin = copy.deepcopy((model, opt)) if r.random() < 0.5 else pickle.loads(pickle.dumps((model, opt)))
    run(model, opt, data[split:])
    run(*twin, data[split:])
    for p, q in zip(model.parameters(), twin[0].parameters()):
        assert torch.equal(p, q), (cls.__name__, options, split)


@pytest.mark.parametrize("seed", cases("patchers"))
def test_patchers_unwind_in_any_order(seed):
    import peers
    timm = peers.timm()
    r = random.Random(seed)
    original = timm.create_model
    patchers = [tricks_ext.patch_timm_create_model(dropout=r.random() < 0.5) for _ in range(r.randint(1, 4))]
    try:
        order = list(range(len(patchers)))
        r.shuffle(order)
        for k, i in enumerate(order):
            patchers[i].remove()
            if r.random() < 0.3:
                patchers[i].remove()  # twice: nothing more
            left = len(order) - k - 1
            assert (timm.create_model is original) == (left == 0)
            assert (timm.models.create_model is original) == (left == 0)
    finally:
        for p in patchers:
            p.remove()
    assert timm.create_model is original
