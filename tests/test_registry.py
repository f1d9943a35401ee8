"""The contract between the layers: registry keys are op names, errors name the function the
user called, dtype rules live in the registry, fake kernels validate, constants shared with
C++ come from the extension, and every Triton launcher runs on its inputs' device."""
import importlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tricks_ext
import tricks_ext.functional as F
from helpers import expect_error
from tricks_ext import _backend

needs_c = pytest.mark.skipif(not tricks_ext.HAS_C, reason="C++ extension not built")

# Registry key -> the torch.library op that implements it.
OPS = {"dropout_apply": "dropout_apply", "evonorm_s0": "evonorm_s0_fwd", "mask_boxes": "mask_boxes",
       "mixup_apply": "mixup_apply", "optim_step": "optim_step_", "sasa_step": "sasa_step_", "soft_bce": "soft_bce_fwd",
       "soft_ce": "soft_ce_fwd",
       "soft_f1": "soft_f1_sums", "weight_standardize": "weight_standardize_fwd"}


def test_registry_keys_are_op_names():
    assert set(_backend.registered_ops()) == set(OPS)
    for op, schema in OPS.items():
        impls = _backend.registered_ops()[op]
        assert set(impls) >= {"torch", "triton"}
        if tricks_ext.HAS_C:
            assert hasattr(torch.ops.tricks_ext, schema)
            assert impls["cpu"] is impls["cuda"], f"{op}: one C++ entry serves cpu and cuda"


@pytest.mark.parametrize("call, name", [
    (lambda x: F.drop_path(x, 0.5, backend="cuda"), "drop_path"),
    (lambda x: F.dropout_add(x, x, 0.5, backend="cuda"), "dropout_add"),
    (lambda x: F.dropout(x, 0.5, backend="cuda"), "dropout"),
    (lambda x: F.cutout(x, backend="cuda"), "cutout"),
    (lambda x: F.spec_augment(x, 2, 2, backend="cuda"), "spec_augment"),
])
def test_errors_name_the_function_called(call, name):
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(tricks_ext.BackendUnavailableError) as info:
        call(x)
    assert str(info.value).startswith(f"{name}: backend 'cuda' is unavailable"), str(info.value)


def test_dtype_rules_live_in_the_registry(monkeypatch):
    """fp64 params: auto passes over triton for optim_step, an explicit request says why."""
    from tricks_ext import _ext
    monkeypatch.setattr(_ext, "HAS_C", True)
    monkeypatch.setattr(_ext, "HAS_CUDA_KERNELS", True)
    monkeypatch.setattr(_backend, "_TRITON_MISSING", None)
    dev = torch.device("cuda")
    assert _backend.resolve("optim_step", dev, dtype=torch.float32) == "cuda"
    assert _backend.resolve("optim_step", dev, dtype=torch.float64) == "cuda"
    assert _backend.resolve("soft_ce", dev, dtype=torch.float64) == "cuda"
    monkeypatch.setattr(_ext, "HAS_CUDA_KERNELS", False)
    assert _backend.resolve("optim_step", dev, dtype=torch.float32) == "triton"
    assert _backend.resolve("optim_step", dev, dtype=torch.float64) == "torch"
    expect_error(tricks_ext.BackendUnavailableError,
                 lambda: _backend.resolve("optim_step", dev, "triton", dtype=torch.float64, caller="Ranger"),
                 "Ranger: backend 'triton'", "float16, bfloat16, float32", "got float64")


def test_ranger_fp64_on_explicit_triton_is_refused_before_anything_changes():
    p = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    p.grad = torch.randn_like(p)
    before = p.detach().clone()
    opt = tricks_ext.optim.Ranger([p], backend="triton")
    expect_error(tricks_ext.BackendUnavailableError, opt.step, "Ranger", "float64")
    assert torch.equal(p.detach(), before) and not opt.state


