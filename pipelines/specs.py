"""Job specs: one pydantic model per kind of job, shared by the CLI, the REST API and the
job entrypoints. Imports neither torch nor Ray, so the control service can validate specs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from selfie_core.presets import PRESETS

MANIFEST_NAME = "manifest.json"
S = TypeVar("S", bound=BaseModel)


def _known_preset(value: str) -> str:
    if value not in PRESETS:
        raise ValueError(f"unknown preset {value!r}: choose one of {', '.join(PRESETS)}")
    return value


PresetName = Annotated[str, AfterValidator(_known_preset)]


def _plain_path(value: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("a path may not hold control characters (NUL, newline, tab, ...)")
    return value


# A file-system path as the user typed it: never empty, never with bytes the OS refuses.
PathText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_plain_path)]


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
    data: PathText = Field(description="Ingested data dir (holds manifest.json and train/ shards).")
    preset: PresetName = Field(default="tiny", description=f"Model size: {', '.join(PRESETS)}.")
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
    verify: bool = Field(default=False, description="Check shard checksums before training.")
    optim: OptimSpec = OptimSpec()
    seed: int = Field(default=0, ge=0)
    checkpoint_every: int = Field(default=100, ge=1, description="Steps between checkpoints.")
    max_failures: int = Field(default=3, ge=0, le=100, description="Worker losses to survive.")
    run_name: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    experiment: str = Field(default="selfie-pretrain", min_length=1, max_length=200)
    storage_path: PathText | None = Field(
        default=None, description="Overrides settings.storage_path."
    )
    register_model: str | None = Field(
        default="selfie-encoder", description="Registered model name for the encoder; null skips."
    )

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
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not first["loc"]:
        return f"{message}{more}"
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {message}{more}"


def build_spec(model: type[S], data: dict) -> S:
    """Validate `data` into `model`, turning pydantic's report into a one-sentence SpecError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid {model.__name__}: {describe_validation_error(exc)}") from None


EncoderName = Literal["resnet50", "hybrid"]
InitName = Literal["selfie", "scratch"]


class SearchSpec(_Spec):
    """The hyper-parameters searched, identically for both inits (a fair baseline)."""

    mode: Literal["grid", "random"] = "grid"
    lr: list[float] = Field(default=[3e-3, 1e-2], min_length=1, max_length=32)
    weight_decay: list[float] = Field(default=[0.05], min_length=1, max_length=32)
    num_samples: int = Field(default=4, ge=1, le=1000, description="Random mode: draws.")
    asha: bool = Field(default=False, description="Stop weak trials early (ASHA, on val).")

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, values: list[float]) -> list[float]:
        if any(v <= 0 or v > 10 for v in values):
            raise ValueError("every learning rate must lie in (0, 10]")
        return values

    @field_validator("weight_decay")
    @classmethod
    def _wd_range(cls, values: list[float]) -> list[float]:
        if any(v < 0 or v > 1 for v in values):
            raise ValueError("every weight decay must lie in [0, 1]")
        return values


class SweepSpec(_Spec):
    """Labeled-fraction finetune sweep: fraction x seed x init x searched hyper-parameters."""

    kind: Literal["sweep"] = "sweep"
    data: PathText = Field(description="Ingested data dir (train/val/test shards + manifest).")
    encoder: PathText | None = Field(
        default=None,
        description="Pretrained encoder: an MLflow run id, an encoder.pt, or a checkpoint dir.",
    )
    preset: PresetName = Field(default="tiny", description="Used only when no encoder is given.")
    encoders: list[EncoderName] = Field(default=["resnet50", "hybrid"], min_length=1)
    inits: list[InitName] = Field(default=["scratch", "selfie"], min_length=1)
    fractions: list[float] = Field(default=[0.05, 0.1, 0.2, 1.0], min_length=1, max_length=32)
    seeds: int = Field(default=3, ge=1, le=100, description="Seeds 0..seeds-1 per cell.")
    search: SearchSpec = SearchSpec()
    epochs: int = Field(default=15, ge=1, le=10_000)
    min_steps_per_epoch: int = Field(
        default=10, ge=1, le=100_000, description="Small subsets are sampled up to this."
    )
    batch_size: int = Field(default=64, ge=2, le=65536)
    warmup_epochs: int = Field(default=1, ge=0, le=1000)
    verify: bool = Field(default=False, description="Check shard checksums before the sweep.")
    cpus_per_trial: int = Field(default=1, ge=1, le=256)
    gpus_per_trial: float = Field(default=0, ge=0, le=16)
    max_concurrent: int | None = Field(default=None, ge=1, le=10_000)
    trial_max_failures: int = Field(default=1, ge=0, le=10, description="Retries of a crash.")
    experiment: str = Field(default="selfie-sweep", min_length=1, max_length=200)
    run_name: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: PathText | None = None

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"labeled fractions must lie in (0, 1], got {bad[0]}")
        return sorted(set(values))

    @model_validator(mode="after")
    def _encoder_needed(self) -> SweepSpec:
        if "selfie" in self.inits and not self.encoder:
            raise ValueError("init 'selfie' needs an encoder: set encoder to a run id or file")
        return self

    def data_dir(self) -> Path:
        return Path(self.data).expanduser()

    def check_paths(self) -> None:
        if not (self.data_dir() / MANIFEST_NAME).is_file():
            raise SpecError(
                f"data dir {self.data!r} has no {MANIFEST_NAME}: run `selfie ingest` into it first"
            )


class PipelineSpec(_Spec):
    """Ingest (when the data dir has no manifest), pretrain, sweep and report, as one run.

    `pretrain` and `sweep` take the fields of their specs except `data` (and the sweep's
    `encoder`, which is the pretraining's result).
    """

    kind: Literal["pipeline"] = "pipeline"
    data: PathText = Field(description="Data dir; ingested from `source` when it has no manifest.")
    source: str | None = Field(default=None, description="Ingest source, e.g. mnist-sample.")
    pretrain: dict = Field(default_factory=dict)
    sweep: dict = Field(default_factory=dict)
    experiment: str = Field(default="selfie-pipeline", min_length=1, max_length=200)
    run_name: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _parts_valid(self) -> PipelineSpec:
        for name in ("data", "encoder", "experiment"):
            if name in self.pretrain or name in self.sweep:
                raise ValueError(f"pipeline sets {name!r} itself: remove it from pretrain/sweep")
        for part, build in (("pretrain", self.pretrain_spec), ("sweep", self.sweep_spec)):
            try:
                build()
            except ValidationError as exc:
                raise ValueError(f"{part}.{describe_validation_error(exc)}") from None
        return self

    def pretrain_spec(self, **extra) -> PretrainSpec:
        return PretrainSpec.model_validate(
            {**self.pretrain, "data": self.data, "experiment": self.experiment, **extra}
        )

    def sweep_spec(self, encoder: str = "from-pretraining", **extra) -> SweepSpec:
        return SweepSpec.model_validate(
            {**self.sweep, "data": self.data, "encoder": encoder, "experiment": self.experiment}
            | extra
        )


JobSpec = PretrainSpec | SweepSpec | PipelineSpec
