"""``python scripts/gpu_model.py`` (``make gpu-model``): the memory rate an H100 or H200 (sm_90)
would give each kernel, predicted from its compiled code with no GPU, for every CUDA kernel and
every Triton specialization the benchmarks launch at their CUDA sizes (recorded on meta tensors,
then specialized and compiled as compile-check does; pointers 16-byte aligned).

Per kernel: registers and shared bytes (cuobjdump), the resident warps per SM they allow, and,
from the SASS of its loops, the bytes one thread moves per memory round trip. Occupancy follows
the CUDA occupancy calculator's rules as NVIDIA ships them in ``cuda_occupancy.h``
(cudaOccMaxActiveBlocksPerMultiprocessor: warps, blocks, registers allocated per warp in
256-register units within 4 sub-partitions, shared memory in 128-byte units plus 1 KB reserved
per block, rounded up to a carveout the SM supports); the tests run that header, compiled on the
host, over a grid of launches and compare. Device limits are those ``cudaGetDeviceProperties``
reports for each compute capability (CUDA C++ Programming Guide, "Technical Specifications per
Compute Capability").

Resident threads x bytes per round trip is what a kernel keeps in flight; the rate follows from
Little's law with a latency that grows with the load, fitted to a published H200 stream table
(docs/calibration/h200_stream.csv; docs/DESIGN.md section 5 says what the model leaves out).
Per benchmark case, the prediction is its bytes floor at the rate of the slowest kernel it runs;
beside it, the eager peers' predicted time (scripts/peer_model.py) and the ratio.

Compiled, not run: every figure here is a prediction, none is a GPU measurement.
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
# Bandwidth from bytes in flight: Little's law with a latency that grows with the load

CALIBRATION = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "calibration",
                           "h200_stream.csv")
# Bytes per thread and stream of the calibration kernels (one double each), and how many streams
# each one loads and stores: read 1 + 0, scale 1 + 1, triad 2 + 1.
_STREAMS = {"read": 1, "scale": 2, "triad": 3}
# NVIDIA's datasheets: H100 SXM5 3.35 TB/s (HBM3), H200 SXM 4.8 TB/s (HBM3e); both 132 SMs.
DATASHEET_TBPS = {"H100": 3.35, "H200": 4.8}
SMS = 132


@dataclass(frozen=True)
class Memory:
    """A GPU's memory as the model sees it. A kernel with ``q`` bytes in flight on the whole GPU
    (resident threads x bytes each moves per round trip) waits ``latency_ns + q / service`` per
    round trip, so it moves ``q / (latency + q / service)`` per second (Little's law with the
    queueing delay that a loaded memory adds), and never more than ``ceiling_tbps``, the best
    streaming rate measured."""
    name: str
    latency_ns: float
    service_tbps: float
    ceiling_tbps: float

    def bandwidth_tbps(self, bytes_in_flight: float) -> float:
        if bytes_in_flight == float("inf"):
            return self.ceiling_tbps
        if bytes_in_flight <= 0:  # a kernel that moves nothing
            return 0.0
        seconds_per_byte = self.latency_ns * 1e-9 / bytes_in_flight + 1 / (self.service_tbps * 1e12)
        return min(self.ceiling_tbps, 1 / seconds_per_byte / 1e12)


def calibration_points(path: str = CALIBRATION) -> Tuple[List[Tuple[str, float, float]], float]:
    """The published H200 stream table as (kernel, bytes in flight on the GPU, TB/s) points,
    and its best rate (the store-only init stream, the ceiling)."""
    points, ceiling = [], 0.0
    with open(path) as f:
        lines = [line for line in f if not line.startswith("#")]
    header = lines[0].strip().split(",")
    for line in lines[1:]:
        row = dict(zip(header, (float(v) for v in line.strip().split(","))))
        threads = SMS * 2 * row["block"]
        ceiling = max(ceiling, row["init_gbps"] / 1e3)
        for kernel, streams in _STREAMS.items():
            points.append((kernel, threads * 8 * streams, row[f"{kernel}_gbps"] / 1e3))
    return points, ceiling


def fit_memory(name: str, path: str = CALIBRATION) -> Memory:
    """Latency and service rate fitted to the published H200 points by least squares on the
    relative error (1/rate = latency/q + 1/service is linear in 1/q); for the H100, the same
    latency (the same SMs, clocks and L2 in front of HBM3 instead of HBM3e) with the service rate
    and the ceiling scaled by the datasheets' bandwidth ratio: an assumption its first run scores."""
    points, ceiling = calibration_points(path)
    # minimize sum (a x_i y_i + b y_i - 1)^2 over a (latency, s) and b (s/B), x = 1/q, y = B/s
    sxx = sum((y / q) ** 2 for _, q, y in points)
    sxy = sum((y / q) * y for _, q, y in points)
    syy = sum(y * y for _, q, y in points)
    sx1 = sum(y / q for _, q, y in points)
    sy1 = sum(y for _, q, y in points)
    det = sxx * syy - sxy * sxy
    a = (sx1 * syy - sy1 * sxy) / det   # s * TB/s / B  ->  latency in units of 1e-12 s per (B / TB/s)
    b = (sxx * sy1 - sxy * sx1) / det
    latency_ns = a * 1e-12 / 1e-9
    scale = DATASHEET_TBPS[name] / DATASHEET_TBPS["H200"]
    return Memory(name, latency_ns, scale / b, scale * ceiling)


