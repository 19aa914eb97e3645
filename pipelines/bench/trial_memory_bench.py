"""Peak memory of a sweep trial's data path at a small and at the full labeled fraction.

A trial streams its labeled subset and the validation split from the shards; only the index
list grows with the fraction. Each fraction runs in a fresh process (spawned, so no memory
is shared with this one) that makes one pass over the subset as the trial's loader would and
one over the validation split, and reports its peak resident memory.
"""

from __future__ import annotations

import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _stream_peak_kib(data_dir: str, fraction: float, batch_size: int, image_size: int) -> dict:
    from pipelines.data.labels import labeled_positions
    from pipelines.data.loader import ShardData

    data = ShardData.open(data_dir)
    indices = labeled_positions(data.labels("train"), fraction, 0)
    count = len(indices) if indices is not None else data.manifest.counts["train"]
    loader = data.train_loader(
        batch_size, num_workers=0, seed=0, image_size=image_size, indices=indices
    )
    seen = 0
    batches = iter(loader)
    while seen < count:
        seen += len(next(batches)[1])
    for _images, labels in data.eval_loader("val", 256, 0, image_size=image_size):
        seen += len(labels)
    return {"samples": seen, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def bench_trial_memory(
    images: int = 20_000,
    fractions: tuple[float, ...] = (0.05, 1.0),
    batch_size: int = 64,
    image_size: int = 64,
) -> dict:
    """Generate `images` JPEGs (300-500 px), ingest them (bytes kept), then measure each
    fraction's peak RSS in its own process; return the figures and the largest ratio."""
    from pipelines.bench.ingest_bench import make_jpeg_folder
    from pipelines.ingest.driver import ingest
    from pipelines.specs import IngestSpec

    base = Path(tempfile.mkdtemp(prefix="selfie-trial-memory-"))
    try:
        make_jpeg_folder(base / "src", images, classes=10, distinct=256, seed=0, workers=2)
        ingest(IngestSpec(source=f"imagefolder:{base / 'src'}", out=base / "data", workers=2))
        shutil.rmtree(base / "src")
        ctx = multiprocessing.get_context("spawn")
        runs = {}
        for fraction in fractions:
            start = time.perf_counter()
            with ctx.Pool(1) as pool:
                figures = pool.apply(
                    _stream_peak_kib, (str(base / "data"), fraction, batch_size, image_size)
                )
            figures["seconds"] = round(time.perf_counter() - start, 1)
            runs[f"{fraction:g}"] = figures
        peaks = [r["peak_rss_kib"] for r in runs.values()]
        return {
            "benchmark": "trial_memory",
            "images": images,
            "image_size": image_size,
            "fractions": runs,
            "peak_ratio_largest_to_smallest": round(max(peaks) / min(peaks), 3),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
