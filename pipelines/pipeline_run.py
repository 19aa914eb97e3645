"""`selfie pipeline`: ingest (if needed), pretrain, sweep and report as one MLflow parent run.

The pretraining and sweep runs are nested under the pipeline's run (and the trials under
the sweep's), all in the pipeline's experiment, so the MLflow UI shows one tree.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.settings import Settings
from pipelines.specs import MANIFEST_NAME, PipelineSpec, SpecError
from pipelines.tracking import create_named_run, ensure_experiment, tracking_client


@dataclass
class PipelineResult:
    run_name: str
    mlflow_run_id: str
    pretrain_run_id: str
    sweep_run_id: str
    encoder: str
    table_markdown: str
    report_dir: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_pipeline(spec: PipelineSpec, settings: Settings, progress=None) -> PipelineResult:
    from pipelines.data.ingest import IngestOptions, ingest
    from pipelines.pretrain.driver import run_pretrain
    from pipelines.report.publish import REPORT_ARTIFACT_DIR
    from pipelines.sweep.driver import run_sweep

    data_dir = Path(spec.data).expanduser()
    needs_ingest = not (data_dir / MANIFEST_NAME).is_file()
    if needs_ingest and not spec.source:
        raise SpecError(f"data dir {spec.data!r} has no manifest and the pipeline names no source")
    client = tracking_client(settings)
    experiment_id = ensure_experiment(client, spec.experiment, settings)
    name = spec.run_name or f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_id = create_named_run(client, experiment_id, name=name, kind="pipeline")
    client.log_text(run_id, spec.model_dump_json(indent=2), "pipeline_spec.json")
    try:
        if needs_ingest:
            ingest(IngestOptions(source=spec.source, out=data_dir), progress)
        pre = run_pretrain(
            spec.pretrain_spec(run_name=f"{name}-pretrain"), settings, parent_run_id=run_id
        )
        client.set_tag(run_id, "selfie.pretrain_run_id", pre.mlflow_run_id)
        sweep = run_sweep(
            spec.sweep_spec(encoder=str(Path(pre.result_file).parent), run_name=f"{name}-sweep"),
            settings,
            parent_run_id=run_id,
        )
        client.set_tag(run_id, "selfie.sweep_run_id", sweep.mlflow_run_id)
        client.log_artifacts(run_id, sweep.report_dir, REPORT_ARTIFACT_DIR)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    result = PipelineResult(
        run_name=name,
        mlflow_run_id=run_id,
        pretrain_run_id=pre.mlflow_run_id,
        sweep_run_id=sweep.mlflow_run_id,
        encoder=pre.encoder,
        table_markdown=sweep.table_markdown,
        report_dir=sweep.report_dir,
    )
    out = settings.resolved_workdir / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
