"""A test that hangs is ended by pytest-timeout (pyproject.toml), and the run names it and prints
its stack, also from an xdist worker (`make test` runs two): tests/conftest.py points the
worker's terminal writer at stderr, where the timeout writes, from the timeout's banner on."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_HANGS = '''
import time


def test_returns():
    pass


def test_hangs_here():
    while True:
        time.sleep(0.05)
'''


def test_a_hanging_test_is_named_with_its_stack(tmp_path):
    (tmp_path / "test_probe.py").write_text(_HANGS)
    out = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "test_probe.py"), "-c",
                          str(ROOT / "pyproject.toml"), "-p", "conftest", "-p", "no:cacheprovider", "-n", "2", "-q",
                          "-o", "timeout=3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=240)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert "1 failed, 1 passed" in text and "crashed while running '::test_hangs_here'" in text, text[-3000:]
    assert f'File "{tmp_path / "test_probe.py"}", line 11, in test_hangs_here' in text, text[-3000:]
    # the workers' own progress and summaries stay out: the main process's are the run's
    assert "no tests ran" not in text and text.count(" passed") == 1, text[-3000:]
