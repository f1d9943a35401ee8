"""One contract per op: each argument has one name, in one order, from the public function to the
kernel. Compares, by inspect.signature and the registered schemas: each public function, its
reference (tricks_ext/reference/), its op's schema and its Triton launcher (which has the op's
exact signature); the optimizer's hyperparameters against their one declaration
(tricks_ext.ops.optim.Hyperparams), the C++ list that fills the kernels' Params, the schema, the
launcher and the optimizers' keyword arguments; and the layering of the package. Every
exception is listed below with its reason."""
import ast
import importlib
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

import tricks_ext
from tricks_ext import _backend, functional as F
from tricks_ext.ops.optim import SCHEMA, Extras, Hyperparams

ROOT = Path(__file__).resolve().parent.parent
needs_c = pytest.mark.skipif(not tricks_ext.HAS_C, reason="the C++ extension is not built")
needs_triton = pytest.mark.skipif(_backend._TRITON_MISSING is not None, reason="triton is not installed")

# public function -> (its reference "module.function", its forward op)
CONTRACTS = {
    "weight_standardize": ("weight_standardize.weight_standardize", "weight_standardize_fwd"),
    "dropout": ("dropout.dropout", "dropout_apply"),
    "dropout_add": ("dropout.dropout_add", "dropout_apply"),
    "drop_path": ("dropout.drop_path", "dropout_apply"),
    "evonorm_s0": ("evonorm.evonorm_s0", "evonorm_s0_fwd"),
    "mixup": ("mixup.mix", "mixup_apply"),
    "mask_boxes": ("mask_boxes.mask_boxes", "mask_boxes"),
    "soft_target_cross_entropy": ("soft_ce.soft_ce_rows", "soft_ce_fwd"),
    "soft_target_binary_cross_entropy": ("soft_bce.soft_bce_elements", "soft_bce_fwd"),
    "soft_f1_loss": ("soft_f1.soft_f1_loss", "soft_f1_sums"),
}

# Arguments of a layer that the public function does not have, by reason.
LOWERED = {
    # the public function's `targets` (labels, MixedTargets or dense) split by kind
    "targets": {"a", "b", "lam", "dense"},
    # x's memory layout as the kernels walk it: computed from x
    "layout": {"height", "width", "inner"},
    # the Philox stream: public functions draw it from `generator` or take `seed_offset`; the
    # reference takes its two halves
    "stream": {"seed_offset", "seed", "offset"},
    # the dropout family is one op: dropout has no residual or gate; drop_path draws per sample
    # (group) and scale_by_keep sets scale; p's keep scale is computed once on the host
    "dropout_family": {"residual", "gate", "scale", "group"},
    # EvoNorm's chunks per group (0: the launcher's choice); the public v is the op's v
    "evonorm": {"split"},
    # mixup's per-sample coefficients and boxes come from tricks_ext.data.Mixup; the reference
    # has the op's arguments
    "mixup": set(),
    # the BCE's reference returns elements, reduced by reduce_elements; the CE's rows
    "reduction_apart": {"reduction"},
}
LOWERED_NAMES = set().union(*LOWERED.values())
# Public-only arguments: the backend choice; out-of-place or in place (the op's `_` twin);
# dropout's training flag and generator; EvoNorm's apply_act (the op always applies it, the
# module's eval path skips it); the deprecated `smoothing` alias of soft BCE (one release); the
# losses' `targets` (see LOWERED).
PUBLIC_ONLY = {"backend", "inplace", "training", "generator", "apply_act", "smoothing", "targets"}

# The one rule across layers: every op takes its tensors first, then its scalars (the schemas
# here all do); within each kind, the order is the public function's. Pairs whose shared
# arguments differ from that, with the reason:
ORDER_EXCEPTIONS = {
    # torch's cross_entropy and timm's SoftTargetCrossEntropy callers pass reduction before
    # label_smoothing; the loss ops and references put the reduction last.
    ("soft_target_cross_entropy", "public", "op"): "reduction last in the loss ops",
}


def _public(name):
    return list(inspect.signature(getattr(F, name)).parameters)


def _reference(spec):
    module, fn = spec.split(".")
    return list(inspect.signature(getattr(importlib.import_module(f"tricks_ext.reference.{module}"), fn)).parameters)


