"""The benchmarks' eager peers (torch, timm, pytorch-optimizer, statopt) on an H100/H200, predicted
by the model of scripts/gpu_model.py, so that a predicted ratio stands beside every predicted time.

A peer's time is the sum over the aten ops it runs of the bytes each op moves at the rate the
model gives the torch kernel that runs it:

- **The ops and their bytes** are recorded, not typed: each eager provider of each benchmark runs
  once at its CUDA size on tensors without data (``meta``), under a dispatch mode that sees every
  aten op. An op reads the distinct elements of its tensor arguments and writes its fresh
  outputs and the arguments its schema marks as written; views move nothing. Where torch's code
  picks a path by device, the meta tensors take CUDA's (``_as_on_cuda``: dropout's fused kernel,
  the foreach and fused optimizer paths). A provider that needs data on the host (a ``.item()``,
  a loop over box coordinates) cannot run on meta and is reported as not predicted.
- **The rates** come from torch's own kernels: for each kernel family (elementwise, reduction,
  softmax, dropout, fused Adam/SGD, foreach) and dtype, one representative kernel's sm_90 SASS
  from a torch CUDA wheel's ``libtorch_cuda.so``, read like ours (registers, the SASS's bytes per
  round trip, threads per block from the cubin's ``EIATTR_MAX_THREADS``). The readings are a
  committed table, docs/calibration/torch_kernels_sm90.csv, that ``--torch-lib`` rebuilds.
- **Left out, in the peers' favour:** launch overhead (a peer runs many kernels: its predicted
  time is a floor), caches (an op re-reading what the previous one wrote hits L2 if it fits), and
  families without a representative (batch norm runs cuDNN's kernels, whose code is not in torch;
  index and scatter kernels), which move their bytes at the ceiling.

Compiled, not run: every figure is a prediction, none is a GPU measurement.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compile_check  # noqa: E402
import gpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_TABLE = os.path.join(ROOT, "docs", "calibration", "torch_kernels_sm90.csv")
BENCH_OPS = tuple(gpu_model._NAMESPACE)

# One kernel per family and dtype: the demangled name (its prefix up to the argument list) of the
# kernel torch launches for a contiguous, 16-byte aligned tensor of that dtype. Vector widths are
# the widest that loads 16 bytes (4 floats, 8 halves): what torch's can_vectorize_up_to gives such
# a pointer. Reductions: a sum over the last dim; softmax: rows of 513-1024 (the benchmarks' 1000
# classes: the warp-per-row kernel, log-softmax form); the foreach family: a list add with alpha.
_T = {"float32": "float", "bfloat16": "c10::BFloat16", "float16": "c10::Half"}
_VEC = {"float32": 4, "bfloat16": 8, "float16": 8}
_NS = "at::native::(anonymous namespace)::"


def _representatives(dtype: str) -> Dict[str, str]:
    t, vec = _T[dtype], _VEC[dtype]
    acc = "float"
    return {
        "elementwise": f"void at::native::vectorized_elementwise_kernel<{vec}, at::native::BinaryFunctor<{t}, {t}, {t}, "
                       f"at::native::binary_internal::MulFunctor<{acc}> >, std::array<char*, 3ul>, false>",
        "reduce": f"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<{t}, at::native::func_wrapper_t<{acc}, "
                  f"at::native::sum_functor<{t}, {acc}, {acc}>::operator()(at::TensorIterator&)::{{lambda({acc}, {acc})#1}}>"
                  f", unsigned int, {acc}, 4, {vec}> >",
        "softmax": f"void (anonymous namespace)::softmax_warp_forward<{t}, {t}, {acc}, 10, true, false, 32>",
        "softmax_backward": f"void (anonymous namespace)::softmax_warp_backward<{t}, {t}, {acc}, 10, true, false, 32>",
        "dropout": f"void {_NS}fused_dropout_kernel_vec<{t}, {acc}, unsigned int, 1, {vec}, bool>",
        "fused_adam": f"void {_NS}multi_tensor_apply_kernel<{_NS}FusedOptimizerTensorListMetadata<4>, "
                      f"{_NS}FusedAdamMathFunctor<{t}, 4, (at::native::ADAM_MODE)0, false>",
        "fused_sgd": f"void {_NS}multi_tensor_apply_kernel<{_NS}TensorListMetadata<3>, {_NS}FusedSgdMathFunctor<{t}, 3>",
        "foreach": f"void {_NS}multi_tensor_apply_kernel<{_NS}TensorListMetadata<2>, "
                   f"{_NS}BinaryOpListAlphaFunctor<{t}, 2, 2, 0>, std::plus<{acc}>, {acc}>",
    }


# The family of an aten op (its overload packet name); an op not named here and not a view is
# elementwise (TensorIterator's kernels: arithmetic, casts, copies, fills, comparisons).
_FAMILY = {
    **{op: "reduce" for op in ("sum", "mean", "var", "var_mean", "std", "std_mean", "amax", "amin", "max", "min",
                               "argmax", "argmin", "norm", "linalg_vector_norm", "prod", "all", "any", "logsumexp")},
    "_softmax": "softmax", "_log_softmax": "softmax",
    "_softmax_backward_data": "softmax_backward", "_log_softmax_backward_data": "softmax_backward",
    "native_dropout": "dropout",
    "_fused_adam_": "fused_adam", "_fused_adamw_": "fused_adam", "_fused_sgd_": "fused_sgd",
    # cuDNN's batch norm and the index kernels: no representative, at the ceiling
    **{op: "unmodelled" for op in ("native_batch_norm", "native_batch_norm_backward", "cudnn_batch_norm",
                                   "cudnn_batch_norm_backward", "_native_batch_norm_legit",
                                   "_native_batch_norm_legit_functional", "scatter", "scatter_", "gather",
                                   "index", "index_put_", "index_select", "nonzero", "sort", "topk", "cumsum",
                                   "embedding", "embedding_dense_backward", "nll_loss_forward", "nll_loss_backward")},
}
# Ops that write their first argument without reading it.
_WRITE_ONLY = {"copy_", "fill_", "zero_", "bernoulli_", "uniform_", "normal_", "random_", "exponential_",
               "_foreach_copy_", "_foreach_zero_"}
# Factory ops that allocate without writing.
_NO_WRITE = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_local_scalar_dense"}


def family(op_name: str) -> Optional[str]:
    """The kernel family of an aten op name such as ``aten.mul.Tensor`` (None: it moves nothing)."""
    packet = op_name.split(".")[1] if op_name.startswith("aten.") else op_name
    if packet.startswith("_foreach_"):
        return "foreach"
    return _FAMILY.get(packet, "elementwise")


def _extent_bytes(t: Any) -> int:
    """Bytes of the distinct elements a tensor view covers (an expanded dim counts once)."""
    if t.numel() == 0:
        return 0
    extent = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            extent *= size
    return extent * t.element_size()


@dataclass
class OpCall:
    name: str
    family: str
    dtype: str
    read: int
    written: int

    @property
    def bytes(self) -> int:
        return self.read + self.written


def _tensors(value: Any) -> Iterator[Any]:
    import torch
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def op_call(func: Any, args: Sequence[Any], kwargs: Dict[str, Any], out: Any) -> Optional[OpCall]:
    """The bytes one aten op moves, from its schema: None for views and ops without tensors."""
    schema = func._schema
    name = str(func)
    packet = name.split(".")[1] if name.startswith("aten.") else name
    if not name.startswith("aten.") or packet in _NO_WRITE:
        return None
    returns_alias = [r.alias_info is not None for r in schema.returns]
    written_args = set()
    bound = list(args) + [kwargs[a.name] for a in schema.arguments[len(args):] if a.name in kwargs]
    for arg, value in zip(schema.arguments, bound):
        if arg.alias_info is not None and arg.alias_info.is_write:
            written_args.add(id(value))
    if returns_alias and all(returns_alias) and not written_args:
        return None  # a view
    read = written = 0
    largest, dtype = -1, "float32"
    for arg, value in zip(schema.arguments, bound):
        for t in _tensors(value):
            size = _extent_bytes(t)
            if size > largest and t.is_floating_point():
                largest, dtype = size, str(t.dtype).replace("torch.", "")
            if id(value) in written_args:
                written += size
                if packet in _WRITE_ONLY and arg is schema.arguments[0]:
                    continue
            read += size
    outs = out if isinstance(out, (list, tuple)) else (out,)
    for aliased, value in zip(returns_alias, outs):
        if not aliased:
            written += sum(_extent_bytes(t) for t in _tensors(value))
    if read + written == 0:
        return None
    return OpCall(name, family(name), dtype, read, written)


def record(fn: Callable[[], Any]) -> List[OpCall]:
    """The aten ops ``fn`` runs, with their bytes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: List[OpCall] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            try:
                out = func(*args, **kwargs)
            except NotImplementedError:
                # no meta kernel (torch's fused SGD): an op that only writes its arguments can
                # be counted without running, since nothing reads a result
                if func._schema.returns:
                    raise
                out = None
            call = op_call(func, args, kwargs, out)
            if call is not None:
                calls.append(call)
            return out

    with Recorder():
        fn()
    return calls


