"""What every spec shares: the base model, path and preset types, the pretrained-weights
reference, and one-sentence validation errors. Imports neither torch nor Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from pipelines.specs.errors import SelfieError
from pipelines.specs.paths import LocalPath
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


def _path_as_text(value: object) -> object:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# A file-system path as the user typed it (or a Path, from Python): never empty, never with
# bytes the OS refuses; its LocalPath marker holds it to the data roots (see `paths`).
PathText = Annotated[
    str,
    BeforeValidator(_path_as_text),
    Field(min_length=1, max_length=4096),
    AfterValidator(_plain_path),
    LocalPath(),
]

# Checkpoint storage: a path, or a URL (s3://...) where the operator allows its prefix.
StoragePath = Annotated[PathText, LocalPath(url=True)]


def _plain_name(value: str) -> str:
    """Names end up in folder names, MLflow and environments: nothing there may expand,
    climb or split them."""
    bad = next((ch for ch in value if ch in "$`{}/\\" or ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ValueError(
            f"a name may not hold {bad!r} (no $, backquote, braces, slashes or control "
            "characters): use letters, digits, spaces, '-', '_' and '.'"
        )
    if value.strip(" .") == "":
        raise ValueError("a name must hold more than dots and spaces")
    return value


NameText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_plain_name)]


class SpecError(SelfieError):
    """A spec that cannot run; the message says what to change."""


class Spec(BaseModel):
    """Base of every spec and spec section: unknown fields are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that once existed, each with what replaces it: a config or job record written
    # before is told that in one sentence, not "extra inputs are not permitted".
    retired_fields: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_retired(cls, data: object) -> object:
        if isinstance(data, dict):
            for name, instead in cls.retired_fields.items():
                if name in data:
                    raise ValueError(f"{name} is no longer a field: {instead}")
        return data


RunName = Annotated[NameText, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
ExperimentName = NameText

_RUN_ID = r"^[0-9a-f]{32}$"


class RunWeights(Spec):
    """The encoder logged by an MLflow run (its `encoder/encoder.pt` artifact)."""

    run_id: str = Field(pattern=_RUN_ID, description="MLflow run id (32 hex digits).")


class FileWeights(Spec):
    """An `encoder.pt`, or a pretraining result folder (holding result.json)."""

    path: PathText = Field(description="encoder.pt or a pretraining result folder.")


def _weights_shorthand(value: object) -> object:
    """`runs:/ID` or a bare 32-hex id names a run; any other string is a path."""
    if isinstance(value, str):
        text = value.removeprefix("runs:/").strip("/")
        if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
            return {"run_id": text}
        return {"path": value}
    return value


class DataSpec(Spec):
    """A spec that reads an ingested data dir."""

    data: PathText = Field(description="Ingested data dir (holds manifest.json and the shards).")

    def data_dir(self) -> Path:
        return Path(self.data).expanduser()

    def check_paths(self) -> None:
        """Filesystem checks, kept out of validation so a remote service can validate specs."""
        if not (self.data_dir() / MANIFEST_NAME).is_file():
            raise SpecError(
                f"data dir {self.data!r} has no {MANIFEST_NAME}: run `selfie ingest` into it first"
            )


class TrackedRunSpec(Spec):
    """Where a job's MLflow run goes and whether it continues a stopped one."""

    experiment: ExperimentName = Field(description="MLflow experiment.")
    run_name: RunName | None = Field(default=None, description="Run name (default: generated).")
    resume: bool = Field(
        default=False, description="Continue the stopped run named run_name instead of a new one."
    )

    @model_validator(mode="after")
    def _resume_needs_name(self) -> TrackedRunSpec:
        if self.resume and not self.run_name:
            raise ValueError("resume needs run_name: the name of the stopped run to continue")
        return self


JpegDecode = Annotated[
    Literal["auto", "cpu", "device"],
    Field(
        description="Where JPEGs of large images are decoded: auto (the loader processes; "
        "nvJPEG on a GPU only for torch/torchvision releases proven by `selfie bench gpu`), "
        "cpu, or device."
    ),
]
"""Where training decodes JPEGs of large images: `auto` in the loader processes unless
training runs on a GPU and this torch/torchvision pair is listed as proven
(`pipelines.data.device_decode.PROVEN_DEVICE_DECODE`); `cpu` always in the loader processes;
`device` on the training device whatever it is."""

CompileChoice = Annotated[
    bool | Literal["auto"],
    Field(
        description="Run the model under torch.compile: auto (on a GPU yes, on a CPU no), "
        "true or false."
    ),
]
"""Whether training compiles its model; resolved for the device by
`pipelines.training.compile.resolve_compile` (pretraining and finetune trials alike)."""

PretrainedWeights = Annotated[RunWeights | FileWeights, BeforeValidator(_weights_shorthand)]
"""Where pretrained weights come from: an MLflow run or a file, never guessed from text
later on. YAML and the CLI may give either as one string (`runs:/ID`, an id, or a path)."""


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