@needs_c
def test_constants_come_from_the_extension():
    from tricks_ext.ops.soft_ce import FWD
    assert torch.ops.tricks_ext.dropout_apply_bwd_partial_elements("cpu") == 1 << 16
    assert torch.ops.tricks_ext.dropout_apply_bwd_partial_elements("cuda") == 1024
    expect_error(RuntimeError, lambda: torch.ops.tricks_ext.dropout_apply_bwd_partial_elements("tpu"), "tpu")
    logits = torch.randn(5, 7)
    _loss, stats = FWD.cxx(logits, torch.arange(5), None, None, None, None, 0.0, -100, 0)
    assert stats.shape == (5, torch.ops.tricks_ext.soft_ce_stats_columns())
    with FakeTensorMode():
        fake_stats = FWD.cxx(torch.empty(5, 7), torch.zeros(5, dtype=torch.int64), None, None, None, None, 0.0, -100,
                             0)[1]
    assert fake_stats.shape == stats.shape
    x = torch.randn(3 << 16)
    seed = torch.tensor([1, 2])
    _dx, partials = torch.ops.tricks_ext.dropout_apply_bwd(x, x, torch.tensor(1.0), seed, 0.5, 2.0, 1)
    with FakeTensorMode():
        fx = torch.empty(3 << 16)
        fake = torch.ops.tricks_ext.dropout_apply_bwd(fx, fx, torch.empty(()), torch.empty(2, dtype=torch.int64),
                                                      0.5, 2.0, 1)[1]
    assert fake.shape == partials.shape == (3,)


@needs_c
@pytest.mark.parametrize("call, words", [
    (lambda: torch.ops.tricks_ext.dropout_apply(torch.empty(4), None, None, torch.empty(3, dtype=torch.int64),
                                                0.5, 2.0, 1), ("seed_offset",)),
    (lambda: torch.ops.tricks_ext.dropout_apply(torch.empty(4), torch.empty(5), None, torch.empty(2, dtype=torch.int64),
                                                0.5, 2.0, 1), ("residual",)),
    (lambda: torch.ops.tricks_ext.weight_standardize_fwd(torch.empty(4, 3), 1e-5, torch.empty(3)), ("gain",)),
    (lambda: torch.ops.tricks_ext.evonorm_s0_fwd(torch.empty(2, 6, 5), torch.empty(6), torch.empty(6), torch.empty(6),
                                                 4, 1e-5, 1), ("divisible",)),
    (lambda: torch.ops.tricks_ext.soft_ce_fwd(torch.empty(4, 3), torch.empty(5, dtype=torch.int64), None, None, None,
                                              None, 0.0, -100, 0), ("(4,)",)),
    (lambda: torch.ops.tricks_ext.mixup_apply(torch.empty(4, 3, 2, 2), torch.empty(4, 2), torch.empty(4, 4),
                                              2, 2, 1), ("int32",)),
    (lambda: torch.ops.tricks_ext.mask_boxes(torch.empty(4, 3, 2, 2), torch.empty(4, 4, dtype=torch.int32), 0.0,
                                             2, 2, 1), ("box",)),
])
def test_fake_kernels_validate(call, words):
    with FakeTensorMode():
        with pytest.raises(RuntimeError) as info:
            call()
    for w in words:
        assert w in str(info.value), str(info.value)


LAUNCHERS = {"dropout": ["dropout_apply", "dropout_apply_bwd"], "evonorm": ["evonorm_s0_fwd", "evonorm_s0_bwd"],
             "mask_boxes": ["mask_boxes", "mask_boxes_"], "mixup": ["mixup_apply", "mixup_apply_"],
             "optim": ["optim_step_"], "soft_ce": ["soft_ce_fwd", "soft_ce_bwd"],
             "soft_bce": ["soft_bce_fwd", "soft_bce_bwd"], "soft_f1": ["soft_f1_sums", "soft_f1_sums_bwd"],
             "weight_standardize": ["weight_standardize_fwd", "weight_standardize_bwd"]}