@contextlib.contextmanager
def _as_on_cuda() -> Iterator[None]:
    """Meta tensors take the paths CUDA tensors take where torch's code asks the device:
    ``F.dropout`` runs ``aten.native_dropout`` for 0 < p < 1 in training (at::native::dropout's
    is_fused_kernel_acceptable; meta would decompose it into 4 ops), and the optimizers and
    ``clip_grad_norm_`` take their foreach and fused paths (torch.utils._foreach_utils lists the
    devices that have those kernels)."""
    import torch
    import torch.nn.functional as TF
    import torch.optim.optimizer as optimizer
    import torch.utils._foreach_utils as foreach_utils

    dropout = TF.dropout
    foreach, fused = (foreach_utils._get_foreach_kernels_supported_devices,
                      foreach_utils._get_fused_kernels_supported_devices)

    def native_dropout(x, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1 and x.numel() and not inplace:
            return torch.ops.aten.native_dropout(x, p, True)[0]
        return dropout(x, p, training, inplace)

    patches = [(TF, "dropout", native_dropout)] + [
        (module, name, lambda f=f: f() + ["meta"]) for module in (foreach_utils, optimizer)
        for name, f in (("_get_foreach_kernels_supported_devices", foreach),
                        ("_get_fused_kernels_supported_devices", fused))]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def record_provider(setup: Callable, case: Any) -> List[OpCall]:
    """One call of a benchmark provider at ``case``, on meta tensors taking CUDA's paths."""
    import torch

    with _as_on_cuda():
        made: List[Callable[[], Any]] = []
        record(lambda: made.append(setup(case, torch.device("meta"))))  # its warm-up, not counted
        return record(made[0])


# ---------------------------------------------------------------------------------------------
# torch's kernels: read once from a CUDA wheel, kept as a table

@dataclass
class TorchKernel:
    family: str
    dtype: str
    name: str
    regs: int
    shared: int
    threads: int
    load_bytes: int
    store_bytes: int
    round_trips: int
    loads: str
    stores: str

    def kernel(self) -> gpu_model.Kernel:
        ops = gpu_model.MemoryOps(load_bytes=self.load_bytes, store_bytes=self.store_bytes,
                                  round_trips=self.round_trips)
        return gpu_model.Kernel(self.name, "sm_90", self.regs, self.shared, 0, self.threads, ops)


_FIELDS = ["family", "dtype", "name", "regs", "shared", "threads", "load_bytes", "store_bytes", "round_trips",
           "loads", "stores"]
# Kernels without launch bounds (no EIATTR_MAX_THREADS): the block their launcher uses. The
# warp-per-row softmax: "constexpr int threads_per_block = 128" (ATen's PersistentSoftmax.cuh).
_THREADS_UNBOUNDED = {"softmax": 128, "softmax_backward": 128}
_MAX_THREADS = re.compile(r"EIATTR_MAX_THREADS\s+Format:\s+EIFMT_SVAL\s+Value:\s+(0x[0-9a-f]+)")


def _library(path: str, tmp: str) -> Tuple[str, str]:
    """(libtorch_cuda.so, its source: the wheel's name and sha256, or the file's path)."""
    if path.endswith(".whl"):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with zipfile.ZipFile(path) as wheel:
            wheel.extract("torch/lib/libtorch_cuda.so", tmp)
        return os.path.join(tmp, "torch", "lib", "libtorch_cuda.so"), f"{os.path.basename(path)} sha256 {digest}"
    return path, path


def _demangle_all(names: List[str]) -> List[str]:
    """c++filt over many names in one process."""
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def read_torch_kernels(path: str) -> Tuple[List[TorchKernel], str]:
    """The representative kernels' readings from a torch CUDA wheel (or its libtorch_cuda.so)."""
    cuobjdump = compile_check._cuobjdump()
    wanted = {(fam, dtype): name for dtype in _T for fam, name in _representatives(dtype).items()}
    found: Dict[Tuple[str, str], TorchKernel] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lib, source = _library(path, tmp)
        cubins = os.path.join(tmp, "cubins")
        os.makedirs(cubins)
        subprocess.run([cuobjdump, "-xelf", "all", lib], cwd=cubins, check=True, capture_output=True)
        for cubin in sorted(f for f in os.listdir(cubins) if f.endswith(".sm_90.cubin")):
            cubin = os.path.join(cubins, cubin)
            usage = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], capture_output=True, text=True).stdout
            mangled = {m.group(1): m for m in gpu_model._RESOURCE.finditer(usage)}
            hits = {}
            for (name, m), demangled in zip(mangled.items(), _demangle_all(list(mangled))):
                for key, prefix in wanted.items():
                    if key not in found and demangled.startswith((prefix + "(", prefix + ", ")):
                        hits[key] = (name, demangled, m)
            if not hits:
                continue
            sass = gpu_model.sass_memory_ops(subprocess.run([cuobjdump, "-sass", cubin], capture_output=True,
                                                            text=True, check=True).stdout)
            elf = subprocess.run([cuobjdump, "-elf", cubin], capture_output=True, text=True, check=True).stdout
            for key, (name, demangled, m) in hits.items():
                start = elf.find(f"\n.nv.info.{name}\n")
                end = elf.find("\n.nv.info.", start + 1) if start >= 0 else -1
                bound = _MAX_THREADS.search(elf, start, end if end >= 0 else len(elf)) if start >= 0 else None
                if bound is None and key[0] not in _THREADS_UNBOUNDED:
                    raise RuntimeError(f"{demangled}: no EIATTR_MAX_THREADS in its cubin")
                threads = int(bound.group(1), 16) if bound else _THREADS_UNBOUNDED[key[0]]
                ops = sass[name]
                found[key] = TorchKernel(key[0], key[1], wanted[key], int(m.group(2)), int(m.group(4)),
                                         threads, ops.load_bytes, ops.store_bytes, ops.round_trips,
                                         gpu_model._widths(ops.loads), gpu_model._widths(ops.stores))
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise RuntimeError(f"not in {source}: " + "; ".join(wanted[k] for k in missing))
    return [found[k] for k in sorted(found)], source


