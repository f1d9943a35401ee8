"""Seeded fuzzing of every public op and the optimizers, on every backend at hand.

Each case draws a rank, sizes (0, 1, primes, odd), a layout (contiguous, channels_last,
transposed, sliced with a step, expanded with zero strides, flipped), a dtype, adversarial
values (NaN, +-inf, rows masked with -inf, denormals, large magnitudes) and arguments at and
past their bounds (p at 0 and 1 and next to them, boxes and labels in and out of range, int32
and int64 overflow of index math). Property, per case: every backend raises the same error
(ValueError / TypeError / RuntimeError, one message, naming the op), or every backend
returns the reference's result: bit for bit for the ops that copy, mask or mix, under the
tolerance rule of tests/helpers.py for the ones that compute statistics. Nothing may crash.

Budget: TRICKS_FUZZ_CASES cases per op (default 60, the `make test` budget) from
TRICKS_FUZZ_SEED (default 0); `make fuzz N=...` runs longer. A failure names its seed.
"""
from __future__ import annotations

import math
import os
import random
from typing import Callable, Dict, List, Optional, Sequence

import pytest
import torch

from tricks_ext import _backend
from tricks_ext import functional as F
from tricks_ext.data import MixedTargets
from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger

CASES = int(os.environ.get("TRICKS_FUZZ_CASES", "60"))
SEED = int(os.environ.get("TRICKS_FUZZ_SEED", "0"))
# Triton runs under its interpreter here: it gets the small cases only (seconds per 10K elements)
TRITON_MAX_NUMEL = 4096
ERRORS = (ValueError, TypeError, RuntimeError)
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SIZES = [0, 1, 1, 2, 3, 5, 7, 8, 13, 17, 31, 64, 97]


