"""Counts the README states that come from the code: checked, not typed."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _collected(path: str) -> int:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", path],
                         capture_output=True, text=True, cwd=ROOT, env={**__import__("os").environ,
                                                                         "TRICKS_FUZZ_CASES": "60"})
    found = re.search(r"(\d+) tests? collected", out.stdout)
    assert found, out.stdout[-2000:] + out.stderr[-2000:]
    return int(found.group(1))


def test_fuzz_case_counts():
    ops, usage = _collected("tests/fuzz/test_fuzz.py"), _collected("tests/fuzz/test_fuzz_usage.py")
    assert f"({ops} in `tests/fuzz/test_fuzz.py`)" in README, ops
    assert f"and {usage} cases of usage" in README, usage
    assert f"{ops + usage} in all" in README, ops + usage
