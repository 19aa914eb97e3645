"""`selfie bench train`: the Ray Train path against a plain PyTorch loop, same model and data.

Both read the same shards through the same loader and run the same `pretrain_step`; the
Ray figure is the steady-state images/s rank 0 logs to MLflow (start-up excluded), so the
ratio shows what Ray Train, DDP and reporting cost per step.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pipelines.data.loader import ShardData
from pipelines.data.normalize import normalized_batches
from pipelines.pretrain.plan import plan_pretrain
from pipelines.specs import PretrainSpec, build_spec
from pipelines.specs.settings import Settings
from pipelines.training.optim import build_optimizer, build_scheduler
from pipelines.training.steps import place, pretrain_step
from selfie_core.selfie_model import SelfieModel


def _noop() -> None:
    return None


def plain_loop_images_per_s(spec: PretrainSpec, steps: int, warmup: int = 5) -> float:
    torch.set_num_threads(os.cpu_count() or 1)
    data = ShardData.open(spec.data_dir())
    model = place(SelfieModel(plan_pretrain(spec, data).model), torch.device("cpu"))
    optimizer = build_optimizer(model, spec.optim)
    scheduler = build_scheduler(optimizer, spec.optim, steps + warmup)
    generator = torch.Generator().manual_seed(0)
    loader = data.train_loader(spec.batch_size, num_workers=spec.loader_workers)
    m, sd = data.manifest.mean, data.manifest.std
    batches = normalized_batches(loader, m, sd, torch.device("cpu"))  # uint8 -> as training
    for _ in range(warmup):
        pretrain_step(model, next(batches)[0], generator, optimizer, scheduler)
    start = time.perf_counter()
    for _ in range(steps):
        pretrain_step(model, next(batches)[0], generator, optimizer, scheduler)
    return steps * spec.batch_size / (time.perf_counter() - start)


def ray_images_per_s(spec: PretrainSpec, settings: Settings) -> float:
    from pipelines.pretrain.driver import run_pretrain
    from pipelines.runtime.tracking import tracking_client

    result = run_pretrain(spec, settings)
    history = tracking_client(settings).get_metric_history(result.mlflow_run_id, "images_per_s")
    rates = [m.value for m in sorted(history, key=lambda m: m.step)][1:]  # drop the warm-up window
    return sum(rates) / max(len(rates), 1)


def _with_workers(spec: PretrainSpec, workers: int) -> PretrainSpec:
    return build_spec(PretrainSpec, {**spec.model_dump(), "workers": workers})


def bench_train(
    data_dir: str, batch_size: int = 64, steps: int = 60, start_ray: Callable[[], None] = _noop
) -> dict:
    """The plain loop is timed before Ray starts, so Ray's start-up does not slow it."""
    base = PretrainSpec(
        data=data_dir,
        batch_size=batch_size,
        max_steps=steps,
        epochs=10_000,
        checkpoint_every=10_000,
        register_model=None,
        experiment="selfie-bench",
    )
    plain = plain_loop_images_per_s(base, steps)
    start_ray()
    with tempfile.TemporaryDirectory() as workdir:
        settings = Settings(workdir=Path(workdir))
        one = ray_images_per_s(_with_workers(base, 1), settings)
        two = ray_images_per_s(_with_workers(base, 2), settings)
    return {
        "benchmark": "train",
        "data": data_dir,
        "batch_size_per_worker": batch_size,
        "steps": steps,
        "plain_loop_images_per_s": plain,
        "ray_1_worker_images_per_s": one,
        "ray_2_workers_images_per_s": two,
        "ray_1_worker_ratio_to_plain": one / plain,
        "ray_2_workers_ratio_to_plain": two / plain,
    }
