"""One registration for an op that has a C++ kernel, a Triton twin and a simt twin.

``tricks_ext::<name>`` is the C++ op (CPU and CUDA kernels, split by torch's dispatcher),
``tricks_ext::<name>_triton`` wraps the Triton launcher of the same signature and
``tricks_ext::<name>_simt`` the CUDA binding run by the SIMT emulator on CPU tensors
(tricks_ext/ops/_simt.py; present when the extension was built with it); in-place ``<name>_``
ops keep their trailing ``_`` (``mixup_apply_triton_``). :class:`Twin` registers one fake
kernel on all of them; :func:`register_autograd` one backward formula on each, every op calling
its own kind's backward op.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence

import torch

from tricks_ext import _ext
from tricks_ext.ops._simt import simt_impl

KINDS = ("cxx", "triton", "simt")


class Twin:
    """The C++ op ``tricks_ext::<name>`` (absent without the extension) and its twins.

    Args:
        name: the op's schema name.
        triton_impl: the Triton side, annotated with the op's signature (torch.library builds
            the twins' schema from the annotations; the simt twin takes the same signature).
        fake: the fake (meta) kernel of all; it validates with ``torch._check`` and allocates.
        triton_fake, simt_fake: a twin's fake, where its outputs differ (a partial-sum count).
        mutates_args: names of the arguments written in place.
    """

    def __init__(self, name: str, triton_impl: Callable, fake: Callable, triton_fake: Optional[Callable] = None,
                 simt_fake: Optional[Callable] = None, mutates_args: Sequence[str] = ()) -> None:
        self.name = name
        self.ops: Dict[str, Callable] = {}
        if _ext.HAS_C:
            torch.library.register_fake(f"tricks_ext::{name}")(fake)
            self.ops["cxx"] = getattr(torch.ops.tricks_ext, name)
        impls = {"triton": (triton_impl, triton_fake)}
        if _ext.HAS_SIMT_KERNELS:
            impls["simt"] = (simt_impl(name, triton_impl, mutates_args), simt_fake)
        for kind, (impl, kind_fake) in impls.items():
            twin = torch.library.custom_op(qualname(name, kind), impl, mutates_args=tuple(mutates_args))
            twin.register_fake(kind_fake or fake)
            self.ops[kind] = twin

    @property
    def cxx(self) -> Optional[Callable]:
        return self.ops.get("cxx")

    @property
    def triton(self) -> Callable:
        return self.ops["triton"]

    @property
    def simt(self) -> Optional[Callable]:
        return self.ops.get("simt")


def register_autograd(fwd: Twin, make_backward: Callable[[Callable], Callable], setup_context: Callable,
                      bwd: Optional[Twin] = None, kinds: Iterable[str] = KINDS) -> None:
    """Register ``make_backward(bwd op)`` as the backward of each of ``fwd``'s ops (``kinds``
    present), each kind's forward with the same kind's backward; ``bwd`` defaults to ``fwd``
    itself (ops that are linear in their input)."""
    for kind in kinds:
        if kind in fwd.ops:
            back = (bwd or fwd).ops[kind]
            torch.library.register_autograd(qualname(fwd.name, kind), make_backward(back), setup_context=setup_context)


def qualname(name: str, kind: str) -> str:
    """``tricks_ext::<name>`` of the C++ op, ``tricks_ext::<name>_<kind>`` of a twin, in-place ops
    keeping their trailing ``_`` (``mixup_apply_`` -> ``tricks_ext::mixup_apply_triton_``)."""
    if kind == "cxx":
        return f"tricks_ext::{name}"
    return f"tricks_ext::{name[:-1]}_{kind}_" if name.endswith("_") else f"tricks_ext::{name}_{kind}"