def write_table(kernels: List[TorchKernel], source: str, path: str = TORCH_TABLE) -> None:
    with open(path, "w", newline="") as f:
        f.write(f"# torch's kernels on sm_90, read by scripts/peer_model.py --torch-lib from {source}\n")
        writer = csv.DictWriter(f, fieldnames=_FIELDS)
        writer.writeheader()
        for k in kernels:
            writer.writerow({name: getattr(k, name) for name in _FIELDS})


def load_table(path: str = TORCH_TABLE) -> Dict[Tuple[str, str], TorchKernel]:
    with open(path) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        out = {}
        for row in rows:
            k = TorchKernel(**{name: (int(row[name]) if name in ("regs", "shared", "threads", "load_bytes",
                                                                  "store_bytes", "round_trips") else row[name])
                               for name in _FIELDS})
            out[(k.family, k.dtype)] = k
    return out


# ---------------------------------------------------------------------------------------------
# Per benchmark case: the peers' predicted time

# Per (family, dtype): [bytes, ops] of one provider call.
Traffic = Dict[Tuple[str, str], List[int]]


@dataclass
class PeerRecord:
    """What one eager provider moves at one benchmark case."""
    op: str
    case: str
    dtype: str
    mode: str
    provider: str
    traffic: Traffic

    @property
    def kernels(self) -> int:
        return sum(n for _, n in self.traffic.values())

    @property
    def bytes(self) -> int:
        return sum(b for b, _ in self.traffic.values())

    def ms(self, table: Dict[Tuple[str, str], TorchKernel], memory: gpu_model.Memory) -> float:
        """Each family's bytes at the rate of its representative in the op's dtype (float32's for
        other dtypes); the ceiling for a family without one."""
        seconds = 0.0
        for (fam, dtype), (nbytes, _) in self.traffic.items():
            k = table.get((fam, dtype)) or table.get((fam, "float32"))
            rate = k.kernel().bandwidth_tbps(memory) if k is not None else memory.ceiling_tbps
            seconds += nbytes / (rate * 1e12)
        return seconds * 1e3

    def unmodelled_bytes(self, table: Dict[Tuple[str, str], TorchKernel]) -> int:
        return sum(b for (fam, _), (b, _) in self.traffic.items() if (fam, "float32") not in table)


