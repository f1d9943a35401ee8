"""Build tricks_ext._C: C++ CPU kernels always, CUDA kernels whenever nvcc is found.

The CUDA kernels are torch-free (.cu files see raw pointers only) and the bindings use only
headers that every torch wheel ships, so the whole extension also builds, links and loads
against the CPU-only torch wheel. Environment:
  TRICKS_EXT_CUDA=0|1       force the CUDA sources off / on (default: on iff nvcc is found)
  TRICKS_EXT_SIMT=0|1       force the simt backend off / on: the CUDA kernels compiled by the host
                            compiler against csrc/simt/simt.h (default: on iff the CUDA headers
                            are found; it needs no nvcc and no GPU)
  TORCH_CUDA_ARCH_LIST      CUDA archs (default "8.0;9.0": A100 and H100/H200)
  TRICKS_EXT_PTXAS_VERBOSE=1  print register/spill counts of every CUDA kernel
  MAX_JOBS                  parallel compile jobs (ninja)
  TRICKS_EXT_SANITIZE=1     compile with -fsanitize=address,undefined (`make test-sanitize`
                            builds such a _C apart, under build/sanitize, and loads it through
                            TRICKS_EXT_LIB=path; the in-place _C is left alone)
  TRICKS_EXT_SKIP_EXT=1     install the Python package only (`make build` compiles _C in place
                            first with `setup.py build_ext --inplace`, which ninja keeps incremental)
Build in place with: pip install --no-build-isolation --no-deps -e .
"""
import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGES = [
    "tricks_ext",
    "tricks_ext.reference",
    "tricks_ext.ops",
    "tricks_ext.nn",
    "tricks_ext.optim",
    "tricks_ext.data",
    "tricks_ext.recipe",
    "tricks_ext.triton_kernels",
]
# A top-level `triton_kernels` would clash with the PyPI package of that name.
PACKAGE_DIR = {"tricks_ext.triton_kernels": "triton_kernels"}


