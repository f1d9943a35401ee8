"""Test helpers: backend/device parametrization, the reference tolerance rule, and wrappers for
opcheck, gradcheck, torch.compile and bad-input checks."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Optional, Sequence

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tricks_ext import _backend
from tricks_ext.ops._library import qualname

# (backend, device) pairs; the cuda-device ones carry the gpu marker. simt: the CUDA kernels on
# CPU tensors, through the emulator (csrc/simt/).
_PAIRS = [("torch", "cpu"), ("cpu", "cpu"), ("triton", "cpu"), ("simt", "cpu"),
          ("torch", "cuda"), ("cuda", "cuda"), ("triton", "cuda")]


def backend_params(op: str, torch_backend: bool = False) -> list:
    """pytest params of every kernel (backend, device) pair; unavailable ones skip with the reason.

    The ``torch`` backend runs the reference itself, so an equivalence test on it compares the
    reference with itself: it is left out unless ``torch_backend`` (tests of behaviour every
    backend shares: errors, state, autograd plumbing)."""
    params = []
    for backend, device in _PAIRS:
        if backend == "torch" and not torch_backend:
            continue
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


# The rule's slack, per element. Computation: ULPS ulps of the compute dtype (fp32 for
# fp16/bf16/fp32 outputs, fp64 for fp64) at the element's scale, times sqrt(terms): the kernels
# order their sums differently from the reference (which accumulates some reductions in fp64),
# a random walk of roundings. Storage: an fp16/bf16 output is the fp32 result rounded once, so
# half an ulp of the output dtype at the element itself covers a rounding that falls the other
# way from the reference's and no more: a truncating store (up to 1 ulp) fails wherever the
# reference rounded to nearest, whatever the element's terms.
ULPS = {torch.float64: 8.0, torch.float32: 8.0}
NARROW = (torch.float16, torch.bfloat16)
# Largest mean signed error, in ulps, toward larger magnitudes, of an fp16/bf16 output over the
# elements whose computation slack is under a tenth of an ulp (their error is the final
# rounding): round-to-nearest averages 0 (+-0.02 over 256 elements of a uniform rounding
# error), truncation -0.5, rounding away +0.5.
BIAS_ULPS = 0.2
BIAS_MIN_ELEMENTS = 256


def ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of ``dtype``'s values at |x| (fp64 tensor): eps * 2^floor(log2|x|), and the
    subnormal spacing below the smallest normal."""
    fi = torch.finfo(dtype)
    mag = x.abs().clamp_min(fi.tiny)
    return fi.eps * torch.exp2(torch.floor(torch.log2(mag)))


def assert_matches_reference(actual: torch.Tensor, ref_same_dtype: torch.Tensor, ref_fp64: torch.Tensor,
                             name: str = "output", ratio: float = 2.0, floor=None, terms: int = 1) -> None:
    """The tolerance rule (docs/DESIGN.md, "The tolerance rule"), per element i:

        |actual_i - ref64_i| <= ratio * |ref_same_i - ref64_i|
                                + ULPS[acc] * sqrt(terms) * ulp_acc(scale_i)   (computation)
                                + 0.5 * ulp_dtype(ref64_i)                     (fp16/bf16 store)
        scale_i = max(|ref64_i|, floor_i)

    ``ref_fp64`` is the reference in float64 on the *quantized* inputs (the ones ``actual`` was
    computed from), ``ref_same_dtype`` the reference in ``actual``'s dtype: PyTorch's own error
    at that element; acc is fp32 for fp16/bf16/fp32 outputs, fp64 for fp64. ``floor`` (a float
    or a tensor broadcastable to the output) is the size of the terms each element is a sum of,
    where that exceeds the element (a gradient summed over a group, a loss of cancelling terms);
    by default an element is judged at its own magnitude, so an error on a small element cannot
    hide under the rounding of a large one. ``terms`` is how many values a reduction sums into
    each element.

    Then, for fp16/bf16 outputs, the rounding must be to nearest: the mean signed error toward
    larger magnitudes, over the elements whose error is their final rounding, must stay within
    BIAS_ULPS ulp (or twice the reference's own bias). Non-finite values must sit at the same
    places in both.
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
    zero = torch.zeros_like(a)
    r_f = torch.where(fin, r, zero)
    err = torch.where(fin, (a - r_f).abs(), zero)
    err_ref = torch.where(fin, (s - r_f).abs(), zero)
    scale = r_f.abs()
    if floor is not None:
        floor_t = torch.as_tensor(floor, dtype=torch.float64).cpu()
        scale = torch.maximum(scale, torch.where(fin, floor_t.expand_as(scale), zero))
    narrow = actual.dtype in NARROW
    acc = torch.float32 if narrow or actual.dtype == torch.float32 else torch.float64
    compute = ULPS[acc] * max(1.0, terms) ** 0.5 * ulp(scale, acc)
    store = 0.5 * ulp(r_f, actual.dtype) if narrow else zero
    bound = ratio * err_ref + compute + store
    over = err > bound
    if over.any():
        flat_excess = (err - bound).flatten()
        top = flat_excess.topk(min(5, flat_excess.numel())).indices
        rows = []
        for i in top.tolist():
            idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), a.shape)) if a.dim() else ()
            rows.append(f"    at {idx}: got {a[idx].item():.9g}, fp64 ref {r[idx].item():.9g}, "
                        f"{actual.dtype} ref {s[idx].item():.9g}, bound {bound[idx].item():.3g}")
        raise AssertionError(
            f"{name} ({actual.dtype}, shape {tuple(a.shape)}): {int(over.sum())}/{a.numel()} elements over the "
            f"per-element bound ({ratio} x reference error + {ULPS[acc] * max(1.0, terms) ** 0.5:.3g} {acc} ulps "
            f"of the element's scale{' + half an ulp' if narrow else ''}); worst:\n" + "\n".join(rows))
    rounded = fin & (r_f != 0) & (compute < 0.1 * ulp(r_f, actual.dtype))
    if narrow and int(rounded.sum()) >= BIAS_MIN_ELEMENTS:
        toward = lambda v: ((v - r_f) * r_f.sign() / ulp(r_f, actual.dtype))[rounded].mean().item()
        bias, bias_ref = toward(a), toward(s)
        assert abs(bias) <= max(BIAS_ULPS, 2 * abs(bias_ref)), (
            f"{name} ({actual.dtype}): mean signed error {bias:+.3f} ulp toward larger magnitudes over "
            f"{int(rounded.sum())} elements (reference {bias_ref:+.3f}): the rounding is not to nearest")


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


_CSRC = __import__("pathlib").Path(__file__).resolve().parents[1] / "csrc"


def kernel_constant(source: str, name: str) -> int:
    """The integer value of ``constexpr <type> <name> = <expr>;`` in ``csrc/<source>``: the
    boundary tests take their sizes from the kernels' own constants, so they move with them."""
    import re
    text = (_CSRC / source).read_text()
    found = re.findall(rf"constexpr\s+[\w:]+\s+{name}\s*=\s*([^;]+);", text)
    assert len(found) == 1, f"{name}: {len(found)} definitions in csrc/{source}"
    expr = found[0].strip()
    assert re.fullmatch(r"[\d\s<>*+()-]+", expr), f"{name} = {expr}: not a plain integer expression"
    return int(eval(expr))



