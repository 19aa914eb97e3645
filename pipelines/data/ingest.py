"""`selfie ingest`: a source in, `train/ val/ test/` shard sets and `manifest.json` out.

New shards are written into a staging folder and moved into place only when every split
is complete; the manifest is written last and atomically. A failed or refused ingest
leaves whatever the output dir held before untouched.
"""

from __future__ import annotations

import glob
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.data.images import decode_png, encode_png, to_square
from pipelines.data.manifest import (
    SPLITS,
    Manifest,
    ShardInfo,
    SkippedItem,
    sha256_file,
    write_manifest_atomically,
)
from pipelines.data.shard_io import ShardReadError, image_bytes, iter_shard, write_shards
from pipelines.data.sources import Entry, EntryError, SourceError, open_source
from pipelines.errors import SelfieError
from pipelines.specs import MANIFEST_NAME, IngestSpec


class IngestError(SelfieError):
    """Ingest stopped; nothing in the output dir was changed."""


Progress = Callable[[int], None]


def stratified_split(
    entries: list[Entry], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[Entry]]:
    """Source test split kept; the rest split per class, seeded, then shuffled per split."""
    rng = np.random.default_rng(seed)
    own_test = [e for e in entries if e.split == "test"]
    rest = [e for e in entries if e.split != "test"]
    take_test = 0.0 if own_test else test_fraction
    out: dict[str, list[Entry]] = {"train": [], "val": [], "test": list(own_test)}
    labels = np.array([e.label for e in rest])
    for cls in np.unique(labels):
        members = [rest[i] for i in rng.permutation(np.flatnonzero(labels == cls))]
        n_val = round(len(members) * val_fraction)
        n_test = round(len(members) * take_test)
        out["val"] += members[:n_val]
        out["test"] += members[n_val : n_val + n_test]
        out["train"] += members[n_val + n_test :]
    for split, items in out.items():
        out[split] = [items[i] for i in rng.permutation(len(items))]
    return out


class _Stats:
    """Per-channel running sums over training pixels (scaled to [0, 1])."""

    def __init__(self) -> None:
        self.sum = np.zeros(3)
        self.sq = np.zeros(3)
        self.n = 0

    def add(self, pixels: np.ndarray) -> None:
        x = pixels.reshape(-1, pixels.shape[-1] if pixels.ndim == 3 else 1) / 255.0
        if x.shape[1] == 1:
            x = np.repeat(x, 3, axis=1)
        self.sum += x.sum(0)
        self.sq += (x**2).sum(0)
        self.n += x.shape[0]

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sum / max(self.n, 1)
        std = np.sqrt(np.maximum(self.sq / max(self.n, 1) - mean**2, 1e-12))
        return mean.tolist(), std.tolist()


def _refuse_existing(opts: IngestSpec) -> None:
    existing = [n for n in (MANIFEST_NAME, *SPLITS) if (opts.out_dir() / n).exists()]
    if existing and not opts.overwrite:
        raise IngestError(
            f"{str(opts.out_dir())!r} already holds ingested data ({', '.join(existing)}): "
            "pass --overwrite to replace it or choose another --out"
        )


@dataclass
class IngestResult:
    """What an ingest made, small enough to print or return over REST."""

    out: str
    source: str
    counts: dict[str, int]
    classes: int
    image_size: int
    shards: dict[str, int]
    skipped: int

    @classmethod
    def of(cls, out: Path, manifest: Manifest) -> IngestResult:
        return cls(
            out=str(out),
            source=manifest.source,
            counts=manifest.counts,
            classes=len(manifest.class_names),
            image_size=manifest.image_size,
            shards={k: len(v) for k, v in manifest.shards.items()},
            skipped=len(manifest.skipped),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def run_ingest(spec: IngestSpec, settings: object = None, progress: Progress | None = None):
    """The job runner (see `JOB_KINDS`): ingest, then summarise."""
    return IngestResult.of(spec.out_dir(), ingest(spec, progress))


def ingest(opts: IngestSpec, progress: Progress | None = None) -> Manifest:
    """Run the whole ingest; return the manifest written."""
    _refuse_existing(opts)
    opts.out_dir().mkdir(parents=True, exist_ok=True)
    if opts.source.startswith("shards:"):
        return _index_shards(opts, progress)
    try:
        source = open_source(opts.source, opts.image_size, seed=opts.seed)
    except SourceError as exc:
        raise IngestError(str(exc)) from None
    skipped = [SkippedItem(item=i, reason=r) for i, r in source.problems]
    if skipped and opts.on_error == "fail":
        first = skipped[0]
        raise IngestError(
            f"{first.item}: {first.reason} ({len(skipped)} such problems); fix the source or "
            "re-run with --on-error skip"
        )
    if not source.entries:
        raise IngestError(f"source {opts.source!r} holds no images")
    image_size = opts.image_size or source.image_size
    splits = stratified_split(source.entries, opts.val_fraction, opts.test_fraction, opts.seed)
    staging = opts.out_dir() / f".staging-{uuid.uuid4().hex[:8]}"
    stats = _Stats()
    num_classes = len(source.class_names)
    class_counts = {s: [0] * num_classes for s in SPLITS}
    shards: dict[str, list[ShardInfo]] = {}

    def samples(split: str, entries: list[Entry]) -> Iterator[tuple[str, bytes, int]]:
        for i, entry in enumerate(entries):
            try:
                pixels = source.load(entry.ref)
            except EntryError as exc:
                if opts.on_error == "fail":
                    raise IngestError(f"{exc}; re-run with --on-error skip to skip it") from None
                skipped.append(SkippedItem(item=source.describe(entry.ref), reason=str(exc)))
                continue
            if pixels.shape[0] != image_size or pixels.shape[1] != image_size:
                pixels = np.asarray(to_square(Image.fromarray(pixels), image_size))
            if split == "train":
                stats.add(pixels)
            class_counts[split][entry.label] += 1
            if progress:
                progress(1)
            yield f"{split}-{i:08d}", encode_png(pixels), entry.label

    try:
        for split in SPLITS:
            shards[split] = write_shards(
                samples(split, splits[split]),
                staging / split,
                prefix=split,
                max_count=opts.shard_max_count,
                max_bytes=opts.shard_max_bytes,
                relative_to=staging,
            )
        if not shards["train"]:
            raise IngestError("no training images were left after skipping bad entries")
        mean, std = stats.mean_std()
        manifest = Manifest(
            source=source.spec,
            image_size=image_size,
            channels=source.channels,
            flip_ok=source.flip_ok,
            class_names=source.class_names,
            mean=mean,
            std=std,
            counts={s: sum(class_counts[s]) for s in SPLITS},
            class_counts=class_counts,
            shards=shards,
            skipped=skipped,
        )
        _swap_into_place(staging, opts.out_dir())
        write_manifest_atomically(opts.out_dir(), manifest)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, out: Path) -> None:
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for split in SPLITS:
        target = out / split
        if target.exists():
            shutil.rmtree(target)
        src = staging / split
        if src.exists():
            src.rename(target)
        else:
            target.mkdir()


