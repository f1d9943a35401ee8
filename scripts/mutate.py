#!/usr/bin/env python3
"""Mutation testing: plausible kernel bugs, applied one at a time to a scratch copy of the tree;
the tests of that op must fail on each (the mutant is "killed").

    python3 scripts/mutate.py               every mutant (C++ ones rebuild the scratch _C)
    python3 scripts/mutate.py --kind python the Python/Triton mutants only (CI; no rebuild)
    python3 scripts/mutate.py --list        the mutants and the tests that must kill them
    python3 scripts/mutate.py --only NAME   one mutant

Python/Triton mutants run against the checkout's built tricks_ext/_C (copied, unchanged). C++
mutants build the scratch copy once without nvcc (CPU kernels and the simt backend: the CUDA
kernels' source run on CPU), then rebuild only what each edit touches. Prints one line per
mutant and exits 1 if any survived (or could not be applied).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1200  # a mutant that hangs the tests counts as killed, after this


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str                          # repository-relative file
    edits: Tuple[Tuple[str, str], ...]  # (old, new): each old text occurs exactly once
    tests: Tuple[str, ...]             # pytest arguments that must fail
    kind: str = "python"               # "python" (Python / Triton source) or "cxx" (needs a rebuild)


def _k(expr: str) -> Tuple[str, ...]:
    return ("-k", expr)


MUTANTS: Sequence[Mutant] = (
    # ---- dropout family ------------------------------------------------------------------
    Mutant("triton-dropout-philox-restarts-per-program", "triton_kernels/dropout.py",
           (("keep = (stream_uniform(seed, offset, idx // group) >= p) & (p < 1.0)\n    x = tl.load(X + idx",
             "keep = (stream_uniform(seed, offset, (idx % BLOCK) // group) >= p) & (p < 1.0)\n    x = tl.load(X + idx"),),
           ("tests/test_dropout.py",) + _k("triton and bit_identical")),
    Mutant("triton-dropout-bwd-tail-mask-off-by-one", "triton_kernels/dropout.py",
           (("    mask = idx < n\n    # every load before the mask is drawn",
             "    mask = idx < n - 1\n    # every load before the mask is drawn"),),
           ("tests/test_dropout.py",) + _k("triton and (bit_identical or partial)")),
    Mutant("gate-gradient-sums-only-the-first-partial", "tricks_ext/ops/dropout.py",
           (("dgate = partials.sum()", "dgate = partials[:1].sum()"),),
           ("tests/test_dropout.py",) + _k("(cpu-cpu or triton) and (gate or partial)")),
    Mutant("cpu-dropout-philox-restarts-per-task", "csrc/dropout/cpu.cpp",
           (("keep_mask_batch(seed, offset + static_cast<uint64_t>(gb), q.p, kept);",
             "keep_mask_batch(seed, offset + static_cast<uint64_t>(gb - g0), q.p, kept);"),),
           ("tests/test_dropout.py",) + _k("cpu-cpu and (bit_identical or partial)"), kind="cxx"),
    Mutant("cuda-dropout-tail-mask-off-by-one", "csrc/dropout/cuda.cu",
           (("    if (i < q.n) y[i] = ", "    if (i + 1 < q.n) y[i] = "),),
           ("tests/test_dropout.py",) + _k("simt and bit_identical"), kind="cxx"),
    # ---- soft-target cross-entropy -------------------------------------------------------
    Mutant("triton-soft-ce-no-max-subtraction", "triton_kernels/soft_ce.py",
           (("        s = s * tl.exp(m - ref) + tl.exp(v - ref)\n", "        s = s + tl.exp(v)\n"),
            ("    total_e = tl.sum(s * tl.exp(m - tl.where(mx == float(\"-inf\"), 0.0, mx)), axis=0)\n",
             "    total_e = tl.sum(s, axis=0) * tl.exp(-mx)\n")),
           ("tests/test_soft_ce.py",) + _k("triton and (matches_reference or masked)")),
    Mutant("triton-soft-ce-merge-misses-later-pieces", "triton_kernels/soft_ce.py",
           (("        m = tl.maximum(m, tl.load(row + 4 * k, mask=k < pieces, other=float(\"-inf\")))\n",
             "        m = tl.maximum(m, tl.load(row + 4 * k, mask=(k < pieces) & (k < BLOCK), other=float(\"-inf\")))\n"),),
           ("tests/test_soft_ce.py",) + _k("triton and pieces")),
    Mutant("triton-evonorm-bwd-first-channel-tile", "triton_kernels/evonorm.py",
           (("    for cl0 in range(0, cg, CH):\n", "    for cl0 in range(0, CH, CH):\n"),),
           ("tests/test_evonorm.py",) + _k("triton and matches_reference")),
    Mutant("triton-soft-f1-rows-past-the-chunk-add", "triton_kernels/soft_f1.py",
           (("        keep = (rows < r1)[:, None]\n", "        keep = (rows < r1 + ROWS)[:, None]\n"),),
           ("tests/test_soft_f1.py",) + _k("triton and matches_reference")),
    Mutant("triton-ws-one-sweep-variance-counts-padding", "triton_kernels/weight_standardize.py",
           (("        d = tl.where(m, x - mean[:, None], 0.0)\n", "        d = x - mean[:, None]\n"),),
           ("tests/test_weight_standardize.py",) + _k("triton and matches_reference")),
    Mutant("cuda-soft-ce-merge-one-step", "csrc/soft_ce/cuda.cu",
           (("      static_cast<int64_t>(threadIdx.x), q.pieces, static_cast<int64_t>(kBlock),",
             "      static_cast<int64_t>(threadIdx.x), q.pieces < kBlock ? q.pieces : kBlock, static_cast<int64_t>(kBlock),"),),
           ("tests/test_soft_ce.py",) + _k("simt and pieces"), kind="cxx"),
    Mutant("triton-soft-ce-mean-counts-ignored-rows", "triton_kernels/soft_ce.py",
           (("        return torch.count_nonzero(kept).to(acc)\n",
             "        return torch.tensor(float(rows), dtype=acc, device=device)\n"),),
           ("tests/test_soft_ce.py",) + _k("triton and (matches_reference or reductions)")),
    Mutant("triton-soft-bce-log1p-loses-small-x", "triton_kernels/soft_bce.py",
           (("    return tl.where(u == 1.0, x, tl.log(u) * (x / tl.where(u == 1.0, 1.0, u - 1.0)))",
             "    return tl.log(u)"),),
           ("tests/test_soft_bce.py",) + _k("triton and threshold")),
    Mutant("triton-soft-bce-pos-weight-on-the-wrong-term", "triton_kernels/soft_bce.py",
           (("        d = _weighted((1.0 - t) - lw * sig_neg,", "        d = _weighted(lw * (1.0 - t) - sig_neg,"),),
           ("tests/test_soft_bce.py",) + _k("triton and threshold")),
    Mutant("cpu-soft-bce-mean-over-rows", "csrc/soft_bce/prepare.h",
           (("  if (reduction == kMean) total = total / static_cast<double>(logits.numel());",
             "  if (reduction == kMean) total = total / static_cast<double>(logits.size(0));"),),
           ("tests/test_soft_bce.py",) + _k("cpu-cpu and (matches_reference or reductions)"), kind="cxx"),
    Mutant("cpu-soft-bce-dense-threshold-ignored", "csrc/soft_bce/cpu.cpp",
           (("if constexpr (kT == Targets::DenseStep) return t > th.at ? A(1) : A(0);",
             "if constexpr (kT == Targets::Compact) return t > th.at ? A(1) : A(0);"),),
           ("tests/test_soft_bce.py",) + _k("cpu-cpu and threshold"), kind="cxx"),
    Mutant("cpu-soft-ce-no-max-subtraction", "csrc/soft_ce/cpu.cpp",
           (("const A shift = std::isinf(m) ? A(0) : m;", "const A shift = A(0);"),),
           ("tests/test_soft_ce.py",) + _k("cpu-cpu and (matches_reference or masked)"), kind="cxx"),
    # ---- EvoNorm-S0 ----------------------------------------------------------------------
    Mutant("triton-evonorm-eps-dropped", "triton_kernels/evonorm.py",
           (("    shift, m2 = _moments(X, n, c0, P, s_n, s_c, s_p, 0, M, ACC, BLOCK)\n    r = 1.0 / tl.sqrt(m2 / M + eps)\n",
             "    shift, m2 = _moments(X, n, c0, P, s_n, s_c, s_p, 0, M, ACC, BLOCK)\n    r = 1.0 / tl.sqrt(m2 / M)\n"),),
           ("tests/test_evonorm.py",) + _k("triton and matches_reference")),
    Mutant("cuda-evonorm-eps-dropped", "csrc/evonorm/cuda.cu",
           (("return A(1) / sqrt(m2 / static_cast<A>(M) + static_cast<A>(q.eps));",
             "return A(1) / sqrt(m2 / static_cast<A>(M));"),),
           ("tests/test_evonorm.py",) + _k("simt and matches_reference"), kind="cxx"),
    Mutant("cpu-evonorm-centred-by-rounded-mean", "csrc/evonorm/math.h",
           (("  return (x - pivot) - shift;", "  return x - (pivot + shift);"),),
           ("tests/test_evonorm.py",) + _k("cpu-cpu and large_offsets"), kind="cxx"),
    Mutant("triton-evonorm-backward-centred-by-rounded-mean", "triton_kernels/evonorm.py",
           (("r * r * c_ng * ((xv - pivot) - shift)", "r * r * c_ng * (xv - (pivot + shift))"),),
           ("tests/test_evonorm.py",) + _k("triton and large_offsets")),
    # ---- weight standardization ----------------------------------------------------------
    Mutant("cpu-ws-row-tail-dropped", "csrc/weight_standardize/cpu.cpp",
           (("  for (int64_t j = 0; j < K - k; ++j) part[j] += f(load_as<A>(x, k + j), k + j);\n", ""),),
           ("tests/test_weight_standardize.py",) + _k("cpu-cpu and matches_reference"), kind="cxx"),
    Mutant("triton-ws-one-pass-variance", "triton_kernels/weight_standardize.py",
           (("d = tl.where(m, tl.load(W + base + c, mask=m, other=0.0).to(ACC) - mean[:, None], 0.0)",
             "d = tl.where(m, tl.load(W + base + c, mask=m, other=0.0).to(ACC), 0.0)"),
            ("rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / kf + eps)",
             "rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1) / kf - mean * mean + eps)")),
           ("tests/test_weight_standardize.py",) + _k("triton and (matches_reference or large_common)")),
    Mutant("triton-ws-one-sweep-one-pass-variance", "triton_kernels/weight_standardize.py",
           (("        d = tl.where(m, x - mean[:, None], 0.0)\n", "        d = tl.where(m, x, 0.0)\n"),
            ("rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / kf + eps)",
             "rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / kf - mean * mean + eps)")),
           ("tests/test_weight_standardize.py",) + _k("triton and large_common")),
    Mutant("triton-bf16-store-truncates", "triton_kernels/_common.py",
           (("        bits = bits + 0x7FFF + ((bits >> 16) & 1)\n", ""),),
           ("tests/test_weight_standardize.py",) + _k("triton and bfloat16 and (matches_reference or large_common)")),
    Mutant("ws-eps-dropped", "csrc/weight_standardize/math.h",
           (("return rsqrt_acc(mean_of(centred_sq_sum, K) + eps);", "return rsqrt_acc(mean_of(centred_sq_sum, K));"),),
           ("tests/test_weight_standardize.py",) + _k("(cpu-cpu or simt) and matches_reference"), kind="cxx"),
    # ---- mixup ---------------------------------------------------------------------------
    Mutant("triton-mixup-tail-mask-off-by-one", "triton_kernels/mixup.py",
           (("    mask = e < sample\n", "    mask = e < sample - 1\n"),),
           ("tests/test_mixup.py",) + _k("triton and bit_identical")),
    # ---- optimizer -----------------------------------------------------------------------
    Mutant("triton-optim-bias-correction-off-by-one", "triton_kernels/optim.py",
           (("bc1 = 1.0 - tl.exp(step * (ln_beta1 * one))", "bc1 = 1.0 - tl.exp((step + 1.0) * (ln_beta1 * one))"),),
           ("tests/test_optim.py",) + _k("triton and (equals_torch_optim or pytorch_optimizer)")),
    Mutant("triton-optim-eps-dropped", "triton_kernels/optim.py",
           (("m / (tl.sqrt(v) * inv_denom32 + eps), m)", "m / (tl.sqrt(v) * inv_denom32), m)"),
            ("p = p - step_size32 * m / (tl.sqrt(v) * inv_denom32 + eps)",
             "p = p - step_size32 * m / (tl.sqrt(v) * inv_denom32)")),
           ("tests/test_optim.py",) + _k("triton and (equals_torch_optim or pytorch_optimizer)")),
    Mutant("triton-optim-gc-mean-over-wrong-count", "triton_kernels/optim.py",
           (("mean = tl.sum(acc, axis=0) * f / tl.maximum(length, 1).to(tl.float32)",
             "mean = tl.sum(acc, axis=0) * f / tl.maximum(length + 1, 1).to(tl.float32)"),),
           ("tests/test_optim.py",) + _k("triton and (ranger or gc)")),
    Mutant("triton-optim-lookahead-sync-one-step-late", "triton_kernels/optim.py",
           (("sync = (step.to(tl.int64) % lookahead_k) == 0", "sync = ((step.to(tl.int64) - 1) % lookahead_k) == 0"),),
           ("tests/test_optim.py",) + _k("triton and (ranger or lookahead)")),
    Mutant("triton-optim-grad-scale-kept", "triton_kernels/optim.py",
           (("gmul = 1.0 / tl.load(GRAD_SCALE).to(tl.float32)", "gmul = 1.0 + 0.0 * tl.load(GRAD_SCALE).to(tl.float32)"),),
           ("tests/test_optim.py",) + _k("triton and grad_scale")),
    Mutant("triton-optim-ema-decay-one-step-late", "triton_kernels/optim.py",
           (("t = step - (ema_update_after_step * one) - 1.0", "t = step - (ema_update_after_step * one)"),),
           ("tests/test_optim_ema.py",) + _k("triton and timm")),
    Mutant("triton-optim-gc-mean-of-unclipped-grads", "triton_kernels/optim.py",
           (("        acc += _clip(g0.to(tl.float32) * gmul, clip_value, HAS_CLIP)\n"
             "        acc += _clip(g1.to(tl.float32) * gmul, clip_value, HAS_CLIP)",
             "        acc += g0.to(tl.float32) * gmul\n        acc += g1.to(tl.float32) * gmul"),),
           ("tests/test_optim_clip.py",) + _k("triton and clip_then_step and value")),
    Mutant("triton-optim-agc-eps-dropped", "triton_kernels/optim.py",
           (("max_norm = tl.maximum(tl.sqrt(tl.sum(psq, axis=0)), agc_eps) * agc_clip_factor",
             "max_norm = tl.sqrt(tl.sum(psq, axis=0)) * agc_clip_factor"),),
           ("tests/test_optim_clip.py",) + _k("triton and clip_then_step and agc")),
    Mutant("cpu-bf16-store-truncates", "csrc/common/cpu_simd.h",
           (("const uint16_t bits = c10::detail::round_to_nearest_even(static_cast<float>(v));",
             "const uint16_t bits = static_cast<uint16_t>(c10::bit_cast<uint32_t>(static_cast<float>(v)) >> 16);"),),
           ("tests/test_optim.py",) + _k("cpu-cpu and low_precision and bfloat16"), kind="cxx"),
    Mutant("optim-ema-decay-one-step-late", "csrc/optim/math.h",
           (("const double t = step - static_cast<double>(q.ema_update_after_step) - 1.0;",
             "const double t = step - static_cast<double>(q.ema_update_after_step);"),),
           ("tests/test_optim_ema.py",) + _k("(cpu-cpu or simt) and timm"), kind="cxx"),
    Mutant("optim-agc-eps-dropped", "csrc/optim/math.h",
           (("const A max_norm = (param_norm > eps ? param_norm : eps) * factor;",
             "const A max_norm = param_norm * factor;"),),
           ("tests/test_optim_clip.py",) + _k("(cpu-cpu or simt) and clip_then_step and agc"), kind="cxx"),
    Mutant("optim-bias-correction-off-by-one", "csrc/optim/math.h",
           (("const double bc1 = 1.0 - pow_of(q.beta1, step);", "const double bc1 = 1.0 - pow_of(q.beta1, step + 1.0);"),),
           ("tests/test_optim.py",) + _k("(cpu-cpu or simt) and (equals_torch_optim or pytorch_optimizer)"), kind="cxx"),
    Mutant("optim-lookahead-sync-one-step-late", "csrc/optim/math.h",
           (("static_cast<int64_t>(step) % q.lookahead_k == 0", "(static_cast<int64_t>(step) - 1) % q.lookahead_k == 0"),),
           ("tests/test_optim.py",) + _k("(cpu-cpu or simt) and (ranger or lookahead)"), kind="cxx"),
    Mutant("cuda-optim-gc-mean-over-wrong-count", "csrc/optim/cuda.cu",
           (("mean = group_sum<kBlock>(part, smem) * f / static_cast<A>(len);",
             "mean = group_sum<kBlock>(part, smem) * f / static_cast<A>(len + 1);"),),
           ("tests/test_optim.py",) + _k("simt and (ranger or gc)"), kind="cxx"),
)


def _apply(root: Path, mutant: Mutant) -> None:
    path = root / mutant.path
    text = path.read_text()
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            raise ValueError(f"{mutant.name}: the text to replace occurs {count} times in {mutant.path}")
        text = text.replace(old, new)
    path.write_text(text)


def _scratch_copy() -> Path:
    """The tree's tracked and untracked-but-not-ignored files in a temporary folder, with
    tricks_ext/triton_kernels linked as the editable install maps it."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    scratch = Path(tempfile.mkdtemp(prefix="tricks_ext_mutate_"))
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            dst = scratch / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (scratch / "tricks_ext" / "triton_kernels").symlink_to(scratch / "triton_kernels", target_is_directory=True)
    return scratch