def _schema_names(op):
    return [a.name for a in getattr(torch.ops.tricks_ext, op).default._schema.arguments]


def _shared_order(a, b, tensors):
    """The names a and b share, in a's order and in b's: the tensors (``tensors``, the op's
    tensor arguments) first in each, then the rest."""
    def order(x, y):
        shared = [n for n in x if n in y]
        return [n for n in shared if n in tensors] + [n for n in shared if n not in tensors]
    return order(a, b), order(b, a)


def _schema_tensors(op):
    return {a.name for a in getattr(torch.ops.tricks_ext, op).default._schema.arguments
            if "Tensor" in str(a.type)}


@needs_c
@pytest.mark.parametrize("public", sorted(CONTRACTS))
def test_public_reference_and_op_share_names_and_order(public):
    ref_spec, op = CONTRACTS[public]
    layers = {"public": _public(public), "reference": _reference(ref_spec), "op": _schema_names(op)}
    allowed = set(layers["public"]) | LOWERED_NAMES
    for layer in ("reference", "op"):
        unknown = [n for n in layers[layer] if n not in allowed]
        assert not unknown, f"{public}: {layer} arguments {unknown} have no public name and no listed reason"
    unknown = [n for n in layers["public"] if n not in set(layers["op"]) | set(layers["reference"]) | PUBLIC_ONLY]
    assert not unknown, f"{public}: public arguments {unknown} reach neither the op nor the reference"
    for x, y in (("public", "reference"), ("public", "op"), ("reference", "op")):
        a, b = _shared_order(layers[x], layers[y], _schema_tensors(op))
        if (public, x, y) in ORDER_EXCEPTIONS:
            assert a != b, f"{public}: the listed order exception {x}/{y} no longer holds; remove it"
        else:
            assert a == b, f"{public}: {x} {a} and {y} {b} order their shared arguments differently"


def _launchers():
    """(op name, Triton launcher) for every op whose Triton twin exists."""
    out = []
    for module in ("dropout", "evonorm", "mask_boxes", "mixup", "optim", "soft_bce", "soft_ce", "soft_f1",
                   "weight_standardize"):
        mod = importlib.import_module(f"tricks_ext.triton_kernels.{module}")
        for name, fn in vars(mod).items():
            if getattr(fn, "device_guarded", False):
                out.append((name, fn))
    return out


@needs_c
@needs_triton
def test_every_triton_launcher_has_its_ops_signature():
    launchers = _launchers()
    assert len(launchers) == 17
    for name, fn in launchers:
        assert list(inspect.signature(fn).parameters) == _schema_names(name), name
        if name != "optim_step_":  # the fused step has no Triton op: the optimizer calls the launcher
            twin = name[:-1] + "_triton_" if name.endswith("_") else name + "_triton"
            assert _schema_names(twin) == _schema_names(name), twin


def _cxx_hyperparams():
    """(type, name) of csrc/optim/math.h's TRICKS_OPTIM_HYPERPARAMS, in order."""
    text = (ROOT / "csrc" / "optim" / "math.h").read_text()
    body = re.search(r"#define TRICKS_OPTIM_HYPERPARAMS\(X\)(.*?)\n\n", text, re.S).group(1)
    return re.findall(r"X\((\w+), (\w+)\)", body)


def test_optimizer_hyperparameters_are_declared_once():
    """Hyperparams -> the schema (built from it), the C++ Params list, the Triton launcher."""
    fields = list(Hyperparams._fields)
    cxx_types = {float: "double", int: "int64_t", bool: "bool"}
    hints = typing.get_type_hints(Hyperparams)
    assert _cxx_hyperparams() == [(cxx_types[hints[f]], f) for f in fields]
    tail = [a.split()[-1] for a in SCHEMA[1:SCHEMA.rindex(") ->")].split(", ")][-len(fields):]
    assert tail == fields
    if tricks_ext.HAS_C:
        assert _schema_names("optim_step_")[-len(fields):] == fields
    if _backend._TRITON_MISSING is None:
        from tricks_ext.triton_kernels.optim import optim_step_
        assert list(inspect.signature(optim_step_).parameters)[-len(fields):] == fields


