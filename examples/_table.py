"""The Markdown result tables of the digits examples: one row per setting, mean (min-max) over
seeds per column, titled with the commit that ran them (checked against the README by tests)."""
from __future__ import annotations

import os
import subprocess
from typing import Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit_label() -> str:
    """The short commit, ``+dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def results_table(title: str, first_column: str, runs: Dict[str, List[Dict[str, float]]],
                  decimals: Dict[str, int]) -> str:
    """``title``, then a row per setting of ``runs`` (setting -> one dict of results per seed):
    each column's mean (min-max) over the seeds, with ``decimals[column]`` digits (default 1)."""
    keys = list(next(iter(runs.values()))[0])
    lines = [title, "", f"| {first_column} | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, results in runs.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in results])
            d = decimals.get(k, 1)
            cells.append(f"{v.mean():.{d}f} ({v.min():.{d}f}-{v.max():.{d}f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
