"""The pipelines' settings: where work lands and which Ray and MLflow to use (the control
service extends them with its own, in `services.server.settings`).

Every field reads an environment variable with the `SELFIE_` prefix; the standard
`RAY_ADDRESS` and `MLFLOW_TRACKING_URI` variables are honoured as their users expect.
Unset, everything is embedded under the work dir: a local Ray, MLflow on SQLite.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.specs.errors import SelfieError
from pipelines.specs.paths import Confinement


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


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
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders job specs may read and write (comma-separated). A job started by "
        "the service always gets them; unset in a terminal, your own paths are not confined.",
    )
    allowed_url_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL prefixes a spec's storage_path may name (comma-separated, e.g. "
        "s3://bucket/selfie/); none by default.",
    )

    _split_lists = field_validator("data_roots", "allowed_url_prefixes", mode="before")(_comma_list)

    @model_validator(mode="after")
    def _no_password_in_tracking_uri(self) -> Settings:
        """The tracking URI is copied into every job's environment and worker config, where
        anyone who can read a job's settings would read a password in it."""
        if self.mlflow_tracking_uri and urlsplit(self.mlflow_tracking_uri).password:
            raise SelfieError(
                "MLFLOW_TRACKING_URI holds a password, which would be copied into every job's "
                "environment: drop user:password@ from it and set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD in the environment of the service and cluster nodes"
            )
        return self

    def confinement(self) -> Confinement | None:
        """The roots a job's paths must lie in; None (no SELFIE_DATA_ROOTS, a terminal): the
        user's own paths, unconfined."""
        if not self.data_roots:
            return None
        return Confinement.of(self.data_roots, self.allowed_url_prefixes)

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

    def run_storage(self, storage_path: str | None, experiment: str) -> str:
        """Where Ray Train and Tune keep an experiment's run folders: one folder per
        experiment under the storage (the spec's, else the settings'), because Ray names a
        run's folder by the run name alone, and the same name in two experiments (two users'
        runs) must never share, overwrite or resume the other's state. Experiment names are
        refused with separators or `..` (specs/names), so this stays one folder deep."""
        return f"{(storage_path or self.resolved_storage_path).rstrip('/')}/{experiment}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
