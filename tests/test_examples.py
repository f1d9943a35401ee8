"""The README's quick start: its lines are examples/quickstart.py's, which runs and learns."""
from pathlib import Path

from examples import quickstart

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_learns():
    before, after = quickstart.main()
    assert after < 0.95 * before, (before, after)


def test_readme_quick_start_is_the_example():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    source = (ROOT / "examples" / "quickstart.py").read_text()
    lines = [line.strip() for line in block.strip().splitlines()]
    # every line but the last (the example returns what the README prints), its comment aside
    missing = [line for line in lines[:-1] if line.split("  #")[0] not in source]
    assert not missing, missing
