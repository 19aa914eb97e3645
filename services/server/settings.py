"""The control service's settings: the pipelines' settings (work dir, Ray, MLflow) plus
what only the service and its clients need (token, job store, data roots, Ray Jobs URL)."""

from __future__ import annotations

import contextlib
import os
import secrets
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr

from pipelines.specs.errors import SelfieError
from pipelines.specs.paths import Confinement
from pipelines.specs.settings import Settings
from services.server.store_files import write_private_file

MIN_SECRET_CHARS = 32
# Every secret value our manifests, docs or tests have ever shipped: production refuses them.
SHIPPED_SECRETS = frozenset(
    {"change-me", "changeme", "change_me", "secret", "token", "test-token-abc123", "..."}
)


class ServiceSettings(Settings):
    environment: Literal["development", "production"] = Field(
        default="development", description="production refuses to run without SELFIE_API_TOKEN."
    )
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the REST API (development: generated)."
    )
    database_url: str | None = Field(
        default=None, description="Job store; unset uses SQLite in the work dir (or Postgres URL)."
    )
    ray_dashboard_url: str | None = Field(
        default=None,
        description="Ray Jobs endpoint (http://head:8265); unset starts a local Ray head.",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    job_python: str | None = Field(
        default=None, description="Python that runs jobs on the cluster (default: this one)."
    )
    reconcile_seconds: float = Field(default=2.0, gt=0)
    driver_resource: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Custom Ray resource every job driver asks 1 of (e.g. selfie_driver), so "
        "drivers run on the nodes that carry it, not on the head; unset: any node with a CPU.",
    )
    job_backend: Literal["ray", "local"] = Field(
        default="ray",
        description="ray: Ray Jobs on the cluster; local: jobs as child processes of the "
        "service (no Ray Jobs; for development and tests).",
    )
    server_url: str = Field(default="http://127.0.0.1:8000", description="For the CLI client.")

    # Limits, sized for a team of ~10 sharing a cluster of a few 8-GPU nodes. Each is checked
    # when a job is submitted and refused with a 422 naming the limit and its setting.
    max_unfinished_jobs_per_user: int = Field(
        default=5, ge=1, description="PENDING or RUNNING jobs one user may have at once."
    )
    max_sweep_trials: int = Field(
        default=2000, ge=1, description="Trials one sweep (or a pipeline's sweep) may run."
    )
    max_steps: int = Field(
        default=1_000_000, ge=1, description="Optimizer steps a pretraining or a trial may ask."
    )
    max_epochs: int = Field(
        default=1000, ge=1, description="Epochs a pretraining or trial may ask."
    )
    max_workers: int = Field(
        default=64, ge=1, description="Ray Train workers per pretraining or per sweep trial."
    )
    max_synthetic_mb: int = Field(
        default=2048, ge=1, description="Pixels a synthetic ingest source may generate (MB)."
    )
    max_log_tail_bytes: int = Field(
        default=8 * 1024 * 1024, ge=4096, description="Bytes of log end a `tail` reads at most."
    )
    follow_idle_seconds: float = Field(
        default=600.0, gt=0, description="A log follow with no new output this long ends."
    )

    def confinement(self) -> Confinement:
        """The service always confines its jobs: to SELFIE_DATA_ROOTS, default the work dir."""
        return Confinement.of(self.data_roots or [self.workdir], self.allowed_url_prefixes)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_workdir / 'jobs.db'}"

    def resolved_api_token(self) -> str:
        """The bootstrap admin key; in development one is generated once into the work dir
        (created 0600, never readable by others even for an instant)."""
        if self.api_token is not None:
            token = self.api_token.get_secret_value()
            if self.environment == "production":
                check_secret("SELFIE_API_TOKEN", token)
            return token
        if self.environment == "production":
            raise SelfieError("SELFIE_API_TOKEN must be set when SELFIE_ENVIRONMENT=production")
        path = self.resolved_workdir / "api_token"
        if not path.is_file():
            # FileExistsError: another process made it first; read theirs.
            with contextlib.suppress(FileExistsError):
                write_private_file(path, secrets.token_urlsafe(32))
        return path.read_text().strip()

    def check_secrets(self) -> None:
        """In production: the API token and Ray's token are strong, not shipped defaults, and
        not the same secret (one token must not be both every user and Ray's admin)."""
        api = self.resolved_api_token()
        ray = os.environ.get("RAY_AUTH_TOKEN")
        if self.environment != "production" or not ray:
            return
        check_secret("RAY_AUTH_TOKEN", ray)
        if secrets.compare_digest(ray.encode(), api.encode()):
            raise SelfieError(
                "RAY_AUTH_TOKEN equals SELFIE_API_TOKEN: give Ray its own secret, or every API "
                "user holds Ray's admin token"
            )


def check_secret(name: str, value: str) -> None:
    """Refuse a weak production secret in one sentence (without echoing it)."""
    if value.strip().lower() in SHIPPED_SECRETS:
        raise SelfieError(
            f"{name} is a shipped placeholder: set it to a random secret, e.g. "
            "`openssl rand -hex 32`"
        )
    if len(value) < MIN_SECRET_CHARS:
        raise SelfieError(
            f"{name} has {len(value)} characters; production needs at least "
            f"{MIN_SECRET_CHARS}: use e.g. `openssl rand -hex 32`"
        )


@lru_cache
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()
