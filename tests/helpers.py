"""Test helpers: backend/device parametrization, the reference tolerance rule, and wrappers for
opcheck, gradcheck, torch.compile and bad-input checks."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import pytest
import torch

from tricks_ext import _backend
from tricks_ext.ops._library import qualname

# (backend, device) pairs; the cuda-device ones carry the gpu marker. simt: the CUDA kernels on
# CPU tensors, through the emulator (csrc/simt/).
_PAIRS = [("torch", "cpu"), ("cpu", "cpu"), ("triton", "cpu"), ("simt", "cpu"),
          ("torch", "cuda"), ("cuda", "cuda"), ("triton", "cuda")]


def backend_params(op: str) -> list:
    """pytest params of every (backend, device) pair; unavailable ones skip with the reason."""
    params = []
    for backend, device in _PAIRS:
        marks = [pytest.mark.gpu] if device == "cuda" else []
        if device == "cpu" or torch.cuda.is_available():
            reason = _backend.unavailable_reason(backend, torch.device(device), op)
            if reason is not None:
                marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param((backend, device), id=f"{device}-{backend}", marks=marks))
    return params


def backend_op(name: str, backend: str):
    """The torch.library op that ``backend`` runs for op ``name``: the C++ op for cpu/cuda, the
    ``_triton`` / ``_simt`` twin otherwise (in-place ops keep their trailing ``_``)."""
    kind = "cxx" if backend in ("cpu", "cuda") else backend
    namespace, op = qualname(name, kind).split("::")
    return getattr(getattr(torch.ops, namespace), op)


# Small absolute slack on top of the rule, per dtype, relative to the output's magnitude:
# about 8 ulp of fp32, and half an ulp or less of fp16/bf16 (whose rounding the rule covers).
ATOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2e-4, torch.bfloat16: 2e-3}


def assert_matches_reference(actual: torch.Tensor, ref_same_dtype: torch.Tensor, ref_fp64: torch.Tensor,
                             name: str = "output", ratio: float = 2.0, atol: Optional[float] = None) -> None:
    """DESIGN.md tolerance rule: max|actual - ref64| <= ratio * max|ref_same - ref64| + atol.

    ``ref_same_dtype`` is the PyTorch reference run in ``actual``'s dtype, ``ref_fp64`` the
    reference in float64; non-finite values must sit at the same places in both.
    """
    assert actual.shape == ref_fp64.shape, f"{name}: shape {tuple(actual.shape)} != reference {tuple(ref_fp64.shape)}"
    assert actual.dtype == ref_same_dtype.dtype, f"{name}: dtype {actual.dtype} != reference {ref_same_dtype.dtype}"
    a = actual.detach().double().cpu()
    r = ref_fp64.detach().double().cpu()
    s = ref_same_dtype.detach().double().cpu()
    fin = torch.isfinite(r)
    bad_nonfinite = (torch.isfinite(a) != fin) | (~fin & (a.isnan() != r.isnan()))
    if bad_nonfinite.any():
        idx = tuple(bad_nonfinite.nonzero()[0].tolist())
        raise AssertionError(f"{name}: non-finite mismatch at {idx}: got {a[idx].item()}, reference {r[idx].item()}")
    if a.numel() == 0:
        return
    err = torch.where(fin, (a - r).abs(), torch.zeros_like(a))
    err_ref = torch.where(fin, (s - r).abs(), torch.zeros_like(s)).max().item()
    scale = max(1.0, torch.where(fin, r.abs(), torch.zeros_like(r)).max().item())
    bound = ratio * err_ref + (ATOL[actual.dtype] if atol is None else atol) * scale
    worst = err.max().item()
    if worst > bound:
        flat = err.flatten()
        top = flat.topk(min(5, flat.numel())).indices
        rows = []
        for i in top.tolist():
            idx = tuple(torch.unravel_index(torch.tensor(i), a.shape)) if a.dim() else ()
            idx = tuple(int(j) for j in idx)
            rows.append(f"    at {idx}: got {a[idx].item():.9g}, fp64 ref {r[idx].item():.9g}, "
                        f"{actual.dtype} ref {s[idx].item():.9g}")
        n_over = int((err > bound).sum())
        raise AssertionError(
            f"{name} ({actual.dtype}, shape {tuple(a.shape)}): max error vs fp64 reference {worst:.3g} > bound "
            f"{bound:.3g} = {ratio} x reference error {err_ref:.3g} + atol; {n_over}/{a.numel()} elements over.\n"
            + "\n".join(rows))


def run_opcheck(op, args: Sequence, kwargs: Optional[dict] = None) -> None:
    """torch.library.opcheck: schema, autograd registration, fake tensor, AOT dispatch."""
    torch.library.opcheck(op, tuple(args), kwargs or {})


def run_gradcheck(fn: Callable, inputs: Sequence[torch.Tensor]) -> None:
    assert all(t.dtype == torch.float64 for t in inputs if isinstance(t, torch.Tensor)), "gradcheck wants fp64"
    assert torch.autograd.gradcheck(fn, tuple(inputs), eps=1e-6, atol=1e-6, rtol=1e-5)


def run_compiled(fn: Callable, *args: torch.Tensor, backend: str = "inductor") -> Iterable[torch.Tensor]:
    """Run ``fn`` eager and under torch.compile(fullgraph=True); return (eager, compiled) results,
    each with the grads of the args that require them after backpropagating sum(out * weights)."""
    def run(f):
        leaves = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
        out = f(*leaves)
        gen = torch.Generator(device=out.device).manual_seed(1)
        cot = torch.randn(out.shape, generator=gen, device=out.device, dtype=torch.float32).to(out.dtype)
        if any(l.requires_grad for l in leaves):
            (out * cot).sum().backward()
        return [out.detach()] + [l.grad for l in leaves if l.requires_grad]

    torch._dynamo.reset()
    return run(fn), run(torch.compile(fn, fullgraph=True, backend=backend))


def saved_bytes(forward: Callable[[], torch.Tensor]) -> list:
    """Bytes of each tensor autograd saves for backward while ``forward()`` runs (then
    backpropagates its sum): checks that a mask or a dense target is never kept."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        out = forward()
    out.sum().backward()
    return saved


def expect_error(exc_type: type, fn: Callable, *words: str) -> str:
    """Assert ``fn()`` raises ``exc_type`` with every one of ``words`` in its message."""
    with pytest.raises(exc_type) as info:
        fn()
    msg = str(info.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"error message {msg!r} does not mention {missing}"
    return msg
