"""Response models of the MLflow history endpoints: the schema clients (and the OpenAPI
document) see, and the views `mlflow_browser` builds from MLflow's entities."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExperimentView(BaseModel):
    experiment_id: str
    name: str
    artifact_location: str | None
    lifecycle_stage: str
    tags: dict[str, str]
    creation_time: int | None = Field(description="Milliseconds since the epoch.")


class ExperimentPage(BaseModel):
    items: list[ExperimentView]
    next_page_token: str | None = Field(description="Pass as ?page_token= for the next page.")


class RunSummary(BaseModel):
    run_id: str
    run_name: str | None
    experiment_id: str
    status: str
    start_time: int | None = Field(description="Milliseconds since the epoch.")
    end_time: int | None
    parent_run_id: str | None
    kind: str | None = Field(description="pretrain, sweep, trial or pipeline (selfie.kind).")


class RunPage(BaseModel):
    items: list[RunSummary]
    next_page_token: str | None = Field(description="Pass as ?page_token= for the next page.")


class RunLineage(BaseModel):
    parent_run_id: str | None
    children: list[str]
    pretrain_run_ids: list[str] = Field(
        description="The pretrainings whose encoders a sweep (or pipeline) used, one per "
        "pretraining seed."
    )


class DatasetInput(BaseModel):
    name: str
    digest: str
    source: str


class RunDetail(RunSummary):
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    lineage: RunLineage
    inputs: list[DatasetInput]


class MetricPoint(BaseModel):
    step: int
    value: float
    timestamp: int


class MetricHistory(BaseModel):
    run_id: str
    key: str
    history: list[MetricPoint]


class ArtifactFile(BaseModel):
    path: str
    is_dir: bool
    size: int | None


class ArtifactList(BaseModel):
    run_id: str
    path: str
    files: list[ArtifactFile]
