"""Backend selection: precedence, auto rules, and errors that say what is missing."""
import pytest
import torch

import tricks_ext
from helpers import expect_error
from tricks_ext import _backend

OP = "weight_standardize"


@pytest.fixture(autouse=True)
def _restore():
    yield
    tricks_ext.set_backend("auto")


def test_auto_on_cpu_prefers_the_extension():
    expected = "cpu" if tricks_ext.HAS_C else "torch"
    assert _backend.resolve(OP, torch.device("cpu")) == expected


def test_precedence_call_over_context_over_global():
    cpu = torch.device("cpu")
    tricks_ext.set_backend("torch")
    assert _backend.resolve(OP, cpu) == "torch"
    if tricks_ext.HAS_C:
        with tricks_ext.use_backend("cpu"):
            assert tricks_ext.get_backend() == "cpu"
            assert _backend.resolve(OP, cpu) == "cpu"
            with tricks_ext.use_backend("torch"):
                assert _backend.resolve(OP, cpu) == "torch"
            assert _backend.resolve(OP, cpu) == "cpu"
            assert _backend.resolve(OP, cpu, backend="torch") == "torch"
    assert tricks_ext.get_backend() == "torch"


def test_use_backend_restores_after_an_exception():
    with pytest.raises(KeyError):
        with tricks_ext.use_backend("torch"):
            raise KeyError
    assert tricks_ext.get_backend() == "auto"


def test_unknown_names_are_rejected():
    expect_error(ValueError, lambda: tricks_ext.set_backend("fast"), "fast", "auto")
    expect_error(ValueError, lambda: tricks_ext.use_backend("fast").__enter__(), "fast")


def test_cuda_backend_on_cpu_tensor_says_why():
    expect_error(tricks_ext.BackendUnavailableError, lambda: _backend.resolve(OP, torch.device("cpu"), "cuda"),
                 "weight_standardize", "'cuda'", "CUDA tensors")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    expect_error(tricks_ext.BackendUnavailableError, lambda: _backend.resolve(OP, torch.device("cpu"), "triton"),
                 "TRITON_INTERPRET=1")


def test_missing_triton_is_named(monkeypatch):
    monkeypatch.setattr(_backend, "_TRITON_MISSING", "triton is not installed")
    expect_error(tricks_ext.BackendUnavailableError, lambda: _backend.resolve(OP, torch.device("cpu"), "triton"),
                 "triton is not installed")


def test_cpu_backend_without_extension_is_named(monkeypatch):
    from tricks_ext import _ext
    monkeypatch.setattr(_ext, "HAS_C", False)
    monkeypatch.setattr(_ext, "LOAD_ERROR", "tricks_ext._C failed to load (ImportError: test)")
    expect_error(tricks_ext.BackendUnavailableError, lambda: _backend.resolve(OP, torch.device("cpu"), "cpu"),
                 "extension is not loaded", "ImportError: test")
    assert _backend.resolve(OP, torch.device("cpu")) == "torch"


def test_auto_on_cuda_uses_the_table(monkeypatch):
    """auto on a CUDA device follows AUTO_CUDA, then cuda, triton, torch (checked without a GPU
    by pretending the extension has CUDA kernels)."""
    from tricks_ext import _ext
    dev = torch.device("cuda")
    monkeypatch.setattr(_ext, "HAS_C", True)
    monkeypatch.setattr(_ext, "HAS_CUDA_KERNELS", True)
    monkeypatch.setitem(_backend.AUTO_CUDA, OP, "triton")
    assert _backend.resolve(OP, dev) == "triton"
    monkeypatch.delitem(_backend.AUTO_CUDA, OP)
    assert _backend.resolve(OP, dev) == "cuda"
    monkeypatch.setattr(_ext, "HAS_CUDA_KERNELS", False)
    monkeypatch.setattr(_backend, "_TRITON_MISSING", "triton is not installed")
    assert _backend.resolve(OP, dev) == "torch"


def test_cli_refuses_unknown_options():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "tricks_ext", "info", "--verbose"], capture_output=True, text=True)
    assert out.returncode == 2 and "--verbose" in out.stderr


def test_bad_simt_orders_fail_only_the_simt_backend():
    """A bad TRICKS_EXT_SIMT_ORDERS leaves import and the other backends working; the simt
    backend names the variable."""
    import subprocess
    import sys
    code = ("import torch, tricks_ext.functional as F\n"
            "print(F.dropout(torch.ones(8), 0.5, backend='torch').shape)\n"
            "F.dropout(torch.ones(8), 0.5, backend='simt')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "TRICKS_EXT_SIMT_ORDERS": "fast"})
    assert "torch.Size([8])" in out.stdout
    if tricks_ext._ext.HAS_SIMT_KERNELS:
        assert out.returncode != 0 and "TRICKS_EXT_SIMT_ORDERS='fast'" in out.stderr


def test_use_backend_is_per_thread():
    """Two threads in use_backend blocks of their own never see each other's choice;
    set_backend stays process-wide."""
    import threading
    seen = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def worker(name, backend):
        with tricks_ext.use_backend(backend):
            for _ in range(20):
                barrier.wait()
                seen[name].append(tricks_ext.get_backend())
        barrier.wait()
        seen[name].append(tricks_ext.get_backend())

    threads = [threading.Thread(target=worker, args=("a", "torch")), threading.Thread(target=worker, args=("b", "cpu"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"] == ["torch"] * 20 + ["auto"] and seen["b"] == ["cpu"] * 20 + ["auto"]
    tricks_ext.set_backend("torch")
    try:
        other = []
        t = threading.Thread(target=lambda: other.append(tricks_ext.get_backend()))
        t.start()
        t.join()
        assert other == ["torch"]
    finally:
        tricks_ext.set_backend("auto")
