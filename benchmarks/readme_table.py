"""The README's performance and memory tables, generated from benchmarks/results/results.csv.

``python -m benchmarks.readme_table [--memory | --losses] [--commit C] [--device D] [--write README.md | --check README.md]``

Takes the full (not --quick) runs of one clean commit on one device (a run = the rows of one
`make bench`, which share its start time), and for each selected case prints our time and every
other provider's time with how many times faster we are: ranges across the runs (each run's
median; the speedup within each run, where both sides met the same machine state). In place is
compared with in place: where we have both, the in-place provider is ours against in-place
peers and the out-of-place one against out-of-place peers. The losses table lists every case of the
runs, in or out of the performance table, where a peer beats our best backend, each with the
reason WHY gives (it fails on a loss without one). The memory table gives, for the ops that
claim to save memory, the peak memory one call allocates (``peak_mb``) for ours and each
peer, from one full run of the commit it names. ``--write`` replaces the blocks between the
README's perf-table and memory-table markers; ``--check`` fails when a block differs from what
the CSV regenerates (tests/test_readme_table.py runs it).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT / "benchmarks" / "results" / "results.csv"
BEGIN = "<!-- perf-table:begin"
END = "<!-- perf-table:end -->"
MEM_BEGIN = "<!-- memory-table:begin"
MEM_END = "<!-- memory-table:end -->"
OURS_PREFIX = "tricks_ext:"


@dataclass(frozen=True)
class Entry:
    label: str
    op: str
    case: str
    mode: str
    dtypes: Tuple[str, ...]
    ours: str = "tricks_ext:cpu"
    # None: every provider of the case that is not ours and not claimed by another entry's pairing
    peers: Optional[Tuple[str, ...]] = None


F32, BF16 = "float32", "bfloat16"
ENTRIES: Tuple[Entry, ...] = (
    Entry("Ranger, 6-step Lookahead cycle after warm-up", "optim", "resnet50 25.6M params 161 tensors",
          "6 steps", (F32,), ours="tricks_ext:cpu Ranger"),
    Entry("same, clipped to a total norm every step", "optim", "resnet50 25.6M params 161 tensors",
          "6 steps + clip", (F32,), ours="tricks_ext:cpu Ranger"),
    Entry("same, clipped and keeping an EMA of the weights", "optim", "resnet50 25.6M params 161 tensors",
          "6 steps + clip + EMA", (F32,), ours="tricks_ext:cpu Ranger"),
    Entry("same", "optim", "gpt2-small 124.4M params 148 tensors", "6 steps", (F32,), ours="tricks_ext:cpu Ranger"),
    Entry("Mixup mixing, in place", "mixup", "mixing 256x3x224x224", "fwd", (F32,), ours="tricks_ext:cpu in-place",
          peers=("timm Mixup, in place", "timm in-place loop, eager", "timm in-place loop, torch.compile")),
    Entry("Mixup mixing, out of place", "mixup", "mixing 256x3x224x224", "fwd", (F32,),
          peers=("out-of-place formula, eager", "out-of-place formula, torch.compile")),
    Entry("Mixup + soft-target CE, in place", "mixup", "mixup+loss 256x3x224x224, C=1000", "fwd+bwd", (F32,),
          ours="tricks_ext:cpu in-place",
          peers=("timm Mixup, in place", "timm in-place loop, eager", "timm in-place loop, torch.compile")),
    Entry("Mixup + soft-target CE, out of place", "mixup", "mixup+loss 256x3x224x224, C=1000", "fwd+bwd", (F32,),
          peers=("out-of-place formula, eager", "out-of-place formula, torch.compile")),
    Entry("cutout, in place", "mask_boxes", "cutout 1x16px 256x3x224x224", "fwd", (F32,),
          ours="tricks_ext:cpu in-place", peers=("slice-assignment loop, in place",)),
    Entry("cutout, out of place", "mask_boxes", "cutout 1x16px 256x3x224x224", "fwd", (F32,),
          peers=("reference, eager", "reference, torch.compile")),
    Entry("SpecAugment, in place", "mask_boxes", "SpecAugment 2F+2T 64x1x128x1000", "fwd", (F32,),
          ours="tricks_ext:cpu in-place", peers=("slice-assignment loop, in place",)),
    Entry("SpecAugment, out of place", "mask_boxes", "SpecAugment 2F+2T 64x1x128x1000", "fwd", (F32,),
          peers=("reference, eager", "reference, torch.compile")),
    Entry("soft-target CE", "soft_ce", "soft CE 256x1000", "fwd+bwd", (F32, BF16)),
    Entry("soft-target CE", "soft_ce", "soft CE 32x131072", "fwd+bwd", (F32, BF16)),
    Entry("soft-target BCE", "soft_bce", "soft BCE 256x1000", "fwd+bwd", (F32, BF16)),
    Entry("soft-target BCE", "soft_bce", "soft BCE 32x131072", "fwd+bwd", (F32, BF16)),
    Entry("EvoNorm-S0", "evonorm", "N=8 256x56x56", "fwd+bwd", (F32, BF16)),
    Entry("EvoNorm-S0", "evonorm", "N=8 2048x7x7", "fwd+bwd", (F32,)),
    Entry("weight standardization", "weight_standardize", "r50 s4 3x3 512x512x3x3", "fwd+bwd", (F32, BF16)),
    Entry("weight standardization", "weight_standardize", "r50 s1 3x3 64x64x3x3", "fwd+bwd", (F32,)),
    Entry("dropout + residual (ReZero gate)", "dropout", "mlp 8192x4096", "fwd+bwd", (F32, BF16)),
    Entry("WSConv2d", "wsconv", "N=8 conv3x3 64->64 56x56", "fwd+bwd", (F32,)),
    Entry("WSConv2d", "wsconv", "N=8 conv3x3 512->512 7x7", "fwd+bwd", (F32,)),
    Entry("SASA+, statistic fused into the step (no-statistic SGD beside it)", "sasa",
          "resnet50 25.6M params 161 tensors", "10 steps, 1 test", (F32,), ours="tricks_ext:cpu SASA"),
    Entry("whole-model train step (`tricks_ext.patch`), eager", "patch",
          "resnetv2_50d_evos small, train step, batch 16x3x64x64", "fwd+bwd", (F32,),
          ours="tricks_ext:cpu (patched)", peers=("timm, unpatched",)),
    Entry("same, both compiled (torch.compile)", "patch",
          "resnetv2_50d_evos small, train step, batch 16x3x64x64", "fwd+bwd", (F32,),
          ours="tricks_ext:cpu (patched), torch.compile", peers=("timm, unpatched, torch.compile",)),
)


# The ops that claim to save memory: dropout keeps a seed instead of a mask, EvoNorm keeps x and
# two numbers per group, soft CE takes compact mixed targets.
MEMORY_ENTRIES: Tuple[Entry, ...] = (
    Entry("dropout + residual (ReZero gate)", "dropout", "mlp 8192x4096", "fwd+bwd", (F32, BF16)),
    Entry("EvoNorm-S0", "evonorm", "N=8 256x56x56", "fwd+bwd", (F32, BF16)),
    Entry("soft-target CE on Mixup targets", "soft_ce", "soft CE 32x131072", "fwd+bwd", (F32, BF16)),
)


def load(path: Path = CSV_PATH) -> List[Dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def full_runs(rows: Sequence[Dict[str, str]], commit: str, device: str) -> Dict[str, List[Dict[str, str]]]:
    """The full runs of ``commit`` on ``device``, by start time."""
    runs: Dict[str, List[Dict[str, str]]] = {}
    for r in rows:
        if r["commit"] == commit and r["device"] == device and r["quick"] == "0":
            runs.setdefault(r["date"], []).append(r)
    return dict(sorted(runs.items()))


def latest_commit(rows: Sequence[Dict[str, str]]) -> Tuple[str, str]:
    """The newest clean commit (and its device) that has full runs covering every entry's op."""
    ops = {e.op for e in ENTRIES}
    by_key: Dict[Tuple[str, str], set] = {}
    newest: Dict[Tuple[str, str], str] = {}
    for r in rows:
        if r["quick"] != "0" or "+dirty" in r["commit"] or r["commit"] == "unknown":
            continue
        key = (r["commit"], r["device"])
        by_key.setdefault(key, set()).add(r["op"])
        newest[key] = max(newest.get(key, ""), r["date"])
    complete = [k for k, seen in by_key.items() if ops <= seen]
    if not complete:
        raise SystemExit("no clean commit has full runs of every op in the CSV")
    return max(complete, key=lambda k: newest[k])


