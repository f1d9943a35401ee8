"""``python scripts/compile_check.py`` (``make compile-check``): every GPU kernel compiled for GPU archs, with no GPU.

Triton: each launcher of ``tricks_ext.triton_kernels`` is called on meta tensors over a table of
cases that reaches every tile, BLOCK and MODE choice it can make, for every dtype; its kernel
launches are recorded instead of run. Each recorded launch is then specialized the way Triton's
own launcher does it (``create_function_from_signature``: 16-byte alignment of pointers, i32 /
i64 and divisibility by 16 of ints, ints equal to 1 as constants) in three argument variants:
as recorded (aligned pointers), with every pointer and int off the 16 grid, and with the size
arguments past 2**31 (i64). Every distinct specialization is compiled with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` and its cubin read with
``cuobjdump --dump-resource-usage`` (shipped in the triton wheel).

CUDA: every kernel of ``csrc/<op>/cuda.cu``, compiled by nvcc with the extension's flags and
``-Xptxas -v``, whose "bytes spill stores" are the spills (a CUDA kernel's stack frame may also
hold local arrays, so its size alone is not a spill).

Spills are the "bytes spill stores" of ptxas -v, for Triton too: a kernel whose cubin has a
stack frame (cuobjdump's STACK; LOCAL stays 0 even when a kernel spills) has its PTX run again
through the ptxas Triton used, with Triton's flags and -v, since a frame may be only the save
area of a libdevice call (fp64 division, sqrt). The command prints one table (kernel, arch,
registers, spill-store bytes, shared bytes, warps) and exits non-zero on a compile failure, any
spill, or shared memory over the arch's per-block limit.
Compiled, not run: no figure here is a GPU measurement.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

ARCHS = {"sm_80": 80, "sm_90": 90}
# Shared memory one block may use with the opt-in (A100: 163 KB; H100/H200: 227 KB).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
FLOATS = ("float32", "float16", "bfloat16", "float64")
# 16-byte pointer alignment and divisibility by 16 are what Triton specializes on.
_ALIGN = 16


@dataclass
class Launch:
    """One recorded kernel launch: the JIT function and its arguments."""
    fn: Any
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    case: str
    programs: int = 0  # the launch's grid size, all dimensions (scripts/gpu_model.py)
    # the bytes of its distinct tensor arguments: what it may read or write at most, the share of
    # a case's bytes scripts/gpu_model.py gives it (a launcher passes a small tensor for an
    # unused pointer, so that an absent input does not count)
    bytes: int = 0


@dataclass
class Row:
    kernel: str
    arch: str
    spec: str
    regs: int = 0
    stack: int = 0
    shared: int = 0
    warps: int = 0
    error: str = ""
    sass: str = ""  # cuobjdump -sass of the cubin, when triton_rows is asked for it (scripts/gpu_model.py)
    cases: List[str] = field(default_factory=list)
    programs: Dict[str, int] = field(default_factory=dict)  # per case: its largest grid of this kernel
    bytes: Dict[str, int] = field(default_factory=dict)  # per case: its launches' Launch.bytes, summed

    def problems(self, cc: int) -> List[str]:
        out = []
        if self.error:
            out.append(f"compile failed: {self.error}")
        if self.stack:
            out.append(f"{self.stack} B of spill stores")
        if self.shared > SHARED_LIMIT[cc]:
            out.append(f"{self.shared} B shared > {SHARED_LIMIT[cc]} B")
        return out


class _Ptr:
    """A pointer argument as Triton's specializer sees a tensor: its dtype and address."""

    def __init__(self, dtype: Any, address: int) -> None:
        self.dtype = dtype
        self._address = address

    def data_ptr(self) -> int:
        return self._address


# ---------------------------------------------------------------------------------------------
# Recording the launchers' kernel launches

