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


def test_round_trips():
    """A load waits when a later instruction names its register; loads issued before that are in
    flight together; a kernel with a memory loop is read in its loop body only."""
    sass = """
        Function : _Z4flatPf
        /*0000*/                   LDG.E R2, desc[UR4][R8.64] ;
        /*0010*/                   LDG.E.64 R4, desc[UR4][R8.64+0x10] ;
        /*0020*/                   FADD R6, R2, R5 ;
        /*0030*/                   STG.E desc[UR4][R10.64], R6 ;
        /*0040*/                   LDG.E R3, desc[UR4][R8.64+0x20] ;
        /*0050*/                   STG.E desc[UR4][R10.64+0x4], R3 ;
        /*0060*/                   EXIT ;
        Function : _Z4loopPf
        /*0000*/                   LDG.E R20, desc[UR4][R8.64] ;
        /*0010*/                   FADD R21, R20, 1 ;
        /*0020*/                   LDG.E.128 R4, desc[UR4][R12.64] ;
        /*0030*/                   LDG.E.128 R16, desc[UR4][R12.64+0x10] ;
        /*0040*/                   FADD R6, R7, R19 ;
        /*0050*/                   STG.E desc[UR4][R10.64], R6 ;
        /*0060*/              @P0 BRA 0x20 ;
        /*0070*/                   EXIT ;
    """
    ops = gpu_model.sass_memory_ops(sass)
    flat, loop = ops["_Z4flatPf"], ops["_Z4loopPf"]
    # 4 + 8 loaded, then used (trip 1); 4 stored; 4 loaded, then stored (trip 2)
    assert (flat.load_bytes, flat.store_bytes, flat.round_trips, flat.in_loops) == (16, 8, 2, False)
    assert flat.bytes_per_trip == 12
    # only the loop 0x20..0x60: two 16-byte loads in flight, one 4-byte store
    assert (loop.load_bytes, loop.store_bytes, loop.round_trips, loop.in_loops) == (32, 4, 1, True)
    assert gpu_model.MemoryOps().bytes_per_trip == 0


def test_memory_model():
    """The fitted memory: its errors on the published table it is fitted to, its limits, and the
    H100 as the H200 scaled by the datasheets."""
    h200, h100 = gpu_model.fit_memory("H200"), gpu_model.fit_memory("H100")
    points, ceiling = gpu_model.calibration_points()
    assert len(points) == 96 and ceiling == pytest.approx(3.898)
    for kernel, errors in gpu_model.calibration_errors(h200).items():
        assert sum(map(abs, errors)) / len(errors) < 0.10 and max(map(abs, errors)) < 0.15, kernel
    assert 300 < h200.latency_ns < 700  # a DRAM round trip: 650 cycles at 1.755 GHz unloaded (gpu-latency)
    assert h100.latency_ns == h200.latency_ns
    assert h100.ceiling_tbps == pytest.approx(h200.ceiling_tbps * 3.35 / 4.8)
    rates = [h100.bandwidth_tbps(q) for q in (1e4, 1e5, 1e6, 1e7, 1e8)]
    assert rates == sorted(rates) and rates[-1] == h100.ceiling_tbps
    assert h100.bandwidth_tbps(float("inf")) == h100.ceiling_tbps
    # Little's law at light load: the rate is the bytes in flight over the unloaded round trip
    assert h100.bandwidth_tbps(1e4) == pytest.approx(1e4 / (h100.latency_ns * 1e-9) / 1e12, rel=0.01)


