"""One registration for an op that has a C++ kernel and a Triton twin.

``tricks_ext::<name>`` is the C++ op (CPU and CUDA kernels, split by torch's dispatcher) and
``tricks_ext::<name>_triton`` (in-place ``<name>_`` ops: ``<name>_triton_``) wraps the Triton
launcher of the same signature. :class:`Twin`
registers one fake kernel on both; :func:`register_autograd` one backward formula on both, each
pair calling its own backward op.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Sequence

import torch

from tricks_ext import _ext

KINDS = ("cxx", "triton")


class Twin:
    """The C++ op ``tricks_ext::<name>`` (absent without the extension) and its Triton twin.

    Args:
        name: the op's schema name.
        triton_impl: the Triton side, annotated with the op's signature (torch.library builds
            the twin's schema from the annotations).
        fake: the fake (meta) kernel of both; it validates with ``torch._check`` and allocates.
        triton_fake: the Triton twin's fake, where its outputs differ (a partial-sum count).
        mutates_args: names of the arguments written in place.
    """

    def __init__(self, name: str, triton_impl: Callable, fake: Callable, triton_fake: Optional[Callable] = None,
                 mutates_args: Sequence[str] = ()) -> None:
        self.name = name
        self.ops: Dict[str, Callable] = {}
        if _ext.HAS_C:
            torch.library.register_fake(f"tricks_ext::{name}")(fake)
            self.ops["cxx"] = getattr(torch.ops.tricks_ext, name)
        twin = torch.library.custom_op(f"tricks_ext::{triton_name(name)}", triton_impl, mutates_args=tuple(mutates_args))
        twin.register_fake(triton_fake or fake)
        self.ops["triton"] = twin

    @property
    def cxx(self) -> Optional[Callable]:
        return self.ops.get("cxx")

    @property
    def triton(self) -> Callable:
        return self.ops["triton"]


def register_autograd(fwd: Twin, make_backward: Callable[[Callable], Callable], setup_context: Callable,
                      bwd: Optional[Twin] = None, kinds: Iterable[str] = KINDS) -> None:
    """Register ``make_backward(bwd op)`` as the backward of each of ``fwd``'s ops (``kinds``
    present), the C++ forward with the C++ backward and the Triton one with the Triton one;
    ``bwd`` defaults to ``fwd`` itself (ops that are linear in their input)."""
    for kind in kinds:
        if kind in fwd.ops:
            back = (bwd or fwd).ops[kind]
            torch.library.register_autograd(_qualname(fwd, kind), make_backward(back), setup_context=setup_context)


def triton_name(name: str) -> str:
    """The Triton twin's op name: ``<name>_triton``, in-place ops keeping their trailing ``_``
    (``mixup_apply_`` -> ``mixup_apply_triton_``)."""
    return f"{name[:-1]}_triton_" if name.endswith("_") else f"{name}_triton"


def _qualname(twin: Twin, kind: str) -> str:
    return f"tricks_ext::{twin.name if kind == 'cxx' else triton_name(twin.name)}"
