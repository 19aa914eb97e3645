"""`manifest.json`: what an ingested data dir holds. Written last and atomically by ingest,
so a dir with a manifest is complete and a dir without one is not to be trusted."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from pipelines.specs import MANIFEST_NAME
from pipelines.specs.errors import DataError
from pipelines.specs.paths import check_inside
from pipelines.specs.settings import get_settings

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


class ShardInfo(BaseModel):
    path: str = Field(
        description="Relative to the data dir, or absolute for shards indexed in place."
    )
    count: int
    bytes: int
    sha256: str


class SkippedItem(BaseModel):
    item: str
    reason: str


class Manifest(BaseModel):
    format_version: int = 2
    source: str
    image_size: int | None = Field(
        default=None,
        description="Side of the square images stored; None: varied sizes, kept as stored "
        "(the model's image size comes from the pretrain/sweep spec).",
    )
    channels: int = Field(description="Channels stored; the loader always yields 3.")
    flip_ok: bool = Field(description="Horizontal flips keep the meaning (not for digits).")
    class_names: list[str]
    mean: list[float]
    std: list[float]
    counts: dict[str, int]
    class_counts: dict[str, list[int]]
    shards: dict[str, list[ShardInfo]]
    skipped: list[SkippedItem] = []
    labels: dict[str, ShardInfo] = Field(
        default={},
        description="Per split, `labels/<split>.npy` (int32, one per sample in shard order).",
    )
    image_formats: dict[str, int] = Field(
        default={}, description="Samples stored per image extension (jpg, png, webp)."
    )
    stats_images: int = Field(default=0, description="Training images mean/std were taken from.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def digest(self) -> str:
        """Identifies the data exactly: a hash over the shard checksums and counts."""
        h = hashlib.sha256()
        for split in SPLITS:
            for shard in self.shards.get(split, []):
                h.update(f"{split}:{shard.sha256}:{shard.count};".encode())
        return h.hexdigest()

    def shard_paths(self, data_dir: Path, split: Split) -> list[str]:
        return [str(resolve(data_dir, s.path)) for s in self.shards.get(split, [])]


def resolve(data_dir: Path, path: str) -> Path:
    """A file the manifest names. A manifest is data a caller may have written, so in a job
    its paths are held to the data roots like the spec's own (absolute or with `..`)."""
    p = Path(path)
    found = p if p.is_absolute() else data_dir / p
    check_inside(str(found), "a shard named in the manifest", get_settings().confinement())
    return found


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(data_dir: str | Path) -> Manifest:
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(
            f"{str(data_dir)!r} has no {MANIFEST_NAME}: run `selfie ingest --out {data_dir}` first"
        )
    return Manifest.model_validate_json(path.read_text())


def write_manifest_atomically(data_dir: Path, manifest: Manifest) -> Path:
    target = data_dir / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".manifest-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(manifest.model_dump_json(indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def verify_shards(data_dir: Path, manifest: Manifest) -> None:
    """Raise naming the first shard (or labels file) whose bytes differ from its checksum."""
    for split in SPLITS:
        files = manifest.shards.get(split, [])
        if split in manifest.labels:
            files = [*files, manifest.labels[split]]
        for shard in files:
            path = resolve(data_dir, shard.path)
            if not path.is_file():
                raise DataError(f"shard {str(path)!r} named in the manifest is missing")
            if sha256_file(path) != shard.sha256:
                raise DataError(
                    f"shard {str(path)!r} does not match its manifest checksum: re-run ingest"
                )