def _eager_providers(op: str) -> List[Any]:
    import torch
    module = importlib.import_module(f"benchmarks.bench_{op}")
    return [p for p in module.providers(torch.device("cuda")) if not p.ours and "compile" not in p.name]


def _record_one(op: str, index: int) -> Tuple[List[PeerRecord], List[str]]:
    """Every benchmark case of the ``index``-th eager provider of ``op``."""
    import torch
    module = importlib.import_module(f"benchmarks.bench_{op}")
    provider = _eager_providers(op)[index]
    records, skipped = [], []
    for case in module.cases(torch.device("cuda"), False):
        try:
            calls = record_provider(provider.setup, case)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot run here is reported
            if type(exc).__name__ != "NotForCase":
                skipped.append(f"{op} / {provider.name} / {case.name} / {case.mode}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:300]}")
            continue
        traffic: Traffic = {}
        for c in calls:
            entry = traffic.setdefault((c.family, c.dtype), [0, 0])
            entry[0] += c.bytes
            entry[1] += 1
        records.append(PeerRecord(op, case.name, str(case.dtype).replace("torch.", ""), case.mode, provider.name,
                                  traffic))
    return records, skipped


def _child(op: str, index: int, conn: Any) -> None:
    import warnings
    warnings.filterwarnings("ignore")
    try:
        conn.send(_record_one(op, index))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        conn.send(([], [f"{op} / provider {index}: {type(exc).__name__}: {exc}"]))
    conn.close()