def calibration_errors(memory: Memory, path: str = CALIBRATION) -> Dict[str, List[float]]:
    """Per calibration kernel, the model's relative errors (predicted / published - 1) over the
    table's occupancies."""
    out: Dict[str, List[float]] = {}
    for kernel, q, rate in calibration_points(path)[0]:
        out.setdefault(kernel, []).append(memory.bandwidth_tbps(q) / rate - 1)
    return out


# ---------------------------------------------------------------------------------------------
# The SASS of a cubin: global memory instructions, their widths, and the round trips they cost

_FUNCTION = re.compile(r"^\s*Function : (\S+)")
_INSTRUCTION = re.compile(r"/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_REGISTER = re.compile(r"\bR(\d+)(\.64)?\b")
_ADDRESS = re.compile(r"/\*([0-9a-f]{4,})\*/")
_BRANCH_TARGET = re.compile(r"0x([0-9a-f]+)")
_GLOBAL = ("LDG", "LD", "STG", "ST")
_WIDTHS = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}


def access_width(opcode: str) -> int:
    """Bits one thread moves with a global or local load/store: its width modifier (.128,
    .64, .U16, .U8, ...), else 32."""
    for mod in opcode.split(".")[1:]:
        if mod in _WIDTHS:
            return _WIDTHS[mod]
    return 32


def _registers(operands: str) -> set:
    """The general registers an operand list names (R6.64 is the pair R6, R7; RZ is none)."""
    out = set()
    for found in _REGISTER.finditer(operands):
        out.add(int(found.group(1)))
        if found.group(2):
            out.add(int(found.group(1)) + 1)
    return out


