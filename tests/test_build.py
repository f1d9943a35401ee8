"""Build and packaging: the extension loads, CUDA kernels are compiled whenever nvcc is present,
the package degrades to the torch backend without the extension, the CLI works."""
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
import sys

import pytest
import torch

import tricks_ext

CPP_OPS = ["weight_standardize_fwd", "weight_standardize_bwd"]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_version():
    assert isinstance(tricks_ext.__version__, str) and tricks_ext.__version__.count(".") == 2


def test_extension_loaded():
    assert tricks_ext.HAS_C, f"tricks_ext._C did not load: {tricks_ext.LOAD_ERROR}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.skipif(os.environ.get("TRICKS_EXT_CUDA") == "0", reason="TRICKS_EXT_CUDA=0 turns the CUDA sources off")
def test_cuda_kernels_built_when_nvcc_present():
    """A CUDA source that stops compiling fails the build, or (when built without) this test."""
    assert tricks_ext.HAS_CUDA_KERNELS, "nvcc is on PATH but tricks_ext._C was built without CUDA kernels"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH (setup.py finds the CUDA headers by it)")
@pytest.mark.skipif(os.environ.get("TRICKS_EXT_SIMT") == "0", reason="TRICKS_EXT_SIMT=0 turns the simt backend off")
def test_simt_backend_built_when_cuda_headers_present():
    assert tricks_ext._ext.HAS_SIMT_KERNELS, "the CUDA headers are here but tricks_ext._C was built without simt"


@pytest.mark.parametrize("op", CPP_OPS)
def test_kernels_registered_per_dispatch_key(op):
    name = f"tricks_ext::{op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA") == tricks_ext.HAS_CUDA_KERNELS
    assert hasattr(torch.ops.tricks_simt, op) == tricks_ext._ext.HAS_SIMT_KERNELS


def test_triton_kernels_installed_under_the_package():
    spec = importlib.util.find_spec("tricks_ext.triton_kernels")
    assert spec is not None and spec.origin is not None
    assert os.path.basename(os.path.dirname(spec.origin)) == "triton_kernels"


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_imports_without_extension_and_names_the_cause():
    code = (
        "import sys, warnings\n"
        "sys.modules['tricks_ext._C'] = None  # any import of it now raises ImportError\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import tricks_ext, torch\n"
        "assert not tricks_ext.HAS_C and not tricks_ext.HAS_CUDA_KERNELS\n"
        "msgs = [str(w.message) for w in caught]\n"
        "assert any('tricks_ext._C failed to load' in m and 'torch' in m for m in msgs), msgs\n"
        "w = torch.randn(4, 3)\n"
        "out = tricks_ext.functional.weight_standardize(w)\n"
        "from tricks_ext.reference import weight_standardize as reference\n"
        "assert torch.allclose(out, reference(w))\n"
        "try:\n"
        "    tricks_ext.functional.weight_standardize(w, backend='cpu')\n"
        "except tricks_ext.BackendUnavailableError as e:\n"
        "    assert 'extension is not loaded' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('cpu backend ran without the extension')\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.parametrize("skip", [False, True])
def test_build_without_torch_refuses_unless_told(skip):
    """pip's isolated build has no torch: setup.py stops with the fix named (a silent
    pure-Python install would run every op on the torch backend), unless TRICKS_EXT_SKIP_EXT=1
    asks for exactly that."""
    code = ("import runpy, sys\n"
            "sys.modules['torch'] = None\n"
            "sys.argv = ['setup.py', '--name']\n"
            f"runpy.run_path({str(ROOT / 'setup.py')!r})\n")
    env = dict(os.environ, TRICKS_EXT_SKIP_EXT="1" if skip else "0")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    if skip:
        assert res.returncode == 0 and "tricks_ext" in res.stdout, res.stderr[-2000:]
    else:
        assert res.returncode != 0 and "--no-build-isolation" in res.stderr and "TRICKS_EXT_SKIP_EXT=1" in res.stderr


def test_info_command():
    res = subprocess.run([sys.executable, "-m", "tricks_ext", "info"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "weight_standardize" in res.stdout and "HAS_C=True" in res.stdout


def test_bench_command_rejects_unknown_op():
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--ops", "no_such_op"], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 2 and "no_such_op" in res.stderr
