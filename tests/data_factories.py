"""Small real files for data tests: image folders, CIFAR-10 style batches, broken files."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_image_folder(root: Path, classes: int = 3, per_class: int = 10, size: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, size=(size, size + 8, 3), dtype=np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(arr).save(d / f"img_{i}.{ext}")
    return root


def make_cifar_tarball(path: Path, per_batch: int = 20) -> Path:
    """The official python-version layout, with `per_batch` images per batch file."""
    rng = np.random.default_rng(0)
    buf_members = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, size=(per_batch, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in np.arange(per_batch) % 10],
        }
        buf_members[name] = pickle.dumps(batch)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in buf_members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
