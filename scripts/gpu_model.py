"""``python scripts/gpu_model.py`` (``make gpu-model``): what the CUDA kernels' compiled code lets
an H100 or H200 (sm_90) do, read with no GPU: per kernel, its registers, shared and local
memory, the resident warps per SM that follow, and the global memory instructions of its SASS
with their widths (a 128-bit load moves four times the bytes of a 32-bit one per instruction
slot and per outstanding request).

Occupancy follows the CUDA occupancy calculator's rules as NVIDIA ships them in
``cuda_occupancy.h`` (cudaOccMaxActiveBlocksPerMultiprocessor: warps, blocks, registers
allocated per warp in 256-register units within 4 sub-partitions, shared memory in 128-byte
units plus 1 KB reserved per block, rounded up to a carveout the SM supports); the tests run
that header, compiled on the host, over a grid of launches and compare. Device limits are those
``cudaGetDeviceProperties`` reports for each compute capability (CUDA C++ Programming Guide,
"Technical Specifications per Compute Capability").

Compiled, not run: every figure here is read from the cubins, none is a GPU measurement.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compile_check  # noqa: E402  (the nvcc flags, cuobjdump and csrc/ lookups are compile-check's)


@dataclass(frozen=True)
class Device:
    """The per-SM limits of one compute capability, as cudaGetDeviceProperties reports them."""
    major: int
    minor: int
    max_threads_per_block: int = 1024
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    regs_per_sm: int = 65536
    regs_per_block: int = 65536
    smem_per_sm: int = 0            # bytes the SM can give to shared memory (its largest carveout)
    smem_per_block: int = 48 * 1024
    smem_per_block_optin: int = 0   # bytes one block may take with the opt-in attribute
    reserved_smem_per_block: int = 1024
    warp_size: int = 32


# A100 (sm_80): 164 KB of shared memory per SM, 163 KB per block with the opt-in; H100 and H200
# (sm_90): 228 and 227 KB.
DEVICES = {
    "sm_80": Device(8, 0, smem_per_sm=164 * 1024, smem_per_block_optin=163 * 1024),
    "sm_90": Device(9, 0, smem_per_sm=228 * 1024, smem_per_block_optin=227 * 1024),
}
REG_UNIT = 256           # registers are allocated to a warp in units of 256
SUB_PARTITIONS = 4       # an SM's register file is split among 4 schedulers
MAX_REGS_PER_THREAD = 256  # cuda_occupancy.h's per-thread limit from sm_70 on
SMEM_UNIT = 128          # shared memory is allocated to a block in units of 128 bytes


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


@dataclass(frozen=True)
class Occupancy:
    blocks: int      # resident blocks per SM
    warps: int       # resident warps per SM
    limiter: str     # what bounds blocks: "warps", "blocks", "registers" or "shared memory"


def occupancy(device: Device, threads_per_block: int, regs_per_thread: int, smem_per_block: int = 0,
              optin: bool = False) -> Occupancy:
    """Resident blocks and warps per SM for a launch of ``threads_per_block`` threads using
    ``regs_per_thread`` registers and ``smem_per_block`` bytes of shared memory (static plus
    dynamic), with the default carveout preference (the SM's largest) and, with ``optin``, the
    attribute that lifts a block's limit from 48 KB to the device's opt-in maximum: the CUDA
    occupancy calculator's result (cudaOccMaxActiveBlocksPerMultiprocessor)."""
    if threads_per_block < 1 or threads_per_block > device.max_threads_per_block:
        return Occupancy(0, 0, "warps")
    warps_per_block = -(-threads_per_block // device.warp_size)
    limits = {"warps": (device.max_threads_per_sm // device.warp_size) // warps_per_block,
              "blocks": device.max_blocks_per_sm}
    # registers: per warp in REG_UNIT units; each sub-partition's share of the file holds whole
    # warps; the hardware's per-block check assumes the block's warps rounded up to the
    # sub-partitions
    regs_per_warp = _round_up(regs_per_thread * device.warp_size, REG_UNIT)
    if regs_per_thread > MAX_REGS_PER_THREAD or \
            regs_per_warp * _round_up(warps_per_block, SUB_PARTITIONS) > device.regs_per_block or \
            regs_per_warp * warps_per_block > device.regs_per_block:
        limits["registers"] = 0
    elif regs_per_warp:
        warps_per_sub = (device.regs_per_sm // SUB_PARTITIONS) // regs_per_warp
        limits["registers"] = warps_per_sub * SUB_PARTITIONS // warps_per_block
    # shared memory: the block's bytes plus the reserved KB, in SMEM_UNIT units, within the
    # block's limit; the SM's largest carveout holds as many such blocks as fit
    allocated = _round_up(smem_per_block + device.reserved_smem_per_block, SMEM_UNIT)
    per_block = device.smem_per_block_optin if optin and allocated > device.smem_per_block else device.smem_per_block
    per_block += device.reserved_smem_per_block  # the limit counts the reserved KB too (sm_80 on)
    limits["shared memory"] = 0 if allocated > per_block else device.smem_per_sm // allocated
    limiter = min(limits, key=lambda k: limits[k])
    blocks = limits[limiter]
    return Occupancy(blocks, blocks * warps_per_block, limiter)


# ---------------------------------------------------------------------------------------------
# The SASS of a cubin: global memory instructions and their widths

_FUNCTION = re.compile(r"^\s*Function : (\S+)")
_INSTRUCTION = re.compile(r"/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s")
_WIDTHS = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}


def access_width(opcode: str) -> int:
    """Bits one thread moves with a global or local load/store: its width modifier (.128,
    .64, .U16, .U8, ...), else 32."""
    for mod in opcode.split(".")[1:]:
        if mod in _WIDTHS:
            return _WIDTHS[mod]
    return 32


@dataclass
class MemoryOps:
    """Loads and stores that may reach global memory, as "LDG.128"-style labels with their
    counts: LDG/STG (global) and LD/ST (generic: a pointer the compiler cannot place, such as
    one read from a table of tensors, resolves to global memory at run time); and the count of
    local memory instructions (LDL/STL: spills or local arrays)."""
    loads: Dict[str, int] = field(default_factory=dict)
    stores: Dict[str, int] = field(default_factory=dict)
    local: int = 0

    def add(self, opcode: str) -> None:
        kind = opcode.split(".")[0]
        label = f"{kind}.{access_width(opcode)}"
        if kind in ("LDG", "LD"):
            self.loads[label] = self.loads.get(label, 0) + 1
        elif kind in ("STG", "ST"):
            self.stores[label] = self.stores.get(label, 0) + 1
        elif kind in ("LDL", "STL"):
            self.local += 1


def sass_memory_ops(sass: str) -> Dict[str, MemoryOps]:
    """Per function (mangled name) of ``cuobjdump -sass`` output, its memory instructions."""
    out: Dict[str, MemoryOps] = {}
    current: Optional[MemoryOps] = None
    for line in sass.splitlines():
        found = _FUNCTION.match(line)
        if found:
            current = out.setdefault(found.group(1), MemoryOps())
            continue
        ins = _INSTRUCTION.search(line)
        if ins and current is not None:
            current.add(ins.group(1))
    return out


@dataclass
class Kernel:
    name: str
    arch: str
    regs: int
    shared: int
    local: int
    block: int
    ops: MemoryOps

    def occupancy(self) -> Occupancy:
        return occupancy(DEVICES[self.arch], self.block, self.regs, self.shared)


_RESOURCE = re.compile(r"Function ([^:\s]+):\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")
# Threads per block of each CUDA kernel: the kBlock of its source (a kernel launched with another
# block size would need its own entry).
_BLOCK = re.compile(r"constexpr int kBlock = (\d+);")


def _cuda_kernels(job: Tuple[str, str, str, str]) -> List[Kernel]:
    nvcc, source, include, arch = job
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "k.cubin")
        subprocess.run([nvcc, "-cubin", f"-arch={arch}", *compile_check._NVCC_FLAGS, "-I", include, source, "-o",
                        cubin], check=True, capture_output=True, text=True)
        cuobjdump = compile_check._cuobjdump()
        resources = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], check=True, capture_output=True,
                                   text=True).stdout
        ops = sass_memory_ops(subprocess.run([cuobjdump, "-sass", cubin], check=True, capture_output=True,
                                             text=True).stdout)
    with open(source) as f:
        blocks = [int(b) for b in _BLOCK.findall(f.read())]
    block = blocks[0] if len(blocks) == 1 else 0
    kernels = []
    for found in _RESOURCE.finditer(resources):
        mangled = found.group(1)
        kernels.append(Kernel(compile_check._demangle(mangled), arch, int(found.group(2)), int(found.group(4)),
                              int(found.group(5)), block, ops.get(mangled, MemoryOps())))
    return kernels


