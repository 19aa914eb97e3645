"""`shards:PATTERN`: index standard WebDataset shards where they lie, decoding no image to do
it. Each shard's headers and `.cls` members are walked (a few kB per sample) and the shard is
checksummed, one task per shard on the pool; labels go to the sidecar beside the manifest;
mean/std come from a seeded sample of training images, decoded at a reduced scale.
"""

from __future__ import annotations

import glob
import os
import re
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
from pipelines.ingest.shard_tasks import IndexedShard, StatsTask, index_shard, sample_stats
from pipelines.ingest.staging import (
    LABELS_DIR,
    IngestError,
    stage_labels,
    staging_dir,
    swap_into_place,
)
from pipelines.runtime.progress import ProgressCounter
from pipelines.specs import IngestSpec


def find_shards(pattern: str) -> dict[str, list[str]]:
    """Shards per split: `{split}` in the pattern names the split, else all are training."""
    if "{split}" in pattern:
        found = {s: sorted(glob.glob(pattern.replace("{split}", s))) for s in SPLITS}
    else:
        found = {"train": sorted(glob.glob(pattern)), "val": [], "test": []}
    if not found["train"]:
        prefix = re.split(r"[*?\[{]", pattern, maxsplit=1)[0]
        folder = Path(os.path.dirname(prefix) or ".")
        why = f" (folder {str(folder)!r} does not exist)" if not folder.exists() else ""
        raise IngestError(f"no training shards match {pattern!r}{why}")
    return found


def index_shards(opts: IngestSpec) -> Manifest:
    """Validate existing shards and write a manifest (and labels) that point at them."""
    pattern = opts.source.removeprefix("shards:")
    found = find_shards(pattern)
    jobs = [(split, path) for split in SPLITS for path in found[split]]
    counter = ProgressCounter("ingest", total=None)
    results = run_tasks(
        index_shard,
        [path for _, path in jobs],
        opts.workers,
        on_result=lambda r: counter.add(len(r.labels)),
    )
    skipped: list[SkippedItem] = []
    shards: dict[str, list[ShardInfo]] = {s: [] for s in SPLITS}
    usable: dict[str, list[IndexedShard]] = {s: [] for s in SPLITS}
    for (split, path), r in zip(jobs, results, strict=True):
        problems = [(path, r.error)] if r.error else r.skipped
        if problems and opts.on_error == "fail":
            item, reason = problems[0]
            raise IngestError(f"{item}: {reason}; re-run with --on-error skip to leave it out")
        skipped += [SkippedItem(item=i, reason=why) for i, why in problems]
        if r.error or not len(r.labels):
            continue
        p = str(Path(path).resolve())
        shards[split].append(ShardInfo(path=p, count=len(r.labels), bytes=r.bytes, sha256=r.sha256))
        usable[split].append(r)
    if not usable["train"]:
        raise IngestError(f"shards matching {pattern!r} hold no usable training samples")
    labels = {
        s: np.concatenate([r.labels for r in usable[s]] or [[]]).astype(np.int32) for s in SPLITS
    }
    num_classes = int(max(v.max() for v in labels.values() if len(v))) + 1
    sums = _sample_stats(usable["train"], opts)
    mean, std = sums.mean_std()
    out = opts.out_dir()
    with staging_dir(out) as staging:
        manifest = Manifest(
            source=opts.source,
            image_size=None,
            channels=3,
            flip_ok=True,
            class_names=[str(c) for c in range(num_classes)],
            mean=mean,
            std=std,
            counts={s: len(v) for s, v in labels.items()},
            class_counts={
                s: np.bincount(v, minlength=num_classes).tolist() for s, v in labels.items()
            },
            shards=shards,
            skipped=skipped,
            labels={s: stage_labels(staging, s, labels[s].tolist()) for s in SPLITS},
            stats_images=sums.images,
        )
        swap_into_place(staging, out, [LABELS_DIR])
        write_manifest_atomically(out, manifest)
    return manifest


def _sample_stats(train: list[IndexedShard], opts: IngestSpec) -> PixelSums:
    """Mean/std over a seeded sample of training images, drawn across all shards."""
    counts = np.array([len(r.labels) for r in train])
    starts = np.concatenate([[0], np.cumsum(counts)])
    picked = sample_positions(int(starts[-1]), opts.stats_sample, opts.seed)
    tasks = []
    for i, r in enumerate(train):
        local = picked[(picked >= starts[i]) & (picked < starts[i + 1])] - starts[i]
        if len(local):
            ranges = list(zip(r.offsets[local].tolist(), r.sizes[local].tolist(), strict=True))
            tasks.append(StatsTask(path=r.path, ranges=ranges))
    sums = PixelSums()
    for part in run_tasks(sample_stats, tasks, opts.workers):
        sums.merge(part)
    return sums
