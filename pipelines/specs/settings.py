"""The pipelines' settings: where work lands and which Ray and MLflow to use (the control
service extends them with its own, in `services.server.settings`).

Every field reads an environment variable with the `SELFIE_` prefix; the standard
`RAY_ADDRESS` and `MLFLOW_TRACKING_URI` variables are honoured as their users expect.
Unset, everything is embedded under the work dir: a local Ray, MLflow on SQLite.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
