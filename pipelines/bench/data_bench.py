"""`selfie bench data`: how many images/s one loader process delivers at the model's size.

The figure that matters at ImageNet scale is images/s *per loader process* (decode + crop +
resize, uint8 out): a GPU eating N images/s needs N / rate processes. The bench writes its
own small data dir, a few hundred 300-500 px photos-like JPEGs as WebDataset shards, and the
same images re-encoded as PNG (what a lossless ingest stores), and times both through the
real `ShardStream` in this process (`num_workers=0`), so the one run compares JPEG-kept
with PNG-re-encoded at `image_size` with RandomResizedCrop (or the eval resize + centre
crop). Given `data_dir`, it also times that ingested dir the same way.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from pipelines.data.augment import ImageTransform
from pipelines.data.loader import ShardData, ShardStream


def _photo_like(rng: np.random.Generator) -> Image.Image:
    """A smooth random image with some texture: compresses like a photo, unlike noise."""
    w, h = (int(v) for v in rng.integers(300, 501, size=2))
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    texture = rng.normal(0, 12, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(img) + texture, 0, 255).astype(np.uint8))


def write_bench_shards(
    root: Path, num_images: int, fmt: str, seed: int = 0, per_shard: int = 100
) -> tuple[list[str], list[int], int]:
    """`num_images` images as `fmt` ("jpg" or "png") in shards; (paths, counts, bytes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths, counts, total = [], [], 0
    for start in range(0, num_images, per_shard):
        path = root / f"train-{start // per_shard:06d}.tar"
        n = min(per_shard, num_images - start)
        with wds.TarWriter(str(path)) as sink:
            for i in range(start, start + n):
                buf = io.BytesIO()
                if fmt == "jpg":
                    _photo_like(rng).save(buf, format="JPEG", quality=90)
                else:
                    _photo_like(rng).save(buf, format="PNG", compress_level=6)
                sink.write({"__key__": f"{i:08d}", fmt: buf.getvalue(), "cls": i % 10})
        paths.append(str(path))
        counts.append(n)
        total += path.stat().st_size
    return paths, counts, total


def stream_images_per_s(stream: ShardStream, batch_size: int, batches: int) -> float:
    """Images/s of one loader process (this one), after one warm-up batch."""
    it = iter(DataLoader(stream, batch_size=batch_size, num_workers=0))
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def device_decode_images_per_s(
    stream: ShardStream, batch_size: int, batches: int, device: torch.device
) -> float:
    """Images/s of the device path in one process: plan (header, crop box), then decode,
    crop and resize on `device` (nvJPEG on a GPU), synchronised before the clock stops."""
    from pipelines.data.device_decode import CropPlan, collate_planned, device_images

    assert isinstance(stream.transform, ImageTransform)
    size = stream.transform.size
    stream.transform = CropPlan(stream.transform)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=0, collate_fn=collate_planned)
    it = iter(loader)
    device_images(next(it), size, device)
    start = time.perf_counter()
    for _ in range(batches):
        device_images(next(it), size, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batches * batch_size / (time.perf_counter() - start)


def bench_data(
    data_dir: str | None = None,
    batch_size: int = 32,
    batches: int = 8,
    *,
    image_size: int = 224,
    random_resized_crop: bool = True,
    num_images: int = 300,
    device: str | None = None,
) -> dict:
    """images/s per loader process at `image_size`: JPEG kept vs PNG re-encoded (generated
    here), and `data_dir` when given. `random_resized_crop=False` times the eval path.
    With `device`, also JPEG decoded and cropped on that device (`jpeg_device_decode`)."""
    transform = ImageTransform(size=image_size, train=random_resized_crop, flip=True)
    result: dict = {
        "benchmark": "data",
        "image_size": image_size,
        "random_resized_crop": random_resized_crop,
        "batch_size": batch_size,
        "timed_images": batch_size * batches,
        "generated_images": num_images,
        "images_per_s_per_loader_process": {},
        "mean_bytes_per_image": {},
    }
    rates, sizes = result["images_per_s_per_loader_process"], result["mean_bytes_per_image"]
    with tempfile.TemporaryDirectory(prefix="selfie-bench-data-") as tmp:
        for fmt, label in (("jpg", "jpeg_kept"), ("png", "png_reencoded")):
            paths, counts, total = write_bench_shards(Path(tmp) / fmt, num_images, fmt)
            stream = ShardStream(paths, counts, transform, seed=0)
            rates[label] = stream_images_per_s(stream, batch_size, batches)
            sizes[label] = total / num_images
            if fmt == "jpg" and device is not None:
                stream = ShardStream(paths, counts, transform, seed=0)
                rates["jpeg_device_decode"] = device_decode_images_per_s(
                    stream, batch_size, batches, torch.device(device)
                )
                result["device"] = device
    if data_dir is not None:
        data = ShardData.open(data_dir)
        stream = ShardStream(data.shards("train"), data.counts("train"), transform, seed=0)
        rates["data_dir"] = stream_images_per_s(stream, batch_size, batches)
        result["data"] = data_dir
    result["jpeg_over_png"] = rates["jpeg_kept"] / rates["png_reencoded"]
    return result
