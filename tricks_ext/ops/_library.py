"""One registration for an op that has a C++ kernel, a Triton twin and a simt twin.

``tricks_ext::<name>`` is the C++ op (CPU and CUDA kernels, split by torch's dispatcher),
``tricks_ext::<name>_triton`` wraps the Triton launcher of the same signature and
``tricks_ext::<name>_simt`` the CUDA binding run by the SIMT emulator on CPU tensors
(tricks_ext/ops/_simt.py; present when the extension was built with it); in-place ``<name>_``
ops keep their trailing ``_`` (``mixup_apply_triton_``). :class:`Twin` registers one fake
kernel on all of them; :func:`register_autograd` one backward formula on each, every op calling
its own kind's backward op.

Second derivatives: the kernels' backward ops have no autograd of their own, so a backward run
with ``create_graph=True`` (double backward, gradient penalties, Hessian-vector products) takes
the op's ``graph`` backward instead: the same gradients differentiated out of the ``torch``
backend's forward (:func:`differentiable_vjp`), a graph that autograd can differentiate again to
any order. First-order backward passes never take it.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from tricks_ext import _ext
from tricks_ext.ops._simt import simt_impl

KINDS = ("cxx", "triton", "simt")
# Each Triton twin's launcher by the twin's qualified name (scripts/gpu_model.py runs them on meta
# tensors to record the launches the benchmarks make).
TRITON_LAUNCHERS: Dict[str, Callable] = {}


class Twin:
    """The C++ op ``tricks_ext::<name>`` (absent without the extension) and its twins.

    Args:
        name: the op's schema name, and its Triton launcher's
            (``tricks_ext.triton_kernels.<family>.<name>``, the op's exact signature).
        family: the op family's module name.
        fake: the fake (meta) kernel of all; it validates with ``torch._check`` and allocates.
            Annotated with the op's signature, from which torch.library builds the twins'
            schemas.
        triton_fake, simt_fake: a twin's fake, where its outputs differ (a partial-sum count).
        mutates_args: names of the arguments written in place.
    """

    def __init__(self, name: str, family: str, fake: Callable, triton_fake: Optional[Callable] = None,
                 simt_fake: Optional[Callable] = None, mutates_args: Sequence[str] = ()) -> None:
        self.name = name
        self.ops: Dict[str, Callable] = {}
        if _ext.HAS_C:
            torch.library.register_fake(f"tricks_ext::{name}")(fake)
            self.ops["cxx"] = getattr(torch.ops.tricks_ext, name)
        impls = {"triton": (_triton_launcher(name, family, fake), triton_fake)}
        TRITON_LAUNCHERS[qualname(name, "triton")] = impls["triton"][0]
        if _ext.HAS_SIMT_KERNELS:
            impls["simt"] = (simt_impl(name, fake, mutates_args), simt_fake)
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


def _triton_launcher(name: str, family: str, prototype: Callable) -> Callable:
    """The Triton launcher ``tricks_ext.triton_kernels.<family>.<name>``, imported at its first
    call (the package imports without triton, and importing it costs about a second), with
    ``prototype``'s signature for torch.library."""
    sig = inspect.signature(prototype, eval_str=True)

    def impl(*args: Any) -> Any:
        return getattr(importlib.import_module(f"tricks_ext.triton_kernels.{family}"), name)(*args)

    impl.__signature__ = sig  # type: ignore[attr-defined]
    impl.__name__ = f"{name}_triton"
    impl.__module__ = prototype.__module__
    return impl


def register_autograd(fwd: Twin, make_backward: Callable[[Callable], Callable], setup_context: Callable,
                      bwd: Optional[Twin] = None, kinds: Iterable[str] = KINDS,
                      graph: Optional[Callable] = None) -> None:
    """Register ``make_backward(bwd op)`` as the backward of each of ``fwd``'s ops (``kinds``
    present), each kind's forward with the same kind's backward; ``bwd`` defaults to ``fwd``
    itself (ops that are linear in their input). ``graph(ctx, *grads)``, the backward built from
    differentiable ops, replaces it where :func:`wants_graph` holds."""
    for kind in kinds:
        if kind in fwd.ops:
            back = make_backward((bwd or fwd).ops[kind])
            torch.library.register_autograd(qualname(fwd.name, kind), back if graph is None else _or_graph(back, graph),
                                            setup_context=setup_context)


def _or_graph(kernels: Callable, graph: Callable) -> Callable:
    def backward(ctx, *grads):
        if wants_graph(*grads, *ctx.saved_tensors):
            return graph(ctx, *grads)
        return kernels(ctx, *grads)
    return backward


def wants_graph(*tensors: Optional[Tensor]) -> bool:
    """Inside a backward: True when it runs with ``create_graph=True`` (grad mode is on only
    then) and one of ``tensors`` (the incoming gradients, the saved inputs) requires grad, i.e.
    when the gradients it returns must themselves be differentiable."""
    return torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors)


