"""Timing, bandwidth, memory and environment helpers shared by the bench_<op>.py modules."""
from __future__ import annotations

import datetime
import importlib.util
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent


class Unavailable(Exception):
    """A provider cannot run here (peer not installed, backend missing); the reason is shown."""


class NotForCase(Exception):
    """A provider does not run this case (a peer without class weights on the weighted case); it
    still runs the others."""


@dataclass
class Case:
    """One benchmark point. ``floor_bytes``: the least DRAM traffic any implementation needs."""
    name: str
    dtype: torch.dtype
    mode: str  # "fwd" or "fwd+bwd"
    floor_bytes: int
    params: Dict = field(default_factory=dict)


@dataclass
class Provider:
    """``setup(case, device)`` returns a zero-argument callable to time (or raises Unavailable)."""
    name: str
    setup: Callable[[Case, torch.device], Callable[[], object]]
    ours: bool = False


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """One call's time over the rounds measured, in ms: the median (the figure reported), the
    fastest and slowest round (the spread), and how many rounds."""
    median: float
    min: float
    max: float
    rounds: int

    @staticmethod
    def of(ms: List[float]) -> "Timing":
        return Timing(statistics.median(ms), min(ms), max(ms), len(ms))


def time_ms(fn: Callable[[], object], device: torch.device, quick: bool = False) -> float:
    """Median time of one call in ms."""
    return time_all_ms([fn], device, quick)[0].median


def time_all_ms(fns: List[Callable[[], object]], device: torch.device, quick: bool = False) -> List[Timing]:
    """Time of one call of each fn. CUDA: triton.testing.do_bench per fn (L2 flushed between
    calls). CPU: a monotonic clock over rounds that call every fn once in turn, after warm-up,
    so that the machine's drift (timings on a shared host move by 30 % from one minute to the
    next) hits all providers of a case alike and their ratios hold."""
    if device.type == "cuda":
        from triton.testing import do_bench
        return [Timing.of([float(t) for t in do_bench(fn, warmup=10 if quick else 25, rep=40 if quick else 100,
                                                       return_mode="all")]) for fn in fns]
    budget = (0.2 if quick else 1.0) * len(fns)
    for fn in fns:
        fn()
        fn()
    times: List[List[float]] = [[] for _ in fns]
    start = time.perf_counter()
    rounds = 0
    while rounds < 5 or (time.perf_counter() - start < budget and rounds < 200):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        rounds += 1
    return [Timing.of([t * 1e3 for t in ts]) for ts in times]


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak memory one call allocates beyond what was live before it, in MiB: CUDA's allocator
    statistics, or on CPU the running sum of the allocations and frees that torch's profiler
    records (torch keeps no CPU peak statistic of its own; the profiler's allocation events
    carry each block's size, the sum's maximum is the peak)."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if device.type != "cpu":
        return None
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak / 2**20


def copy_bandwidth_gbps(device: torch.device, quick: bool = False) -> float:
    """The device's memory bandwidth as the best of a copy (dst = src: 2 x 4 bytes per element
    counted), a triad (a = b + 0.5 c: 3 x 4) and an in-place update (a += 0.5 b: 3 x 4), each
    with torch's own threads, the ones our CPU kernels use, on buffers far larger than the
    caches: 1 GiB each on CUDA, 256 MiB on CPU (quick: a quarter). On a CPU the copy and the
    triad also read every line they write before writing it (write-allocate), traffic they do
    not count: 12 of 8 bytes and 16 of 12. In-place kernels (the optimizer steps, SASA's) read
    what they write and so showed 135-150 % of the copy and the triad on the 2-thread Xeon; the
    in-place update counts all of its traffic. A row still above 100 % stays in cache or streams
    memory better than torch's elementwise loops."""
    nbytes = (2**30 if device.type == "cuda" else 2**28) // (4 if quick else 1)
    b = torch.randn(nbytes // 4, device=device)
    c = torch.randn_like(b)
    a = torch.empty_like(b)
    copy_ms = time_ms(lambda: a.copy_(b), device, quick)
    triad_ms = time_ms(lambda: torch.add(b, c, alpha=0.5, out=a), device, quick)
    update_ms = time_ms(lambda: a.add_(b, alpha=0.5), device, quick)
    return max(2 * nbytes / (copy_ms * 1e-3), 3 * nbytes / (triad_ms * 1e-3), 3 * nbytes / (update_ms * 1e-3)) / 1e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def instruction_set(device: torch.device) -> str:
    """CUDA: the compute capability (sm_90); CPU: the vector ISA torch dispatches to (AVX2,
    AVX512, ...) and AMX when the CPU has it (tile registers: /proc/cpuinfo's amx_tile)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}"
    isa = torch.backends.cpu.get_cpu_capability()
    try:
        if " amx_tile" in Path("/proc/cpuinfo").read_text():
            isa += "+AMX"
    except OSError:
        pass
    return isa


def peer_versions() -> str:
    """Versions of the baseline libraries the providers call ("-" when not installed)."""
    from importlib import metadata
    out = []
    for dist in ("timm", "pytorch-optimizer", "numpy"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} -")
    return "; ".join(out)


def commit_label() -> str:
    """The short commit, ``+dirty`` when tracked files other than results differ from it: what
    a run wrote (benchmarks/results/, the digits plot) does not make the code dirty, so a second
    run right after the first measures the same commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results", ":(exclude)docs/digits.png"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment(device: torch.device) -> Dict[str, str]:
    commit = commit_label()
    triton_version = "none"
    if importlib.util.find_spec("triton") is not None:
        import triton
        triton_version = triton.__version__
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "isa": instruction_set(device),
        "peers": peer_versions(),
    }


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def unary_runner(fn: Callable[[torch.Tensor], torch.Tensor], scale: float = 1.0) -> Callable:
    """Provider setup for a one-input op: times ``fn(x)`` (mode "fwd") or forward + backward
    through torch.autograd.grad (no accumulation into .grad), x ~ N(0, scale^2) of the case's
    ``shape`` and dtype, the gradient N(0, 1)."""
    def setup(case: Case, device: torch.device):
        x = torch.randn(case.params["shape"], device=device).mul_(scale).to(case.dtype)
        if case.mode == "fwd":
            return lambda: fn(x)
        x.requires_grad_(True)
        grad = torch.randn(case.params["shape"], device=device).to(case.dtype)
        return lambda: torch.autograd.grad(fn(x), x, grad)
    return setup


def ours(op: str, backend: str, make: Callable[[str], Callable], name_suffix: str = "") -> Provider:
    """A tricks_ext backend as a provider: ``make(backend)`` returns the setup; skipped with the
    reason where the backend cannot run, and Triton is timed only on CUDA (the CPU interpreter
    is a test tool)."""
    from tricks_ext import _backend

    def setup(case: Case, device: torch.device):
        reason = _backend.unavailable_reason(backend, device, op)
        if reason is not None:
            raise Unavailable(reason)
        if backend == "triton" and device.type == "cpu":
            raise Unavailable("Triton is timed only on CUDA (the CPU interpreter is a test tool)")
        return make(backend)(case, device)
    return Provider(f"tricks_ext:{backend}{name_suffix}", setup, ours=True)
