"""scripts/gpu_model.py: its occupancy against NVIDIA's own calculator (cuda_occupancy.h, the
header behind cudaOccupancyMaxActiveBlocksPerMultiprocessor, compiled on the host: it needs no
GPU), and its SASS reading on instructions of known widths."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_model  # noqa: E402

_HARNESS = r"""
#include <cstdio>
#include "cuda_occupancy.h"
int main() {
  int major, minor, threads, regs, optin;
  long smem, smem_sm, smem_optin;
  while (std::scanf("%d %d %d %d %ld %d %ld %ld", &major, &minor, &threads, &regs, &smem, &optin, &smem_sm,
                    &smem_optin) == 8) {
    cudaOccDeviceProp prop;
    prop.computeMajor = major; prop.computeMinor = minor;
    prop.maxThreadsPerBlock = 1024; prop.maxThreadsPerMultiprocessor = 2048;
    prop.regsPerBlock = 65536; prop.regsPerMultiprocessor = 65536; prop.warpSize = 32;
    prop.sharedMemPerBlock = 48 * 1024; prop.sharedMemPerMultiprocessor = smem_sm;
    prop.numSms = 132; prop.sharedMemPerBlockOptin = smem_optin; prop.reservedSharedMemPerBlock = 1024;
    cudaOccFuncAttributes attr;
    attr.maxThreadsPerBlock = 1024; attr.numRegs = regs; attr.sharedSizeBytes = 0;
    attr.shmemLimitConfig = optin ? FUNC_SHMEM_LIMIT_OPTIN : FUNC_SHMEM_LIMIT_DEFAULT;
    attr.maxDynamicSharedSizeBytes = smem;
    cudaOccDeviceState state;
    cudaOccResult result;
    cudaOccError err = cudaOccMaxActiveBlocksPerMultiprocessor(&result, &prop, &attr, &state, threads, smem);
    std::printf("%d\n", err == CUDA_OCC_SUCCESS ? result.activeBlocksPerMultiprocessor : -1);
  }
  return 0;
}
"""


def _occupancy_header():
    include = gpu_model.cuda_include()
    if include is None:
        pytest.skip("cuda_occupancy.h not found (it ships with the CUDA toolkit: nvcc)")
    header = Path(include) / "cuda_occupancy.h"
    if shutil.which("g++") is None:
        pytest.skip("no host C++ compiler")
    return header


def test_occupancy_equals_cuda_occupancy_header(tmp_path):
    header = _occupancy_header()
    src = tmp_path / "occ.cpp"
    src.write_text(_HARNESS)
    exe = tmp_path / "occ"
    subprocess.run(["g++", "-O1", "-I", str(header.parent), str(src), "-o", str(exe)], check=True)
    cases = []
    for arch, threads, regs, smem, optin in itertools.product(
            gpu_model.DEVICES, (32, 64, 96, 128, 256, 320, 512, 1024, 1056), (16, 32, 40, 48, 64, 72, 96, 128, 168,
                                                                              188, 213, 234, 255, 256),
            (0, 64, 1000, 16 * 1024, 47 * 1024, 48 * 1024, 100 * 1024, 163 * 1024, 227 * 1024), (False, True)):
        cases.append((gpu_model.DEVICES[arch], threads, regs, smem, optin))
    lines = "".join(f"{d.major} {d.minor} {t} {r} {s} {int(o)} {d.smem_per_sm} {d.smem_per_block_optin}\n"
                    for d, t, r, s, o in cases)
    out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == len(cases)
    wrong = [(c[0].major, *c[1:], int(o), gpu_model.occupancy(*c).blocks) for c, o in zip(cases, out)
             if max(int(o), 0) != gpu_model.occupancy(*c).blocks]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ (major, threads, regs, smem, optin, header, ours): {wrong[:10]}"
    # and the cases this project cites: Triton's optimizer step at 188 registers and 4 warps
    step = gpu_model.occupancy(gpu_model.DEVICES["sm_90"], 128, 188)
    assert (step.blocks, step.warps, step.limiter) == (2, 8, "registers")


def test_sass_widths():
    sass = """
        Function : _Z3fooPf
        /*0080*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0090*/                   LDG.E R8, desc[UR4][R2.64+0x10] ;
        /*00a0*/              @!P0 LDG.E.U16 R9, desc[UR4][R6.64] ;
        /*00b0*/                   STG.E.64 desc[UR4][R2.64], R4 ;
        /*00c0*/                   STL [R1], R4 ;
        /*00d0*/                   LDS R4, [R3] ;
        /*00e0*/                @P1 LD.E.64 R6, [R8.64] ;
        Function : _Z3barPf
        /*0080*/                   STG.E desc[UR4][R2.64], R4 ;
        /*0090*/                   ST.E [R2.64], R5 ;
    """
    ops = gpu_model.sass_memory_ops(sass)
    assert ops["_Z3fooPf"].loads == {"LDG.128": 1, "LDG.32": 1, "LDG.16": 1, "LD.64": 1}
    assert ops["_Z3fooPf"].stores == {"STG.64": 1} and ops["_Z3fooPf"].local == 1
    assert ops["_Z3barPf"].stores == {"ST.32": 1, "STG.32": 1} and ops["_Z3barPf"].loads == {}


def test_cuda_kernels_are_read():
    """The table's rows for SASA's kernel, compiled here for sm_90."""
    if gpu_model.compile_check._nvcc() is None:
        pytest.skip("nvcc not found")
    src = str(ROOT / "csrc" / "sasa" / "cuda.cu")
    kernels = gpu_model._cuda_kernels((gpu_model.compile_check._nvcc(), src, str(ROOT / "csrc"), "sm_90"))
    assert len(kernels) == 12  # 3 direction forms x 4 dtypes
    for k in kernels:
        assert k.block == 256 and k.regs > 0 and k.local == 0
        assert sum(k.ops.loads.values()) >= 2 and sum(k.ops.stores.values()) >= 2  # x, g (h) in; x (h), sums out
        assert k.occupancy().warps > 0


def test_readme_statements_are_the_models():
    """What the README says the model shows is what it reads from every CUDA kernel now."""
    if gpu_model.compile_check._nvcc() is None:
        pytest.skip("nvcc not found")
    kernels = gpu_model.cuda_kernels(["sm_90"], os.cpu_count() or 1)
    readme = " ".join((ROOT / "README.md").read_text().split())
    wide = [k.name for k in kernels if any(label.endswith(".128") for label in k.ops.loads)]
    assert ("no kernel issues a 128-bit load" in readme) == (not wide), wide
    generic = {k.name.split("::")[1] for k in kernels if any(label.startswith("LD.") for label in k.ops.loads)}
    assert generic == {"optim", "sasa"}, generic
    assert "the multi-tensor ones (the optimizer step for fp16/bf16/fp64 and SASA+'s step) reach their elements " \
           "through generic `LD`/`ST`" in readme
    assert all(k.local == 0 for k in kernels)
