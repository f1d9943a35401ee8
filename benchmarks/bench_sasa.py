"""SASA+'s step over the ResNet-50 parameter set (25.6M params, 161 tensors), fp32: ours (the
update and the statistic in one fused pass, the test on the device), statopt 0.2's (two host reads per tensor per step), and
the step both ride on without any statistic: torch's SGD with momentum 0.9 and dampening 0.9,
which is QHM with qhm_nu = 1 (h = 0.9 h + 0.1 g, x -= lr h), as foreach and as fused (one
kernel per tensor list: the fastest form of that step torch has).

Each timed call is TESTFREQ steps after WARM steps, so it holds one stationarity test on a
bucket of more than minN_stats values (leak_ratio 1 keeps every value: statopt's least
minN_stats, 100, is passed after 101 steps). Floor per step: read p, g, h and write p, h, 20
B/param; a statistic fused into that pass needs no more bytes (unfused, <x, d> and ||d||^2
read p and h again: 8 B/param more). The ratio to the SGD rows is the statistic's cost.
"""
from __future__ import annotations

from typing import List

import torch

from benchmarks.bench_optim import resnet50_shapes
from benchmarks.common import Case, Provider, Unavailable, ours
from tricks_ext.optim import SASA

TESTFREQ = 10
WARM = 120  # steps before timing: past warmup=0 and minN_stats=100 at leak_ratio 1
SASA_ARGS = dict(lr=1e-3, momentum=0.9, qhm_nu=1.0, warmup=0, leak_ratio=1, minN_stats=100, testfreq=TESTFREQ,
                 var_mode="iid")


def cases(device: torch.device, quick: bool) -> List[Case]:
    shapes = resnet50_shapes()
    n = sum(torch.Size(s).numel() for s in shapes)
    return [Case(f"resnet50 {n / 1e6:.1f}M params {len(shapes)} tensors", torch.float32,
                 f"{TESTFREQ} steps, 1 test", n * 20 * TESTFREQ, {"shapes": shapes})]


def _setup(make_opt):
    def setup(case: Case, device: torch.device):
        params = [torch.randn(s, device=device, dtype=case.dtype).mul_(0.02).requires_grad_(True)
                  for s in case.params["shapes"]]
        for p in params:
            p.grad = torch.randn_like(p).mul_(1e-3)
        opt = make_opt(params)
        for _ in range(WARM):
            opt.step()

        def call():
            for _ in range(TESTFREQ):
                opt.step()
        return call
    return setup


def _statopt(params):
    try:
        import statopt
    except ImportError as e:
        raise Unavailable(f"statopt not installed ({e})")
    return statopt.SASA(params, **SASA_ARGS)


def providers(device: torch.device) -> List[Provider]:
    return [
        Provider("torch SGD foreach momentum 0.9 dampening 0.9 (no statistic)",
                 _setup(lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, dampening=0.9, foreach=True))),
        Provider("torch SGD fused momentum 0.9 dampening 0.9 (no statistic)",
                 _setup(lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, dampening=0.9, fused=True))),
        Provider("statopt SASA", _setup(_statopt)),
    ] + [ours("sasa_step", b, lambda b_: _setup(lambda ps: SASA(ps, **SASA_ARGS, backend=b_)), name_suffix=" SASA")
         for b in ("cpu", "cuda", "triton")]
