"""Counts the README states that come from the code or a committed run: checked, not typed."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text()


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


def _mutants():
    out = subprocess.run([sys.executable, "scripts/mutate.py", "--list"], capture_output=True, text=True, cwd=ROOT)
    kinds = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    assert kinds, out.stderr
    return kinds


def test_mutant_counts():
    kinds = _mutants()
    prose = " ".join(README.split())
    assert f"`make mutate` applies {len(kinds)} plausible kernel bugs" in prose, len(kinds)
    assert f"runs the {kinds.count('python')} Python/Triton ones" in prose, kinds.count("python")


def _compile_check_rows():
    """The README's compile-check run: its file's rows as (kernel, arch, specializations, registers)."""
    found = re.search(r"the table is `(benchmarks/results/compile_check_(\w+)\.md)`", README)
    assert found, "the README names no compile-check table"
    prose = " ".join(README.split())
    assert f"of commit {found.group(2)};" in prose and f"(the run of {found.group(2)})" in prose
    text = (ROOT / found.group(1)).read_text()
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[1].startswith("sm_"):
            rows.append((cells[0], cells[1], int(cells[2]), int(cells[4])))
    total = re.search(r"(\d+) kernel specializations; 0 problems", text)
    assert total and int(total.group(1)) == sum(r[2] for r in rows)
    return rows


def test_compile_check_counts_and_registers():
    """The compile-check paragraph, the simt section's instance count and the worst-registers table
    are the committed run's file."""
    rows = _compile_check_rows()
    triton = sum(r[2] for r in rows if not r[0].startswith("tricks::"))
    cuda = sum(r[2] for r in rows if r[0].startswith("tricks::"))
    prose = " ".join(README.split())
    assert (f"{triton} Triton specializations ({triton // 2} per arch) and {cuda} CUDA kernel instances "
            f"({cuda // 2} per arch), {triton + cuda} in all") in prose
    assert f"launch all {cuda // 2} CUDA kernel instances" in prose
    assert f"launch every one of the {cuda // 2} CUDA kernel instances" in " ".join(DESIGN.split())
    worst = {}
    for kernel, arch, _, regs in rows:
        name = re.sub(r"<.*>$", "", kernel).replace("tricks::", "")
        worst[(name, arch)] = max(worst.get((name, arch), 0), regs)
    table = README[README.index("| kernel (Triton) | registers"):]
    table = table[:table.index("\n\n")]
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name, regs in ((cells[0], cells[1]), (cells[2], cells[3])):
            sm80, sm90 = (int(v.split()[0]) for v in regs.split(" / "))
            assert (sm80, sm90) == (worst[(name, "sm_80")], worst[(name, "sm_90")]), name
    step = (worst[("optim._optim_step_kernel", "sm_80")], worst[("optim._optim_step_kernel", "sm_90")])
    assert f"against {step[0]} / {step[1]} under 3.9 in the run above" in prose


def test_ci_record_parses_ci_run_output():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import ci_record
    finally:
        sys.path.pop(0)
    log = ["building...\n", "3310 passed, 1444 skipped, 2 warnings in 638.12s (0:10:38)\n",
           "CI: make test took 905 s (limit 1500 s, exit 0)\n",
           "==== 1 failed, 12 passed in 3.50s ====\n", "CI: make mutate-python took 300 s (limit 600 s, exit 0)\n"]
    stages = ci_record.parse(log)
    assert [s["command"] for s in stages] == ["make test", "make mutate-python"]
    assert stages[0]["seconds"] == 905 and stages[0]["limit"] == 1500 and stages[0]["rc"] == 0
    assert stages[0]["pytest"] == [{"counts": "3310 passed, 1444 skipped, 2 warnings", "seconds": 638.12}]
    assert stages[1]["pytest"] == []  # the mutants' runs are not the suite's
    table = ci_record.render("abc1234", stages)
    assert "| `make test` | 905 | 1500 | 0 | 3310 passed, 1444 skipped, 2 warnings in 638 s |" in table


def test_test_times_come_from_the_ci_record():
    """Every `make test` time the README and docs/DESIGN.md give is that of the CI record the
    README cites (scripts/ci_record.py); without a record, none is given."""
    found = re.search(r"`benchmarks/results/ci_(\w+)\.md`", README)
    docs = (("README.md", " ".join(README.split())), ("docs/DESIGN.md", " ".join(DESIGN.split())))
    if found is None:
        for name, prose in docs:
            assert not re.findall(r"`make test` took (\d+) s", prose), f"{name} types a test time with no record"
        return
    commit = found.group(1)
    rows = {}
    for line in (ROOT / "benchmarks" / "results" / f"ci_{commit}.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`make"):
            rows[cells[0].strip("`")] = (int(cells[1]), cells[4])
    took, pytest_line = rows["make test"]
    summary = re.match(r"(\d+) passed, (\d+) skipped.* in (\d+) s", pytest_line)
    assert summary, pytest_line
    passed, skipped, seconds = summary.groups()
    for name, prose in docs:
        assert f"`benchmarks/results/ci_{commit}.md`" in prose, name
        assert f"`make test` took {took} s" in prose, (name, took)
        assert f"pytest {seconds} s for {passed} passed and {skipped} skipped tests" in prose, (name, pytest_line)
        others = set(re.findall(r"`make test` took (\d+) s", prose)) - {str(took)}
        assert not others, (name, others)


def test_prose_timings_are_the_cited_runs():
    """A README paragraph that cites a run's file (`benchmarks/results/latest_*.md`) and gives
    times: each figure with two decimals is a median of that file, rounded as written."""
    checked = 0
    for paragraph in README.split("\n\n"):
        cited = re.findall(r"`(benchmarks/results/latest_[\w\-]+\.md)`", paragraph)
        if not cited or paragraph.lstrip().startswith("|"):
            continue
        medians = []
        for path in cited:
            for line in (ROOT / path).read_text().splitlines():
                cells = [c.strip() for c in line.strip("|").split("|")]
                if len(cells) >= 5 and re.fullmatch(r"\d+\.\d+", cells[4]):
                    medians.append(float(cells[4]))
        for t in re.findall(r"(?<![\w.])\d+\.\d\d(?![\d.])", paragraph):
            assert any(round(m, 2) == float(t) for m in medians), (t, cited)
            checked += 1
    assert checked >= 10, checked  # the soft F1 paragraph's figures at least