def cuda_kernels(archs: Sequence[str], jobs: int) -> List[Kernel]:
    """Every kernel of csrc/<op>/cuda.cu, compiled as the extension compiles it."""
    nvcc, csrc = compile_check._nvcc(), compile_check._csrc()
    if nvcc is None or csrc is None:
        raise FileNotFoundError("nvcc" if nvcc is None else "csrc/ (run from a source checkout)")
    sources = sorted(os.path.join(csrc, d, "cuda.cu") for d in os.listdir(csrc)
                     if os.path.exists(os.path.join(csrc, d, "cuda.cu")))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        work = [(nvcc, src, csrc, arch) for src in sources for arch in archs]
        return [k for ks in pool.map(_cuda_kernels, work) for k in ks]


def cuda_include() -> Optional[str]:
    """The CUDA toolkit's include folder (cuda_occupancy.h): $CUDA_HOME or $CUDA_PATH, beside the
    nvcc found (through links), or /usr/local/cuda."""
    nvcc = compile_check._nvcc()
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
             os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None, "/usr/local/cuda"]
    for home in homes:
        if home and os.path.exists(os.path.join(home, "include", "cuda_occupancy.h")):
            return os.path.join(home, "include")
    return None


def _widths(counts: Dict[str, int]) -> str:
    return " ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "-"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["sm_90"], choices=list(DEVICES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    try:
        kernels = cuda_kernels(args.arch, args.jobs)
    except FileNotFoundError as exc:
        print(f"gpu-model: the CUDA kernels cannot be compiled here: {exc} not found", file=sys.stderr)
        return 2
    print("Compiled, not run (no GPU). Per CUDA kernel: registers per thread, shared and local bytes,")
    print("threads per block, resident blocks and warps per SM (CUDA's occupancy rules) and what")
    print("limits them, and the SASS's loads and stores that reach global memory: count, then opcode.bits")
    print("(LDG/STG global; LD/ST generic, through pointers read from a table).\n")
    print("| kernel | arch | registers | shared B | local B | threads | blocks/SM | warps/SM | limiter "
          "| loads | stores |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for k in sorted(kernels, key=lambda k: (k.name, k.arch)):
        occ = k.occupancy()
        print(f"| {k.name} | {k.arch} | {k.regs} | {k.shared} | {k.local} | {k.block} | {occ.blocks} | "
              f"{occ.warps} | {occ.limiter} | {_widths(k.ops.loads)} | {_widths(k.ops.stores)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