def loss_and_grad(fn: Callable, logits: torch.Tensor, cot: torch.Tensor,
                  cot_dtype: Optional[torch.dtype] = None):
    """(loss, dlogits) of ``fn`` backpropagating sum(loss * cot) (cot summed for a scalar loss),
    the cotangent rounded to ``cot_dtype`` (default the loss's: what autograd hands over), so that
    an fp64 reference can take the same cotangent as the low-precision runs."""
    z = logits.detach().clone().requires_grad_(True)
    loss = fn(z)
    c = cot if loss.dim() else cot.sum()
    loss.backward(c.to(cot_dtype or loss.dtype).to(loss.dtype))
    return loss.detach(), z.grad


def assert_same_loss_and_grad(ours: Callable, theirs: Callable, z: torch.Tensor, rtol: float,
                              atol: Optional[Callable[[torch.Tensor], float]] = None, check_dtype: bool = True) -> None:
    """Two losses of ``z`` equal, and their gradients (backward of ones): to ``rtol``, and to
    ``atol(their tensor)`` absolute (default rtol)."""
    results = []
    for fn in (ours, theirs):
        zz = z.detach().clone().requires_grad_(True)
        loss = fn(zz)
        loss.backward(torch.ones_like(loss))
        results.append((loss.detach(), zz.grad))
    for x, y in zip(*results):
        torch.testing.assert_close(x, y, rtol=rtol, atol=rtol if atol is None else atol(y), check_dtype=check_dtype)


# The Python-level ways to read a tensor's value on the host.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


class HostRead(RuntimeError):
    """A host read inside host_reads_raise()."""


# The aten ops whose result needs a tensor's value on the host: what a CUDA tensor would sync on.
# torch's own C++ calls them too (indexing with a 0-dim integer tensor reads it with
# _local_scalar_dense), where the Python-level patches below do not see them.
HOST_READ_OPS = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.is_nonzero",
                 "aten.equal", "aten._unique2", "aten.unique_consecutive", "aten.repeat_interleave.Tensor")


class _DenyHostReadOps(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(HOST_READ_OPS):
            raise HostRead(str(func))
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_reads_raise():
    """Every host read of a tensor's value raises inside: the Python-level ones (item, tolist,
    __bool__, __float__, __int__, __index__, cpu() and numpy()) and the aten ops that read a
    value on the host wherever they are called from (HOST_READ_OPS). Reads inside the C++
    kernels (CPU memory, which is no sync) are not seen."""
    def deny(name):
        def read(*args, **kwargs):
            raise HostRead(name)
        return read
    with pytest.MonkeyPatch.context() as mp, _DenyHostReadOps():
        for name in HOST_READS:
            mp.setattr(torch.Tensor, name, deny(name))
        yield
