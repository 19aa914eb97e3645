"""`selfie pipeline`: ingest (if needed), pretrain, sweep and report as one MLflow parent run.

The pretraining and sweep runs are nested under the pipeline's run (and the trials under
the sweep's), all in the pipeline's experiment, so the MLflow UI shows one tree. Resuming a
pipeline resumes the stage that stopped: a pretraining that finished is not run again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipelines.runtime.progress import report_progress
from pipelines.runtime.tracked_run import TrackedRun, read_result, results_dir, tracked_run
from pipelines.runtime.tracking import find_named_run
from pipelines.specs import MANIFEST_NAME, FileWeights, PipelineSpec, SpecError
from pipelines.specs.names import (
    PRETRAIN_RUN_TAG,
    REPORT_ARTIFACT_DIR,
    SWEEP_RUN_TAG,
    run_ids_tag,
)
from pipelines.specs.settings import Settings


@dataclass
class PipelineResult:
    run_name: str
    mlflow_run_id: str
    pretrain_run_ids: list[str]
    sweep_run_id: str
    weights: list[str]  # the pretrained weights files, one per pretraining seed
    table_markdown: str
    report_dir: str

    def to_dict(self) -> dict:
        return asdict(self)


def _stage_run(run: TrackedRun, stage_name: str):
    """On resume, the MLflow run of a stage that was started (None: start it now). Its status
    is the one record of whether the stage is done: FINISHED means done."""
    if not run.resumed:
        return None
    return find_named_run(run.client, run.experiment_id, stage_name)


def _stage_started(run: TrackedRun, stage_name: str) -> bool:
    return _stage_run(run, stage_name) is not None


@dataclass
class _Pretrained:
    mlflow_run_id: str
    weights: str
    result_dir: str


def _pretrain(spec: PipelineSpec, settings: Settings, run: TrackedRun, k: int) -> _Pretrained:
    """The k-th pretraining (seed `pretrain.seed + k`), or its result when a resumed
    pipeline finished it already."""
    from pipelines.pretrain.driver import PretrainResult, run_pretrain

    name = f"{run.name}-pretrain" + (f"-s{k}" if k else "")
    stage = _stage_run(run, name)
    if stage is not None and stage.info.status == "FINISHED":
        try:
            pre = PretrainResult(**read_result(stage, settings, spec.experiment))
        except TypeError:  # another shape: an older version's (its weights file `encoder`)
            raise SpecError(
                f"pretraining {name!r} finished but its result file was written by an older "
                "version: start the pipeline anew under another run name"
            ) from None
    else:
        pre = run_pretrain(
            spec.pretrain_spec(k, name, resume=stage is not None),
            settings,
            parent_run_id=run.run_id,
        )
    return _Pretrained(
        pre.mlflow_run_id, pre.encoder_file, str(results_dir(settings, spec.experiment, name))
    )


def run_pipeline(spec: PipelineSpec, settings: Settings) -> PipelineResult:
    from pipelines.ingest.driver import ingest
    from pipelines.sweep.driver import run_sweep

    needs_ingest = not (spec.data_dir() / MANIFEST_NAME).is_file()
    if needs_ingest and not spec.source:
        raise SpecError(f"data dir {spec.data!r} has no manifest and the pipeline names no source")
    with tracked_run(spec, settings, kind="pipeline") as run:
        if not run.resumed:
            run.client.log_text(run.run_id, spec.model_dump_json(indent=2), "pipeline_spec.json")
        if needs_ingest:
            ingest(spec.ingest_spec())
        pretrainings = [_pretrain(spec, settings, run, k) for k in range(spec.pretrain_seeds)]
        run.client.set_tag(
            run.run_id, PRETRAIN_RUN_TAG, run_ids_tag([p.mlflow_run_id for p in pretrainings])
        )
        sweep_name = f"{run.name}-sweep"
        # The sweep's own lines come as trials finish: say at once that it has begun.
        report_progress("sweep", 0, None, status="starting the trials")
        sweep = run_sweep(
            spec.sweep_spec(
                [FileWeights(path=p.result_dir) for p in pretrainings],
                sweep_name,
                resume=_stage_started(run, sweep_name),
            ),
            settings,
            parent_run_id=run.run_id,
        )
        run.client.set_tag(run.run_id, SWEEP_RUN_TAG, sweep.mlflow_run_id)
        run.client.log_artifacts(run.run_id, sweep.report_dir, REPORT_ARTIFACT_DIR)
        result = PipelineResult(
            run_name=run.name,
            mlflow_run_id=run.run_id,
            pretrain_run_ids=[p.mlflow_run_id for p in pretrainings],
            sweep_run_id=sweep.mlflow_run_id,
            weights=[p.weights for p in pretrainings],
            table_markdown=sweep.table_markdown,
            report_dir=sweep.report_dir,
        )
        run.write_result(result.to_dict())
        return result