def _tensor_bytes(args: Iterable[Any]) -> int:
    """The bytes of the distinct tensors among ``args`` (lists of tensors included)."""
    import torch

    seen = {}
    for a in args:
        for t in (a if isinstance(a, (list, tuple)) else [a]):
            if isinstance(t, torch.Tensor):
                seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def _record(calls: Iterable[Tuple[str, Callable[[], Any]]]) -> List[Launch]:
    from triton.runtime import jit

    launches: List[Launch] = []
    current = [""]

    def run(self, *args, grid, warmup, **kwargs):
        dims = grid(kwargs) if callable(grid) else grid
        launches.append(Launch(self, args, kwargs, current[0], math.prod(int(d) for d in dims), _tensor_bytes(args)))

    original = jit.JITFunction.run
    jit.JITFunction.run = run
    try:
        for name, call in calls:
            current[0] = name
            call()
    finally:
        jit.JITFunction.run = original
    return launches


def _cases() -> Iterator[Tuple[str, Callable[[], Any]]]:
    """Launcher calls on meta tensors covering every choice of every launcher, per dtype."""
    import torch

    from tricks_ext.triton_kernels import (dropout, evonorm, mask_boxes, mixup, optim, sasa, soft_bce, soft_ce,
                                          soft_f1, weight_standardize)

    meta = torch.device("meta")

    def t(*shape, dtype=torch.float32):
        return torch.empty(*shape, dtype=dtype, device=meta)

    for dname in FLOATS:
        dt = getattr(torch, dname)
        acc = torch.float64 if dt == torch.float64 else torch.float32
        so = t(2, dtype=torch.int64)
        for res, gate, group in itertools.product((False, True), (False, True), (1, 197)):
            x = t(4099, dtype=dt)
            r, g = (x if res else None), (t((), dtype=acc) if gate else None)
            yield (f"dropout_apply {dname} res={res} gate={gate} group={group}",
                   lambda x=x, r=r, g=g, group=group: dropout.dropout_apply(x, r, g, so, 0.5, 2.0, group))
            yield (f"dropout_apply_bwd {dname} x={res} gate={gate} group={group}",
                   lambda x=x, r=r, g=g, group=group: dropout.dropout_apply_bwd(x, r, g, so, 0.5, 2.0, group))
        # evonorm: every BLOCK (16 .. evonorm.BLOCK), NCHW and channels_last, split on and off
        for p in (3, 30, 300, 3000, 30000):
            for cl in (False, True):
                x = t(2, 64, p, dtype=dt)
                if cl:
                    x = x.transpose(1, 2).contiguous().transpose(1, 2)
                vec = t(64, dtype=acc)
                for split in (1, 4):
                    yield (f"evonorm_s0_fwd {dname} P={p} channels_last={cl} split={split}",
                           lambda x=x, vec=vec, split=split: evonorm.evonorm_s0_fwd(x, vec, vec, vec, 32, 1e-5, split))
                mean = t(2, 32, dtype=acc)
                yield (f"evonorm_s0_bwd {dname} P={p} channels_last={cl}",
                       lambda x=x, vec=vec, mean=mean: evonorm.evonorm_s0_bwd(x, x, vec, vec, mean, mean, 32, 1e-5))
        # mixup and mask_boxes: NCHW and channels_last; in place and not
        for cl, same in itertools.product((False, True), (False, True)):
            x = t(6, 3, 33, 35, dtype=dt)
            inner = 3 if cl else 1
            coef, box = t(6, 2), t(6, 4, dtype=torch.int32)
            mix = mixup.mixup_apply_ if same else mixup.mixup_apply
            yield (f"mixup_apply {dname} inner={inner} same={same}",
                   lambda x=x, coef=coef, box=box, inner=inner, mix=mix: mix(x, coef, box, 33, 35, inner))
            boxes = t(6, 2, 4, dtype=torch.int32)
            mask = mask_boxes.mask_boxes_ if same else mask_boxes.mask_boxes
            yield (f"mask_boxes {dname} inner={inner} same={same}",
                   lambda x=x, boxes=boxes, inner=inner, mask=mask: mask(x, boxes, 0.0, 33, 35, inner))
        # soft CE: every BLOCK, the three target modes, class weights or none, one or per-row
        # upstream gradients; 2 rows of 50000 classes: rows in pieces (row_pieces) and their merge
        for rows, classes in [(8, c) for c in (10, 20, 40, 100, 200, 400, 1000, 1500, 3000, 5000)] + [(2, 50000)]:
            z = t(rows, classes, dtype=dt)
            labels = t(rows, dtype=torch.int64)
            for mode, weighted in itertools.product(("hard", "mixed", "dense"), (False, True)):
                a = labels if mode != "dense" else None
                b = labels if mode == "mixed" else None
                lam = t(rows) if mode == "mixed" else None
                dense = z if mode == "dense" else None
                w = t(classes, dtype=acc) if weighted else None
                yield (f"soft_ce_fwd {dname} {rows}x{classes} {mode} weight={weighted}",
                       lambda z=z, a=a, b=b, lam=lam, dense=dense, w=w:
                       soft_ce.soft_ce_fwd(z, a, b, lam, dense, w, 0.1, -100, soft_ce.NONE))
                for per_row in (False, True):
                    grad = t(rows, dtype=acc) if per_row else t((), dtype=acc)
                    stats = t(rows, soft_ce.STATS_COLUMNS, dtype=acc)
                    reduction = soft_ce.NONE if per_row else soft_ce.MEAN
                    yield (f"soft_ce_bwd {dname} {rows}x{classes} {mode} weight={weighted} per_row={per_row}",
                           lambda z=z, a=a, b=b, lam=lam, dense=dense, w=w, grad=grad, stats=stats, r=reduction:
                           soft_ce.soft_ce_bwd(grad, z, a, b, lam, dense, w, stats, 0.1, -100, r))
        # soft BCE: every BLOCK, the three target modes, threshold, pos_weight and class weights
        # all on (the most registers) or all off, per-element or reduced; 2 rows in pieces
        for rows, classes in ((8, 10), (8, 100), (8, 1000), (8, 5000), (2, 50000)):
            z = t(rows, classes, dtype=dt)
            labels = t(rows, dtype=torch.int64)
            for mode, extras, per_element in itertools.product(("hard", "mixed", "dense"), (False, True), (False, True)):
                a = labels if mode != "dense" else None
                b = labels if mode == "mixed" else None
                lam = t(rows) if mode == "mixed" else None
                dense = z if mode == "dense" else None
                pw, w, thr = (t(classes, dtype=acc), t(classes, dtype=acc), 0.5) if extras else (None, None, None)
                reduction = soft_ce.NONE if per_element else soft_ce.MEAN
                yield (f"soft_bce_fwd {dname} {rows}x{classes} {mode} extras={extras} per_element={per_element}",
                       lambda z=z, a=a, b=b, lam=lam, dense=dense, pw=pw, w=w, thr=thr, r=reduction:
                       soft_bce.soft_bce_fwd(z, a, b, lam, dense, pw, w, 0.1, thr, r))
                grad = t(rows, classes, dtype=dt) if per_element else t((), dtype=acc)
                yield (f"soft_bce_bwd {dname} {rows}x{classes} {mode} extras={extras} per_element={per_element}",
                       lambda z=z, a=a, b=b, lam=lam, dense=dense, pw=pw, w=w, thr=thr, grad=grad, r=reduction:
                       soft_bce.soft_bce_bwd(grad, z, a, b, lam, dense, pw, w, 0.1, thr, r))
        # soft F1: every BLOCK of the row sweeps, labels or dense targets, sigmoid or softmax
        for classes in (10, 100, 1000, 2000, 5000):
            z = t(300, classes, dtype=dt)
            for labelled, multi_label in itertools.product((False, True), (False, True)):
                a = t(300, dtype=torch.int64) if labelled else None
                dense = None if labelled else z
                yield (f"soft_f1_sums {dname} C={classes} labels={labelled} multi_label={multi_label}",
                       lambda z=z, a=a, dense=dense, m=multi_label: soft_f1.soft_f1_sums(z, a, dense, m))
                yield (f"soft_f1_sums_bwd {dname} C={classes} labels={labelled} multi_label={multi_label}",
                       lambda z=z, a=a, dense=dense, m=multi_label, g=t(3, classes, dtype=acc):
                       soft_f1.soft_f1_sums_bwd(g, z, a, dense, m))
        # weight standardization: every (ROWS, BLOCK_K) tile the table gives, gain or not
        for rows, k in ((512, 9), (256, 27), (64, 49), (128, 147), (64, 576), (32, 1152), (16, 2304), (8, 4608),
                        (4, 20000), (3, 7)):
            w = t(rows, k, dtype=dt)
            for has_gain in (False, True):
                gain = t(rows, dtype=acc) if has_gain else None
                stats = t(rows, dtype=acc)
                yield (f"weight_standardize_fwd {dname} {rows}x{k} gain={has_gain}",
                       lambda w=w, gain=gain: weight_standardize.weight_standardize_fwd(w, 1e-6, gain))
                yield (f"weight_standardize_bwd {dname} {rows}x{k} gain={has_gain}",
                       lambda w=w, gain=gain, stats=stats: weight_standardize.weight_standardize_bwd(w, w, gain, stats, stats))
    # the optimizer: params fp16/bf16/fp32 (fp64 runs on torch/cpu), slow weights in fp32 or the
    # param dtype, every flag; then the clipping modes and the EMA (its warmup)
    for dname in FLOATS[:3]:
        dt = getattr(torch, dname)
        p = [t(64, dtype=dt)]
        m = [t(64)]
        work = t(3, 4, dtype=torch.int64)
        ptrs = t(7, 1, dtype=torch.int64)
        scalar = t(())

        lr64 = t((), dtype=torch.float64)

        def step(slows, rectify, maximize, amp, clip=math.inf, agc=0.0, ema=False, warmup=False, p=p, m=m, work=work,
                 ptrs=ptrs, scalar=scalar):
            # amp: GradScaler's scale and inf flag, and a tensor LR
            return lambda: optim.optim_step_(p, p, m, m, slows, m if ema else [], [scalar], work, ptrs,
                                             scalar if amp else None, scalar if amp else None,
                                             lr64 if amp else None, 1e-3, 0.9, 0.999, 1e-8,
                                             0.01, True, 0.5, 6, rectify, maximize, clip, agc, 1e-3, 0.9999, 0.0, 0,
                                             1.0, 2 / 3, warmup)
        for slow_dt, rectify, maximize, amp in itertools.product((None, torch.float32, dt), (False, True), (False, True),
                                                                 (False, True)):
            if slow_dt is dt and dt == torch.float32:
                continue
            slows = [t(64, dtype=slow_dt)] if slow_dt is not None else []
            yield (f"optim_step_ {dname} slow={slow_dt} rectify={rectify} maximize={maximize} amp={amp}",
                   step(slows, rectify, maximize, amp))
        for clip, agc, ema, warmup in ((1.0, 0.0, False, False), (math.inf, 0.01, False, False),
                                       (math.inf, 0.0, True, False), (math.inf, 0.0, True, True),
                                       (1.0, 0.0, True, True), (math.inf, 0.01, True, False)):
            yield (f"optim_step_ {dname} clip_value={clip} agc={agc} ema={ema} warmup={warmup}",
                   step([t(64)], True, False, True, clip, agc, ema, warmup))
        # SASA+'s step: d = g (no buffers), d = h (qhm_nu 1), the general QHM direction
        for bufs, nu in (([], 1.0), (p, 1.0), (p, 0.7)):
            yield (f"sasa_step_ {dname} buffers={bool(bufs)} qhm_nu={nu}",
                   lambda bufs=bufs, nu=nu, p=p: sasa.sasa_step_(p, p, bufs, lr64, t(3, 3, dtype=torch.int64),
                                                                 t(3, 1, dtype=torch.int64), 0.9, nu, 1e-4))