def record_peers(jobs: int = 1, ops: Sequence[str] = BENCH_OPS) -> Tuple[List[PeerRecord], List[str]]:
    """(records, cases not recorded with why) of every eager provider of every benchmark case at
    its CUDA size; torch.compile providers generate their kernels at run time: not predicted.
    One process per provider, ``jobs`` at a time: recording is single-threaded Python (about 80 s
    in one process, 40 s in two on 2 cores), and a provider that crashes its process is reported,
    not fatal."""
    import multiprocessing

    sys.path.insert(0, ROOT)
    tasks = [(op, i) for op in ops for i in range(len(_eager_providers(op)))]
    context = multiprocessing.get_context("fork")
    records: List[PeerRecord] = []
    skipped: List[str] = []
    running: List[Tuple[Tuple[str, int], Any, Any]] = []
    while tasks or running:
        while tasks and len(running) < max(jobs, 1):
            task = tasks.pop(0)
            parent, child = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(*task, child))
            process.start()
            child.close()
            running.append((task, process, parent))
        (op, index), process, parent = running.pop(0)
        try:
            got, why = parent.recv()
            records += got
            skipped += why
        except EOFError:
            process.join()
            skipped.append(f"{op} / {_eager_providers(op)[index].name}: its process ended with code {process.exitcode}")
        process.join()
    return records, skipped