def differentiable_vjp(fn: Callable[..., Tensor], inputs: Sequence[Optional[Tensor]], needs: Sequence[bool],
                       grad_output: Tensor) -> List[Optional[Tensor]]:
    """The gradients of ``fn(*inputs)`` (one output) against ``grad_output`` for the inputs
    flagged in ``needs`` (None for the others), as a graph of differentiable ops: ``fn`` is an
    op's ``torch`` backend, so autograd can differentiate the result again."""
    with torch.enable_grad():
        args = [t.detach().requires_grad_() if need and t is not None and not t.requires_grad else t
                for t, need in zip(inputs, needs)]
        wanted = [i for i, (t, need) in enumerate(zip(args, needs)) if need and t is not None]
        grads: List[Optional[Tensor]] = [None] * len(args)
        if wanted:
            out = fn(*args)
            found = torch.autograd.grad(out, [args[i] for i in wanted], grad_output, create_graph=True,
                                        allow_unused=True)
            for i, g in zip(wanted, found):
                grads[i] = torch.zeros_like(args[i]) if g is None else g
        return grads


def loss_input_grads(ctx, dense: Optional[Tensor], n_inputs: int, logits_grad: Callable[[], Tensor],
                     dense_grad: Callable[[], Tensor]) -> Tuple[Optional[Tensor], ...]:
    """A loss op's input grads, inputs (logits, a, b, lam, dense, ...): ``logits_grad()`` and
    ``dense_grad()`` where autograd asks for them (dense targets given), None elsewhere."""
    grads: List[Optional[Tensor]] = [None] * n_inputs
    if ctx.needs_input_grad[0]:
        grads[0] = logits_grad()
    if dense is not None and ctx.needs_input_grad[4]:
        grads[4] = dense_grad()
    return tuple(grads)


def define_graph_backward(name: str, schema: str, impl: Callable) -> None:
    """``tricks_ext::<name>``: a backward built from differentiable ops, for the C++ autograd
    functions (csrc/<op>/autograd.cpp) to call when :func:`wants_graph` holds there. Registered as
    CompositeImplicitAutograd, so autograd records the ops inside ``impl``."""
    torch.library.define(f"tricks_ext::{name}", schema)
    torch.library.impl(f"tricks_ext::{name}", "CompositeImplicitAutograd", impl)


def qualname(name: str, kind: str) -> str:
    """``tricks_ext::<name>`` of the C++ op, ``tricks_ext::<name>_<kind>`` of a twin, in-place ops
    keeping their trailing ``_`` (``mixup_apply_`` -> ``tricks_ext::mixup_apply_triton_``)."""
    if kind == "cxx":
        return f"tricks_ext::{name}"
    return f"tricks_ext::{name[:-1]}_{kind}_" if name.endswith("_") else f"tricks_ext::{name}_{kind}"