def test_a_case_time_at_its_grids_weighs_each_kernel_by_its_bytes():
    """grid_ms: a small-grid kernel over 1 % of a case's tensor bytes adds 1 % of the floor at its
    slow rate, not the whole floor; the kernel named is the one moving the most bytes."""
    h100 = gpu_model.fit_memory("H100")
    ops = gpu_model.MemoryOps(loads={"LDG.128": 2}, load_bytes=32, round_trips=1, in_loops=True)
    key = ("op", "case", "float32", "fwd")
    sweep = gpu_model.Kernel("sweep", "sm_90", 32, 0, 0, 256, ops, [key], {key: 10 ** 5}, {key: 99 * 10 ** 6})
    merge = gpu_model.Kernel("merge", "sm_90", 32, 0, 0, 256, ops, [key], {key: 32}, {key: 10 ** 6})
    floor = 100e6
    main, ms = gpu_model.grid_ms([sweep, merge], key, floor, h100)
    full, slow = sweep.bandwidth_tbps(h100) * 1e12, merge.grid_bandwidth_tbps(h100, 32) * 1e12
    assert main is sweep
    assert ms == pytest.approx((0.99 * floor / full + 0.01 * floor / slow) * 1e3)
    assert floor / full * 1e3 < ms < floor / slow * 1e3 / 5


def test_grid_limits_the_bytes_in_flight():
    """A grid smaller than one wave keeps only its own blocks' bytes in flight; a grid of a wave
    or more runs at the full-SM rate."""
    h100 = gpu_model.fit_memory("H100")
    ops = gpu_model.MemoryOps(loads={"LDG.128": 2}, load_bytes=32, round_trips=1, in_loops=True)
    k = gpu_model.Kernel("k", "sm_90", regs=32, shared=0, local=0, block=256, ops=ops)
    assert k.wave() == gpu_model.SMS * 8  # 2048 threads per SM at 32 registers
    assert k.grid_bandwidth_tbps(h100, k.wave()) == k.grid_bandwidth_tbps(h100, 10 ** 6) == k.bandwidth_tbps(h100)
    assert k.grid_bandwidth_tbps(h100, 32) == pytest.approx(h100.bandwidth_tbps(32 * 256 * 32))
    # 32 blocks of a 1056-block wave: at most their bytes per unloaded round trip (Little's law)
    assert k.grid_bandwidth_tbps(h100, 32) < 32 * 256 * 32 / (h100.latency_ns * 1e-9) / 1e12 < k.bandwidth_tbps(h100) / 5


_RECORD = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import compile_check
from tricks_ext.triton_kernels import soft_ce, soft_f1
logits, labels = torch.randn(6, 40), torch.randint(0, 40, (6,))
long = torch.randn(2, 9000)
launches = compile_check._record([
    ("ce", lambda: soft_ce.soft_ce_fwd(logits, labels, None, None, None, None, 0.1, -100, soft_ce.NONE)),
    ("long", lambda: soft_ce.soft_ce_fwd(long, labels[:2], None, None, None, None, 0.1, -100, soft_ce.NONE)),
    ("f1", lambda: soft_f1.soft_f1_sums(torch.randn(500, 300), torch.randint(0, 300, (500,)), None, False))])
print([(launch.case, launch.fn.__name__, launch.programs, launch.bytes) for launch in launches])
"""


def test_launches_record_their_grid():
    """compile-check's recorder keeps each launch's grid size, all dimensions, and the bytes of
    its distinct tensors (a compiling process: the tests' interpreter replaces the JIT functions
    the recorder intercepts)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _RECORD, str(ROOT / "scripts")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # soft CE, 6x40 fp32: a program per row over logits 960 B, labels 48, loss 24, stats 72 (the
    # absent pointers are the logits). 2 rows of 9000: 3 pieces each (row_pieces) over logits 72000
    # B, labels 16, loss 8, stats 24, parts 96 (2 x 3 x 4 fp32); the merge, a program per row, over
    # those but the logits. Soft F1: its stats kernel, a program per row (logits 600000 B, stats
    # 4000); its column sums, (cdiv(300, 128) column blocks, cdiv(500, 218) chunks of 2^16 // 300
    # rows) over logits, labels 4000, stats and 3 chunks' partial sums (3 x 3 x 300 fp32)
    assert out.stdout.strip() == str([("ce", "_fwd_kernel", 6, 1104), ("long", "_fwd_kernel", 6, 72144),
                                      ("long", "_merge_kernel", 2, 144), ("f1", "_stats_kernel", 500, 604000),
                                      ("f1", "_fwd_kernel", 9, 618800)])


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


