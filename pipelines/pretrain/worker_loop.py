"""What every Ray Train worker runs: load data for its rank, train, checkpoint, report.

Ray is touched only here (context, device, DDP wrapping, report/get_checkpoint); the step,
optimizer and data loader are the plain functions the benchmarks and finetuning share.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from pipelines.data.loader import ShardData
from pipelines.specs import PretrainSpec
from pipelines.training.checkpoint import load_training_state, save_training_state
from pipelines.training.optim import build_optimizer, build_scheduler
from pipelines.training.steps import place, pretrain_step, unwrap
from selfie_core.config import SelfieConfig
from selfie_core.selfie_model import SelfieModel

LOG_EVERY = 5


def model_config_for(spec: PretrainSpec, image_size: int) -> SelfieConfig:
    return SelfieConfig(
        preset=spec.preset,
        image_size=spec.image_size or image_size,
        patch_size=spec.patch_size,
        mask_fraction=spec.mask_fraction,
        pos_on_visible=spec.pos_on_visible,
    )


def total_steps_for(spec: PretrainSpec, steps_per_epoch: int) -> int:
    total = spec.epochs * steps_per_epoch
    return min(total, spec.max_steps) if spec.max_steps else total


def pretrain_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import MetricBuffer

    spec = PretrainSpec.model_validate(config["spec"])
    torch.set_num_threads(config["cpus_per_worker"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    data = ShardData.open(spec.data_dir(), verify=spec.verify and rank == 0)
    model_config = model_config_for(spec, data.manifest.image_size)
    steps_per_epoch = data.steps_per_epoch(world, spec.batch_size)
    total_steps = total_steps_for(spec, steps_per_epoch)

    torch.manual_seed(spec.seed)  # the initial weights follow the spec's seed
    model = place(SelfieModel(model_config), device)
    torch.manual_seed(spec.seed * 1_000_003 + rank)  # dropout and other draws, per rank
    optimizer = build_optimizer(model, spec.optim)
    scheduler = build_scheduler(optimizer, spec.optim, total_steps)
    generator = torch.Generator()
    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = load_training_state(Path(directory))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if rank == 0:
            generator.set_state(state["mask_rng"])
            torch.set_rng_state(state["torch_rng"])
    resumed_from = step
    if rank != 0 or not checkpoint:
        generator.manual_seed(spec.seed * 1_000_003 + rank * 7919 + step)
    model = ray.train.torch.prepare_model(model)

    loader = data.train_loader(
        spec.batch_size,
        rank=rank,
        world_size=world,
        num_workers=spec.loader_workers,
        seed=spec.seed * 31 + step,
    )
    batches = iter(loader)
    logger = None
    if rank == 0 and config.get("mlflow_run_id"):
        client = MlflowClient(tracking_uri=config["tracking_uri"])
        logger = MetricBuffer(client, config["mlflow_run_id"])
        client.set_tag(config["mlflow_run_id"], "resumed_from_step", str(resumed_from))

    window_loss, window_acc, window_n = 0.0, 0.0, 0
    tick = time.perf_counter()
    while step < total_steps:
        images, _ = next(batches)
        metrics = pretrain_step(
            model, images.to(device, non_blocking=True), generator, optimizer, scheduler,
            spec.optim.grad_clip,
        )  # fmt: skip
        step += 1
        window_loss += metrics.loss
        window_acc += metrics.accuracy
        window_n += 1
        last = step == total_steps
        if logger and (step % LOG_EVERY == 0 or last):
            elapsed = time.perf_counter() - tick
            logger.add(
                {
                    "loss": window_loss / window_n,
                    "selection_accuracy": window_acc / window_n,
                    "images_per_s": window_n * spec.batch_size * world / elapsed,
                    "lr": scheduler.get_last_lr()[0],
                    "epoch": step / steps_per_epoch,
                },
                step,
            )
            window_loss, window_acc, window_n = 0.0, 0.0, 0
            tick = time.perf_counter()
        if step % spec.checkpoint_every == 0 or last:
            if logger:
                logger.flush()
            report = {
                "step": step,
                "epoch": step // steps_per_epoch,
                "loss": metrics.loss,
                "selection_accuracy": metrics.accuracy,
                "resumed_from_step": resumed_from,
                "total_steps": total_steps,
            }
            _report(report, rank, step, model, optimizer, scheduler, generator, model_config, data)


def _report(metrics, rank, step, model, optimizer, scheduler, generator, model_config, data):
    """Every rank reports (it is a barrier); only rank 0 writes the checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as directory:
        save_training_state(
            Path(directory),
            model=unwrap(model),
            optimizer=optimizer,
            scheduler=scheduler,
            step=step,
            epoch=metrics["epoch"],
            generator=generator,
            config=model_config,
            manifest_digest=data.manifest.digest(),
        )
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(directory),
            checkpoint_dir_name=f"checkpoint-{step:08d}",
        )
