"""The simt backend's calls: an op's CUDA binding and kernels, run on CPU tensors by the SIMT
emulator (csrc/simt/), under three thread orders.

``tricks_simt::<op>`` (registered by csrc/simt/kernels.cpp when the extension is built with the
CUDA headers) is the CUDA binding of ``tricks_ext::<op>`` with the emulated kernels behind it.
:func:`simt_call` runs it once per thread order, forward, reverse and a seeded shuffle of the
threads between barriers, with shared memory poisoned at every block start, restoring the
arguments it writes in place between runs; every output and every argument written in place
must come out bit-identical, else :class:`SimtOrderError` (a race between barriers, or a read of
shared memory that no thread of the block wrote). The last run's results are the call's.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, List, Sequence

import torch
from torch import Tensor

# (name, simt::Schedule value) of every order
ALL_ORDERS = (("forward", 0), ("reverse", 1), ("shuffle", 2))


def orders() -> tuple:
    """The orders each call runs: TRICKS_EXT_SIMT_ORDERS, a comma list (default all three; `make
    test-asan` runs forward only: AddressSanitizer looks for out-of-bounds accesses, which do not
    need three runs). Read at each simt call, so a bad value fails the simt backend with its
    reason and leaves ``import tricks_ext`` and the other backends alone."""
    value = os.environ.get("TRICKS_EXT_SIMT_ORDERS", "forward,reverse,shuffle")
    names = [n.strip() for n in value.split(",")]
    unknown = [n for n in names if n not in dict(ALL_ORDERS)]
    chosen = tuple(o for o in ALL_ORDERS if o[0] in names)
    if unknown or not chosen:
        raise ValueError(f"TRICKS_EXT_SIMT_ORDERS={value!r}: choose a comma list of "
                         f"{', '.join(o[0] for o in ALL_ORDERS)}")
    return chosen


# Seed of the shuffled order (mixed with the launch and block index in the emulator).
SEED = int(os.environ.get("TRICKS_EXT_SIMT_SEED", "0"))


class SimtOrderError(RuntimeError):
    """An emulated kernel gave different results under two thread orders."""


def _tensors(value: Any) -> List[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _first_difference(a: Tensor, b: Tensor) -> str:
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape/dtype {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
    diff = (a.reshape(-1).view(torch.uint8).view(-1, a.element_size()) !=
            b.reshape(-1).view(torch.uint8).view(-1, a.element_size())).any(1)
    i = int(diff.nonzero()[0])
    return f"element {i} of {a.numel()} ({a.dtype}): {a.reshape(-1)[i].item()!r} vs {b.reshape(-1)[i].item()!r}"


def _same_bits(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return a.numel() == 0 or torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def simt_call(name: str, args: Sequence[Any], mutated: Sequence[int] = ()) -> Any:
    """Run ``tricks_simt::<name>(*args)`` under every thread order; ``mutated``: the positions
    of the arguments (tensors or tensor lists) the op writes in place."""
    op = getattr(torch.ops.tricks_simt, name)
    written = [t for i in mutated for t in _tensors(args[i])]
    before = [t.clone() for t in written]
    runs = []
    out = None
    chosen = orders()
    for k, (order, code) in enumerate(chosen):
        if k:
            for t, b in zip(written, before):
                t.copy_(b)
        torch.ops.tricks_simt.set_schedule(code, SEED)
        out = op(*args)
        last = k == len(chosen) - 1
        runs.append((order, _tensors(out) + (written if last else [t.clone() for t in written])))
    order0, first = runs[0]
    for order, results in runs[1:]:
        for j, (a, b) in enumerate(zip(first, results)):
            if not _same_bits(a, b):
                what = f"output {j}" if j < len(first) - len(written) else f"in-place argument {j - len(first) + len(written)}"
                raise SimtOrderError(
                    f"tricks_simt::{name}: {what} differs between the {order0} and {order} thread orders "
                    f"({_first_difference(a, b)}): a race between barriers, or a read of shared memory no thread "
                    f"wrote (TRICKS_EXT_SIMT_SEED={SEED})")
    return out


def simt_impl(name: str, prototype: Callable, mutates_args: Sequence[str] = ()) -> Callable:
    """The implementation of the custom op ``tricks_ext::<name>_simt``: ``prototype``'s
    signature (torch.library reads the schema from it), the body :func:`simt_call`."""
    sig = inspect.signature(prototype, eval_str=True)
    names = list(sig.parameters)
    mutated = [names.index(a) for a in mutates_args]

    def impl(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return simt_call(name, bound.args, mutated)

    impl.__signature__ = sig  # type: ignore[attr-defined]
    impl.__name__ = f"{name}_simt"
    impl.__module__ = prototype.__module__
    return impl