def _find_cuda_home():
    """The CUDA toolkit root (with bin/nvcc and include/cuda_runtime.h), or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:  # nvcc may be a symlink or a wrapper script outside the toolkit
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        candidates.append("/usr/local/cuda")
    for home in candidates:
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")) and \
                os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


def _nvcc_version(cuda_home):
    """'13.0' from `nvcc --version` ('... release 13.0, V13.0.88')."""
    import re
    import subprocess
    out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True).stdout
    found = re.search(r"release (\d+\.\d+)", out)
    if not found:
        raise RuntimeError(f"tricks_ext: cannot read the CUDA version from nvcc --version: {out!r}")
    return found.group(1)


def _want_cuda(cuda_home):
    flag = os.environ.get("TRICKS_EXT_CUDA")
    if flag == "0":
        return False
    if flag == "1":
        if cuda_home is None:
            raise RuntimeError("TRICKS_EXT_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
        return True
    return cuda_home is not None


def _want_simt(cuda_home):
    flag = os.environ.get("TRICKS_EXT_SIMT")
    if flag == "0":
        return False
    if flag == "1" and cuda_home is None:
        raise RuntimeError("TRICKS_EXT_SIMT=1 but the CUDA headers were not found (set CUDA_HOME)")
    return cuda_home is not None


def _extension_kwargs():
    from torch.utils import cpp_extension

    cuda_home = _find_cuda_home()
    with_cuda = _want_cuda(cuda_home)
    with_simt = _want_simt(cuda_home)
    # csrc/<op>/: every .cpp but the CUDA binding always; cuda.cu and cuda_binding.cpp with CUDA;
    # csrc/simt/ (which includes the CUDA sources itself) with the simt backend.
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "*", "cuda.cu")) +
                          glob.glob(os.path.join("csrc", "*", "cuda_binding.cpp")))
    simt_sources = sorted(glob.glob(os.path.join("csrc", "simt", "*.cpp")))
    sources = sorted(set(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True)) - set(cuda_sources) -
                     set(simt_sources))
    # -fno-math-errno: lets sqrt vectorize (errno is never read); no other fast-math licence.
    # -ffp-contract=off: no a*b+c -> fma fusion, so every CPU (and each target_clones ISA
    # variant) rounds alike; with fusion the AVX2 clone drifts from torch.optim.AdamW.
    # -fno-trapping-math: no FP exception is ever inspected, and with trapping math GCC treats
    # a float -> int conversion as control flow and refuses to vectorize the CPU exp
    # (tricks::exp_cpu). Results unchanged. Measurements: benchmarks/NOTES.md.
    # -g0: Python's sysconfig adds -g; debug info for torch's headers made every TU ~30 % slower
    # to compile (dropout/cuda_binding.cpp: 23.7 s -> 16.9 s, its object 5.4 MB -> 0.14 MB). The sanitizer
    # build below adds -g back.
    cxx = ["-O3", "-g0", "-std=c++20", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    if os.environ.get("TRICKS_EXT_SANITIZE") == "1":  # `make test-sanitize`: CPU kernels under ASan + UBSan
        cxx += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    nvcc = ["-O3", "-std=c++17", "-lineinfo"]
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")],
                  extra_link_args=["-fopenmp"], define_macros=[], libraries=[], library_dirs=[])
    if os.environ.get("TRICKS_EXT_SANITIZE") == "1":
        kwargs["extra_link_args"].append("-fsanitize=address,undefined")
    if with_simt:
        sources += simt_sources
        kwargs["define_macros"].append(("TRICKS_EXT_WITH_SIMT", "1"))
    if with_cuda or with_simt:
        kwargs["include_dirs"].append(os.path.join(cuda_home, "include"))
    if with_cuda:
        sources += cuda_sources
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        if os.environ.get("TRICKS_EXT_PTXAS_VERBOSE") == "1":
            nvcc.append("-Xptxas=-v")
        # The CPU torch wheel reports no CUDA_HOME, so torch's builder would refuse .cu files;
        # the .cu files need nothing from torch, only nvcc, so point the builder at it.
        cpp_extension.CUDA_HOME = cuda_home
        # The builder gives nvcc's compile rule a dependency file only when torch.version.cuda
        # is set (it is None in the CPU wheel); without one, an incremental build would keep
        # .cu objects compiled against an older header. Tell it the toolkit's version.
        import torch
        if torch.version.cuda is None:
            torch.version.cuda = _nvcc_version(cuda_home)
        kwargs["define_macros"].append(("TRICKS_EXT_WITH_CUDA", "1"))
        kwargs["library_dirs"].append(os.path.join(cuda_home, "lib64"))
        kwargs["libraries"].append("cudart")
        kwargs["extra_link_args"].append("-Wl,-rpath," + os.path.join(cuda_home, "lib64"))
    kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": nvcc}
    print(f"tricks_ext: building _C with CUDA kernels: {with_cuda}, simt backend: {with_simt} "
          f"(CUDA home: {cuda_home})")
    return cpp_extension, sources, kwargs


def _ext_modules_and_cmdclass():
    if os.environ.get("TRICKS_EXT_SKIP_EXT") == "1":
        return [], {}
    try:
        cpp_extension, sources, kwargs = _extension_kwargs()
    except ImportError as exc:
        # pip's default build runs in an isolated environment without torch: a silent pure-Python
        # install would run every op on the slow torch backend. Refuse, naming both ways out.
        raise SystemExit(
            f"tricks_ext: torch is not importable where the extension is built ({exc}), so the C++/CUDA kernels "
            "cannot be compiled. pip builds in an isolated environment without torch unless told otherwise: "
            "install torch first, then `pip install --no-build-isolation .`; or set TRICKS_EXT_SKIP_EXT=1 for a "
            "pure-Python install that runs only the torch backend.") from None
    ext = cpp_extension.CppExtension("tricks_ext._C", sources, **kwargs)
    build = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [ext], {"build_ext": build}


ext_modules, cmdclass = _ext_modules_and_cmdclass()
setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