class Draw:
    """One case's random choices (Python's Random for structure, a torch Generator for data)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.r = random.Random(seed)
        self.g = torch.Generator().manual_seed(seed)

    def size(self, allow_zero: bool = True) -> int:
        while True:
            s = self.r.choice(SIZES)
            if s or allow_zero:
                return s

    def shape(self, rank: int, allow_zero: bool = True) -> List[int]:
        shape = [self.size(allow_zero) for _ in range(rank)]
        while math.prod(shape) > 40_000:  # keep the emulated backends fast
            shape[self.r.randrange(rank)] //= 2
        return shape

    def dtype(self, choices: Sequence[torch.dtype] = FLOATS) -> torch.dtype:
        return self.r.choice(list(choices))

    def values(self, shape: Sequence[int], dtype: torch.dtype, scale: Optional[float] = None,
               nonfinite: bool = True) -> torch.Tensor:
        """randn at a random scale, with some adversarial entries."""
        if scale is None:
            tiny = torch.finfo(dtype).tiny
            scale = self.r.choice([1.0, 1.0, 1e-3, 30.0, tiny * 4, 1e4 if dtype != torch.float16 else 1e2])
        x = torch.randn(shape, generator=self.g, dtype=torch.float64) * scale
        n = x.numel()
        if n and nonfinite and self.r.random() < 0.3:
            flat = x.view(-1)
            for _ in range(self.r.randint(1, 3)):
                flat[self.r.randrange(n)] = self.r.choice([math.nan, math.inf, -math.inf])
        if n and self.r.random() < 0.2:  # denormals of the target dtype
            flat = x.view(-1)
            flat[self.r.randrange(n)] = torch.finfo(dtype).tiny / 8
        return x.to(dtype)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """The same values in another memory layout (a view where one exists)."""
        kind = self.r.choice(["contiguous", "contiguous", "channels_last", "transposed", "sliced", "expanded",
                              "flipped"])
        if kind == "channels_last" and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        if kind == "transposed" and x.dim() >= 2:
            return x.transpose(-1, -2).contiguous().transpose(-1, -2)
        if kind == "sliced" and x.dim() >= 1:
            big = torch.empty((x.shape[0] * 2,) + tuple(x.shape[1:]), dtype=x.dtype)
            big[::2] = x
            return big[::2]
        if kind == "expanded" and x.dim() >= 2 and x.shape[-1] > 0:
            return x[..., :1].expand(x.shape)
        if kind == "flipped" and x.dim() >= 1:
            return x.flip(0).flip(0)
        return x

    def p(self) -> float:
        return self.r.choice([0.0, 1.0, 0.5, 0.1, 0.9, 1e-7, 1 - 1e-7, math.nextafter(1.0, 0.0), 5e-324, -0.1, 1.5,
                              math.nan])


def _has_bf16_subnormals(t: Optional[torch.Tensor]) -> bool:
    if t is None or t.dtype != torch.bfloat16:
        return False
    a = t.float().abs()
    return bool(((a > 0) & (a < torch.finfo(torch.bfloat16).tiny)).any())


# What each case did, for the summary tests/fuzz/conftest.py prints and checks: the op, whether
# the reference computed a result ("ok") or every backend raised the same error ("error"), and
# the backends passed over with the reason. Filled by run_all / record, moved to the test's
# report by the conftest after each test.
RECORDS: List[Dict[str, object]] = []
_SKIPPED: Dict[str, str] = {}


def backends(op: str, inputs: Sequence[Optional[torch.Tensor]], numel: Optional[int] = None) -> List[str]:
    """The backends at hand for these inputs. Under Triton's interpreter, Triton gets the small
    cases only (``numel``: the first input's by default), and none with bf16 subnormal inputs: the
    interpreter's bf16 loads flush them to 0 (a compiled kernel keeps them), which no reference
    can follow. The simt emulator gets the small cases too. The others are noted with the reason
    (the fuzz summary counts them)."""
    if numel is None:
        numel = inputs[0].numel()
    names = []
    _SKIPPED.clear()
    for b in ("torch", "cpu", "triton", "simt"):
        reason = _backend.unavailable_reason(b, torch.device("cpu"), op)
        if reason is None and b == "triton" and _backend.triton_interpreting():
            if numel > TRITON_MAX_NUMEL:
                reason = f"interpreter: over {TRITON_MAX_NUMEL} elements"
            elif any(_has_bf16_subnormals(t) for t in inputs):
                reason = "interpreter: bf16 subnormal inputs"
        if reason is None and b == "simt" and numel > TRITON_MAX_NUMEL:  # the emulator is slow too
            reason = f"emulator: over {TRITON_MAX_NUMEL} elements"
        if reason is None:
            names.append(b)
        else:
            _SKIPPED[b] = reason
    return names


def record(op: str, results: Dict[str, tuple], skipped: Optional[Dict[str, str]] = None) -> None:
    RECORDS.append({"op": op, "outcome": results["torch"][0],
                    "skipped": dict(_SKIPPED if skipped is None else skipped)})


def outcome(fn: Callable[[], object]):
    try:
        return "ok", fn()
    except ERRORS as e:
        return "error", e


def run_all(op: str, registry_op: str, inputs: Sequence[Optional[torch.Tensor]],
            fn: Callable[[str], object]) -> Dict[str, tuple]:
    """fn(backend) on every backend for these inputs; errors must agree in kind and name the op."""
    results = {b: outcome(lambda b=b: fn(b)) for b in backends(registry_op, inputs)}
    kinds = {b: (r[0], type(r[1]).__name__ if r[0] == "error" else None) for b, r in results.items()}
    assert len(set(kinds.values())) == 1, f"{op}: backends disagree: {kinds} " + \
        "; ".join(f"{b}: {r[1]}" for b, r in results.items() if r[0] == "error")
    messages = {str(value) for status, value in results.values() if status == "error"}
    assert len(messages) <= 1, f"{op}: backends raise different messages: {messages}"
    for b, (status, value) in results.items():
        if status == "error":
            assert op in str(value) or op.split("_")[0] in str(value), f"{op}: {b}'s error does not name the op: {value}"
    record(op, results)
    return results


def grads_of(out: torch.Tensor, inputs: Sequence[Optional[torch.Tensor]], seed: int) -> List[torch.Tensor]:
    """out and the grads of sum(out * cotangent) for the inputs that require grad."""
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(out.dtype)
    leaves = [t for t in inputs if t is not None and t.requires_grad]
    if not leaves or out.numel() == 0:
        return [out.detach()]
    grads = torch.autograd.grad((out * cot).sum(), leaves, allow_unused=True)
    return [out.detach()] + [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, leaves)]


def assert_exact(op: str, results: Dict[str, tuple]) -> None:
    if results["torch"][0] == "error":
        return
    ref = results["torch"][1]
    for b, (_, out) in results.items():
        for i, (a, r) in enumerate(zip(out, ref)):
            assert a.shape == r.shape and a.dtype == r.dtype, f"{op} [{b}] output {i}: {a.shape} {a.dtype} vs {r.shape}"
            assert torch.equal(a.nan_to_num(0.5, 7.0, -7.0), r.nan_to_num(0.5, 7.0, -7.0)) and \
                torch.equal(a.isnan(), r.isnan()), f"{op} [{b}] output {i} differs from the reference"


def assert_close(op: str, results: Dict[str, tuple], ref64: Optional[List[torch.Tensor]]) -> None:
    """The tolerance rule against the fp64 reference; non-finite values where the fp32
    reference has them."""
    if results["torch"][0] == "error":
        return
    same = results["torch"][1]
    for b, (_, out) in results.items():
        if b == "torch":
            continue
        for i, (a, s) in enumerate(zip(out, same)):
            assert torch.equal(torch.isfinite(a), torch.isfinite(s)), \
                f"{op} [{b}] output {i}: non-finite values at other places than the reference's"
            fin = torch.isfinite(s) & torch.isfinite(ref64[i].to(s.dtype)) if ref64 is not None else torch.isfinite(s)
            if ref64 is None:
                continue
            r = ref64[i]
            assert_fuzz_bound(torch.where(fin, a, 0), torch.where(fin, s, 0), torch.where(fin, r, 0).double(),
                              f"{op} [{b}] output {i}")


# Relative slack of the fuzz bound: fp32 4e-6 (about 32 ulp), fp16/bf16 about 1.6 ulp; fp64
# inputs: the reference is the same dtype, so only this slack is left, and two fp64 summation
# orders differ by up to eps64 * (mean / std)^2 of the data, 1e7 for the large-mean weights
# drawn here (2e-9 relative, a few times that with the sums).
FUZZ_SLACK = {torch.float64: 1e-8, torch.float32: 4e-6, torch.float16: 8e-4, torch.bfloat16: 8e-3}


def assert_fuzz_bound(actual: torch.Tensor, same: torch.Tensor, ref64: torch.Tensor, name: str) -> None:
    """The fuzz suite's robustness bound, looser than the op tests' per-element rule
    (tests/helpers.py): max |actual - ref64| <= 2 max |same - ref64| + FUZZ_SLACK x max(1,
    max |ref64|), over the whole output. Its odd shapes and scales (rows of two weights a few
    ulps apart, where rstd is 1000 and an exact 0 is a cancellation of terms 1e3 larger) have
    no per-element term sizes written out; it looks for crashes, misplaced NaNs and gross
    errors, the op tests own the accuracy."""
    if actual.numel() == 0:
        return
    a, s = actual.double(), same.double()
    err, err_ref = (a - ref64).abs().max().item(), (s - ref64).abs().max().item()
    bound = 2 * err_ref + FUZZ_SLACK[actual.dtype] * max(1.0, ref64.abs().max().item())
    assert err <= bound, f"{name} ({actual.dtype}, shape {tuple(a.shape)}): max error {err:.3g} > bound {bound:.3g}"


def check_statistics(op: str, registry_op: str, inputs: Sequence[Optional[torch.Tensor]], fn: Callable) -> None:
    """run_all, then the tolerance rule against fn("torch", torch.float64) (the fp64 reference
    of the same, already quantized, inputs)."""
    results = run_all(op, registry_op, inputs, fn)
    if results["torch"][0] == "ok":
        assert_close(op, results, fn("torch", torch.float64))


def cases(name: str):
    return [pytest.param(SEED * 100_003 + i, id=f"{name}-{SEED * 100_003 + i}") for i in range(CASES)]


# ---- dropout family: bit-identical masks -------------------------------------------------------

@pytest.mark.parametrize("seed", cases("dropout"))
def test_dropout_family(seed):
    d = Draw(seed)
    dtype = d.dtype()
    shape = d.shape(d.r.randint(1, 4))
    x0 = d.layout(d.values(shape, dtype))
    p = d.p()
    kind = d.r.choice(["dropout", "dropout_add", "drop_path"])
    so = torch.tensor([d.r.randrange(2 ** 63), d.r.choice([0, 5, 2 ** 32 - 3, 2 ** 62])])
    residual = d.layout(d.values(shape, dtype))
    gate = d.values([1], dtype, scale=1.0, nonfinite=False) if d.r.random() < 0.5 else None
    with_residual = d.r.random() < 0.5  # (drop_path) every choice is drawn before the backends run

    def fn(backend):
        x = x0.detach().clone().requires_grad_(True)
        if kind == "dropout":
            out = F.dropout(x, p, seed_offset=so, backend=backend)
            return grads_of(out, [x], seed)
        r = residual.detach().clone().requires_grad_(True)
        if kind == "dropout_add":
            gt = None if gate is None else gate.detach().clone().requires_grad_(True)
            out = F.dropout_add(x, r, p, gate=gt, seed_offset=so, backend=backend)
            grads = grads_of(out, [x, r, gt], seed)
            return grads[:3] + [g.to(torch.float64) for g in grads[3:]]  # the gate's grad: a full reduction
        out = F.drop_path(x, p, residual=r if with_residual else None, seed_offset=so, backend=backend)
        return grads_of(out, [x, r], seed)

    results = run_all(kind, "dropout_apply", [x0, residual, gate], fn)
    if results["torch"][0] == "ok" and kind == "dropout_add" and gate is not None:
        gate_grads = {b: r[1].pop() for b, r in results.items()}
        for b, g in gate_grads.items():  # the gate's gradient sums in another order per backend
            torch.testing.assert_close(g, gate_grads["torch"], rtol=1e-3, atol=1e-3 * max(1, x0.numel()) ** 0.5,
                                       equal_nan=True, msg=f"dropout_add [{b}] gate grad")
    assert_exact(kind, results)


# ---- mixing and masking: exact, whatever the boxes -------------------------------------------

def draw_boxes(d: Draw, n: int, k: Optional[int], h: int, w: int) -> torch.Tensor:
    dtype = d.r.choice([torch.int32, torch.int64, torch.int16])
    big = 2 ** 31 - 1 if dtype != torch.int16 else 2 ** 15 - 1
    edges = [0, 1, h, w, h + 1, w + 1, -1, -big - 1, big] + ([2 ** 33 + 2, -(2 ** 40)] if dtype == torch.int64 else [])

    def edge():
        return d.r.choice(edges) if d.r.random() < 0.3 else d.r.randint(-2, max(h, w) + 2)

    shape = (n, 4) if k is None else (n, k, 4)
    vals = [edge() for _ in range(math.prod(shape))]
    return torch.tensor(vals, dtype=torch.int64).view(shape).to(dtype)


@pytest.mark.parametrize("seed", cases("mixup"))
def test_mixup(seed):
    d = Draw(seed)
    dtype = d.dtype()
    shape = d.shape(d.r.choice([1, 2, 3, 4, 4, 5]))
    x0 = d.layout(d.values(shape, dtype))
    n = shape[0]
    h, w = (shape[-2], shape[-1]) if len(shape) >= 3 else (1, 1)
    lam = torch.rand(n, generator=d.g, dtype=torch.float64)
    coef = torch.stack([lam, 1 - lam], 1).float()
    if d.r.random() < 0.5:
        coef[::2] = torch.tensor([1.0, 0.0])
    box = draw_boxes(d, n, None, h, w) if d.r.random() < 0.7 else None
    inplace = d.r.random() < 0.4

    def fn(backend):
        x = x0.clone()
        out = F.mixup(x, coef, box, inplace=inplace, backend=backend)
        assert (out is x) == inplace
        return [out]

    assert_exact("mixup", run_all("mixup", "mixup_apply", [x0], fn))


@pytest.mark.parametrize("seed", cases("mask_boxes"))
def test_mask_boxes(seed):
    d = Draw(seed)
    dtype = d.dtype()
    shape = d.shape(d.r.choice([3, 4, 4, 5]))
    x0 = d.layout(d.values(shape, dtype))
    kind = d.r.choice(["mask_boxes", "cutout", "spec_augment"])
    so = torch.tensor([d.r.randrange(2 ** 63), d.r.randrange(2 ** 40)])
    value = d.r.choice([0.0, -1.5, 1e30, math.inf, 1 / 3])
    inplace = d.r.random() < 0.3
    box = draw_boxes(d, shape[0], d.r.randint(0, 3), shape[-2], shape[-1])
    holes, length = d.r.randint(0, 3), d.r.choice([0, 1, 3, 16, 2 ** 31])
    freq_param, time_param = d.r.choice([0, 3, 27, 10 ** 9]), d.r.choice([0, 5, 100])

    def fn(backend):
        x = x0.clone()
        if kind == "mask_boxes":
            out = F.mask_boxes(x, box, value, inplace=inplace, backend=backend)
        elif kind == "cutout":
            out = F.cutout(x, holes, length, value, inplace=inplace, seed_offset=so, backend=backend)
        else:
            out = F.spec_augment(x, freq_param, time_param, holes, 1, value,
                                 inplace=inplace, seed_offset=so, backend=backend)
        return [out]

    assert_exact(kind, run_all(kind, "mask_boxes", [x0], fn))


# ---- statistics: under the tolerance rule ------------------------------------------------------

@pytest.mark.parametrize("seed", cases("soft_ce"))
def test_soft_target_cross_entropy(seed):
    d = Draw(seed)
    dtype = d.dtype()
    n, c = d.size(), d.size(allow_zero=False)
    scale = d.r.choice([1.0, 5.0, 1e3, 1e4 if dtype != torch.float16 else 1e2])
    z0 = d.values([n, c], dtype, scale=scale)
    if n and d.r.random() < 0.4:  # rows or classes masked with -inf
        z0[d.r.randrange(n), d.r.randrange(c)] = -math.inf
        z0[:, d.r.randrange(c)] = -math.inf
    z0 = d.layout(z0)
    form = d.r.choice(["labels", "mixed", "dense"])
    reduction = d.r.choice(["mean", "sum", "none"])
    smoothing = d.r.choice([0.0, 0.1, 1.0]) if form != "dense" else 0.0
    lo, hi = (-1, c + 1) if d.r.random() < 0.2 else (0, c - 1)
    a = torch.randint(lo, hi + 1, (n,), generator=d.g)
    b = torch.randint(0, c, (n,), generator=d.g)
    lam = torch.rand(n, generator=d.g)
    if n and d.r.random() < 0.5:
        lam[::2] = 1.0
    dense = torch.rand(n, c, generator=d.g, dtype=torch.float64)
    dense[dense < 0.5] = 0
    ignore = d.r.choice([-100, 0, int(a[0]) if n else 3])
    weight = torch.rand(c, generator=d.g) * 2 if d.r.random() < 0.3 else None  # class weights, some near 0

    def fn(backend, z_dtype=dtype):
        z = z0.detach().to(z_dtype).requires_grad_(True)
        if form == "labels":
            t = a
            out = F.soft_target_cross_entropy(z, t, reduction, smoothing, ignore_index=ignore, backend=backend,
                                              weight=weight)
        elif form == "mixed":
            out = F.soft_target_cross_entropy(z, MixedTargets(a, b, lam, smoothing, c), reduction, backend=backend,
                                              weight=weight)
        else:
            out = F.soft_target_cross_entropy(z, dense.to(z_dtype), reduction, backend=backend, weight=weight)
        return grads_of(out, [z], seed)

    check_statistics("soft_target_cross_entropy", "soft_ce", [z0], fn)


@pytest.mark.parametrize("seed", cases("soft_bce"))
def test_soft_target_binary_cross_entropy(seed):
    d = Draw(seed)
    dtype = d.dtype()
    n, c = d.size(), d.size(allow_zero=False)
    scale = d.r.choice([1.0, 5.0, 30.0, 1e3 if dtype != torch.float16 else 1e2])
    z0 = d.layout(d.values([n, c], dtype, scale=scale))
    form = d.r.choice(["labels", "mixed", "dense"])
    reduction = d.r.choice(["mean", "sum", "none"])
    smoothing = d.r.choice([0.0, 0.1, 0.9])
    threshold = d.r.choice([None, None, 0.3])
    pos_weight = torch.rand(c, generator=d.g) * 3 if d.r.random() < 0.4 else None
    weight = torch.rand(c, generator=d.g) * 2 if d.r.random() < 0.3 else None
    lo, hi = (-1, c + 1) if d.r.random() < 0.2 else (0, c - 1)
    a = torch.randint(lo, hi + 1, (n,), generator=d.g)
    b = torch.randint(0, c, (n,), generator=d.g)
    lam = torch.rand(n, generator=d.g)
    dense = torch.rand(n, c, generator=d.g, dtype=torch.float64)
    dense[dense < 0.5] = 0

    def fn(backend, z_dtype=dtype):
        z = z0.detach().to(z_dtype).requires_grad_(True)
        targets = {"labels": a, "mixed": MixedTargets(a, b, lam, smoothing, c), "dense": dense.to(z_dtype)}[form]
        out = F.soft_target_binary_cross_entropy(z, targets, smoothing, threshold, pos_weight, reduction,
                                                 backend=backend, weight=weight)
        return grads_of(out, [z], seed)

    check_statistics("soft_target_binary_cross_entropy", "soft_bce", [z0], fn)


@pytest.mark.parametrize("seed", cases("soft_f1"))
def test_soft_f1_loss(seed):
    d = Draw(seed)
    dtype = d.dtype()
    n, c = d.size(), d.size(allow_zero=False)
    scale = d.r.choice([1.0, 5.0, 30.0, 1e3 if dtype != torch.float16 else 1e2])
    z0 = d.layout(d.values([n, c], dtype, scale=scale))
    form = d.r.choice(["labels", "dense"])
    multi_label = d.r.choice([None, False, True])
    average = d.r.choice(["macro", "micro"])
    beta = d.r.choice([1.0, 0.5, 2.0])
    eps = d.r.choice([1e-6, 0.0])
    lo, hi = (-1, c + 1) if d.r.random() < 0.2 else (0, c - 1)
    a = torch.randint(lo, hi + 1, (n,), generator=d.g)
    dense = (torch.rand(n, c, generator=d.g) < 0.3).double()

    def fn(backend, z_dtype=dtype):
        z = z0.detach().to(z_dtype).requires_grad_(True)
        targets = a if form == "labels" else dense.to(z_dtype)
        out = F.soft_f1_loss(z, targets, average, beta, eps, multi_label, backend=backend)
        return grads_of(out, [z], seed)

    check_statistics("soft_f1_loss", "soft_f1", [z0], fn)


@pytest.mark.parametrize("seed", cases("evonorm"))
def test_evonorm_s0(seed):
    d = Draw(seed)
    dtype = d.dtype()
    groups = d.r.choice([1, 2, 3, 4, 32])
    c = groups * d.r.choice([1, 1, 2, 3]) if d.r.random() < 0.9 else d.size(allow_zero=False)
    shape = [d.size()] + [c] + d.shape(d.r.choice([1, 2, 2, 3]))
    if math.prod(shape) > 40_000:
        shape[0] = 1
    near_eps = d.r.random() < 0.3  # groups whose variance sits near eps
    x0 = d.values(shape, dtype, scale=3e-3 if near_eps else None)
    x0 = d.layout(x0)
    params = [d.values([c], dtype, scale=1.0, nonfinite=False) for _ in range(3)]
    eps = d.r.choice([1e-5, 1e-5, 1e-3, 1e-10, 0.0])

    def fn(backend, cast=None):
        x = (x0 if cast is None else x0.to(cast)).detach().clone().requires_grad_(True)
        ps = [(p if cast is None else p.to(cast)).detach().clone().requires_grad_(True) for p in params]
        out = F.evonorm_s0(x, *ps, groups=groups, eps=eps, backend=backend)
        return grads_of(out, [x] + ps, seed)

    check_statistics("evonorm_s0", "evonorm_s0", [x0] + params, fn)


@pytest.mark.parametrize("seed", cases("weight_standardize"))
def test_weight_standardize(seed):
    d = Draw(seed)
    dtype = d.dtype()
    shape = d.shape(d.r.choice([2, 3, 4, 4]))
    mean = d.r.choice([0.0, 0.0, 100.0, -3e3 if dtype != torch.float16 else -30.0])  # a large common mean
    w0 = d.layout((d.values(shape, torch.float64) + mean).to(dtype))
    gain = d.values([shape[0]], dtype, scale=1.0, nonfinite=False) if d.r.random() < 0.4 else None
    scale = d.r.choice([None, 0.5])
    eps = d.r.choice([1e-6, 1e-5, 0.0, 1.0])

    def fn(backend, cast=None):
        w = (w0 if cast is None else w0.to(cast)).detach().clone().requires_grad_(True)
        g = None if gain is None else (gain if cast is None else gain.to(cast)).detach().clone().requires_grad_(True)
        out = F.weight_standardize(w, eps, g, scale, backend=backend)
        return grads_of(out, [w, g], seed)

    check_statistics("weight_standardize", "weight_standardize", [w0, gain], fn)


# ---- optimizers: hyperparameters at their bounds, adversarial grads --------------------------

OPTIMIZERS = {"adam": FusedAdam, "adamw": FusedAdamW, "radam": FusedRAdam, "ranger": Ranger}


@pytest.mark.parametrize("seed", cases("optim"))
def test_optimizers(seed):
    d = Draw(seed)
    dtype = d.dtype()
    shapes = [d.shape(d.r.randint(1, 4)) for _ in range(d.r.randint(1, 4))]
    init = [d.values(s, dtype, scale=1.0, nonfinite=False) for s in shapes]
    grads = [[d.values(s, dtype, scale=d.r.choice([1.0, 1e-8, 1e-4, 1e3])) for s in shapes] for _ in range(7)]
    name = d.r.choice(list(OPTIMIZERS))
    kw = dict(lr=d.r.choice([1e-3, 0.0, 1.0, -1.0]), weight_decay=d.r.choice([0.0, 0.1, 10.0]),
              betas=d.r.choice([(0.9, 0.999), (0.0, 0.0), (0.5, 0.9999), (0.9, 1.0)]),
              eps=d.r.choice([1e-8, 0.0, 1.0]))
    if name == "ranger":
        kw.update(k=d.r.choice([1, 2, 6, 0]), alpha=d.r.choice([0.0, 0.5, 1.0]))
    else:
        kw.update(gc=d.r.random() < 0.5, gc_conv_only=d.r.random() < 0.3,
                  lookahead_k=d.r.choice([None, 1, 3]), maximize=d.r.random() < 0.2)

    def fn(backend):
        ps = [t.clone().requires_grad_(True) for t in init]
        opt = OPTIMIZERS[name](ps, backend=backend, **kw)
        for step_grads in grads:
            for p, g in zip(ps, step_grads):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in ps]

    results = {}
    for b in backends("optim_step", init + [g for step in grads for g in step], sum(t.numel() for t in init)):
        if b in ("cuda", "triton") and dtype == torch.float64:
            _SKIPPED[b] = "runs no float64"
            continue
        results[b] = outcome(lambda b=b: fn(b))
    kinds = {b: r[0] for b, r in results.items()}
    assert len(set(kinds.values())) == 1, f"{name}: backends disagree: {kinds}"
    record("optimizers", results)
    if results["torch"][0] == "error":
        return
    ref = results["torch"][1]
    for b, (_, out) in results.items():
        for a, r in zip(out, ref):
            assert torch.equal(a.isnan(), r.isnan()), f"{name} [{b}]: NaN at other places than the reference's"
            fin = torch.isfinite(r) & torch.isfinite(a)
            assert torch.equal(torch.isfinite(a), torch.isfinite(r)), f"{name} [{b}]: inf at other places"
            if fin.any():
                # state in fp32 either way; the params differ by the rounding of the last store
                ulp = torch.finfo(dtype).eps
                err = (a[fin].double() - r[fin].double()).abs()
                bound = (8 * ulp if dtype in (torch.float16, torch.bfloat16) else 1e-5) * \
                    r[fin].double().abs().clamp(min=1.0)
                assert (err <= bound).all(), f"{name} [{b}] {dtype}: max error {err.max().item():.3g}"
