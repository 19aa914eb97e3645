"""/healthz (no auth) and /metrics (Prometheus)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from services.server.deps import StateDep
from services.server.job_models import JobState
from services.server.job_store import count_by_state, session_scope

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    ray: str
    mlflow: str
    database: str


class PrometheusText(Response):
    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Ray, MLflow or the job store is down."}},
)
def healthz(state: StateDep) -> JSONResponse:
    """Ray (proven to accept a job, not only to answer), MLflow and the job store; 503 when
    any is down."""
    checks: dict[str, str] = {}
    checks["ray"] = state.jobs.health()
    try:
        state.mlflow.search_experiments(max_results=1)
        checks["mlflow"] = "ok"
    except Exception as exc:
        checks["mlflow"] = f"unreachable ({type(exc).__name__})"
    try:
        with session_scope(state.sessions) as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
    healthy = all(v == "ok" for v in checks.values())
    report = Health(status="ok" if healthy else "degraded", **checks)
    return JSONResponse(report.model_dump(), 200 if healthy else 503)


@router.get("/metrics", response_class=PrometheusText)
def metrics(state: StateDep) -> PrometheusText:
    registry = state.metrics
    with session_scope(state.sessions) as session:
        counts = count_by_state(session=session)
    for job_state in JobState:
        registry.jobs.labels(job_state.value).set(counts.get(job_state.value, 0))
    return PrometheusText(generate_latest(registry.registry))