# ---------------------------------------------------------------------------------------------
# Specializing and compiling

def _variants(launch: Launch) -> Iterator[Tuple[str, Tuple[Any, ...]]]:
    """The recorded arguments, then every pointer and int off the 16 grid, then the ints past
    2**31: what Triton's specializer can make of the launcher's real arguments."""
    import torch

    def is_tensor(a):
        return isinstance(a, (torch.Tensor, _Ptr))

    yield "aligned", tuple(_Ptr(a.dtype, 0) if isinstance(a, torch.Tensor) else a for a in launch.args)

    def off_grid(a):
        if is_tensor(a):
            return _Ptr(a.dtype, _ALIGN + a.dtype.itemsize if a.dtype.itemsize < _ALIGN else _ALIGN)
        if isinstance(a, int) and not isinstance(a, bool) and a not in (0, 1) and a % _ALIGN == 0:
            return a + 2 if a + 2 != 1 else a + 3
        return a
    yield "unaligned", tuple(off_grid(a) for a in launch.args)

    def wide(a):
        if is_tensor(a):
            return _Ptr(a.dtype, 0)
        if isinstance(a, int) and not isinstance(a, bool) and a > 1:
            return a + (1 << 32)
        return a
    yield "i64", tuple(wide(a) for a in launch.args)


