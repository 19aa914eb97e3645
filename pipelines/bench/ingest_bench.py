"""`selfie bench ingest`: how fast a folder of JPEGs becomes shards, on 1 and on 2 worker
processes, and whether the image bytes come out exactly as they went in.

The folder is generated: `distinct` JPEGs of varied sizes (300-500 px a side, smooth colour
patterns with noise) are encoded once, in parallel, and every one of the `images` files is
one of them with a unique JPEG comment segment inserted after the start-of-image marker, so
every file has distinct bytes and stays a valid JPEG. (Encoding 20,000 distinct JPEGs would
take about 7 minutes of one core here; copying with varied bytes makes the folder in seconds
and costs ingest the same work, which never decodes them.) A PNG re-encode of a subset shows
what the old default cost in time and bytes, and indexing the shards written (`shards:`)
what reading them back without decoding costs.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.data.shard_io import iter_shard
from pipelines.ingest.driver import IngestFigures, ingest
from pipelines.specs import IngestSpec


def _base_jpeg(seed: int) -> bytes:
    """One seeded JPEG of a random size in 300-500 px a side."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(300, 501, size=2))
    yy, xx = np.mgrid[0:h, 0:w]
    colour, freq = rng.uniform(30, 225, size=3), rng.uniform(0.005, 0.05, size=2)
    phase = rng.uniform(0, 6.3, size=3)
    wave = np.sin(xx[..., None] * freq[0] + yy[..., None] * freq[1] + phase)
    pixels = colour + 50 * wave + rng.normal(0, 6, size=(h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """The same image with a JPEG COM segment after SOI: new bytes, same pixels."""
    body = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


_BANK: list[bytes] = []


def _init_bank(bank: list[bytes]) -> None:
    _BANK[:] = bank


def _write_files(job: tuple[str, int, int, list[int]]) -> int:
    root, start, classes, picks = job
    written = 0
    for i, pick in enumerate(picks, start):
        data = _with_comment(_BANK[pick], f"bench image {i}")
        (Path(root) / f"class_{i % classes:03d}" / f"img_{i:07d}.jpg").write_bytes(data)
        written += len(data)
    return written


def make_jpeg_folder(
    root: Path, images: int, classes: int, distinct: int, seed: int, workers: int
) -> int:
    """Generate the folder (seeded, in parallel); return its bytes."""
    for c in range(classes):
        (root / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        bank = list(pool.map(_base_jpeg, [seed * 100_003 + k for k in range(distinct)]))
    picks = np.random.default_rng(seed).integers(distinct, size=images).tolist()
    step = -(-images // (workers * 8))
    jobs = [(str(root), s, classes, picks[s : s + step]) for s in range(0, images, step)]
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_bank, initargs=(bank,)
    ) as pool:
        return sum(pool.map(_write_files, jobs))


def _payload_bytes(out: Path, manifest) -> int:
    """Bytes of image payload stored in the shards (the `.cls` members left out)."""
    total = 0
    for split in ("train", "val", "test"):
        for shard in manifest.shards[split]:
            for _key, fields in iter_shard(str(out / shard.path)):
                total += sum(len(v) for ext, v in fields.items() if ext != "cls")
    return total


def _timed_ingest(spec: IngestSpec) -> tuple[float, IngestFigures, object]:
    figures = IngestFigures()
    start = time.perf_counter()
    manifest = ingest(spec, figures=figures)
    return time.perf_counter() - start, figures, manifest


def bench_ingest(
    images: int = 20_000,
    workers: Sequence[int] = (1, 2),
    classes: int = 10,
    distinct: int = 256,
    reencode_subset: int = 500,
    repeats: int = 1,
    seed: int = 0,
    work_dir: str | None = None,
) -> dict:
    """Generate `images` JPEGs, ingest them with each worker count (bytes kept; `repeats`
    interleaved rounds, best rate kept), and a subset re-encoded as PNG; return rates, their
    ratio and bytes in vs out. Everything generated is removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="selfie-ingest-bench-", dir=work_dir))
    try:
        start = time.perf_counter()
        bytes_in = make_jpeg_folder(base / "jpegs", images, classes, distinct, seed, max(workers))
        generate_s = time.perf_counter() - start
        rates, shards, manifests, figures = {}, {}, {}, {}
        load_before = os.getloadavg()[0]
        for _ in range(repeats):  # interleaved, best kept: other jobs on the box come and go
            for n in workers:
                spec = IngestSpec(
                    source=f"imagefolder:{base / 'jpegs'}",
                    out=base / f"w{n}",
                    workers=n,
                    overwrite=True,
                )
                seconds, fig, manifests[n] = _timed_ingest(spec)
                if images / seconds > rates.get(n, 0.0):
                    rates[n], figures[n] = images / seconds, (fig, seconds)
                shards[n] = [s.sha256 for split in manifests[n].shards.values() for s in split]
        first = workers[0]
        payload = _payload_bytes(base / f"w{first}", manifests[first])
        pattern = f"shards:{base / f'w{first}'}/{{split}}/*.tar"
        index_s, _, indexed = _timed_ingest(
            IngestSpec(source=pattern, out=base / "indexed", workers=max(workers))
        )
        result = {
            "benchmark": "ingest",
            "images": images,
            "distinct_base_images": distinct,
            "repeats": repeats,
            "generate_s": round(generate_s, 2),
            "images_per_s": {f"{n}_workers": round(r, 1) for n, r in rates.items()},
            "speedup": {f"{n}_vs_{first}": round(rates[n] / rates[first], 2) for n in workers},
            "shards": len(shards[first]),
            "shards_identical_across_worker_counts": all(
                s == shards[first] for s in shards.values()
            ),
            "jpeg_bytes_in": bytes_in,
            "image_payload_bytes_out": payload,
            "bytes_kept_exactly": payload == bytes_in,
            "stats_images": manifests[first].stats_images,
            # shards: walks tar headers and labels and checksums each shard, decoding only
            # the statistics sample.
            "index_shards_s": round(index_s, 2),
            "index_counts_match": indexed.counts == manifests[first].counts,
            "worker_cpu_ms_per_image": {
                f"{n}_workers": round(1000 * figures[n][0].worker_cpu_s / images, 3)
                for n in workers
            },
            # CPU the shard tasks got per second of the ingest: near the worker count on an
            # idle machine; on a shared box, the share the scheduler gave this session.
            "cores_used": {
                f"{n}_workers": round(figures[n][0].worker_cpu_s / figures[n][1], 2)
                for n in workers
            },
            "bytes_read_equal_payload_written": all(
                f.bytes_in == f.payload_out for f, _ in figures.values()
            ),
            "cpus": os.cpu_count(),
            "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
        if reencode_subset:
            result["png_reencode_subset"] = _png_subset(base, reencode_subset, max(workers))
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _png_subset(base: Path, count: int, workers: int) -> dict:
    """The old default (decode + PNG) on the first `count` files, for time and size."""
    sub = base / "subset"
    for f in sorted((base / "jpegs").rglob("*.jpg"))[:count]:
        (sub / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, sub / f.parent.name / f.name)
    jpeg_bytes = sum(f.stat().st_size for f in sub.rglob("*.jpg"))
    rates = {}
    payload = {}
    for mode in ("keep", "png"):
        spec = IngestSpec(
            source=f"imagefolder:{sub}", out=base / f"sub-{mode}", workers=workers, reencode=mode
        )
        seconds, _, manifest = _timed_ingest(spec)
        rates[mode] = count / seconds
        payload[mode] = _payload_bytes(base / f"sub-{mode}", manifest)
    return {
        "images": count,
        "workers": workers,
        "images_per_s": {"keep": round(rates["keep"], 1), "png": round(rates["png"], 1)},
        "jpeg_bytes_in": jpeg_bytes,
        "png_bytes_out": payload["png"],
        "png_size_ratio": round(payload["png"] / jpeg_bytes, 2),
    }
