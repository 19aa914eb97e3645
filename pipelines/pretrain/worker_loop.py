"""What every Ray Train worker runs: load data for its rank, train, checkpoint, report.

Ray is touched only here (context, device, DDP wrapping, report/get_checkpoint); the step,
optimizer and data loader are the plain functions the benchmarks and finetuning share.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from pipelines.data.device_decode import decode_device
from pipelines.data.loader import ShardData
from pipelines.data.normalize import to_device_normalized
from pipelines.runtime.progress import report_progress
from pipelines.specs import PretrainSpec
from pipelines.training.async_checkpoint import AsyncCheckpointer, CheckpointSchedule
from pipelines.training.checkpoint import load_training_state, training_state
from pipelines.training.optim import build_optimizer, build_scheduler, effective_optim
from pipelines.training.steps import MetricWindow, place, pretrain_step_lean, unwrap
from selfie_core.config import SelfieConfig
from selfie_core.selfie_model import SelfieModel

LOG_EVERY = 5
"""Steps between reads of the metrics (the only host syncs of the loop)."""


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

    from pipelines.runtime.tracking import MetricBuffer

    spec = PretrainSpec.model_validate(config["spec"])
    torch.set_num_threads(config["cpus_per_worker"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    data = ShardData.open(spec.data_dir(), verify=spec.verify and rank == 0)
    model_config = model_config_for(spec, data.manifest.image_size)
    steps_per_epoch = data.steps_per_epoch(world, spec.batch_size)
    total_steps = total_steps_for(spec, steps_per_epoch)
    recipe = effective_optim(spec.optim, spec.batch_size, world, steps_per_epoch)

    torch.manual_seed(spec.seed)  # the initial weights follow the spec's seed
    model = place(SelfieModel(model_config), device)
    torch.manual_seed(spec.seed * 1_000_003 + rank)  # dropout and other draws, per rank
    optimizer = build_optimizer(model, spec.optim, lr=recipe.effective_lr)
    scheduler = build_scheduler(
        optimizer, spec.optim, total_steps, warmup_steps=recipe.effective_warmup_steps
    )
    # Masks are drawn on the training device: no host work or copy per step.
    generator = torch.Generator(device=device)
    step = 0
    checkpoint = ray.train.get_checkpoint()
    restored_rng = False
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = load_training_state(Path(directory))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        if rank == 0:
            torch.set_rng_state(state["torch_rng"])
            try:
                generator.set_state(state["mask_rng"])
                restored_rng = True
            except RuntimeError:  # saved by a generator on another kind of device
                pass
    resumed_from = step
    if not restored_rng:
        generator.manual_seed(spec.seed * 1_000_003 + rank * 7919 + step)
    model = ray.train.torch.prepare_model(model)
    if spec.compile:
        model = torch.compile(model)

    loader = data.train_loader(
        spec.batch_size,
        rank=rank,
        world_size=world,
        num_workers=spec.loader_workers,
        seed=spec.seed * 31 + step,
        image_size=model_config.image_size,
        decode_on=decode_device(spec.jpeg_decode, device),
    )
    batches = iter(loader)
    logger = None
    if rank == 0 and config.get("mlflow_run_id"):
        client = MlflowClient(tracking_uri=config["tracking_uri"])
        logger = MetricBuffer(client, config["mlflow_run_id"])
        client.set_tag(config["mlflow_run_id"], "resumed_from_step", str(resumed_from))

    def snapshot() -> dict:
        return training_state(
            model=unwrap(model), optimizer=optimizer, scheduler=scheduler, step=step,
            epoch=step // steps_per_epoch, generator=generator, config=model_config,
            manifest_digest=data.manifest.digest(),
        )  # fmt: skip

    checkpoints = AsyncCheckpointer(rank, LOG_EVERY, _reporter(rank))
    schedule = CheckpointSchedule(spec.checkpoint_every, spec.checkpoint_minutes, LOG_EVERY)
    window = MetricWindow(device)
    last_loss, last_acc = float("nan"), float("nan")
    tick = time.perf_counter()
    while step < total_steps:
        images, _ = next(batches)
        metrics = pretrain_step_lean(
            model, to_device_normalized(images, data.manifest.mean, data.manifest.std, device),
            generator, optimizer, scheduler,
            spec.optim.grad_clip,
        )  # fmt: skip
        window.add(metrics)
        step += 1
        last = step == total_steps
        if step % LOG_EVERY == 0 or last:
            n = window.n
            last_loss, last_acc = window.read()  # the one host sync of the interval
            elapsed = time.perf_counter() - tick
            if rank == 0:
                report_progress(
                    "pretrain", step, total_steps, loss=last_loss, selection_accuracy=last_acc
                )
            if logger:
                logger.add(
                    {
                        "loss": last_loss,
                        "selection_accuracy": last_acc,
                        "images_per_s": n * spec.batch_size * world / elapsed,
                        "lr": scheduler.get_last_lr()[0],
                        "epoch": step / steps_per_epoch,
                        "checkpoint_stall_s": checkpoints.stall_seconds,
                    },
                    step,
                )
            tick = time.perf_counter()
        checkpoints.maybe_report(step)
        if last or schedule.due(step, _agree(world, device)):
            if logger:
                logger.flush()
            report = {
                "step": step,
                "epoch": step // steps_per_epoch,
                "loss": last_loss,
                "selection_accuracy": last_acc,
                "resumed_from_step": resumed_from,
                "total_steps": total_steps,
            }
            checkpoints.take(step, report, snapshot)
            if last:
                checkpoints.flush(final=True)
    if logger:
        logger.flush()


def _agree(world: int, device: torch.device):
    """All ranks take rank 0's decision (one tiny broadcast, only when time is checked)."""

    def agree(flag: bool) -> bool:
        if world == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1 if flag else 0], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    return agree


def _reporter(rank: int):
    """Every rank reports (it is a barrier); rank 0 hands over its written directory. Ray
    uploads it in the background (ASYNC) and deletes it; the final one is uploaded before
    `fit()` returns its result (SYNC)."""
    import ray.train
    from ray.train import CheckpointUploadMode

    def report(metrics: dict, directory: Path | None, step: int, final: bool) -> None:
        if rank != 0 or directory is None:
            ray.train.report(metrics, checkpoint=None)
            return
        mode = CheckpointUploadMode.SYNC if final else CheckpointUploadMode.ASYNC
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(str(directory)),
            checkpoint_dir_name=f"checkpoint-{step:08d}",
            checkpoint_upload_mode=mode,
        )
        if final:
            shutil.rmtree(directory, ignore_errors=True)

    return report
