"""The one settings object: where work lands and which Ray, MLflow and database to use.

Every field reads an environment variable with the `SELFIE_` prefix; the standard
`RAY_ADDRESS` and `MLFLOW_TRACKING_URI` variables are honoured as their users expect.
Unset, everything is embedded under the work dir: a local Ray, MLflow on SQLite.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.errors import SelfieError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SELFIE_", extra="ignore")

    workdir: Path = Field(default=Path("work"), description="Root for runs, stores and results.")
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SELFIE_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Ray cluster to join; unset starts a local Ray sized to this machine.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SELFIE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking server or database; unset uses SQLite in the work dir.",
    )
    storage_path: str | None = Field(
        default=None,
        description="Ray Train storage (checkpoints): a shared path or s3:// URI on a cluster.",
    )
    ray_object_store_mb: int = Field(
        default=512, description="Object store size for a local Ray (the default reserves GBs)."
    )

    # The control service and its clients.
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
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders job specs may read data from (comma-separated); default: work dir.",
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
    server_url: str = Field(default="http://127.0.0.1:8000", description="For the CLI client.")

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @property
    def resolved_data_roots(self) -> list[Path]:
        roots = self.data_roots or [self.workdir]
        return [r.expanduser().resolve() for r in roots]

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

    @property
    def resolved_workdir(self) -> Path:
        return self.workdir.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.resolved_workdir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.resolved_workdir / "mlartifacts").as_uri()

    @property
    def resolved_storage_path(self) -> str:
        return self.storage_path or str(self.resolved_workdir / "ray_results")


@lru_cache
def get_settings() -> Settings:
    return Settings()