@pytest.fixture(scope="module")
def quick_model():
    """`python scripts/gpu_model.py --quick --check` (every CUDA kernel and the float32 Triton
    specializations, compiled for sm_90) in its own process: Triton compiles there, outside the
    interpreter the tests run under."""
    if gpu_model.compile_check._nvcc() is None:
        pytest.skip("nvcc not found")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_model.py"), "--quick", "--check"],
                          capture_output=True, text=True, env=env, timeout=1800)


def _kernel_rows(out: str):
    """(kernel, loads, stores) of the per-kernel table's CUDA rows."""
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 8 and cells[1].startswith("tricks::"):
            rows.append((cells[1], cells[6], cells[7]))
    return rows


@pytest.mark.slow
def test_no_kernel_below_its_floor(quick_model):
    """The model's quick mode: every kernel reaches 85 % of the modelled H100 ceiling, or
    BELOW_TARGET says why (and no entry there is stale)."""
    assert quick_model.returncode == 0, quick_model.stdout[-3000:] + quick_model.stderr[-3000:]
    assert "UNEXPLAINED" not in quick_model.stdout and "STALE" not in quick_model.stdout


@pytest.mark.slow
def test_readme_statements_are_the_models(quick_model):
    """What the README says the model shows is what it reads from the kernels now, and its
    predicted table is the model's."""
    assert quick_model.returncode == 0, quick_model.stderr[-3000:]
    rows = _kernel_rows(quick_model.stdout)
    assert len(rows) == 98  # every CUDA kernel instance (test_simt launches the same 98)
    readme_text = (ROOT / "README.md").read_text()
    readme = " ".join(readme_text.split())
    wide = [name for name, loads, _ in rows if ".128" in loads]
    assert ("No CUDA kernel issues a 128-bit load" in readme) == (not wide), wide
    generic = {name.split("::")[1] for name, loads, _ in rows if "LD." in loads.replace("LDG.", "")}
    assert generic == {"optim", "sasa"}, generic
    assert "the multi-tensor ones (the optimizer step for fp16/bf16/fp64 and SASA+'s step) reach their elements " \
           "through generic `LD`/`ST`" in readme
    table = quick_model.stdout.split("The README's table (the slowest kernel of each op):")[1].strip().split("\n\n")[0]
    assert table in readme_text, "README's predicted table is not the model's: python scripts/gpu_model.py --quick --readme"


@pytest.mark.slow
def test_readme_ratio_table_is_the_models(quick_model):
    """The README's predicted peer / ours table is the model's, and the only eager peers the
    model cannot record are the two that need data on the host."""
    assert quick_model.returncode == 0, quick_model.stderr[-3000:]
    table = quick_model.stdout.split("The README's ratio table:")[1].strip().split("\n\n")[0]
    assert table in (ROOT / "README.md").read_text(), \
        "README's ratio table is not the model's: python scripts/gpu_model.py --quick"
    missing = [line for line in quick_model.stdout.splitlines() if line.startswith("- not predicted:")]
    assert len(missing) == 3 and all("slice-assignment loop" in line or "statopt SASA" in line for line in missing), \
        missing


def test_readme_triton_counts_come_from_the_cited_record():
    """The README's count of Triton specializations below the target is the full run's it cites."""
    import re
    readme = " ".join((ROOT / "README.md").read_text().split())
    found = re.search(r"at the benchmark sizes, (\d+) of (\d+) do \(`(benchmarks/results/gpu_model_\w+\.md)`", readme)
    assert found, "the README no longer states the Triton count with its record"
    low, total, record = found.groups()
    text = (ROOT / record).read_text()
    assert f"Triton specializations: {total}, below 85% of the H100 ceiling: {low}" in text
    assert "UNEXPLAINED" not in text and "STALE" not in text
