"""What runs the jobs the service records: the contract every backend keeps, and what all
backends share (the entrypoint's environment, reading a job's result from its log).

Two backends exist: Ray Jobs on a cluster (`ray_backend.RayJobs`, the default) and child
processes of the service (`local_backend.LocalProcessJobs`, `SELFIE_JOB_BACKEND=local`, for
development and tests without a Ray head). Either way the service never runs a caller's
command: the entrypoint is always `<python> -m pipelines.cli.job_entry`, fed a validated spec.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from pipelines.specs.names import (
    JOB_KIND_ENV,
    JOB_SPEC_DIGEST_ENV,
    JOB_SPEC_ENV,
    PROGRESS_ENV,
    RESULT_MARKER,
)
from pipelines.specs.transport import encode_spec
from services.server.job_models import JobState
from services.server.log_lines import last_error_line  # noqa: F401 - its old home
from services.server.settings import ServiceSettings

ENTRY_MODULE = "pipelines.cli.job_entry"


class BackendUnavailable(RuntimeError):
    """The backend that runs jobs cannot be reached."""


class JobLogsMissing(LookupError):
    """The backend is up but holds no such job: its cluster was restarted since, or the job
    never reached it."""

    @classmethod
    def of(cls, submission_id: str) -> JobLogsMissing:
        return cls(
            f"the job runner no longer holds {submission_id} or its logs (it was restarted "
            "since the job ran); the job's MLflow runs keep its results"
        )


@dataclass
class BackendJobStatus:
    state: JobState | None  # None: the backend has no record of the job
    message: str | None


class JobBackend(Protocol):
    url: str

    def reachable(self) -> bool: ...

    def health(self) -> str:
        """ "ok" when a job submitted now would be accepted, else one sentence why not."""
        ...

    def submit(self, *, submission_id: str, kind: str, spec: dict) -> None: ...

    def status(self, submission_id: str) -> BackendJobStatus: ...

    def logs(self, submission_id: str) -> str: ...

    def tail_logs(self, submission_id: str, lines: int, max_bytes: int) -> str:
        """The last `lines` lines, reading at most `max_bytes` where the backend can seek."""
        ...

    def follow_logs(self, submission_id: str) -> AsyncIterator[str]: ...

    def stop(self, submission_id: str) -> None: ...


JOB_STOP_GRACE_SECONDS = 30


def job_environment(
    settings: ServiceSettings, *, submission_id: str, kind: str, spec: dict
) -> dict[str, str]:
    """The entrypoint's whole configuration: the job, where its results go and the roots its
    paths must lie in. The spec travels as base64 with its digest (Ray expands `${VAR}` in
    env vars; base64 holds no `$`). Nothing secret goes here: the settings refuse a tracking
    URI with a password, and the API token and job-store URL are never copied."""
    encoded, digest = encode_spec(spec)
    confinement = settings.confinement()
    env = {
        "SELFIE_SUBMISSION_ID": submission_id,
        JOB_KIND_ENV: kind,
        JOB_SPEC_ENV: encoded,
        JOB_SPEC_DIGEST_ENV: digest,
        "SELFIE_WORKDIR": str(settings.resolved_workdir),
        "SELFIE_DATA_ROOTS": ",".join(confinement.roots),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PYTHONUNBUFFERED": "1",
        PROGRESS_ENV: "1",  # the live view (`selfie logs -f`) reads these lines
        # Ray's job supervisor reads this from the job's env: how long a cancelled job has
        # between SIGTERM and SIGKILL (Ray's default, 3 s, cuts off the runner marking the
        # MLflow run KILLED and Tune saving its state).
        "RAY_JOB_STOP_WAIT_TIME_S": str(JOB_STOP_GRACE_SECONDS),
    }
    if confinement.url_prefixes:
        env["SELFIE_ALLOWED_URL_PREFIXES"] = ",".join(confinement.url_prefixes)
    if settings.storage_path:
        env["SELFIE_STORAGE_PATH"] = settings.storage_path
    return env


def parse_result(logs: str) -> dict | None:
    """The job's result: the JSON after the last `SELFIE_RESULT ` line it printed."""
    for line in reversed(logs.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                return json.loads(line[len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                return None
    return None