def test_optimizer_hyperparameters_carry_the_public_names():
    """Each field is a param-group key or an optimizer option of the same name; the exceptions:
    beta1/beta2 (the group's betas pair, torch's) and Ranger's k/alpha (pytorch-optimizer's
    Ranger names, stored as lookahead_k/lookahead_alpha)."""
    opt = tricks_ext.optim.FusedAdam([torch.nn.Parameter(torch.zeros(2))], ema_decay=0.9, clip_value=1.0)
    group_keys = set(opt.param_groups[0])
    options = set(tricks_ext.optim._base.StepOptions.__annotations__)
    for field in Hyperparams._fields:
        if field in ("beta1", "beta2"):
            assert "betas" in group_keys
            continue
        assert field in group_keys or (field in options and field in Extras._fields), field
    ranger = inspect.signature(tricks_ext.optim.Ranger).parameters
    assert "k" in ranger and "alpha" in ranger
    for name in ("lookahead_k", "lookahead_alpha", "decoupled_weight_decay"):
        assert name in inspect.signature(tricks_ext.optim.FusedAdam).parameters
    values = Hyperparams.of(opt.param_groups[0], opt.extras)
    assert values.clip_value == 1.0 and values.ema_decay == 0.9 and values.lookahead_k == 0


@needs_c
def test_torch_refuses_a_schema_whose_types_differ_from_the_kernels():
    """The C++ kernels' argument types are checked against the schema Python defines: a schema
    with lr as an int fails to define (here on the extension loaded alone)."""
    lib = next(Path(tricks_ext.__file__).parent.glob("_C*.so"))
    code = (f"import torch\ntorch.ops.load_library({str(lib)!r})\n"
            f"s = {SCHEMA!r}.replace('float lr', 'int lr')\n"
            "try:\n    torch.library.define('tricks_ext::optim_step_', s)\nexcept RuntimeError as e:\n"
            "    assert 'schema' in str(e), e\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "refused" in out.stdout, out.stderr[-2000:]


def test_public_losses_say_label_smoothing():
    """torch's name for it; timm's drop-in module SoftTargetBCE keeps timm's `smoothing`, and
    the functional form accepts it, deprecated, for one release."""
    for name in ("soft_target_cross_entropy", "soft_target_binary_cross_entropy"):
        params = inspect.signature(getattr(F, name)).parameters
        assert "label_smoothing" in params
    params = inspect.signature(F.soft_target_binary_cross_entropy).parameters
    assert params["smoothing"].kind is inspect.Parameter.KEYWORD_ONLY
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    new = F.soft_target_binary_cross_entropy(logits, labels, label_smoothing=0.2, backend="torch")
    with pytest.warns(FutureWarning, match="renamed label_smoothing"):
        old = F.soft_target_binary_cross_entropy(logits, labels, smoothing=0.2, backend="torch")
    assert torch.equal(new, old)
    with pytest.raises(TypeError, match="former name"):
        F.soft_target_binary_cross_entropy(logits, labels, label_smoothing=0.3, smoothing=0.2)


def _imports(path):
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_only_the_torch_backend_imports_the_reference():
    """reference/ is the executable spec: inside the package, only the ops' torch backends (and
    reference/ itself) import it."""
    package = ROOT / "tricks_ext"
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("reference/") or rel.startswith("ops/"):
            continue
        assert not [m for m in _imports(path) if m.startswith("tricks_ext.reference")], rel


def test_ops_import_the_reference_for_their_torch_backend_only():
    """In ops/, the names taken from reference/ serve the torch backend (its entries and the
    differentiable backward built on them): each is used in a function whose name says so."""
    allowed = {"_torch", "_torch_entry", "_step_torch", "_graph_backward", "_graph_grads", "_reference"}
    for path in (ROOT / "tricks_ext" / "ops").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("tricks_ext.reference") for a in node.names}
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} & imported
            if used:
                assert fn.name in allowed, f"{path.name}: {fn.name} uses {sorted(used)} from reference/"


def test_the_package_has_no_build_tools_and_does_not_reach_for_benchmarks():
    package = ROOT / "tricks_ext"
    assert not (package / "compile_check.py").exists()
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "benchmarks" not in [m.split(".")[0] for m in _imports(path)], path
        assert "sys.path.insert" not in text, path