def _specialize(launch: Launch, args: Tuple[Any, ...], target: Any) -> Tuple[Any, Dict, Dict, Dict, Any]:
    from triton.compiler.compiler import make_backend
    from triton.runtime import jit

    fn = launch.fn
    backend = make_backend(target)
    binder = jit.create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, options = binder(*args, **launch.kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, launch.kwargs, bound, spec, options)
    return fn, signature, constexprs, attrs, options


_RESOURCE = re.compile(r"Function ([^:\s]+):\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def _cuobjdump() -> str:
    import triton
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(path):
        raise FileNotFoundError(f"cuobjdump not found at {path} (it ships in the triton wheel)")
    return path


def resource_usage(cubin: str) -> Tuple[int, int, int]:
    """(registers, stack bytes, shared bytes) of the one kernel of a Triton cubin, from cuobjdump
    --dump-resource-usage."""
    out = subprocess.run([_cuobjdump(), "--dump-resource-usage", cubin], capture_output=True, text=True)
    found = _RESOURCE.search(out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"cuobjdump gave no resource usage for {cubin}: {out.stderr.strip()}")
    return int(found.group(2)), int(found.group(3)), int(found.group(4))


# The compile jobs, set before the worker processes fork (JIT functions do not pickle), and
# whether the workers also return each cubin's SASS.
_JOBS: List[Tuple[str, str, int, Any, Dict, Dict, Dict, Dict]] = []
_KEEP_SASS = [False]


def _compile_one(index: int) -> Row:
    name, spec_key, cc, fn, signature, constexprs, attrs, options = _JOBS[index]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    arch = f"sm_{cc}"
    row = Row(name, arch, spec_key)
    try:
        kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", cc, 32),
                                options=options)
    except Exception as exc:  # noqa: BLE001 - any compiler error is a finding, reported in the table
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return row
    row.warps = kernel.metadata.num_warps
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        row.regs, frame, shared = resource_usage(f.name)
        if _KEEP_SASS[0]:
            row.sass = subprocess.run([_cuobjdump(), "-sass", f.name], capture_output=True, text=True,
                                      check=True).stdout
    row.shared = max(shared, kernel.metadata.shared)
    if frame:  # a stack frame: spills, or only the save area of a libdevice call? ptxas -v says
        row.stack = _triton_spill_stores(kernel, cc, options)
        row.spec += f", stack frame {frame} B"
    return row


