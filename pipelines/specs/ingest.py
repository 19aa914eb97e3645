"""The ingest spec: a source of images in, WebDataset shards and a manifest out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.specs.common import PathText, Spec
from pipelines.specs.paths import LocalPath

OnError = Literal["fail", "skip"]
Reencode = Literal["keep", "jpeg", "png"]


PATH_SOURCES = ("imagefolder:", "cifar10:", "shards:")


def source_path(source: str) -> str | None:
    """The file-system part of a source (`shards:/data/{split}-*.tar` -> `/data/{split}-*.tar`),
    if it has one; its wildcards and `{split}` are expanded by the confinement check."""
    for prefix in PATH_SOURCES:
        if source.startswith(prefix):
            return source.removeprefix(prefix) or "."
    return None


# An ingest source: its path part (if any) is held to the data roots like any path field.
SourceText = Annotated[
    str, Field(min_length=1, max_length=4096), LocalPath(locate=source_path, pattern=True)
]


class IngestOptions(Spec):
    """How a source becomes shards; the part of ingest a pipeline can set."""

    val_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Share of each class held out for validation."
    )
    test_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share held out for test when the source has no test split of its own.",
    )
    image_size: int | None = Field(
        default=None,
        gt=0,
        le=4096,
        description="Resize the shorter side and centre-crop to this square side (re-encodes; "
        "for small-image sources). Unset: image files keep their own sizes and bytes.",
    )
    resize: int | None = Field(
        default=None,
        gt=0,
        le=8192,
        description="Resize the shorter side to this many px, keeping the aspect (re-encodes).",
    )
    reencode: Reencode = Field(
        default="keep",
        description="keep: store JPEG/PNG/WebP files byte for byte (when resized, JPEG stays "
        "JPEG, the rest becomes PNG); jpeg or png: store every image in that format.",
    )
    jpeg_quality: int = Field(
        default=90, ge=1, le=100, description="JPEG quality when images are encoded as JPEG."
    )
    workers: int | None = Field(
        default=None, ge=1, le=1024, description="Processes writing shards (default: CPU count)."
    )
    stats_sample: int = Field(
        default=2000,
        ge=1,
        description="Training images (seeded sample) the per-channel mean/std are taken from.",
    )
    shard_max_count: int = Field(default=1000, ge=1, description="Samples per shard at most.")
    shard_max_mb: float = Field(
        default=256.0,
        ge=0.001,
        description="MB of source image files a shard holds at most (a re-encoded shard may "
        "differ).",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the stratified split and shuffles.")
    on_error: OnError = Field(
        default="fail", description="fail: stop at a bad image; skip: count it and go on."
    )

    @model_validator(mode="after")
    def _some_training(self) -> IngestOptions:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave some images for training")
        if self.image_size and self.resize:
            raise ValueError("give image_size (square crop) or resize (shorter side), not both")
        return self

    @property
    def shard_max_bytes(self) -> int:
        return int(self.shard_max_mb * 1024 * 1024)


class IngestSpec(IngestOptions):
    """One ingest: `source` into the data dir `out`."""

    kind: Literal["ingest"] = "ingest"
    source: SourceText = Field(
        description="imagefolder:PATH, cifar10:PATH, mnist-sample, synthetic[:COUNT], "
        "shards:PATTERN",
    )
    out: PathText = Field(description="Output data dir (train/ val/ test/ + manifest.json).")
    overwrite: bool = Field(default=False, description="Replace data already ingested there.")

    def out_dir(self) -> Path:
        return Path(self.out).expanduser()
