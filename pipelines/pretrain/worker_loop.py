"""What every Ray Train worker runs: build, restore, loop (torchtitan's shape).

Ray is touched only here (context, device, DDP wrapping, report/get_checkpoint, the
gather of every rank's generators); building, restoring and the loop are the plain
functions `selfie bench gpu` calls too (`trainee`, `loop`). The run plan comes resolved
from the driver: nothing about sizes or the recipe is recomputed here.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from pipelines.data.loader import ShardData
from pipelines.pretrain.loop import LOG_EVERY, Interval, run_steps
from pipelines.pretrain.plan import PretrainPlan
from pipelines.pretrain.trainee import (
    Trainee,
    build_trainee,
    compile_trainee,
    data_stream,
    own_rng_state,
    restore_trainee,
    snapshot,
)
from pipelines.runtime.progress import report_progress
from pipelines.training.async_checkpoint import AsyncCheckpointer, CheckpointSchedule
from pipelines.training.checkpoint import load_training_state


def pretrain_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    plan: PretrainPlan = config["plan"]
    spec = plan.spec
    torch.set_num_threads(config["cpus_per_worker"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    data = ShardData.open(spec.data_dir(), verify=spec.verify and rank == 0)

    trainee = build_trainee(plan, rank, device)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            restore_trainee(trainee, load_training_state(Path(directory)), plan)
    trainee.model = ray.train.torch.prepare_model(trainee.model)
    compile_trainee(trainee, plan)

    hooks = RayHooks(trainee, plan, world, {**config, "data": data})
    batches = data_stream(trainee, plan, data, world)
    run_steps(trainee, plan, batches, data.manifest.mean, data.manifest.std, hooks)
    hooks.close()


class RayHooks:
    """Progress (rank 0), MLflow metrics (rank 0, buffered) and checkpoints (all ranks)."""

    def __init__(self, trainee: Trainee, plan: PretrainPlan, world: int, config: dict) -> None:
        self.trainee, self.plan, self.world = trainee, plan, world
        self.rank, self.total = trainee.rank, plan.total_steps
        self.logger = None
        if self.rank == 0 and config.get("mlflow_run_id"):
            from mlflow.tracking import MlflowClient

            from pipelines.runtime.tracking import MetricBuffer

            client = MlflowClient(tracking_uri=config["tracking_uri"])
            self.logger = MetricBuffer(client, config["mlflow_run_id"])
            client.set_tag(config["mlflow_run_id"], "resumed_from_step", str(trainee.step))
        self.checkpoints = AsyncCheckpointer(self.rank, LOG_EVERY, _reporter(self.rank))
        spec = plan.spec
        self.schedule = CheckpointSchedule(
            spec.checkpoint_every, spec.checkpoint_minutes, LOG_EVERY
        )
        self.last = (float("nan"), float("nan"))
        self.monitor = None
        self.shown: dict[str, float] = {}  # the last monitor reading, kept in the live line
        if self.rank == 0 and spec.eval_every:
            from pipelines.probe.monitor import RepresentationMonitor

            self.status(trainee.step, "caching the monitor's images")
            self.monitor = RepresentationMonitor(
                config["data"], plan.model.image_size, trainee.device, spec.eval_every
            )
            if trainee.step == 0:  # the random-init baseline the later readings compare to
                self._read_monitor(0, last=False)

    def status(self, step: int, text: str) -> None:
        if self.rank == 0:
            report_progress("pretrain", step, self.total, status=text)

    def interval(self, reading: Interval, last: bool) -> None:
        self.last = (reading.loss, reading.accuracy)
        if self.rank == 0:
            report_progress(
                "pretrain", reading.step, self.total,
                loss=reading.loss, selection_accuracy=reading.accuracy, **self.shown,
            )  # fmt: skip
        if self.logger:
            self.logger.add(
                {
                    "loss": reading.loss,
                    "selection_accuracy": reading.accuracy,
                    "images_per_s": reading.images * self.world / reading.seconds,
                    "lr": self.trainee.scheduler.get_last_lr()[0],
                    "epoch": reading.step / self.plan.steps_per_epoch,
                    "checkpoint_stall_s": self.checkpoints.stall_seconds,
                },
                reading.step,
            )

    def _read_monitor(self, step: int, last: bool) -> None:
        """A monitor reading when due: to MLflow at `step`, and into the live line."""
        from pipelines.probe.monitor import SHOWN

        scores = self.monitor.maybe_run(self.trainee.model, step, last)
        if not scores:
            return
        self.shown = {k: scores[k] for k in SHOWN if k in scores}
        loss, accuracy = self.last
        training = {} if step == 0 else {"loss": loss, "selection_accuracy": accuracy}
        report_progress("pretrain", step, self.total, **training, **self.shown)
        if self.logger:
            self.logger.add(scores, step)

    def after_step(self, step: int, last: bool) -> None:
        if self.monitor:  # rank 0; the others wait at the next all-reduce
            self._read_monitor(step, last)
        self.checkpoints.maybe_report(step)
        if not (last or self.schedule.due(step, _agree(self.world, self.trainee.device))):
            return
        if self.logger:
            self.logger.flush()
        report = {
            "step": step,
            "epoch": self.plan.epoch_of(step),
            "loss": self.last[0],
            "selection_accuracy": self.last[1],
            "resumed_from_step": self.trainee.resumed_from,
            "total_steps": self.total,
        }
        ranks = _gather(own_rng_state(self.trainee), self.world)
        self.checkpoints.take(step, report, lambda: snapshot(self.trainee, self.plan, ranks))
        if last:
            self.status(step, "writing and uploading the final checkpoint")
            tick = time.perf_counter()
            self.checkpoints.flush(final=True)
            self.status(step, f"final checkpoint stored in {time.perf_counter() - tick:.1f} s")

    def close(self) -> None:
        if self.logger:
            self.logger.flush()


def _gather(state: dict, world: int) -> list[dict]:
    """Every rank's generator states, in rank order, on every rank (rank 0 saves them)."""
    if world == 1:
        return [state]
    import torch.distributed as dist

    states: list = [None] * world
    dist.all_gather_object(states, state)
    return states


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
