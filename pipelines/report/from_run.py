"""`selfie report RUN`: rebuild the table and plot from a sweep's (or pipeline's) MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.exceptions import MlflowException

from pipelines.report.publish import write_report
from pipelines.report.results_table import cells_from_json
from pipelines.runtime.tracking import tracking_client
from pipelines.specs import SpecError
from pipelines.specs.names import CELLS_JSON, REPORT_ARTIFACT_DIR, SWEEP_RUN_TAG
from pipelines.specs.settings import Settings


def report_for_run(run_id: str, settings: Settings) -> tuple[str, Path]:
    """Markdown table and the folder holding table.md/.csv, results.json and the plot."""
    client = tracking_client(settings)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise SpecError(f"no MLflow run {run_id!r} in {settings.tracking_uri}") from None
    sweep_id = run.data.tags.get(SWEEP_RUN_TAG, run_id)
    sweep = run if sweep_id == run_id else client.get_run(sweep_id)
    try:
        seeds = int(sweep.data.params["seeds"])
    except KeyError:
        raise SpecError(f"run {run_id!r} is not a sweep or a pipeline with a sweep") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(sweep_id, f"{REPORT_ARTIFACT_DIR}/{CELLS_JSON}", tmp)
        except (MlflowException, OSError):
            raise SpecError(f"sweep run {sweep_id!r} has no report yet (did it finish?)") from None
        cells = cells_from_json(Path(local).read_text())
    out_dir = settings.resolved_workdir / "results" / f"report-{sweep_id}"
    return write_report(cells, seeds, out_dir), out_dir