def _span(values: Sequence[float], fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def _ms(t: float) -> str:
    if t >= 1000:
        return f"{t / 1000:.2f} s"
    return f"{t:.3g} ms" if t < 100 else f"{t:.0f} ms"


def _span_ms(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    a, b = _ms(lo), _ms(hi)
    if a == b:
        return a
    ua, ub = a.split()[1], b.split()[1]
    return f"{a.split()[0]}-{b}" if ua == ub else f"{a}-{b}"


def _x(v: float) -> str:
    return f"{v:.2f}x"


def claimed(op: str, case: str, mode: str) -> set:
    """Providers an entry of this case names explicitly (so the catch-all entries leave them)."""
    return {p for e in ENTRIES if (e.op, e.case, e.mode) == (op, case, mode) for p in (e.peers or ())}


def table(rows: Sequence[Dict[str, str]], commit: str, device: str) -> str:
    runs = full_runs(rows, commit, device)
    if not runs:
        raise SystemExit(f"no full runs of {commit} on {device} in the CSV")
    first = next(iter(runs.values()))[0]
    lines = [f"{BEGIN} commit={commit} device={device} -->",
             f"CPU only: {device}, {first['isa'] or 'ISA not recorded'}, torch {first['torch']}, "
             f"{first['peers'] or 'peer versions not recorded'}. {len(runs)} full `make bench` "
             f"run{'s' if len(runs) > 1 else ''} of the clean commit {commit} ({', '.join(runs)}); "
             "ranges are across the runs (each run's median; the speedup is taken within each run). "
             "Generated by `python -m benchmarks.readme_table` from `benchmarks/results/results.csv`.",
             "",
             "| op | case | dtype | ours (cpu) | compared with: their time (ours x faster) |",
             "|---|---|---|---|---|"]
    for e in ENTRIES:
        for dtype in e.dtypes:
            ours: List[float] = []
            theirs: Dict[str, List[Tuple[float, float]]] = {}
            for run in runs.values():
                case = {r["provider"]: float(r["time_ms"]) for r in run
                        if (r["op"], r["case"], r["mode"], r["dtype"]) == (e.op, e.case, e.mode, dtype)}
                if e.ours not in case:
                    continue
                ours.append(case[e.ours])
                names = e.peers if e.peers is not None else [
                    p for p in case if not p.startswith(OURS_PREFIX) and p not in claimed(e.op, e.case, e.mode)]
                for p in names:
                    if p in case:
                        theirs.setdefault(p, []).append((case[p], case[p] / case[e.ours]))
            if not ours:
                continue
            peers = "; ".join(f"{p} {_span_ms([t for t, _ in v])} ({_span([s for _, s in v], _x)})"
                              for p, v in theirs.items())
            lines.append(f"| {e.label} | {e.case} | {dtype} | {_span_ms(ours)} | {peers or '-'} |")
    lines.append(END)
    return "\n".join(lines)


def memory_table(rows: Sequence[Dict[str, str]], commit: str, device: str) -> str:
    """Peak MB per call of ours and each peer in MEMORY_ENTRIES' cases, from the newest full run
    of ``commit`` on ``device`` that has the op (a peak does not vary from run to run)."""
    runs = full_runs(rows, commit, device)
    lines = [f"{MEM_BEGIN} commit={commit} device={device} -->",
             f"Peak memory one call allocates beyond its inputs (fwd+bwd: the forward, the backward and "
             f"what the forward keeps for it), from torch's profiler on {device}, commit {commit}. "
             "Generated by `python -m benchmarks.readme_table` from `benchmarks/results/results.csv`.",
             "",
             "| op | case | dtype | ours | compared with: their peak (x ours) |",
             "|---|---|---|---:|---|"]
    for e in MEMORY_ENTRIES:
        for dtype in e.dtypes:
            case: Dict[str, float] = {}
            for run in runs.values():
                peaks = {r["provider"]: float(r["peak_mb"]) for r in run if r["peak_mb"] and
                         (r["op"], r["case"], r["mode"], r["dtype"]) == (e.op, e.case, e.mode, dtype)}
                if e.ours in peaks:
                    case = peaks
            if not case:
                raise SystemExit(f"no peak_mb of {e.ours} for {e.op} {e.case} {dtype} in {commit}'s runs")
            ours = case[e.ours]
            peers = "; ".join(f"{p} {v:.1f} MB ({v / ours:.2f}x)" for p, v in case.items() if p != e.ours)
            lines.append(f"| {e.label} | {e.case} | {dtype} | {ours:.1f} MB | {peers} |")
    lines.append(MEM_END)
    return "\n".join(lines)


LOSS_BEGIN = "<!-- losses-table:begin"
LOSS_END = "<!-- losses-table:end -->"
# Why a peer beats our best in a case, per op (a case a reason covers: the prefix of its name).
# losses_table fails on a losing case no reason covers, so a new loss cannot pass unexplained.
WHY: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "dropout": (("", "fp32 fwd+bwd only (bf16 ours is faster): our backward regenerates the Philox mask, "
                     "which costs about what reading the compiled kernel's stored 1-byte mask costs; ours keeps "
                     "no mask (memory table)"),),
    "evonorm": (("", "bf16 only: Inductor converts bf16 in AVX-512 vectors, our CPU kernel's bf16 loads and "
                     "stores do not (its bf16 fwd+bwd takes longer than its fp32 one on twice the bytes)"),),
    "mask_boxes": (("cutout", "both write only the 16x16 boxes, 0.5 % of the batch: no bytes floor applies, and "
                              "our per-call and per-task overhead is the difference"),),
    "optim": (("", "torch's fused Adam does no GC, RAdam rectification or Lookahead: Ranger's GC mean pass is "
                   "the difference (benchmarks/NOTES.md, optim_step)"),),
    "soft_f1": (("", "the F formula on the C-vectors is a chain of small eager tensor ops and their backward, "
                     "which torch.compile fuses; the sums' kernel itself is not the gap"),),
    "weight_standardize": (("", "small weights (19-150 KB) only, by 0-21 %: both sides are per-call cost, 8-10x "
                                "the bytes floor (768x1x7x7 fp32 fwd moves 301 KB, ~10 us at the runs' measured "
                                "bandwidth of 28-31 GB/s; both take 81-103 us); ours spends ~4 us of it in Python "
                                "argument checks and backend resolution; every weight from 256x256x3x3 up is ours"),),
    "wsconv": (("", "the convolution is nearly all of the time; the standardization of these small weights is the "
                    "weight_standardize case above"),),
}
# Providers that are a floor to measure against, not an implementation of the op: WSConv2d's
# plain convolution without weight standardization.
NOT_PEERS = {"nn.Conv2d (no WS)"}


def _why(op: str, case: str) -> Optional[str]:
    return next((why for prefix, why in WHY.get(op, ()) if case.startswith(prefix)), None)


def losses_table(rows: Sequence[Dict[str, str]], commit: str, device: str) -> str:
    """Every case of every op, in all the full runs of ``commit``, where a peer's median beats
    our best backend's in every run (ranges across the runs), with the reason from WHY."""
    runs = full_runs(rows, commit, device)
    cases: Dict[Tuple[str, str, str, str], List[Dict[str, float]]] = {}
    for run in runs.values():
        per: Dict[Tuple[str, str, str, str], Dict[str, float]] = {}
        for r in run:
            per.setdefault((r["op"], r["case"], r["dtype"], r["mode"]), {})[r["provider"]] = float(r["time_ms"])
        for key, times in per.items():
            cases.setdefault(key, []).append(times)
    lines = [f"{LOSS_BEGIN} commit={commit} device={device} -->",
             f"Every benchmarked case where a peer is faster than our best backend in each of the {len(runs)} "
             f"full run{'s' if len(runs) > 1 else ''} of {commit} above, from the same CSV.", "",
             "| op | case | dtype | mode | ours | faster: their time (ours x slower) | why |",
             "|---|---|---|---|---|---|---|"]
    unexplained = []
    for (op, case, dtype, mode), per_run in sorted(cases.items()):
        ours = [min(t for p, t in times.items() if p.startswith(OURS_PREFIX)) for times in per_run
                if any(p.startswith(OURS_PREFIX) for p in times)]
        if len(ours) != len(per_run):
            continue
        peers = {p for times in per_run for p in times if not p.startswith(OURS_PREFIX) and p not in NOT_PEERS}
        faster = []
        for p in sorted(peers):
            theirs = [times.get(p) for times in per_run]
            if all(t is not None and t < o for t, o in zip(theirs, ours)):
                faster.append(f"{p} {_span_ms(theirs)} ({_span([o / t for t, o in zip(theirs, ours)], _x)})")
        if not faster:
            continue
        why = _why(op, case)
        if why is None:
            unexplained.append(f"{op} {case} {dtype} {mode}")
        lines.append(f"| {op} | {case} | {dtype} | {mode} | {_span_ms(ours)} | {'; '.join(faster)} | {why or '?'} |")
    if unexplained:
        raise SystemExit("losing cases without a reason in readme_table.WHY: " + ", ".join(unexplained))
    lines.append(LOSS_END)
    return "\n".join(lines)


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {begin} ... {end} block")
    return pattern.sub(lambda _: block, text, count=1)


def block_key(text: str, begin: str = BEGIN) -> Tuple[str, str]:
    m = re.search(re.escape(begin) + r" commit=(\S+) device=(.*?) -->", text)
    if not m:
        raise SystemExit(f"no {begin} commit=... device=... --> marker")
    return m.group(1), m.group(2)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", help="default: the newest clean commit with full runs of every op")
    parser.add_argument("--device", help="the CSV's device string (default: the one with most rows of the commit)")
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    table_kind = parser.add_mutually_exclusive_group()
    table_kind.add_argument("--memory", action="store_true", help="the memory table (default: the performance table)")
    table_kind.add_argument("--losses", action="store_true", help="the table of every case a peer wins")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="README", help="replace the README's block")
    action.add_argument("--check", type=Path, metavar="README",
                        help="exit 1 if the README's block (for the commit and device it names) differs")
    args = parser.parse_args(argv)
    rows = load(args.csv)
    if args.check:
        text = args.check.read_text()
        for name, begin, end, make in (("performance", BEGIN, END, table),
                                       ("losses", LOSS_BEGIN, LOSS_END, losses_table),
                                       ("memory", MEM_BEGIN, MEM_END, memory_table)):
            if begin not in text:  # a README without this table
                continue
            commit, device = block_key(text, begin)
            if replace_block(text, make(rows, commit, device), begin, end) != text:
                print(f"{args.check}: the {name} table differs from what {args.csv} regenerates for {commit}; "
                      f"run python -m benchmarks.readme_table --commit {commit} --write {args.check}")
                return 1
        return 0
    commit, device = args.commit, args.device
    if commit is None:
        commit, newest_device = latest_commit(rows)
        device = device or newest_device
    elif device is None:
        devices = Counter(r["device"] for r in rows if r["commit"] == commit and r["quick"] == "0")
        if not devices:
            raise SystemExit(f"no full runs of {commit} in the CSV")
        device = devices.most_common(1)[0][0]
    if args.memory:
        block, begin, end = memory_table(rows, commit, device), MEM_BEGIN, MEM_END
    elif args.losses:
        block, begin, end = losses_table(rows, commit, device), LOSS_BEGIN, LOSS_END
    else:
        block, begin, end = table(rows, commit, device), BEGIN, END
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(), block, begin, end))
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