Key = gpu_model.CaseKey


def fastest_peers(records: List[PeerRecord], memory: gpu_model.Memory,
                  table: Optional[Dict[Tuple[str, str], TorchKernel]] = None) -> Dict[Key, Tuple[str, float]]:
    """Per benchmark case, the eager peer the model predicts fastest and its predicted ms."""
    table = table if table is not None else load_table()
    best: Dict[Key, Tuple[str, float]] = {}
    for r in records:
        key, ms = (r.op, r.case, r.dtype, r.mode), r.ms(table, memory)
        if key not in best or ms < best[key][1]:
            best[key] = (r.provider, ms)
    return best


def ratio_lines(ours_ms: Dict[Key, float], peers: Dict[Key, Tuple[str, float]]) -> List[str]:
    """Markdown: per benchmark case with both, our predicted ms (CUDA backend), the fastest eager
    peer's, and their ratio."""
    lines = ["| op | case | dtype | mode | ours ms | fastest eager peer | its ms | peer / ours |",
             "|---|---|---|---|---:|---|---:|---:|"]
    for key in sorted(set(ours_ms) & set(peers)):
        name, ms = peers[key]
        lines.append(f"| {' | '.join(key)} | {ours_ms[key]:.3f} | {name} | {ms:.3f} | {ms / ours_ms[key]:.2f} |")
    return lines


def readme_ratio_lines(ours_ms: Dict[Key, float], peers: Dict[Key, Tuple[str, float]]) -> List[str]:
    """Markdown for the README: per op, over its cases, the range of the fastest eager peer's
    predicted time over ours (CUDA backend, H100)."""
    lines = ["| op | cases | fastest eager peer (predicted) | peer / ours, H100 (lowest - highest) |",
             "|---|---:|---|---:|"]
    for op in BENCH_OPS:
        keys = sorted(k for k in set(ours_ms) & set(peers) if k[0] == op)
        if not keys:
            continue
        ratios = [peers[k][1] / ours_ms[k] for k in keys]
        names = sorted({peers[k][0] for k in keys})
        lines.append(f"| {op} | {len(keys)} | {', '.join(names)} | {min(ratios):.2f} - {max(ratios):.2f} |")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/peer_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-lib", metavar="WHEEL_OR_SO",
                        help=f"read torch's kernels from a torch CUDA wheel or libtorch_cuda.so and rewrite "
                             f"{os.path.relpath(TORCH_TABLE, ROOT)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.torch_lib:
        kernels, source = read_torch_kernels(args.torch_lib)
        write_table(kernels, source)
        print(f"wrote {len(kernels)} kernels from {source} to {os.path.relpath(TORCH_TABLE, ROOT)}")
    table = load_table()
    h100 = gpu_model.fit_memory("H100")
    print("| family | dtype | kernel | registers | threads | B/trip | H100 TB/s |")
    print("|---|---|---|---:|---:|---:|---:|")
    for (fam, dtype), k in sorted(table.items()):
        kernel = k.kernel()
        print(f"| {fam} | {dtype} | `{k.name[:90]}` | {k.regs} | {k.threads} | {kernel.ops.bytes_per_trip:.1f} "
              f"| {kernel.bandwidth_tbps(h100):.2f} |")
    records, skipped = record_peers(args.jobs)
    print("\n| op | case | dtype | mode | provider | kernels | GB moved | GB at the ceiling (no representative) "
          "| H100 ms |")
    print("|---|---|---|---|---|---:|---:|---:|---:|")
    for r in records:
        print(f"| {r.op} | {r.case} | {r.dtype} | {r.mode} | {r.provider} | {r.kernels} | {r.bytes / 1e9:.2f} "
              f"| {r.unmodelled_bytes(table) / 1e9:.2f} | {r.ms(table, h100):.3f} |")
    for line in skipped:
        print(f"not predicted: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
