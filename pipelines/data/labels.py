"""Every sample's label, without reading image bytes.

Choosing a labeled subset needs the label of every training sample. Reading them from the
shards would read ~140 GB of ImageNet JPEGs to learn 1.28M small integers, so ingest writes
them beside the shards as `<data_dir>/labels/<split>.npy` (int32, manifest order: shard
order, then order within the shard). Data ingested before that, or `shards:` indexes, get
one scan of the `.cls` members only (image members are skipped by their headers), cached
in the same file when the dir is writable. A sample whose `.cls` is not an integer gets -1.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.data.manifest import Manifest, Split
from pipelines.data.shard_read import read_samples

LABELS_DIR = "labels"


def labels_path(data_dir: str | Path, split: str) -> Path:
    return Path(data_dir) / LABELS_DIR / f"{split}.npy"


def write_labels(data_dir: str | Path, split: str, labels: Sequence[int]) -> Path:
    """Write the sidecar atomically (a reader never sees half a file); return its path."""
    target = labels_path(data_dir, split)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{split}-", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.asarray(labels, dtype=np.int32))
    os.replace(tmp, target)
    return target


def scan_labels(paths: Sequence[str]) -> np.ndarray:
    """Labels read from the `.cls` members alone, in manifest order."""
    labels = [s.label for path in paths for s in read_samples(path, images=False)]
    return np.asarray(labels, dtype=np.int32)


def split_labels(data_dir: str | Path, manifest: Manifest, split: Split) -> np.ndarray:
    """The split's labels from the sidecar, or from one `.cls` scan (then cached)."""
    expected = manifest.counts.get(split, 0)
    path = labels_path(data_dir, split)
    if path.is_file():
        labels = np.load(path)
        if labels.shape == (expected,):
            return labels.astype(np.int32, copy=False)
    labels = scan_labels(manifest.shard_paths(Path(data_dir), split))
    with contextlib.suppress(OSError):  # read-only dir: the scan repeats next time, no harm
        write_labels(data_dir, split, labels)
    return labels


def labeled_positions(labels: np.ndarray, fraction: float, seed: int) -> list[int] | None:
    """The seeded stratified subset (`selfie_core.subsets.labeled_subset`) as positions in
    manifest order, leaving out samples without a label (-1); None means every sample."""
    from selfie_core.subsets import labeled_subset

    known = np.flatnonzero(labels >= 0)
    if fraction >= 1:
        return None
    return [int(known[i]) for i in labeled_subset(labels[known], fraction, seed)]
