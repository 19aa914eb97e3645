"""`selfie bench data`: how fast the loader feeds a worker, against how fast `tiny` eats."""

from __future__ import annotations

import time

from pipelines.bench.model_bench import bench_model
from pipelines.data.loader import ShardData


def loader_images_per_s(data: ShardData, num_workers: int, batch_size: int, batches: int) -> float:
    loader = data.train_loader(batch_size, num_workers=num_workers)
    it = iter(loader)
    for _ in range(3):  # start the worker processes and fill their prefetch queues
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def bench_data(data_dir: str, batch_size: int = 64, batches: int = 60) -> dict:
    data = ShardData.open(data_dir)
    rates = {n: loader_images_per_s(data, n, batch_size, batches) for n in (1, 2)}
    consumption = bench_model(
        "tiny", batch_size=batch_size, image_size=data.manifest.image_size, compare_compile=False
    )
    train_rate = consumption["images_per_s"]
    return {
        "benchmark": "data",
        "data": data_dir,
        "batch_size": batch_size,
        "loader_images_per_s": {f"{n}_workers": r for n, r in rates.items()},
        "tiny_pretrain_images_per_s": train_rate,
        "ratio_to_tiny_pretrain": {f"{n}_workers": r / train_rate for n, r in rates.items()},
    }
