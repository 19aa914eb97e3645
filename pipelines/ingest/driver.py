"""`selfie ingest`: a source in, `train/ val/ test/` shard sets, label sidecars and
`manifest.json` out.

Each split's entries are cut into contiguous chunks of at most `shard_max_count` samples (and
about `shard_max_mb` of source bytes); each chunk is one task writing one shard, run on a
process pool. Chunks, keys and the statistics sample are fixed before any task runs, so the
shards are byte-identical whatever the worker count. JPEG/PNG/WebP files are stored as they
are; sources without files are encoded once as PNG. See `staging` for why a failed ingest
changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.data.manifest import (
    SPLITS,
    Manifest,
    ShardInfo,
    SkippedItem,
    write_manifest_atomically,
)
from pipelines.ingest.pixel_stats import PixelSums, sample_positions
from pipelines.ingest.pool import run_tasks
from pipelines.ingest.shard_index import index_shards
from pipelines.ingest.shard_tasks import (
    EncodeOptions,
    ShardOutcome,
    ShardTask,
    build_shard,
    common_square_side,
)
from pipelines.ingest.sources import (
    ArraySource,
    Entry,
    EntryError,
    Source,
    SourceError,
    open_source,
)
from pipelines.ingest.staging import (
    LABELS_DIR,
    IngestError,
    refuse_existing,
    stage_labels,
    staging_dir,
    swap_into_place,
)
from pipelines.runtime.progress import ProgressCounter
from pipelines.specs import IngestSpec

__all__ = [
    "IngestError",
    "IngestFigures",
    "IngestResult",
    "ingest",
    "run_ingest",
    "stratified_split",
]


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


def plan_chunks(entries: list[Entry], max_count: int, max_bytes: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) chunks of at most `max_count` entries and, where the source
    knows its file sizes, about `max_bytes` of them (a single larger file gets its own shard)."""
    chunks, start, size = [], 0, 0
    for i, entry in enumerate(entries):
        full = i - start >= max_count or (i > start and size + entry.size > max_bytes)
        if full:
            chunks.append((start, i))
            start, size = i, 0
        size += entry.size
    if start < len(entries):
        chunks.append((start, len(entries)))
    return chunks


@dataclass
class IngestResult:
    """What an ingest made, small enough to print or return over REST."""

    out: str
    source: str
    counts: dict[str, int]
    classes: int
    image_size: int | None
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


def run_ingest(spec: IngestSpec, settings: object = None):
    """The job runner (see `JOB_KINDS`): ingest, then summarise."""
    return IngestResult.of(spec.out_dir(), ingest(spec))


def encode_options(opts: IngestSpec) -> EncodeOptions:
    return EncodeOptions(
        image_size=opts.image_size,
        resize=opts.resize,
        reencode=opts.reencode,
        jpeg_quality=opts.jpeg_quality,
        on_error=opts.on_error,
    )


@dataclass
class IngestFigures:
    """How an ingest of files went, for benchmarks: work done in the workers, bytes in/out."""

    tasks: int = 0
    worker_cpu_s: float = 0.0
    bytes_in: int = 0
    payload_out: int = 0


def ingest(opts: IngestSpec, figures: IngestFigures | None = None) -> Manifest:
    """Run the whole ingest; return the manifest written (and fill `figures` if given).
    Progress: images written, as `report_progress("ingest", ...)`."""
    out = opts.out_dir()
    refuse_existing(out, opts.overwrite)
    if opts.source.startswith("shards:"):
        if opts.image_size or opts.resize or opts.reencode != "keep":
            raise IngestError(
                "shards: are indexed in place as they are: drop image_size, resize and reencode"
            )
        out.mkdir(parents=True, exist_ok=True)
        return index_shards(opts)
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
    splits = stratified_split(source.entries, opts.val_fraction, opts.test_fraction, opts.seed)
    out.mkdir(parents=True, exist_ok=True)
    with staging_dir(out) as staging:
        tasks = _plan_tasks(source, splits, opts, staging)
        counter = ProgressCounter("ingest", total=sum(len(entries) for entries in splits.values()))
        try:
            outcomes = run_tasks(
                build_shard, tasks, opts.workers, on_result=lambda o: counter.add(o.count)
            )
        except EntryError as exc:
            raise IngestError(str(exc)) from None
        if figures is not None:
            figures.tasks = len(outcomes)
            figures.worker_cpu_s = sum(o.cpu_s for o in outcomes)
            figures.bytes_in = sum(o.bytes_in for o in outcomes)
            figures.payload_out = sum(o.payload_out for o in outcomes)
        manifest = _manifest(source, opts, outcomes, tasks, staging, skipped)
        swap_into_place(staging, out, [*SPLITS, LABELS_DIR])
        write_manifest_atomically(out, manifest)
        return manifest


