"""scripts/compile_check.py (GPU compile without a GPU): its smoke run (--quick: the float32
launches as recorded) for sm_80 and sm_90 must compile everything without a spill, and every
CUDA kernel is compiled by nvcc with ptxas -v for both archs. The full run (every dtype and
argument variant) is `make compile-check`; its table is in the README's "GPU readiness"."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tricks_ext

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compile_check.py"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=1800)


def test_quick_compile_check_passes():
    out = _run("--quick", "--no-cuda")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "0 problems" in out.stdout
    for kernel in ("soft_ce._fwd_kernel", "weight_standardize._weight_standardize_bwd_kernel", "optim._optim_step_kernel",
                   "dropout._dropout_apply_kernel", "evonorm._split_out_kernel", "mixup._mix_kernel"):
        for arch in ("sm_80", "sm_90"):
            assert f"| {kernel} | {arch} |" in out.stdout, (kernel, arch)


@pytest.mark.skipif(not tricks_ext.HAS_CUDA_KERNELS, reason="_C was built without CUDA kernels (no nvcc)")
def test_every_cuda_kernel_compiles_without_spills():
    out = _run("--no-triton")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "0 problems" in out.stdout
    for kernel in ("dropout::", "evonorm::", "mask_boxes::", "mixup::", "optim::", "soft_ce::", "ws::"):
        for arch in ("sm_80", "sm_90"):
            assert any(kernel in line and f"| {arch} |" in line for line in out.stdout.splitlines()), (kernel, arch)


def test_interpreter_is_refused():
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, str(SCRIPT), "--no-triton"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 2 and "TRITON_INTERPRET" in out.stderr


def test_a_run_that_compiles_nothing_fails():
    """A filter that matches no kernel must not pass as a clean check."""
    out = _run("--only", "no_such_kernel", "--no-cuda")
    assert out.returncode == 1 and "nothing was checked" in out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
