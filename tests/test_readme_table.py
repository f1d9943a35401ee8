"""The README's performance table is what benchmarks/results/results.csv regenerates, and the
generator pairs, ranges and picks runs as it says."""
import csv
from pathlib import Path

import pytest

from benchmarks import readme_table as rt
from benchmarks.run import CSV_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def test_readme_block_is_regenerated_from_the_csv():
    readme = (ROOT / "README.md").read_text()
    assert rt.BEGIN in readme and rt.MEM_BEGIN in readme
    assert rt.main(["--check", str(ROOT / "README.md")]) == 0


def test_first_screen_memory_claims_are_the_tables():
    """The first screen's "x lower than torch.compile" ranges are the memory table's ratios."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(rt.MEM_BEGIN):readme.index(rt.MEM_END)]
    ratios = {}
    for line in block.splitlines():
        cells = line.split(" | ")
        if len(cells) == 5 and cells[3].endswith(" MB"):
            peer = next(p for p in cells[4].split("; ") if "torch.compile" in p)
            ratios.setdefault(cells[0].lstrip("| "), []).append(float(peer.rsplit("(", 1)[1].rstrip("x) |")))
    first_screen = " ".join(readme[:readme.index("## Install")].split())

    def span(values):
        lo, hi = f"{min(values):.2f}".rstrip("0").rstrip("."), f"{max(values):.2f}".rstrip("0").rstrip(".")
        return lo if lo == hi else f"{lo}-{hi}x"
    for label, words in (("dropout + residual (ReZero gate)", "for dropout + residual"),
                         ("EvoNorm-S0", "for EvoNorm"), ("soft-target CE on Mixup targets", "for the soft CE")):
        assert f"{span(ratios[label])} {words}" in first_screen, (label, span(ratios[label]))


def _row(date, commit, op, case, mode, dtype, provider, ms, quick="0"):
    r = dict.fromkeys(CSV_FIELDS, "")
    r.update(date=date, commit=commit, device="CPU X", op=op, case=case, mode=mode, dtype=dtype,
             provider=provider, time_ms=str(ms), quick=quick, isa="AVX2", torch="2.13.0", peers="timm 1.0.29")
    return r


@pytest.fixture
def csv_path(tmp_path):
    case = ("mask_boxes", "cutout 1x16px 256x3x224x224", "fwd", "float32")
    rows = []
    for date, scale in (("2026-12-01T00:00:00Z", 1.0), ("2026-12-01T01:00:00Z", 1.5)):
        rows += [_row(date, "abc1234", *case, "tricks_ext:cpu in-place", 2.0 * scale),
                 _row(date, "abc1234", *case, "tricks_ext:cpu", 10.0 * scale),
                 _row(date, "abc1234", *case, "slice-assignment loop, in place", 4.0 * scale),
                 _row(date, "abc1234", *case, "reference, eager", 30.0 * scale)]
    rows.append(_row("2026-12-01T02:00:00Z", "abc1234", *case, "tricks_ext:cpu in-place", 99.0, quick="1"))
    rows.append(_row("2026-12-01T03:00:00Z", "abc1234+dirty", *case, "tricks_ext:cpu in-place", 99.0))
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_ranges_pairing_and_runs(csv_path):
    block = rt.table(rt.load(csv_path), "abc1234", "CPU X")
    lines = {line.split(" | ")[0]: line for line in block.splitlines() if line.startswith("| cutout")}
    # in place against in place, out of place against out of place; the quick and the dirty run
    # (99 ms) are not runs of the clean commit
    assert lines["| cutout, in place"].endswith(
        "| 2-3 ms | slice-assignment loop, in place 4-6 ms (2.00x) |")
    assert lines["| cutout, out of place"].endswith("| 10-15 ms | reference, eager 30-45 ms (3.00x) |")
    assert "2 full `make bench` runs of the clean commit abc1234" in block


def test_check_fails_on_a_stale_block(csv_path, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + rt.table(rt.load(csv_path), "abc1234", "CPU X").replace("2-3 ms", "1 ms") + "\nend\n")
    assert rt.main(["--csv", str(csv_path), "--check", str(readme)]) == 1
    assert rt.main(["--csv", str(csv_path), "--commit", "abc1234", "--write", str(readme)]) == 0
    assert rt.main(["--csv", str(csv_path), "--check", str(readme)]) == 0
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("\nend\n")
