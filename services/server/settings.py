"""The control service's settings: the pipelines' settings (work dir, Ray, MLflow) plus
what only the service and its clients need (token, job store, data roots, Ray Jobs URL)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr

from pipelines.specs.errors import SelfieError
from pipelines.specs.paths import Confinement
from pipelines.specs.settings import Settings


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

    def confinement(self) -> Confinement:
        """The service always confines its jobs: to SELFIE_DATA_ROOTS, default the work dir."""
        return Confinement.of(self.data_roots or [self.workdir], self.allowed_url_prefixes)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_workdir / 'jobs.db'}"

    def resolved_api_token(self) -> str:
        """The API token; in development one is generated once into the work dir."""
        if self.api_token is not None:
            return self.api_token.get_secret_value()
        if self.environment == "production":
            raise SelfieError("SELFIE_API_TOKEN must be set when SELFIE_ENVIRONMENT=production")
        path = self.resolved_workdir / "api_token"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache
def get_service_settings() -> ServiceSettings:
    return ServiceSettings()
