import json
from pathlib import Path

from pipelines.report.publish import write_report
from pipelines.report.results_table import (
    CellResult,
    cells_from_json,
    summarize,
    to_csv,
    to_json,
    to_markdown,
)


def _cells() -> list[CellResult]:
    cells = []
    for seed, (scratch, selfie) in enumerate([(0.70, 0.75), (0.72, 0.79), (0.74, 0.77)]):
        cells.append(CellResult("resnet50", "scratch", 0.05, seed, "ok", test_accuracy=scratch))
        cells.append(CellResult("resnet50", "selfie", 0.05, seed, "ok", test_accuracy=selfie))
    cells.append(CellResult("resnet50", "scratch", 1.0, 0, "ok", test_accuracy=0.95))
    cells.append(CellResult("resnet50", "scratch", 1.0, 1, "failed"))
    cells.append(CellResult("resnet50", "selfie", 1.0, 0, "failed"))
    return cells


def test_mean_std_delta() -> None:
    rows = summarize(_cells(), seeds_asked=3)
    row = rows[0]
    assert row.fraction == 0.05
    assert abs(row.scratch.mean - 0.72) < 1e-9 and abs(row.scratch.std - 0.02) < 1e-9
    assert abs(row.delta - (0.77 - 0.72)) < 1e-9
    md = to_markdown(rows)
    assert "| resnet50 | 5% | 72.0 ± 2.0 | 77.0 ± 2.0 | +5.0 |" in md


def test_missing_seeds_are_said_not_hidden() -> None:
    rows = summarize(_cells(), seeds_asked=3)
    full = rows[1]
    assert full.scratch.n == 1 and full.selfie.n == 0
    md = to_markdown(rows)
    assert "95.0 ± 0.0 (n=1/3)" in md
    assert "missing (n=0/3)" in md
    assert full.delta is None and "| n/a |" in md


def test_csv_json_roundtrip_and_plot(tmp_path: Path) -> None:
    cells = _cells()
    rows = summarize(cells, 3)
    assert to_csv(rows).splitlines()[0].startswith("encoder,fraction,scratch_mean")
    assert cells_from_json(to_json(rows, cells)) == cells
    md = write_report(cells, 3, tmp_path)
    assert (tmp_path / "accuracy_gain.png").stat().st_size > 5000
    assert (tmp_path / "table.md").read_text() == md
    assert json.loads((tmp_path / "results.json").read_text())["table"][0]["seeds_asked"] == 3


def test_an_init_never_asked_for_is_not_run_rather_than_missing() -> None:
    scratch_only = [c for c in _cells() if c.init == "scratch"]
    md = to_markdown(summarize(scratch_only, seeds_asked=3))
    assert "| resnet50 | 5% | 72.0 ± 2.0 | not run | n/a |" in md
    assert "| resnet50 | 100% | 95.0 ± 0.0 (n=1/3) | not run | n/a |" in md
