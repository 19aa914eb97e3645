"""How an ingest's output lands: everything is written into a staging folder inside the
output dir, swapped into place only when complete, and the manifest is written last and
atomically. A failed or refused ingest leaves whatever the output dir held untouched."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pipelines.data.labels import LABELS_DIR, write_labels
from pipelines.data.manifest import SPLITS, ShardInfo, sha256_file
from pipelines.specs import MANIFEST_NAME
from pipelines.specs.errors import SelfieError


class IngestError(SelfieError):
    """Ingest stopped; nothing in the output dir was changed."""


def refuse_existing(out: Path, overwrite: bool) -> None:
    existing = [n for n in (MANIFEST_NAME, *SPLITS, LABELS_DIR) if (out / n).exists()]
    if existing and not overwrite:
        raise IngestError(
            f"{str(out)!r} already holds ingested data ({', '.join(existing)}): "
            "pass --overwrite to replace it or choose another --out"
        )


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh folder beside the output, removed afterwards whatever happened."""
    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def stage_labels(staging: Path, split: str, labels: Sequence[int]) -> ShardInfo:
    """Write a split's labels sidecar into staging; its info (path relative to the data dir)."""
    path = write_labels(staging, split, labels)
    return ShardInfo(
        path=str(path.relative_to(staging)),
        count=len(labels),
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
    )


def swap_into_place(staging: Path, out: Path, names: Sequence[str]) -> None:
    """Replace `out/<name>` by `staging/<name>` for each name (an empty folder if not staged).

    The manifest goes first, so a crash half-way leaves a dir that says it is incomplete.
    """
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for name in names:
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        src = staging / name
        if src.exists():
            src.rename(target)
        else:
            target.mkdir()
