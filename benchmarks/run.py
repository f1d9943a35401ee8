"""Benchmark suite: ``python -m benchmarks.run [--ops ...] [--quick] [--device ...]``.

Runs every benchmarks/bench_<op>.py on one device: for each case and provider, the median time,
GB/s of the op's bytes floor, the floor as a percent of the measured memory bandwidth (the best of
a copy, a triad and an in-place update; the CSV's ``copy_bw_gbps``), peak memory per call
and the speedup of our best backend over each provider. Prints a table per op, appends rows to
<results-dir>/results.csv, writes <results-dir>/latest_<device>.md (latest_<device>_<ops>.md for a run of
some ops) and a PNG per op.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import sys
import traceback
from pathlib import Path
from typing import Dict, List, Optional

import torch

from benchmarks.common import (ROOT, NotForCase, Unavailable, copy_bandwidth_gbps, dtype_name, environment, peak_memory_mb,
                               slug, time_all_ms)

# time_ms is the median over `rounds`; min_ms / max_ms the spread. Rows written before a field
# existed leave it empty (append_rows rewrites an older header).
CSV_FIELDS = ["date", "commit", "device", "torch", "triton", "op", "case", "dtype", "mode", "provider",
              "time_ms", "gbps", "pct_of_copy_bw", "floor_bytes", "copy_bw_gbps", "peak_mb", "quick",
              "rounds", "min_ms", "max_ms", "isa", "peers"]


def discover() -> List[str]:
    return sorted(p.stem[len("bench_"):] for p in (ROOT / "benchmarks").glob("bench_*.py"))


def run_op(op: str, device: torch.device, quick: bool, copy_bw: float, env: Dict[str, str]) -> List[Dict]:
    module = importlib.import_module(f"benchmarks.bench_{op}")
    cases = module.cases(device, quick)
    providers = module.providers(device)
    rows: List[Dict] = []
    skipped: Dict[str, str] = {}
    for ci, case in enumerate(cases):
        label = f"[{op} {ci + 1}/{len(cases)}] {case.name} {dtype_name(case.dtype)} {case.mode}"
        ready = []
        for prov in providers:
            if prov.name in skipped:
                continue
            try:
                ready.append((prov, prov.setup(case, device)))
            except Unavailable as exc:
                skipped[prov.name] = str(exc)
                print(f"{label} {prov.name}: skipped ({exc})", flush=True)
            except NotForCase as exc:
                print(f"{label} {prov.name}: not this case ({exc})", flush=True)
            except Exception as exc:  # a failing provider must not hide the others' numbers
                print(f"{label} {prov.name}: FAILED {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc(limit=3)
        try:
            times = time_all_ms([fn for _, fn in ready], device, quick)
        except Exception as exc:
            print(f"{label}: timing FAILED {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=3)
            continue
        for (prov, fn), timing in zip(ready, times):
            ms = timing.median
            peak = peak_memory_mb(fn, device)
            gbps = case.floor_bytes / (ms * 1e-3) / 1e9
            print(f"{label} {prov.name}: {ms:.4f} ms (min {timing.min:.4f}, max {timing.max:.4f}, "
                  f"{timing.rounds} rounds), {gbps:.1f} GB/s", flush=True)
            rows.append(dict(env, op=op, case=case.name, dtype=dtype_name(case.dtype), mode=case.mode,
                             provider=prov.name, time_ms=f"{ms:.6f}", gbps=f"{gbps:.2f}",
                             pct_of_copy_bw=f"{100 * gbps / copy_bw:.1f}", floor_bytes=case.floor_bytes,
                             copy_bw_gbps=f"{copy_bw:.1f}", peak_mb="" if peak is None else f"{peak:.2f}",
                             quick=int(quick), rounds=timing.rounds, min_ms=f"{timing.min:.6f}",
                             max_ms=f"{timing.max:.6f}", ours=prov.ours))
        del ready
    return rows


def append_rows(path: Path, rows: List[Dict]) -> None:
    """Append to the CSV; a file whose header lacks fields of CSV_FIELDS is rewritten first with
    the full header (its rows keep their values, the new fields empty)."""
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header, old = reader.fieldnames or [], list(reader)
        if header != CSV_FIELDS:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old)
    new_file = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        writer.writerows(rows)


def markdown(op: str, rows: List[Dict]) -> str:
    """One table per op: a row per (case, dtype, mode, provider); speedup = provider time / our best."""
    lines = [f"### {op}", "",
             "| case | dtype | mode | provider | median ms | min-max ms (rounds) | GB/s | % of memory BW | peak MB "
             "| our best is x faster |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    groups: Dict[tuple, List[Dict]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["dtype"], r["mode"]), []).append(r)
    for (case, dtype, mode), group in groups.items():
        ours = [float(r["time_ms"]) for r in group if r["ours"]]
        best = min(ours) if ours else None
        for r in group:
            speed = f"{float(r['time_ms']) / best:.2f}" if best else "-"
            spread = f"{float(r['min_ms']):.4f}-{float(r['max_ms']):.4f} ({r['rounds']})"
            lines.append(f"| {case} | {dtype} | {mode} | {r['provider']} | {float(r['time_ms']):.4f} | {spread} | "
                         f"{r['gbps']} | {r['pct_of_copy_bw']} | {r['peak_mb'] or 'n/a'} | {speed} |")
    return "\n".join(lines) + "\n"


def plot(op: str, rows: List[Dict], path: Path, title: str) -> Optional[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return None
    keys = list(dict.fromkeys((r["case"], r["dtype"], r["mode"]) for r in rows))
    provs = list(dict.fromkeys(r["provider"] for r in rows))
    width = 0.8 / max(len(provs), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(keys) + 3), 5))
    for i, prov in enumerate(provs):
        vals = {(r["case"], r["dtype"], r["mode"]): float(r["pct_of_copy_bw"]) for r in rows if r["provider"] == prov}
        xs = [k + i * width for k, key in enumerate(keys) if key in vals]
        ys = [vals[key] for key in keys if key in vals]
        ax.bar(xs, ys, width, label=prov)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))])
    ax.set_xticklabels([f"{c}\n{d} {m}" for c, d, m in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("bytes floor / time, % of measured memory bandwidth")
    ax.axhline(100.0, color="grey", linewidth=0.8)  # above it: the case's data stayed in cache
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    all_ops = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", choices=all_ops, default=all_ops, help="ops to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a few cases, shorter timing")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    print(f"device: {env['device']} | torch {env['torch']} | triton {env['triton']} | commit {env['commit']}", flush=True)
    copy_bw = copy_bandwidth_gbps(device, args.quick)
    print(f"measured memory bandwidth (best of copy, triad and in-place update): {copy_bw:.1f} GB/s", flush=True)

    md = [f"# Benchmarks on {env['device']}", "",
          f"torch {env['torch']}, triton {env['triton']}, commit {env['commit']}, {env['date']}; "
          f"measured memory bandwidth {copy_bw:.1f} GB/s (the best of a copy, a triad and an in-place update)"
          f"{' (quick run)' if args.quick else ''}; a row above 100 % of it stays in cache or streams better than torch's loops.",
          f"CPU/GPU instruction set {env['isa']}; peers: {env['peers']}.",
          "GB/s = the op's bytes floor / time; times are medians (min-max over the rounds in the CSV).", ""]
    csv_path = args.results_dir / "results.csv"
    for op in args.ops:
        rows = run_op(op, device, args.quick, copy_bw, env)
        table = markdown(op, rows)
        print("\n" + table, flush=True)
        md.append(table)
        append_rows(csv_path, rows)
        png = plot(op, rows, args.results_dir / f"{op}_{slug(env['device'])}.png",
                   f"{op} on {env['device']} ({env['commit']})")
        if png is not None:
            md.append(f"![{op}]({png.name})\n")
    # A run of some ops writes its own file, so the tables of the last full run stay whole.
    part = "" if sorted(args.ops) == sorted(all_ops) else "_" + "-".join(args.ops)
    md_path = args.results_dir / f"latest_{slug(env['device'])}{part}.md"
    md_path.write_text("\n".join(md))
    print(f"wrote {csv_path}, {md_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
