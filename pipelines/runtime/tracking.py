"""MLflow, as its users expect: the tracking URI from settings (MLFLOW_TRACKING_URI honoured),
experiments created up front (SQLite dislikes racing creators), one writer per run.

Every experiment we create says where its artifacts go: under the work dir when MLflow is a
database we write to directly (SQLite, Postgres), the server's own store when it is an
`mlflow server`. Left unset with a database, MLflow writes `./mlruns` into whatever directory
the process runs in (the service's, a Ray worker's). Each is tagged as a model-training
experiment, so MLflow 3's UI opens it on its runs, not on the GenAI (traces) overview.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from pipelines.specs.names import KIND_TAG, PARENT_RUN_TAG, RUN_NAME_TAG
from pipelines.specs.settings import Settings

# MLflow 3's UI reads this tag to show an experiment as GenAI or as model development.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT = "custom_model_development"
SERVER_SCHEMES = ("http", "https", "databricks")


def tracking_client(settings: Settings) -> MlflowClient:
    settings.resolved_workdir.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=settings.tracking_uri)


def artifact_location(settings: Settings) -> str | None:
    """Where a new experiment's artifacts go: the work dir's, or None for an MLflow server
    (which serves its own artifact store)."""
    if settings.tracking_uri.split(":", 1)[0].lower() in SERVER_SCHEMES:
        return None
    return settings.artifact_root


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            name,
            artifact_location=artifact_location(settings),
            tags={EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT},
        )
    except Exception:  # another process created it between our look and our create
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten_params(data: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested spec fields as dotted MLflow params (`optim.lr`)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class MetricBuffer:
    """Collects step metrics and writes them in batches: one HTTP/SQL round trip per flush."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every: int = 50) -> None:
        self.client, self.run_id, self.flush_every = client, run_id, flush_every
        self.pending: list[Metric] = []

    def add(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if len(self.pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.pending), 1000):
            self.client.log_batch(self.run_id, metrics=self.pending[i : i + 1000])
        self.pending = []


def find_named_run(client: MlflowClient, experiment_id: str, name: str):
    """The run our drivers created under `name` (our tag, unique per experiment), or None."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_NAME_TAG}` = '{name}'", max_results=1
    )
    return runs[0] if runs else None


def create_named_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    name: str,
    kind: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping | None = None,
) -> str:
    """Create a run tagged with its name and kind (nested under a parent when given)."""
    all_tags = {RUN_NAME_TAG: name, KIND_TAG: kind, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_RUN_TAG] = parent_run_id
    run_id = client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id
    if params:
        flat = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(flat), 100):
            client.log_batch(run_id, params=flat[i : i + 100])
    return run_id