@pytest.mark.skipif(_backend._TRITON_MISSING is not None, reason="triton is not installed")
def test_every_triton_launcher_sets_the_device(monkeypatch):
    """Each public launcher enters torch.cuda.device(<its first tensor's device>); checked
    without a GPU by a tensor that reports cuda:1 and a recording torch.cuda.device."""
    from tricks_ext.triton_kernels import _common

    for module, names in LAUNCHERS.items():
        mod = importlib.import_module(f"tricks_ext.triton_kernels.{module}")
        public = {n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))
                  and getattr(getattr(mod, n), "__module__", None) == mod.__name__
                  and not hasattr(getattr(mod, n), "fn")}
        launchers = {n for n in public if getattr(getattr(mod, n), "device_guarded", False)}
        assert launchers == set(names), (module, public)

    entered = []

    class Recorder:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            return False

    class OnCuda1(torch.Tensor):
        is_cuda = True
        device = torch.device("cuda", 1)

    monkeypatch.setattr(torch.cuda, "device", Recorder)
    t = torch.Tensor._make_subclass(OnCuda1, torch.empty(1))
    seen = []
    guarded = _common.on_input_device(lambda *a: seen.append(len(entered)))
    guarded(3, [t], t)
    guarded(torch.empty(1))
    assert entered == [torch.device("cuda", 1)] and seen == [1, 1]


@needs_c
def test_optim_step_checks_the_plan_on_cpu():
    from tricks_ext.ops.optim import CHUNK, Plan
    ps = [torch.randn(4, 6), torch.randn(5)]
    m, v = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    steps = [torch.tensor(1.0), torch.tensor(1.0)]
    grads = [torch.randn_like(p) for p in ps]
    plan = Plan(ps, m, v, [], [], steps, 2, CHUNK["cpu"], with_ptrs=False)
    assert plan.ptrs is None and plan.work.tolist() == [[0, 0, 6, 1], [0, 6, 6, 1], [0, 12, 6, 1], [0, 18, 6, 1],
                                                         [1, 0, 5, 0]]
    agc = Plan(ps, m, v, [], [], steps, 0, CHUNK["cpu"], agc=[True, True], with_ptrs=False)
    assert agc.work.tolist() == [[0, 0, 6, 2], [0, 6, 6, 2], [0, 12, 6, 2], [0, 18, 6, 2], [1, 0, 5, 2]]
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.0, True, 0.5, 0, False, False, float("inf"), 0.0, 1e-3, 0.0, 0.0, 0, 1.0,
             2 / 3, False)
    op = torch.ops.tricks_ext.optim_step_
    bad = plan.work.clone()
    bad[4, 2] = 6  # one element past the 1-D tensor
    before = [p.clone() for p in ps]
    expect_error(RuntimeError, lambda: op(ps, grads, m, v, [], [], steps, bad, None, None, None, None, *hyper),
                 "work item 4", "outside")
    bad = plan.work.clone()
    bad[1, 3] = 5  # PREPARED with GC_ROW
    expect_error(RuntimeError, lambda: op(ps, grads, m, v, [], [], steps, bad, None, None, None, None, *hyper),
                 "work item 1", "flags")
    with_ptrs = Plan(ps, m, v, [], [], steps, 2, CHUNK["cpu"], with_ptrs=True)
    expect_error(RuntimeError, lambda: op(ps, grads, m, v, [], [], steps, plan.work, with_ptrs.ptrs, None, None, None,
                                          *hyper), "ptrs must be None")
    expect_error(RuntimeError, lambda: op(ps, grads, m, v, [], [ps[0]], steps, plan.work, None, None, None, None, *hyper),
                 "emas must be empty or one per param")
    assert all(torch.equal(a, b) for a, b in zip(ps, before))
    op(ps, grads, m, v, [], [], steps, plan.work, None, None, None, None, *hyper)
    assert not any(torch.equal(a, b) for a, b in zip(ps, before))
