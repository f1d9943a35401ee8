"""The fuzz suite shares tests/helpers.py with the op tests; this file also counts what the
cases did. Each case's record (tests/fuzz/test_fuzz.py, RECORDS) travels in its test report, so
the counts are right under pytest-xdist too: the summary states, per op, how many cases
computed a result and how many every backend refused with the same error, and which backends
were passed over and why; the run fails when an op's share of computed cases falls under
MIN_COMPUTED (a generator that only draws invalid arguments checks nothing)."""
import collections
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The arguments are drawn at and past their bounds on purpose, so some cases end in the error
# every backend agrees on. The lowest expected share is the optimizers': lr = -1 in a quarter of
# the draws, betas[1] = 1 in a quarter, Ranger's k = 0 in a quarter of its quarter, so
# 3/4 * 3/4 * 15/16 = 53 % compute (50 % in `make test`'s 60 cases from seed 0; the others 68-100
# %). The floor sits 3.5 standard deviations of a 60-case draw below that.
MIN_COMPUTED = 0.3
# Fewer cases than this (a -k selection, a narrowed budget) make no share worth asserting.
MIN_CASES = 20

_records = []


@pytest.fixture(autouse=True)
def _fuzz_records(request):
    from test_fuzz import RECORDS
    RECORDS.clear()
    yield
    request.node.user_properties.extend(("fuzz", dict(r)) for r in RECORDS)
    RECORDS.clear()


def pytest_runtest_logreport(report):
    if report.when == "teardown":
        _records.extend(value for key, value in report.user_properties if key == "fuzz")


def _shares():
    per_op = collections.defaultdict(lambda: {"ok": 0, "error": 0, "skipped": collections.Counter()})
    for r in _records:
        entry = per_op[r["op"]]
        entry[r["outcome"]] += 1
        entry["skipped"].update(f"{b} ({why})" for b, why in r["skipped"].items())
    return per_op


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput") or not _records:
        return
    terminalreporter.section("fuzz cases")
    for op, e in sorted(_shares().items()):
        n = e["ok"] + e["error"]
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(e["skipped"].items())) or "none"
        terminalreporter.write_line(f"{op}: {n} cases, {e['ok']} computed ({100 * e['ok'] / n:.0f} %), "
                                    f"{e['error']} refused alike by every backend; backends passed over: {skipped}")


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _records:
        return
    low = [f"{op} ({e['ok']} of {e['ok'] + e['error']})" for op, e in _shares().items()
           if e["ok"] + e["error"] >= MIN_CASES and e["ok"] < MIN_COMPUTED * (e["ok"] + e["error"])]
    if low:
        print(f"\nfuzz: under {MIN_COMPUTED:.0%} of the cases computed a result: {', '.join(low)}", file=sys.stderr)
        session.exitstatus = 1
