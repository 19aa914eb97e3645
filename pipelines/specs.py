"""Job specs: one pydantic model per kind of job, shared by the CLI, the REST API and the
job entrypoints. Imports neither torch nor Ray, so the control service can validate specs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfie_core.presets import PRESETS

MANIFEST_NAME = "manifest.json"
S = TypeVar("S", bound=BaseModel)


class SpecError(ValueError):
    """A spec that cannot run; the message says what to change."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimSpec(_Spec):
    """AdamW with linear warmup then cosine decay to `min_lr_ratio` of the peak."""

    lr: float = Field(default=2e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.05, ge=0, le=1)
    warmup_steps: int = Field(default=50, ge=0, le=1_000_000)
    min_lr_ratio: float = Field(default=0.05, ge=0, le=1)
    grad_clip: float | None = Field(default=1.0, gt=0)


class PretrainSpec(_Spec):
    """One Selfie pretraining run on Ray Train."""

    kind: Literal["pretrain"] = "pretrain"
    data: str = Field(description="Ingested data dir (holds manifest.json and train/ shards).")
    preset: str = Field(default="tiny", description=f"Model size: {', '.join(PRESETS)}.")
    image_size: int | None = Field(
        default=None, gt=0, le=1024, description="Defaults to the manifest's image size."
    )
    patch_size: int | None = Field(
        default=None, gt=0, le=512, description="Defaults to 8 for <=64px images, else 32."
    )
    mask_fraction: float = Field(default=0.25, gt=0, lt=1)
    pos_on_visible: bool = True
    workers: int = Field(default=1, ge=1, le=1024)
    cpus_per_worker: int | None = Field(
        default=None, ge=1, le=256, description="Default: the cluster's CPUs / workers."
    )
    use_gpu: bool = False
    batch_size: int = Field(default=64, ge=2, le=65536, description="Per worker.")
    epochs: int = Field(default=1, ge=1, le=10_000)
    max_steps: int | None = Field(default=None, ge=1, description="Stop early after this many.")
    loader_workers: int = Field(default=1, ge=0, le=64)
    optim: OptimSpec = OptimSpec()
    seed: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(default=100, ge=1, description="Steps between checkpoints.")
    max_failures: int = Field(default=3, ge=0, le=100, description="Worker losses to survive.")
    run_name: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = Field(default="selfie-pretrain", min_length=1, max_length=200)
    storage_path: str | None = Field(default=None, description="Overrides settings.storage_path.")
    register_model: str | None = Field(
        default="selfie-encoder", description="Registered model name for the encoder; null skips."
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}: choose one of {', '.join(PRESETS)}")
        return value

    @model_validator(mode="after")
    def _geometry(self) -> PretrainSpec:
        if self.image_size and self.patch_size and self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}"
            )
        return self

    def data_dir(self) -> Path:
        return Path(self.data).expanduser()

    def check_paths(self) -> None:
        """Filesystem checks, kept out of validation so a remote service can validate specs."""
        manifest = self.data_dir() / MANIFEST_NAME
        if not manifest.is_file():
            raise SpecError(
                f"data dir {self.data!r} has no {MANIFEST_NAME}: run `selfie ingest` into it first"
            )


def load_spec_file(path: str | Path) -> dict:
    """Read a YAML or JSON spec file into a dict, with a one-sentence error when unreadable."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec file {str(p)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"spec file {str(p)!r} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"spec file {str(p)!r} must hold a mapping of fields")
    return data


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic error as one sentence naming the field."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "spec"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def build_spec(model: type[S], data: dict) -> S:
    """Validate `data` into `model`, turning pydantic's report into a one-sentence SpecError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid {model.__name__}: {describe_validation_error(exc)}") from None