@dataclass
class MemoryOps:
    """Loads and stores that may reach global memory, as "LDG.128"-style labels with their
    counts: LDG/STG (global) and LD/ST (generic: a pointer the compiler cannot place, such as
    one read from a table of tensors, resolves to global memory at run time); the count of
    local memory instructions (LDL/STL: spills or local arrays); and the bytes one thread loads
    and stores per round trip it waits for in the kernel's streaming part: its loop bodies (the
    address ranges that backward branches close; the part before and after runs once per thread)
    or, in a kernel without loops, all of it. Read in program order, every instruction once (all
    paths of a branch): a round trip ends at the first instruction that names a register an
    outstanding load writes (the scoreboard stalls there), and the loads issued before it are in
    flight together."""
    loads: Dict[str, int] = field(default_factory=dict)
    stores: Dict[str, int] = field(default_factory=dict)
    local: int = 0
    load_bytes: int = 0
    store_bytes: int = 0
    round_trips: int = 0
    in_loops: bool = False
    _code: List[Tuple[int, str, str]] = field(default_factory=list, repr=False)

    def add(self, opcode: str, operands: str = "", address: int = 0) -> None:
        kind = opcode.split(".")[0]
        label = f"{kind}.{access_width(opcode)}"
        if kind in ("LDG", "LD"):
            self.loads[label] = self.loads.get(label, 0) + 1
        elif kind in ("STG", "ST"):
            self.stores[label] = self.stores.get(label, 0) + 1
        elif kind in ("LDL", "STL"):
            self.local += 1
        self._code.append((address, opcode, operands))

    def close(self) -> None:
        """The end of the function: count the round trips of its streaming part."""
        loops = []
        for address, opcode, operands in self._code:
            target = _BRANCH_TARGET.search(operands) if opcode.split(".")[0] == "BRA" else None
            if target and int(target.group(1), 16) <= address:
                loops.append((int(target.group(1), 16), address))
        # only loops that touch memory (not, say, a loop of integer math)
        loops = [(lo, hi) for lo, hi in loops if any(lo <= a <= hi and op.split(".")[0] in _GLOBAL
                                                     for a, op, _ in self._code)]
        self.in_loops = bool(loops)
        code = [ins for ins in self._code if not loops or any(lo <= ins[0] <= hi for lo, hi in loops)]
        pending: set = set()
        for _, opcode, operands in code:
            kind = opcode.split(".")[0]
            width = access_width(opcode)
            is_load = kind in ("LDG", "LD")
            dest, _, sources = operands.partition(",") if is_load else ("", "", operands)
            if pending & _registers(sources if is_load else operands):
                self.round_trips += 1
                pending.clear()
            if is_load:
                self.load_bytes += width // 8
                first = _registers(dest)
                if first:
                    pending |= set(range(min(first), min(first) + max(1, width // 32)))
            elif kind in ("STG", "ST"):
                self.store_bytes += width // 8
        if pending:
            self.round_trips += 1
        self._code = []

    @property
    def bytes_per_trip(self) -> float:
        """Bytes one thread moves (loads and stores) per round trip it waits for; a thread that
        only stores still waits once (its block's slot frees when the stores drain)."""
        return (self.load_bytes + self.store_bytes) / max(self.round_trips, 1)


def sass_memory_ops(sass: str) -> Dict[str, MemoryOps]:
    """Per function (mangled name) of ``cuobjdump -sass`` output, its memory instructions."""
    out: Dict[str, MemoryOps] = {}
    current: Optional[MemoryOps] = None
    for line in sass.splitlines():
        found = _FUNCTION.match(line)
        if found:
            if current is not None:
                current.close()
            current = out.setdefault(found.group(1), MemoryOps())
            continue
        ins = _INSTRUCTION.search(line)
        if ins and current is not None:
            current.add(ins.group(1), ins.group(2), int(_ADDRESS.search(line).group(1), 16))
    if current is not None:
        current.close()
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
    cases: List[Tuple[str, str, str, str]] = field(default_factory=list)  # benchmark cases that launch it (Triton)
    programs: Dict[Tuple[str, str, str, str], int] = field(default_factory=dict)  # its grid in each of them
    moved: Dict[Tuple[str, str, str, str], int] = field(default_factory=dict)  # its tensors' bytes in each

    def occupancy(self) -> Occupancy:
        return occupancy(DEVICES[self.arch], self.block, self.regs, self.shared)

    def bytes_in_flight_per_sm(self) -> float:
        """Resident threads x the bytes each moves per round trip (a thread that only stores
        still waits once: its block's slot frees when the stores drain)."""
        return self.occupancy().warps * DEVICES[self.arch].warp_size * self.ops.bytes_per_trip

    def bandwidth_tbps(self, memory: "Memory") -> float:
        """The rate the model gives this kernel on ``memory`` with every SM full of its blocks."""
        return memory.bandwidth_tbps(SMS * self.bytes_in_flight_per_sm())

    def wave(self) -> int:
        """Blocks resident on the whole GPU at once when every SM is full."""
        return SMS * self.occupancy().blocks

    def grid_bandwidth_tbps(self, memory: "Memory", programs: int) -> float:
        """The rate with a grid of ``programs`` blocks: fewer than a full wave keep fewer bytes in
        flight (Little's law with the blocks there are); more run at the full rate."""
        resident = min(programs, self.wave())
        return memory.bandwidth_tbps(resident * self.block * self.ops.bytes_per_trip)


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


CaseKey = Tuple[str, str, str, str]  # (op, case, dtype, mode) of a benchmark case


def _case_key(op: str, case: "object") -> CaseKey:
    return (op, case.name, str(case.dtype).replace("torch.", ""), case.mode)


def bench_triton_launches(quick: bool = False) -> List["compile_check.Launch"]:
    """The Triton launches our ``triton`` provider makes at each benchmark case's CUDA size
    (``quick``: float32 cases), recorded on meta tensors: each Triton twin op's meta kernel becomes
    its launcher, whose kernel launches compile-check's recorder keeps instead of running, and the
    backend check lets meta tensors through. Autograd runs as on CUDA, so a fwd+bwd case records
    its backward kernels too. Each launch's case is "op|case|dtype|mode". The process keeps the
    meta kernels: run it from the command line, as ``main`` does."""
    import importlib

    import torch

    from tricks_ext import _backend
    from tricks_ext.ops import _library

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    meta = torch.device("meta")
    library = torch.library.Library("tricks_ext", "IMPL")
    for qualified, launcher in _library.TRITON_LAUNCHERS.items():
        library.impl(qualified.split("::")[1], launcher, "Meta")
    reason = _backend._device_reason
    _backend._device_reason = lambda b, d: None if b == "triton" and d.type == "meta" else reason(b, d)
    calls = []
    for op in _NAMESPACE:
        module = importlib.import_module(f"benchmarks.bench_{op}")
        provider = next(p for p in module.providers(torch.device("cuda")) if p.name.startswith("tricks_ext:triton"))
        for case in module.cases(torch.device("cuda"), False):
            if quick and case.dtype != torch.float32:
                continue
            calls.append(("|".join(_case_key(op, case)), lambda p=provider, c=case: p.setup(c, meta)()))
    try:
        return compile_check._record(calls)
    finally:
        _backend._device_reason = reason


def triton_kernels(archs: Sequence[str], jobs: int, quick: bool = False) -> List[Kernel]:
    """Every Triton specialization the benchmarks launch at their CUDA sizes (pointers 16-byte
    aligned, as torch's allocations are; ``quick``: the float32 cases), with its SASS; named
    "module.kernel dtype" and knowing the cases that launch it."""
    rows = compile_check.triton_rows(archs, jobs, sass=True, aligned_only=True, launches=bench_triton_launches(quick))
    kernels = []
    for row in rows:
        if row.error:
            raise RuntimeError(f"{row.kernel} does not compile for {row.arch}: {row.error}")
        ops = list(sass_memory_ops(row.sass).values())
        cases = sorted({tuple(c.rsplit(" [", 1)[0].split("|")) for c in row.cases})
        programs = {tuple(c.split("|")): n for c, n in row.programs.items()}
        moved = {tuple(c.split("|")): n for c, n in row.bytes.items()}
        kernels.append(Kernel(f"{row.kernel} {cases[0][2]}", row.arch, row.regs, row.shared, 0, 32 * row.warps,
                              ops[0] if ops else MemoryOps(), cases, programs, moved))
    return kernels


def _widths(counts: Dict[str, int]) -> str:
    return " ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "-"


# The fraction of the ceiling the issue sets for every memory-bound kernel on the H100.
TARGET = 0.85
# Kernels the model puts below TARGET at the benchmark sizes (prefixes of their names), with what it
# reads in them; `--check` fails on any other kernel below it and on an entry whose kernels were
# built but none is below it any more (a stale entry). Empty: every CUDA kernel and every Triton
# specialization the benchmarks launch reaches TARGET (the last four entries, bfloat16 Triton,
# went with WS's one-sweep tiles, soft F1's and EvoNorm's multi-row tiles; benchmarks/NOTES.md).
BELOW_TARGET: Dict[str, str] = {}
# C++ names of the benchmark dtypes in the CUDA kernels' template arguments.
_CXX_DTYPE = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16", "float64": "double"}
# The CUDA namespace of each benchmarked op (wsconv's convolution is cuDNN's; patch is a whole model).
_NAMESPACE = {"dropout": "dropout", "evonorm": "evonorm", "mask_boxes": "mask_boxes", "mixup": "mixup",
              "optim": "optim", "sasa": "sasa", "soft_bce": "soft_bce", "soft_ce": "soft_ce", "soft_f1": "soft_f1",
              "weight_standardize": "ws"}


def _dtype_of(name: str) -> str:
    """The dtype of a CUDA kernel from its template arguments (the first one that names one)."""
    args = name[name.find("<"):]
    found = [(args.find(cxx), d) for d, cxx in _CXX_DTYPE.items() if cxx in args]
    return min(found)[1] if found else "?"


def case_predictions(kernels: List[Kernel], memory: Memory, backend: str = "cuda"
                     ) -> List[Tuple[str, str, str, str, int, Kernel, float]]:
    """Per benchmark case of an op with kernels on ``backend`` ("cuda" or "triton"): (op, case,
    dtype, mode, floor bytes, slowest kernel the case runs, predicted ms = floor bytes at that
    kernel's rate), at the benchmarks' CUDA sizes. Triton: the specializations the case itself
    launched. CUDA: the op's kernels of the case's dtype (fwd cases without the backward ones)."""
    import importlib

    import torch
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = []
    for op, namespace in _NAMESPACE.items():
        module = importlib.import_module(f"benchmarks.bench_{op}")
        for case in module.cases(torch.device("cuda"), False):
            key = _case_key(op, case)
            if backend == "triton":
                runs = [k for k in kernels if key in k.cases]
            else:
                runs = [k for k in kernels if k.name.startswith(f"tricks::{namespace}::") and _dtype_of(k.name) == key[2]
                        and (case.mode != "fwd" or "bwd" not in k.name)]
            if not runs:
                continue
            slowest = min(runs, key=lambda k: k.bandwidth_tbps(memory))
            out.append((*key, case.floor_bytes, slowest,
                        case.floor_bytes / (slowest.bandwidth_tbps(memory) * 1e12) * 1e3))
    return out


def grid_ms(kernels: List[Kernel], key: CaseKey, floor: float, memory: Memory) -> Tuple[Kernel, float]:
    """(the kernel that moves the most of case ``key``'s bytes, the case's ms on ``memory`` with each
    kernel's share of the floor at the rate its own grid allows). A kernel's share is its part of
    the bytes of the tensors the case's launches take (compile_check.Launch.bytes): a merge over
    a few hundred values weighs nothing beside the sweep it follows, however small its grid."""
    runs = [k for k in kernels if key in k.programs]
    total = sum(k.moved.get(key, 0) for k in runs)
    seconds = sum(floor * (k.moved.get(key, 0) / total if total else 1 / len(runs))
                  / (k.grid_bandwidth_tbps(memory, k.programs[key]) * 1e12) for k in runs)
    return max(runs, key=lambda k: k.moved.get(key, 0)), seconds * 1e3


def below_target(kernels: List[Kernel], memory: Memory) -> Tuple[List[str], List[str]]:
    """(kernels below TARGET that BELOW_TARGET does not explain, BELOW_TARGET entries whose
    kernels were built but none of them is below TARGET any more)."""
    low = [k.name for k in kernels if k.bandwidth_tbps(memory) < TARGET * memory.ceiling_tbps]
    unexplained = sorted({n for n in low if not any(n.startswith(p) for p in BELOW_TARGET)})
    built = [k.name for k in kernels]
    stale = sorted(p for p in BELOW_TARGET
                   if any(n.startswith(p) for n in built) and not any(n.startswith(p) for n in low))
    return unexplained, stale


def _pct(k: Kernel, memory: Memory) -> str:
    return f"{k.bandwidth_tbps(memory):.2f} ({100 * k.bandwidth_tbps(memory) / memory.ceiling_tbps:.0f} %)"


def readme_table(kernels: List[Kernel]) -> List[str]:
    """The README's "Predicted on H100/H200" table: per op, its slowest CUDA kernel (any dtype)
    and slowest Triton specialization (those built: float32 in quick mode) with their predicted
    rates, as Markdown lines."""
    h100, h200 = fit_memory("H100"), fit_memory("H200")

    def slowest(ks: List[Kernel]) -> str:
        if not ks:
            return "- | - | -"
        k = min(ks, key=lambda k: k.bandwidth_tbps(h100))
        return f"`{k.name}` | {_pct(k, h100)} | {_pct(k, h200)}"

    lines = ["| op | slowest CUDA kernel | H100 TB/s | H200 TB/s | slowest Triton kernel | H100 TB/s | H200 TB/s |",
             "|---|---|---:|---:|---|---:|---:|"]
    for op, namespace in _NAMESPACE.items():
        cuda = [k for k in kernels if k.name.startswith(f"tricks::{namespace}::")]
        triton = [k for k in kernels if k.name.startswith(f"{op}.")]
        lines.append(f"| {op} | {slowest(cuda)} | {slowest(triton)} |")
    return lines


def score(kernels: List[Kernel], results_csv: str, peer_records: Sequence = ()) -> List[str]:
    """Measured beside predicted: for each row of a benchmark results CSV taken on an H100 or
    H200 (`make bench` / scripts/gpu_check.sh) whose provider the model predicts (our CUDA and
    Triton backends; the eager peers of ``peer_records``, scripts/peer_model.py), the predicted and
    measured ms and their ratio, as Markdown table lines."""
    import csv

    memories = {name: fit_memory(name) for name in DATASHEET_TBPS}
    predicted: Dict[str, Dict[Tuple[str, ...], float]] = {name: {} for name in memories}
    for name, memory in memories.items():
        for backend in ("cuda", "triton"):
            predicted[name].update({(op, c, d, m, f"tricks_ext:{backend}"): ms
                                    for op, c, d, m, _, _, ms in case_predictions(kernels, memory, backend)})
    if peer_records:
        import peer_model
        table = peer_model.load_table()
        for name, memory in memories.items():
            predicted[name].update({(r.op, r.case, r.dtype, r.mode, r.provider): r.ms(table, memory)
                                    for r in peer_records})
    lines = ["| device | op | case | dtype | mode | provider | predicted ms | measured ms | measured / predicted |",
             "|---|---|---|---|---|---|---:|---:|---:|"]
    with open(results_csv) as f:
        for row in csv.DictReader(f):
            gpu = next((name for name in DATASHEET_TBPS if name in row["device"]), None)
            # our providers carry a suffix on some benchmarks ("tricks_ext:cuda Ranger"): same kernels
            provider = " ".join(row["provider"].split()[:1]) if row["provider"].startswith("tricks_ext:") \
                else row["provider"]
            key = (row["op"], row["case"], row["dtype"], row["mode"], provider)
            if gpu is None or key not in predicted[gpu]:
                continue
            ms, measured = predicted[gpu][key], float(row["time_ms"])
            lines.append(f"| {row['device']} | {' | '.join(key[:4])} | {row['provider']} | {ms:.3f} | {measured:.3f} "
                         f"| {measured / ms:.2f} |")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/gpu_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="Triton: the float32 benchmark cases only")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 on a kernel below {TARGET:.0%} of the H100 ceiling that BELOW_TARGET does not "
                             "explain, or on a stale BELOW_TARGET entry")
    parser.add_argument("--readme", action="store_true", help="print only the README's predicted table")
    parser.add_argument("--score", metavar="RESULTS_CSV",
                        help="also print measured beside predicted for the H100/H200 rows of a benchmark results CSV")
    args = parser.parse_args(argv)
    import peer_model  # here: it imports this module
    # first, while this process has no threads: the recorder forks a process per provider
    records, skipped = ([], []) if args.readme else peer_model.record_peers(args.jobs)
    try:
        kernels = cuda_kernels(["sm_90"], args.jobs)
    except FileNotFoundError as exc:
        print(f"gpu-model: the CUDA kernels cannot be compiled here: {exc} not found", file=sys.stderr)
        return 2
    kernels += triton_kernels(["sm_90"], args.jobs, quick=args.quick)
    if args.readme:
        print("\n".join(readme_table(kernels)))
        return 0
    h100, h200 = fit_memory("H100"), fit_memory("H200")
    print("Compiled, not run (no GPU): predicted, not measured. sm_90 (H100 SXM, H200).\n")
    print(f"Memory model, fitted to the published H200 stream table ({os.path.relpath(CALIBRATION)}): a round trip "
          f"takes {h200.latency_ns:.0f} ns + bytes in flight / {h200.service_tbps:.2f} TB/s on the H200; ceiling "
          f"{h200.ceiling_tbps:.2f} TB/s (its best stream). H100 SXM: the same latency, service rate and ceiling x "
          f"{DATASHEET_TBPS['H100']}/{DATASHEET_TBPS['H200']} (datasheets): {h100.service_tbps:.2f} and "
          f"{h100.ceiling_tbps:.2f} TB/s.")
    for kernel, errors in calibration_errors(h200).items():
        print(f"- fit on {kernel}: mean |error| {100 * sum(map(abs, errors)) / len(errors):.1f} %, "
              f"max {100 * max(map(abs, errors)):.1f} % over {len(errors)} occupancies")
    print("\nPer kernel: registers, threads per block, resident warps per SM (CUDA's occupancy rules) and the "
          "limiter, the SASS's global loads and stores (count, then opcode.bits: LDG/STG global, LD/ST generic), "
          "bytes one thread moves per round trip (in its loops, or the whole kernel if it has none; every "
          "instruction once, in program order), bytes in flight per SM with every SM full, and the rate that "
          "gives (TB/s, % of the ceiling).\n")
    print("| kernel | registers | threads | warps/SM | limiter | loads | stores | B/trip | KB in flight/SM "
          "| H100 TB/s | H200 TB/s |")
    print("|---|---:|---:|---:|---|---|---|---:|---:|---:|---:|")
    for k in sorted(kernels, key=lambda k: k.name):
        occ, ops = k.occupancy(), k.ops
        trip = ops.bytes_per_trip
        print(f"| {k.name} | {k.regs} | {k.block} | {occ.warps} | {occ.limiter} | {_widths(ops.loads)} "
              f"| {_widths(ops.stores)} | {trip:.1f} | {k.bytes_in_flight_per_sm() / 1024:.1f} | {_pct(k, h100)} "
              f"| {_pct(k, h200)} |")
    for backend in ("cuda", "triton"):
        print(f"\nPer benchmark case ({backend} backend, the benchmarks' CUDA sizes): the case's bytes floor at the "
              "rate of the slowest kernel it runs (launch overhead and passes beyond the floor not counted).")
        grids = backend == "triton"
        if grids:
            print("Triton's grids are recorded too: the grid of the kernel that moves most of the case's bytes "
                  "against the blocks one wave of it holds (every SM full), and the H100 time with each kernel's "
                  "share of the floor (its part of the bytes of the tensors the case's launches take) at the rate "
                  "of only its own blocks in flight. The other columns, the CUDA table and the ratios assume full "
                  "SMs.")
        print("\n| op | case | dtype | mode | floor MB | slowest kernel | H100 ms | H200 ms |"
              + (" programs / wave | H100 ms at its grids |" if grids else ""))
        print("|---|---|---|---|---:|---|---:|---:|" + ("---:|---:|" if grids else ""))
        h200_ms = {(op, c, d, m): ms for op, c, d, m, _, _, ms in case_predictions(kernels, h200, backend)}
        for op, case, dtype, mode, floor, slowest, ms in case_predictions(kernels, h100, backend):
            key = (op, case, dtype, mode)
            line = f"| {op} | {case} | {dtype} | {mode} | {floor / 1e6:.1f} | {slowest.name} | {ms:.3f} | {h200_ms[key]:.3f} |"
            if grids:
                main, at_grid = grid_ms(kernels, key, floor, h100)
                line += f" {main.programs[key]} / {main.wave()} | {at_grid:.3f} |"
            print(line)
    print("\nThe README's table (the slowest kernel of each op):\n")
    print("\n".join(readme_table(kernels)))
    ours_ms = {(op, c, d, m): ms for op, c, d, m, _, _, ms in case_predictions(kernels, h100)}
    peers = peer_model.fastest_peers(records, h100)
    print("\nPredicted ratio per benchmark case (H100): ours on the CUDA backend against the eager peer the model "
          "predicts fastest, each op it runs at the rate of its torch kernel "
          f"({os.path.relpath(peer_model.TORCH_TABLE, peer_model.ROOT)}; scripts/peer_model.py). Launch overhead "
          "is left out of both, which favours the peers that launch many kernels.\n")
    print("\n".join(peer_model.ratio_lines(ours_ms, peers)))
    for line in skipped:
        print(f"- not predicted: {line}")
    print("\nThe README's ratio table:\n")
    print("\n".join(peer_model.readme_ratio_lines(ours_ms, peers)))
    if args.score:
        print("\nMeasured beside predicted (our CUDA and Triton backends, the eager peers):\n")
        print("\n".join(score(kernels, args.score, records)))
    unexplained, stale = below_target(kernels, h100)
    for kind, ks in (("CUDA kernel instances", [k for k in kernels if k.name.startswith("tricks::")]),
                     ("Triton specializations", [k for k in kernels if not k.name.startswith("tricks::")])):
        low = sum(k.bandwidth_tbps(h100) < TARGET * h100.ceiling_tbps for k in ks)
        print(f"\n{kind}: {len(ks)}, below {TARGET:.0%} of the H100 ceiling: {low}")
    print(f"\nBelow {TARGET:.0%} of the H100 ceiling, explained: "
          + ("; ".join(f"{p}*: {why}" for p, why in BELOW_TARGET.items()) or "none"))
    for name in unexplained:
        print(f"UNEXPLAINED: {name} is below {TARGET:.0%} and not in BELOW_TARGET")
    for prefix in stale:
        print(f"STALE: no kernel {prefix}* is below {TARGET:.0%} any more")
    return 1 if args.check and (unexplained or stale) else 0


if __name__ == "__main__":
    sys.exit(main())