def _triton_spill_stores(kernel: Any, cc: int, options: Dict) -> int:
    """Bytes of spill stores of a compiled Triton kernel: its PTX through the ptxas Triton used,
    with Triton's flags (triton/backends/nvidia/compiler.py, make_cubin) and -v."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(kernel.asm["ptx"])
        fmad = [] if options.get("enable_fp_fusion", True) else ["--fmad=false"]
        out = subprocess.run([get_ptxas(cc).path, "-lineinfo", *fmad, "-v", "--regAllocOptLevel=2",
                              f"--gpu-name={sm_arch_from_capability(cc)}", src, "-o", os.path.join(tmp, "k.o")],
                             capture_output=True, text=True)
    found = _PTXAS_FRAME.search(out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"ptxas -v gave no spill count: {out.stderr.strip()[-300:]}")
    return int(found.group(2))


def _spec_key(signature: Dict, constexprs: Dict, attrs: Dict) -> str:
    consts = ",".join(f"{k[0]}={v}" for k, v in sorted(constexprs.items()))
    sig = ",".join(f"{k}:{v}" for k, v in signature.items() if v != "constexpr")
    divisible = ",".join(str(k[0]) for k, v in sorted(attrs.items()) if v)
    return f"{sig} | {consts} | div16:{divisible}"


def triton_rows(archs: Sequence[str], jobs: int, quick: bool = False, only: str = "", sass: bool = False,
                aligned_only: bool = False, launches: Optional[List[Launch]] = None) -> List[Row]:
    """Every distinct specialization of the recorded launches (by default this tool's case
    table's; ``quick``: its float32 cases), compiled for ``archs``."""
    from triton.backends.compiler import GPUTarget

    if launches is None:
        launches = [launch for launch in _record(_cases()) if launch.case.startswith(only)]
        if quick:
            launches = [launch for launch in launches if " float32 " in f"{launch.case} "]
    work: Dict[Tuple[str, str], Tuple] = {}
    cases: Dict[Tuple[str, str], List[str]] = {}
    programs: Dict[Tuple[str, str], Dict[str, int]] = {}
    moved: Dict[Tuple[str, str], Dict[str, int]] = {}
    for arch in archs:
        cc = ARCHS[arch]
        target = GPUTarget("cuda", cc, 32)
        for launch in launches:
            for variant, args in itertools.islice(_variants(launch), 1 if quick or aligned_only else None):
                fn, signature, constexprs, attrs, options = _specialize(launch, args, target)
                name = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"
                key = (arch, f"{name} {_spec_key(signature, constexprs, attrs)}")
                cases.setdefault(key, []).append(f"{launch.case} [{variant}]")
                most = programs.setdefault(key, {})
                most[launch.case] = max(most.get(launch.case, 0), launch.programs)
                if variant == "aligned":
                    per_case = moved.setdefault(key, {})
                    per_case[launch.case] = per_case.get(launch.case, 0) + launch.bytes
                work.setdefault(key, (name, key[1], cc, fn, signature, constexprs, attrs, options.__dict__))
    _JOBS[:] = list(work.values())
    _KEEP_SASS[0] = sass
    rows: List[Row] = []
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for key, row in zip(work, pool.map(_compile_one, range(len(_JOBS)), chunksize=4)):
            row.cases, row.programs, row.bytes = cases[key], programs[key], moved.get(key, {})
            rows.append(row)
    return rows


# nvcc's flags as setup.py and torch's builder give them to the extension's .cu files.
_NVCC_FLAGS = ["-O3", "-std=c++17", "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
               "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__", "--expt-relaxed-constexpr"]
_PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


def _nvcc() -> Optional[str]:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc") or (shutil.which("/usr/local/cuda/bin/nvcc"))


def _csrc() -> Optional[str]:
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
    return root if os.path.isdir(root) else None


def _ptxas_report(job: Tuple[str, str, str, str]) -> List[Row]:
    nvcc, source, include, arch = job
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", *_NVCC_FLAGS, "-I", include, source,
                              "-o", os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
    op = os.path.basename(os.path.dirname(source))
    if out.returncode != 0:
        return [Row(f"{op}/cuda.cu", arch, "CUDA", error=out.stderr.strip().splitlines()[-1] if out.stderr else "nvcc failed")]
    rows: List[Row] = []
    for line in out.stderr.splitlines():
        entry = _PTXAS_ENTRY.search(line)
        if entry:
            rows.append(Row(_demangle(entry.group(1)), entry.group(2), f"CUDA ({op}/cuda.cu)"))
            continue
        frame = _PTXAS_FRAME.search(line)
        if frame and rows:
            rows[-1].stack = int(frame.group(2))  # spill stores; the stack frame may hold local arrays
            rows[-1].spec += f", stack frame {frame.group(1)} B"
            continue
        used = _PTXAS_USED.search(line)
        if used and rows:
            rows[-1].regs = int(used.group(1))
            rows[-1].shared = int(used.group(2) or 0)
    return rows


def cuda_rows(archs: Sequence[str], jobs: int) -> List[Row]:
    """Every CUDA kernel of csrc/<op>/cuda.cu compiled by nvcc with the extension's flags, as
    ptxas -v reports it: registers, bytes of spill stores, static shared memory."""
    nvcc, csrc = _nvcc(), _csrc()
    if nvcc is None or csrc is None:
        raise FileNotFoundError("nvcc" if nvcc is None else "csrc/ (run from a source checkout)")
    sources = sorted(os.path.join(csrc, d, "cuda.cu") for d in os.listdir(csrc)
                     if os.path.exists(os.path.join(csrc, d, "cuda.cu")))
    work = [(nvcc, src, csrc, arch) for src in sources for arch in archs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        return [row for rows in pool.map(_ptxas_report, work) for row in rows]


def _demangle(name: str) -> str:
    out = subprocess.run(["c++filt", name], capture_output=True, text=True)
    full = out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else name
    full = full.replace("(anonymous namespace)::", "").removeprefix("void ")
    return full.split("(")[0]


# ---------------------------------------------------------------------------------------------

def _summary(rows: List[Row]) -> List[Tuple[str, str, int, int, int, int, int, int]]:
    """Per (kernel, arch): specializations, max registers, max stack, max shared, warps seen."""
    grouped: Dict[Tuple[str, str], List[Row]] = {}
    for r in rows:
        grouped.setdefault((r.kernel, r.arch), []).append(r)
    out = []
    for (kernel, arch), rs in sorted(grouped.items()):
        ok = [r for r in rs if not r.error]
        out.append((kernel, arch, len(rs), len(rs) - len(ok), max((r.regs for r in ok), default=0),
                    max((r.stack for r in ok), default=0), max((r.shared for r in ok), default=0),
                    max((r.warps for r in ok), default=0)))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/compile_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    parser.add_argument("--no-triton", action="store_true", help="only the CUDA kernels (csrc/<op>/cuda.cu)")
    parser.add_argument("--no-cuda", action="store_true", help="only the Triton kernels")
    parser.add_argument("--details", action="store_true", help="one line per specialization, with its cases")
    parser.add_argument("--only", default="", help="only the launcher cases whose name starts with this")
    parser.add_argument("--quick", action="store_true",
                        help="float32 launches as recorded only (the test's smoke run; the full run is the check)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile-check: unset TRITON_INTERPRET (the interpreter replaces the JIT functions)", file=sys.stderr)
        return 2

    rows: List[Row] = [] if args.no_triton else triton_rows(args.arch, args.jobs, args.quick, args.only)
    if not args.no_cuda:
        try:
            rows += cuda_rows(args.arch, args.jobs)
        except FileNotFoundError as exc:
            print(f"compile-check: the CUDA kernels cannot be compiled here: {exc} not found", file=sys.stderr)
            return 2

    print("Compiled, not run (no GPU). Per kernel and arch: specializations compiled, failures, and the worst")
    print("registers / spill-store bytes / shared bytes / warps over them.\n")
    print("| kernel | arch | specializations | failed | registers | spill stores B | shared B | warps |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kernel, arch, n, failed, regs, stack, shared, warps in _summary(rows):
        print(f"| {kernel} | {arch} | {n} | {failed} | {regs} | {stack} | {shared} | {warps or '-'} |")
    bad = [(r, p) for r in rows for p in r.problems(ARCHS[r.arch])]
    if args.details:
        print()
        for r in rows:
            print(f"{r.kernel} {r.arch} regs={r.regs} stack={r.stack} shared={r.shared} warps={r.warps} "
                  f"{r.error} :: {r.spec} :: {'; '.join(r.cases[:3])}")
    print(f"\n{len(rows)} kernel specializations; {len(bad)} problems")
    for r, p in bad:
        print(f"  {r.kernel} {r.arch}: {p} -- {r.spec} (e.g. {r.cases[0] if r.cases else 'CUDA'})")
    if not rows:
        print("compile-check: no kernel was compiled (check --only and --no-cuda/--no-triton): nothing was "
              "checked", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
