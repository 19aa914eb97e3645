"""The label of every sample, beside the shards, so nothing reads image bytes to learn labels."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_labels(data_dir: Path, split: str, labels: Sequence[int]) -> Path:
    """Write `<data_dir>/labels/<split>.npy` (int32, manifest order), atomically."""
    folder = Path(data_dir) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{split}.npy"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{split}-", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.asarray(labels, dtype=np.int32))
    os.replace(tmp, target)
    return target
