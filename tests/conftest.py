"""Test configuration: Triton's interpreter on CPU-only machines, seeding, the `gpu` marker.

TRITON_INTERPRET must be set before any Triton kernel is defined, so this runs before the
test modules import tricks_ext.
"""
import collections
import os
import sys
import tempfile

# A fresh inductor cache per run: its keys do not cover a rebuilt extension's fake kernels, so
# a graph compiled against an older build (another stats shape, say) would be served again.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="tricks_ext_inductor_"))

import torch  # noqa: E402

# Under pytest-xdist (`make test` runs a worker per core) each worker keeps one intra-op thread:
# with torch's default of one per core in every worker, their OpenMP threads spin against each
# other (on 2 cores, 2 workers x 2 threads took 607 s, a single process 950 s beside other jobs). Tests that need
# parallel CPU tasks ask for them with the two_threads fixture.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


class _Stderr:
    """A file that writes to whatever fd 2 is at the time of the write, from pytest-timeout's
    banner on: before it, a worker's writer carries only its own progress, which the main process
    already prints (passed through, two workers' dots broke the run's log into pieces)."""

    def __init__(self) -> None:
        self.on = False

    def write(self, text: str) -> int:
        self.on = self.on or "Timeout" in text
        if self.on:
            os.write(2, text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def pytest_sessionstart(session):
    # pytest-timeout (pyproject.toml) writes a stuck test's thread stacks to the terminal writer and
    # ends the process; an xdist worker's writer goes nowhere, so the run said only "worker
    # crashed". It stops output capture first, so fd 2 is then the run's own stderr.
    # (workerinput: a worker's own config; PYTEST_XDIST_WORKER is inherited by a pytest that a test runs)
    if hasattr(session.config, "workerinput") and session.config.pluginmanager.has_plugin("terminalreporter"):
        session.config.get_terminal_writer()._file = _Stderr()


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not CUDA:
        pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def two_threads():
    """At least two intra-op threads, so the CPU kernels split work into parallel tasks."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield torch.get_num_threads()
    torch.set_num_threads(before)


# ---- the fuzz suite's counts (records put in the reports by tests/fuzz/conftest.py) -------------
# The summary states, per op, how many cases computed a result and how many every backend refused
# with the same error, and which backends were passed over and why; the run fails when an op's
# share of computed cases falls under MIN_COMPUTED (a generator that only draws invalid arguments
# checks nothing).
# The arguments are drawn at and past their bounds on purpose, so some cases end in the error
# every backend agrees on. The lowest expected share is the optimizers': lr = -1 in a quarter of
# the draws, betas[1] = 1 in a quarter, Ranger's k = 0 in a quarter of its quarter, so
# 3/4 * 3/4 * 15/16 = 53 % compute (50 % in `make test`'s 60 cases from seed 0; the others 68-100
# %). The floor sits 3.5 standard deviations of a 60-case draw below that.
MIN_COMPUTED = 0.3
# Fewer cases than this (a -k selection, a narrowed budget) make no share worth asserting.
MIN_CASES = 20

_fuzz_records = []


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        _fuzz_records.extend(value for key, value in report.user_properties if key == "fuzz")


def _shares():
    per_op = collections.defaultdict(lambda: {"ok": 0, "error": 0, "skipped": collections.Counter()})
    for r in _fuzz_records:
        entry = per_op[r["op"]]
        entry[r["outcome"]] += 1
        entry["skipped"].update(f"{b} ({why})" for b, why in r["skipped"].items())
    return per_op


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput") or not _fuzz_records:
        return
    terminalreporter.section("fuzz cases")
    for op, e in sorted(_shares().items()):
        n = e["ok"] + e["error"]
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(e["skipped"].items())) or "none"
        terminalreporter.write_line(f"{op}: {n} cases, {e['ok']} computed ({100 * e['ok'] / n:.0f} %), "
                                    f"{e['error']} refused alike by every backend; backends passed over: {skipped}")


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _fuzz_records:
        return
    low = [f"{op} ({e['ok']} of {e['ok'] + e['error']})" for op, e in _shares().items()
           if e["ok"] + e["error"] >= MIN_CASES and e["ok"] < MIN_COMPUTED * (e["ok"] + e["error"])]
    if low:
        print(f"\nfuzz: under {MIN_COMPUTED:.0%} of the cases computed a result: {', '.join(low)}", file=sys.stderr)
        session.exitstatus = 1
