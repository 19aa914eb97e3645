"""/v1/experiments and /v1/runs: MLflow history, read-only."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from services.server import mlflow_browser as mb
from services.server.api_errors import error_responses
from services.server.deps import AuthDep, StateDep
from services.server.history_models import (
    ArtifactList,
    ExperimentPage,
    ExperimentView,
    MetricHistory,
    RunDetail,
    RunPage,
)

_ERRORS = error_responses(401, 403, 404, 422)
experiments = APIRouter(
    prefix="/v1/experiments", tags=["experiments"], dependencies=[AuthDep], responses=_ERRORS
)
runs = APIRouter(prefix="/v1/runs", tags=["runs"], dependencies=[AuthDep], responses=_ERRORS)

PageSize = Annotated[int, Query(ge=1, le=1000)]


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except mb.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except mb.BadQuery as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@experiments.get("")
def list_experiments(
    state: StateDep,
    filter: Annotated[str | None, Query(max_length=1000, description="MLflow filter")] = None,
    max_results: PageSize = 100,
    page_token: Annotated[str | None, Query(max_length=2000)] = None,
) -> ExperimentPage:
    return _call(
        mb.search_experiments,
        state.mlflow,
        filter_string=filter,
        max_results=max_results,
        page_token=page_token,
    )


@experiments.get("/{experiment_id}")
def get_experiment(experiment_id: str, state: StateDep) -> ExperimentView:
    return _call(mb.get_experiment, state.mlflow, experiment_id)


@runs.get("")
def search_runs(
    state: StateDep,
    experiment_id: Annotated[list[str] | None, Query(max_length=100)] = None,
    filter: Annotated[str, Query(max_length=2000, description="MLflow filter string")] = "",
    order_by: Annotated[list[str] | None, Query(max_length=10)] = None,
    max_results: PageSize = 100,
    page_token: Annotated[str | None, Query(max_length=2000)] = None,
) -> RunPage:
    return _call(
        mb.search_runs,
        state.mlflow,
        experiment_ids=experiment_id or [],
        filter_string=filter,
        order_by=order_by or [],
        max_results=max_results,
        page_token=page_token,
    )


@runs.get("/{run_id}")
def get_run(run_id: str, state: StateDep) -> RunDetail:
    """Params, metrics, tags and lineage (parent, children, the pretraining a sweep used)."""
    return _call(mb.get_run, state.mlflow, run_id)


@runs.get("/{run_id}/metrics/{key}")
def metric_history(run_id: str, key: str, state: StateDep) -> MetricHistory:
    return _call(mb.metric_history, state.mlflow, run_id, key)


@runs.get("/{run_id}/artifacts")
def list_artifacts(
    run_id: str, state: StateDep, path: Annotated[str | None, Query(max_length=1000)] = None
) -> ArtifactList:
    return _call(mb.list_artifacts, state.mlflow, run_id, path)


@runs.get(
    "/{run_id}/artifacts/download",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file's bytes, as an attachment.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
def download_artifact(
    run_id: str, state: StateDep, path: Annotated[str, Query(min_length=1, max_length=1000)]
) -> FileResponse:
    tmp = tempfile.TemporaryDirectory()
    local = _call(mb.download_artifact, state.mlflow, run_id, path, tmp.name)
    if Path(local).is_dir():
        tmp.cleanup()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{path!r} is a folder: list it instead"
        )
    return FileResponse(
        local,
        media_type="application/octet-stream",  # not guessed: `.pt` would read as a SNES file
        filename=Path(local).name,
        background=BackgroundTask(tmp.cleanup),
    )
