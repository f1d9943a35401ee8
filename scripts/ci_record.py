"""``python scripts/ci_record.py [--out DIR]``: run `.ci/run` in this checkout (a fresh clone, for
the figures to mean what they say) and write ``DIR/ci_<commit>.md``: the commit, the machine,
each stage's time, limit and exit status as `.ci/run` prints them, and each pytest summary line.

The README's and docs/DESIGN.md's test times cite such a record and tests/test_readme_counts.py
checks them against it, so no time in the prose is typed. The output of `.ci/run` streams
through unchanged; the exit status is `.ci/run`'s.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
STAGE = re.compile(r"^CI: (?P<command>.+) took (?P<seconds>\d+) s \(limit (?P<limit>\d+) s, exit (?P<rc>\d+)\)$")
# pytest's last line: "==== 3310 passed, 1444 skipped in 638.12s (0:10:38) ====" (with -q, no ====)
SUMMARY = re.compile(r"^=*\s*(?P<counts>(\d+ \w+(, )?)+) in (?P<seconds>[\d.]+)s\b")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse(lines: List[str]) -> List[dict]:
    """One entry per stage, in order: command, seconds, limit, rc and, for the test stages
    (`make test*`), the pytest summaries printed since the previous stage line (the mutation
    stage's pytest runs are its mutants', each meant to fail)."""
    stages, summaries = [], []
    for line in lines:
        text = line.rstrip("\n")
        found = SUMMARY.match(text.strip())
        if found:
            summaries.append({"counts": found.group("counts"), "seconds": float(found.group("seconds"))})
        stage = STAGE.match(text)
        if stage:
            command = stage.group("command")
            stages.append({"command": command, "seconds": int(stage.group("seconds")),
                           "limit": int(stage.group("limit")), "rc": int(stage.group("rc")),
                           "pytest": summaries if command.startswith("make test") else []})
            summaries = []
    return stages


def render(commit: str, stages: List[dict]) -> str:
    total = sum(s["seconds"] for s in stages)
    out = [f"`.ci/run` on a fresh clone of commit {commit}, {datetime.date.today().isoformat()}: "
           f"{cpu_name()}, {os.cpu_count()} cores; {total} s in all.", "",
           "| stage | took s | limit s | exit | pytest |", "|---|---:|---:|---:|---|"]
    for s in stages:
        tests = "; ".join(f"{p['counts']} in {p['seconds']:.0f} s" for p in s["pytest"]) or "-"
        out.append(f"| `{s['command']}` | {s['seconds']} | {s['limit']} | {s['rc']} | {tests} |")
    return "\n".join(out) + "\n"


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/ci_record.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder of the record")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT, check=True).stdout.strip()
    if dirty:
        print("ci_record: the checkout has uncommitted changes; the record would not be of a commit", file=sys.stderr)
        return 2
    proc = subprocess.Popen([str(ROOT / ".ci" / "run")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    rc = proc.wait()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ci_{commit}.md"
    path.write_text(render(commit, parse(lines)))
    print(f"ci_record: wrote {path} (.ci/run exit {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
