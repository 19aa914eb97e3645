"""Experiment history over REST: thin, JSON-shaped views of MLflow's client API."""

from __future__ import annotations

from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.specs.names import KIND_TAG, PARENT_RUN_TAG, PRETRAIN_RUN_TAG, run_ids_of
from services.server.history_models import (
    ArtifactFile,
    ArtifactList,
    DatasetInput,
    ExperimentPage,
    ExperimentView,
    MetricHistory,
    MetricPoint,
    RunDetail,
    RunLineage,
    RunPage,
    RunSummary,
)


class NotFound(LookupError):
    pass


class BadQuery(ValueError):
    pass


def experiment_view(exp: Experiment) -> ExperimentView:
    return ExperimentView(
        experiment_id=exp.experiment_id,
        name=exp.name,
        artifact_location=exp.artifact_location,
        lifecycle_stage=exp.lifecycle_stage,
        tags=dict(exp.tags),
        creation_time=exp.creation_time,
    )


def _summary_fields(run: Run) -> dict:
    info = run.info
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "parent_run_id": run.data.tags.get(PARENT_RUN_TAG),
        "kind": run.data.tags.get(KIND_TAG),
    }


def run_summary(run: Run) -> RunSummary:
    return RunSummary(**_summary_fields(run))


def search_experiments(
    client: MlflowClient, *, filter_string: str | None, max_results: int, page_token: str | None
) -> ExperimentPage:
    try:
        page = client.search_experiments(
            filter_string=filter_string, max_results=max_results, page_token=page_token
        )
    except MlflowException as exc:
        raise BadQuery(exc.message) from None
    return ExperimentPage(items=[experiment_view(e) for e in page], next_page_token=page.token)


def get_experiment(client: MlflowClient, experiment_id: str) -> ExperimentView:
    try:
        return experiment_view(client.get_experiment(experiment_id))
    except MlflowException:
        raise NotFound(f"no experiment {experiment_id!r}") from None


def search_runs(
    client: MlflowClient,
    *,
    experiment_ids: list[str],
    filter_string: str,
    order_by: list[str],
    max_results: int,
    page_token: str | None,
) -> RunPage:
    if not experiment_ids:
        experiment_ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    try:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by or None,
            max_results=max_results,
            page_token=page_token,
        )
    except MlflowException as exc:
        raise BadQuery(exc.message) from None
    return RunPage(items=[run_summary(r) for r in page], next_page_token=page.token)


def _get_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise NotFound(f"no run {run_id!r}") from None


def get_run(client: MlflowClient, run_id: str) -> RunDetail:
    run = _get_run(client, run_id)
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}'",
        max_results=1000,
    )
    return RunDetail(
        **_summary_fields(run),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log-model")},
        lineage=RunLineage(
            parent_run_id=run.data.tags.get(PARENT_RUN_TAG),
            children=[c.info.run_id for c in children],
            pretrain_run_ids=run_ids_of(run.data.tags.get(PRETRAIN_RUN_TAG)),
        ),
        inputs=[
            DatasetInput(name=d.dataset.name, digest=d.dataset.digest, source=d.dataset.source)
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    )


def metric_history(client: MlflowClient, run_id: str, key: str) -> MetricHistory:
    _get_run(client, run_id)
    history = client.get_metric_history(run_id, key)
    if not history:
        raise NotFound(f"run {run_id!r} has no metric {key!r}")
    points = [MetricPoint(step=m.step, value=m.value, timestamp=m.timestamp) for m in history]
    return MetricHistory(run_id=run_id, key=key, history=sorted(points, key=lambda p: p.step))


def _check_artifact_path(path: str) -> None:
    if ".." in path.split("/") or path.startswith("/"):
        raise BadQuery("artifact path must be relative and stay inside the run")


def list_artifacts(client: MlflowClient, run_id: str, path: str | None) -> ArtifactList:
    _get_run(client, run_id)
    if path:
        _check_artifact_path(path)
    try:
        files = client.list_artifacts(run_id, path)
    except (MlflowException, OSError):  # OSError: a name the artifact store's disk refuses
        raise NotFound(f"run {run_id!r} has no artifact folder {path!r}") from None
    return ArtifactList(
        run_id=run_id,
        path=path or "",
        files=[ArtifactFile(path=f.path, is_dir=f.is_dir, size=f.file_size) for f in files],
    )


def download_artifact(client: MlflowClient, run_id: str, path: str, dst: str) -> str:
    _get_run(client, run_id)
    _check_artifact_path(path)
    try:
        return client.download_artifacts(run_id, path, dst)
    except (MlflowException, OSError):
        raise NotFound(f"run {run_id!r} has no artifact {path!r}") from None