def _index_shards(opts: IngestSpec, progress: Progress | None) -> Manifest:
    """Validate existing shards and write a manifest that points at them where they lie.

    The pattern may hold `{split}` (e.g. `/data/{split}-*.tar`) to name train/val/test sets;
    without it every matching shard is training data.
    """
    pattern = opts.source.removeprefix("shards:")
    if "{split}" in pattern:
        found = {s: sorted(glob.glob(pattern.replace("{split}", s))) for s in SPLITS}
    else:
        found = {"train": sorted(glob.glob(pattern)), "val": [], "test": []}
    if not found["train"]:
        raise IngestError(f"no training shards match {pattern!r}")
    skipped: list[SkippedItem] = []
    labels_seen: dict[str, list[int]] = {s: [] for s in SPLITS}
    shards: dict[str, list[ShardInfo]] = {s: [] for s in SPLITS}
    stats = _Stats()
    image_size: int | None = None
    channels = 3
    for split, paths in found.items():
        for path in paths:
            count = 0
            try:
                for key, fields in iter_shard(path):
                    problem = None
                    img = image_bytes(fields)
                    if img is None or "cls" not in fields:
                        problem = "sample lacks an image or a cls label"
                    else:
                        try:
                            pixels = decode_png(img)
                            label = int(fields["cls"].decode().strip())
                        except (OSError, ValueError) as exc:
                            problem = f"cannot decode ({exc})"
                    if problem is None:
                        size = pixels.shape[0]
                        if pixels.shape[1] != size or (image_size and size != image_size):
                            problem = (
                                f"image is {pixels.shape[1]}x{pixels.shape[0]}, "
                                f"expected square {image_size}"
                            )
                    if problem:
                        if opts.on_error == "fail":
                            raise IngestError(
                                f"{path}:{key}: {problem}; re-run with --on-error skip"
                            )
                        skipped.append(SkippedItem(item=f"{path}:{key}", reason=problem))
                        continue
                    image_size = image_size or size
                    if split == "train":
                        stats.add(pixels)
                    labels_seen[split].append(label)
                    count += 1
                    if progress:
                        progress(1)
            except ShardReadError as exc:
                if opts.on_error == "fail":
                    raise IngestError(str(exc)) from None
                skipped.append(SkippedItem(item=path, reason=str(exc)))
                continue
            p = Path(path).resolve()
            shards[split].append(
                ShardInfo(path=str(p), count=count, bytes=p.stat().st_size, sha256=sha256_file(p))
            )
    if image_size is None:
        raise IngestError(f"shards matching {pattern!r} hold no usable samples")
    num_classes = max(max(v) for v in labels_seen.values() if v) + 1
    class_counts = {
        s: np.bincount(np.asarray(v, dtype=int), minlength=num_classes).tolist()
        for s, v in labels_seen.items()
    }
    mean, std = stats.mean_std()
    manifest = Manifest(
        source=opts.source,
        image_size=image_size,
        channels=channels,
        flip_ok=True,
        class_names=[str(c) for c in range(num_classes)],
        mean=mean,
        std=std,
        counts={s: len(v) for s, v in labels_seen.items()},
        class_counts=class_counts,
        shards=shards,
        skipped=skipped,
    )
    write_manifest_atomically(opts.out_dir(), manifest)
    return manifest
