"""Optimizer step over real parameter sets: ResNet-50 (25.6M params, 161 tensors) and GPT-2 small
(124M params, 148 tensors), fp32.

Each timed call is one whole Lookahead cycle of K = 6 steps, after 2K warm-up steps: RAdam is
past its unrectified warm-up (rectified from step 6 at beta2 = 0.999) and every call holds
exactly one sync, so the time is Ranger's steady state, not a median that lands on the cheaper
unrectified or sync-free steps. The Adam providers run the same 6 steps per call.

Floor per cycle: Adam reads p, g, m, v and writes p, m, v: 28 B/param per step; Ranger's
Lookahead adds 8 B/param (read + write slow) once per cycle: 6 x 28 + 8 = 176 B/param. The case
floor is Ranger's; Adam providers do less work and are the speed bar.

The "+ clip" case (ResNet-50) clips every step to a total gradient norm of MAX_NORM: ours with
``max_grad_norm`` inside the step, every other provider with ``clip_grad_norm_(foreach=True)``
just before its step. The global norm needs one more read of every gradient (4 B/param) before
any update: 6 x 32 + 8 = 200 B/param. The "+ clip + EMA" case also keeps an fp32 EMA of the
weights (decay EMA_DECAY): ours with ``ema_decay`` in the same pass, the others with timm's
ModelEmaV3 (foreach lerp) after the step, or the same ``torch._foreach_lerp_`` without timm.
The EMA reads and writes its copy (8 B/param): 6 x 40 + 8 = 248 B/param.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from benchmarks.common import Case, Provider, Unavailable, ours
from benchmarks.peers import load_pytorch_optimizer, load_timm
from tricks_ext.optim import Ranger
from tricks_ext.recipe import WarmupCosine

OP = "optim_step"
K = 6
MAX_NORM = 1e-3  # below the benchmark grads' total norm (~5 at 1e-3 per element): every step clips
EMA_DECAY = 0.9998
# mode: (clip, ema), and the bytes per param of one timed cycle (module docstring)
MODES = {f"{K} steps": (False, False, 28 * K + 8), f"{K} steps + clip": (True, False, 32 * K + 8),
         f"{K} steps + clip + EMA": (True, True, 40 * K + 8)}


def resnet50_shapes() -> List[Tuple[int, ...]]:
    shapes: List[Tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, inplanes, 1, 1), (width,), (width,), (width, width, 3, 3), (width,), (width,),
                       (4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:
                shapes += [(4 * width, inplanes, 1, 1), (4 * width,), (4 * width,)]
            inplanes = 4 * width
    return shapes + [(1000, 2048), (1000,)]


def gpt2_small_shapes() -> List[Tuple[int, ...]]:
    d = 768
    shapes: List[Tuple[int, ...]] = [(50257, d), (1024, d)]
    for _ in range(12):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


SETS = {"resnet50": resnet50_shapes, "gpt2-small": gpt2_small_shapes}


def cases(device: torch.device, quick: bool) -> List[Case]:
    out = []
    for name, fn in SETS.items():
        if quick and name != "resnet50":
            continue
        shapes = fn()
        n = sum(torch.Size(s).numel() for s in shapes)
        label = f"{name} {n / 1e6:.1f}M params {len(shapes)} tensors"
        for mode, (_, _, floor) in MODES.items():
            if mode == f"{K} steps" or name == "resnet50":
                out.append(Case(label, torch.float32, mode, n * floor, {"shapes": shapes}))
    return out


def _ema_after_step(params: List[torch.Tensor]):
    """The EMA a recipe keeps next to an unfused optimizer: timm's ModelEmaV3 over the params
    (foreach lerp), updated with timm's train-loop step count; else its foreach lerp itself."""
    timm, _ = load_timm()
    if timm is not None:
        from timm.utils.model_ema import ModelEmaV3
        model = torch.nn.ParameterList(params)
        ema = ModelEmaV3(model, decay=EMA_DECAY)
        return lambda step: ema.update(model, step=step)
    copies = [p.detach().clone() for p in params]
    return lambda step: torch._foreach_lerp_(copies, [p.detach() for p in params], 1.0 - EMA_DECAY)


def _setup(make_opt, fused: bool = False, schedule: bool = False):
    """``make_opt(params, options)``; ``fused``: the optimizer takes the case's clipping and EMA
    as options (ours), else it gets clip_grad_norm_ before and the EMA after every step;
    ``schedule``: a recipe.WarmupCosine steps after every step (it writes the LR: a fill of a
    tensor LR, no sync)."""
    def setup(case: Case, device: torch.device):
        params = [torch.randn(s, device=device, dtype=case.dtype).mul_(0.02).requires_grad_(True)
                  for s in case.params["shapes"]]
        for p in params:
            p.grad = torch.randn_like(p).mul_(1e-3)
        clip, ema, _ = MODES[case.mode]
        options = {}
        if fused and clip:
            options["max_grad_norm"] = MAX_NORM
        if fused and ema:
            options["ema_decay"] = EMA_DECAY
        opt = make_opt(params, options)
        ema_update = _ema_after_step(params) if ema and not fused else None
        sched = WarmupCosine(opt, warmup_steps=K, total_steps=10 ** 6) if schedule else None
        count = [0]

        def step():
            if clip and not fused:
                torch.nn.utils.clip_grad_norm_(params, MAX_NORM, foreach=True)
            opt.step()
            if ema_update is not None:
                count[0] += 1
                ema_update(count[0])
            if sched is not None:
                sched.step()
        for _ in range(2 * K):
            step()

        def cycle():
            for _ in range(K):
                step()
        return cycle
    return setup


def _ranger(backend: str, tensor_lr: bool = False):
    def make(params, options):
        lr = torch.tensor(1e-3, dtype=torch.float64, device=params[0].device) if tensor_lr else 1e-3
        return Ranger(params, lr=lr, k=K, backend=backend, **options)
    return _setup(make, fused=True, schedule=tensor_lr)


def _ours(backend: str) -> Provider:
    return ours(OP, backend, _ranger, " Ranger")


def _ours_scheduled(backend: str) -> Provider:
    """The same step with its LR a device tensor written by a schedule at every step: the cost of
    a sync-free LR, to compare with the float-LR row (target: <= 1.02x)."""
    return ours(OP, backend, lambda b: _ranger(b, tensor_lr=True), " Ranger tensor LR + schedule")


def _pytorch_optimizer_ranger(params, _options=None):
    po, why = load_pytorch_optimizer()
    if po is None:
        raise Unavailable(why)
    return po.Ranger(params, lr=1e-3, betas=(0.95, 0.999), eps=1e-5, k=K, alpha=0.5, degenerated_to_sgd=True)


def providers(device: torch.device) -> List[Provider]:
    # The `torch` backend is the reference (per-tensor Ranger in plain PyTorch).
    return [
        Provider("reference Ranger", _ranger("torch")),
        Provider("torch Adam fused", _setup(lambda ps, _: torch.optim.Adam(ps, fused=True))),
        Provider("torch Adam foreach", _setup(lambda ps, _: torch.optim.Adam(ps, foreach=True))),
        Provider("pytorch-optimizer Ranger", _setup(_pytorch_optimizer_ranger)),
        _ours("cpu"),
        _ours("cuda"),
        _ours("triton"),
        _ours_scheduled("cpu"),
        _ours_scheduled("cuda"),
    ]