def _plan_tasks(
    source: Source, splits: dict[str, list[Entry]], opts: IngestSpec, staging: Path
) -> list[ShardTask]:
    encode = encode_options(opts)
    stats_at = set(sample_positions(len(splits["train"]), opts.stats_sample, opts.seed).tolist())
    tasks = []
    for split in SPLITS:
        entries = splits[split]
        chunks = plan_chunks(entries, opts.shard_max_count, opts.shard_max_bytes)
        for number, (start, stop) in enumerate(chunks):
            chunk = entries[start:stop]
            refs = [e.ref for e in chunk]
            is_array = isinstance(source, ArraySource)
            tasks.append(
                ShardTask(
                    path=str(staging / split / f"{split}-{number:06d}.tar"),
                    split=split,
                    first=start,
                    labels=[e.label for e in chunk],
                    files=None if is_array else [str(r) for r in refs],
                    pixels=source.pixels[np.asarray(refs, dtype=np.int64)] if is_array else None,
                    stats_at=[i - start for i in range(start, stop) if i in stats_at]
                    if split == "train"
                    else [],
                    options=encode,
                )
            )
    return tasks


def _manifest(
    source: Source,
    opts: IngestSpec,
    outcomes: list[ShardOutcome],
    tasks: list[ShardTask],
    staging: Path,
    skipped: list[SkippedItem],
) -> Manifest:
    num_classes = len(source.class_names)
    shards: dict[str, list[ShardInfo]] = {s: [] for s in SPLITS}
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    sums = PixelSums()
    formats: dict[str, int] = {}
    for task, outcome in zip(tasks, outcomes, strict=True):
        skipped += [SkippedItem(item=i, reason=r) for i, r in outcome.skipped]
        sums.merge(outcome.sums)
        for ext, n in outcome.formats.items():
            formats[ext] = formats.get(ext, 0) + n
        if not outcome.count:
            continue
        shards[task.split].append(
            ShardInfo(
                path=str(Path(outcome.path).relative_to(staging)),
                count=outcome.count,
                bytes=outcome.bytes,
                sha256=outcome.sha256,
            )
        )
        labels[task.split] += outcome.labels
    if not shards["train"]:
        raise IngestError("no training images were left after skipping bad entries")
    mean, std = sums.mean_std()
    return Manifest(
        source=source.spec,
        image_size=_stored_size(source, opts, outcomes),
        channels=source.channels,
        flip_ok=source.flip_ok,
        class_names=source.class_names,
        mean=mean,
        std=std,
        counts={s: len(labels[s]) for s in SPLITS},
        class_counts={
            s: np.bincount(np.asarray(labels[s], dtype=np.int64), minlength=num_classes).tolist()
            for s in SPLITS
        },
        shards=shards,
        skipped=skipped,
        labels={s: stage_labels(staging, s, labels[s]) for s in SPLITS},
        image_formats=formats,
        stats_images=sums.images,
    )


def _stored_size(source: Source, opts: IngestSpec, outcomes: list[ShardOutcome]) -> int | None:
    """The square side every stored image has, or None when their sizes differ. Files kept
    as they are count too: a folder of uniform 32-px PNGs is 32 (read from each image's
    header as it was stored), so pretraining on it needs no --image-size."""
    if opts.image_size:
        return opts.image_size
    if source.image_size and isinstance(source, ArraySource):
        return opts.resize or source.image_size  # square arrays stay square when resized
    return common_square_side(outcomes)