def _env(scratch: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(scratch) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TRICKS_EXT_LIB", None)
    return env


def _build(scratch: Path) -> None:
    env = {**_env(scratch), "TRICKS_EXT_CUDA": "0"}
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=scratch, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"scratch build failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def _run_tests(scratch: Path, mutant: Mutant) -> Tuple[str, float]:
    start = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
    try:
        res = subprocess.run(cmd, cwd=scratch, env=_env(scratch), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.monotonic() - start
    took = time.monotonic() - start
    if res.returncode == 0:
        return "SURVIVED", took
    if res.returncode == 5:
        return "ERROR (no test collected)", took
    if res.returncode in (2, 3, 4):
        return f"ERROR (pytest exit {res.returncode})", took
    failed = [line[len("FAILED "):].split(" - ")[0] for line in res.stdout.splitlines() if line.startswith("FAILED ")]
    return f"killed by {failed[0]}" if failed else "killed (the test process crashed)", took


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=("python", "cxx", "all"), default="all")
    ap.add_argument("--only", action="append", default=[], help="mutant name (repeatable)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if (args.kind == "all" or m.kind == args.kind) and
              (not args.only or m.name in args.only)]
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutants: {sorted(unknown)}", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.kind:6} {m.name:45} {m.path}: pytest {' '.join(m.tests)}")
        return 0
    built = glob.glob(str(ROOT / "tricks_ext" / "_C*.so"))
    if not built:
        print("tricks_ext/_C is not built: run `make build` first", file=sys.stderr)
        return 2
    scratch = _scratch_copy()
    results = []
    try:
        for so in built:
            shutil.copy2(so, scratch / "tricks_ext")
        if any(m.kind == "cxx" for m in chosen):
            print("building the scratch copy (CPU kernels and simt, no nvcc) ...", flush=True)
            _build(scratch)
        for m in chosen:
            original = (scratch / m.path).read_text()
            try:
                _apply(scratch, m)
            except ValueError as e:
                results.append((m, "ERROR (not applied)", 0.0))
                print(f"{m.name}: ERROR {e}", flush=True)
                continue
            try:
                if m.kind == "cxx":
                    _build(scratch)
                verdict, took = _run_tests(scratch, m)
            finally:
                (scratch / m.path).write_text(original)
            results.append((m, verdict, took))
            print(f"{m.name} ({m.kind}, {took:.0f} s): {verdict}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    killed = sum(v.startswith("killed") for _, v, _ in results)
    print(f"\nmutants: {len(results)}, killed {killed}, survived or not run {len(results) - killed}")
    for m, v, _ in results:
        if not v.startswith("killed"):
            print(f"  {v}: {m.name} ({m.path}; pytest {' '.join(m.tests)})")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
