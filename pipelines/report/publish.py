"""Writing the report's files (Markdown, CSV, JSON, PNG) and logging them to an MLflow run."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.report.plot import plot_results
from pipelines.report.results_table import (
    CellResult,
    summarize,
    to_csv,
    to_json,
    to_markdown,
)
from pipelines.specs.names import (
    CELLS_JSON,
    GAIN_PLOT,
    REPORT_ARTIFACT_DIR,
    REPORT_FILES,
    TABLE_CSV,
    TABLE_MD,
)


def write_report(cells: list[CellResult], seeds_asked: int, out_dir: Path) -> str:
    """Write table.md, table.csv, results.json and accuracy_gain.png; return the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(cells, seeds_asked)
    markdown = to_markdown(rows)
    (out_dir / TABLE_MD).write_text(markdown)
    (out_dir / TABLE_CSV).write_text(to_csv(rows))
    (out_dir / CELLS_JSON).write_text(to_json(rows, cells))
    plot_results(rows, out_dir / GAIN_PLOT)
    return markdown


def publish_report(
    client: MlflowClient, run_id: str, cells: list[CellResult], seeds_asked: int, out_dir: Path
) -> str:
    markdown = write_report(cells, seeds_asked, out_dir)
    for name in REPORT_FILES:
        client.log_artifact(run_id, str(out_dir / name), REPORT_ARTIFACT_DIR)
    return markdown
