"""A sweep trial on several Ray Train workers (DDP), for trials too big for one process.

Train V2 inside Tune: the trial is a plain function that builds a `TorchTrainer` and calls
`fit()` under a run name unique to the trial (reusing one would silently resume an old run).
The Train workers run the one finetune loop (`finetune.finetune` with `Ranks`) with DDP, each
rank on its own draw of the labeled subset, the same number of steps on every rank; rank 0
validates, keeps the best-validation weights and decides when patience has run out (every
rank stops with it), writing the weights with the per-epoch metrics into the run's final
checkpoint. The trial function
then reports those epochs to Tune and attaches the best weights to the last report, as the
one-process trial does, so selection and testing downstream are the same.

Metrics reach Tune when the Train run ends, not epoch by epoch: early stopping (ASHA) needs
one-process trials (`placing.resolve_trial_shape` refuses the mix).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from pipelines.specs import SweepSpec

EPOCHS_FILE = "epochs.json"


def run_distributed_trial(
    config: dict,
    *,
    sweep: dict,
    indices: list[int] | None,
    model_config: dict,
    weights,
) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.specs.settings import get_settings
    from pipelines.sweep.trial_setup import BEST_STATE_FILE

    spec = SweepSpec.model_validate(sweep)
    context = tune.get_context()
    storage = spec.storage_path or get_settings().resolved_storage_path
    name = f"{context.get_experiment_name()}-train-{context.get_trial_id()}"
    gpus = spec.gpus_per_trial or 0
    trainer = TorchTrainer(
        distributed_finetune_worker,
        train_loop_config={
            "config": config,
            "sweep": sweep,
            "indices": indices,
            "model_config": model_config,
            "weights": weights,
        },
        scaling_config=ScalingConfig(
            num_workers=spec.workers_per_trial,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": spec.cpus_per_trial, **({"GPU": gpus} if gpus else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=0),  # Tune retries the trial
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"distributed trial {name!r} ended without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        epochs = json.loads((Path(directory) / EPOCHS_FILE).read_text())
        best = Path(directory) / BEST_STATE_FILE
        for metrics in epochs[:-1]:
            tune.report(metrics)
        staged = Path(tempfile.mkdtemp(prefix="selfie-trial-"))
        try:
            shutil.copy(best, staged / BEST_STATE_FILE)
            last = {**epochs[-1], "checkpoint_epoch": epochs[-1]["best_epoch"]}
            tune.report(last, checkpoint=tune.Checkpoint.from_directory(str(staged)))
        finally:
            shutil.rmtree(staged, ignore_errors=True)


def distributed_finetune_worker(loop: dict) -> None:
    """One rank of a distributed trial: the one finetune loop under DDP; rank 0 validates
    and checkpoints."""
    import ray.train
    import ray.train.torch

    from pipelines.sweep.finetune import Ranks
    from pipelines.sweep.trial_setup import BEST_STATE_FILE, epoch_metrics, setup_trial

    ctx = ray.train.get_context()
    ranks = Ranks(rank=ctx.get_world_rank(), world=ctx.get_world_size())
    trial = setup_trial(
        loop["sweep"],
        loop["config"],
        loop["indices"],
        loop["model_config"],
        device=ray.train.torch.get_device(),
    )
    epochs: list[dict] = []
    best_state: dict = {}
    last_epoch = 0
    for result in trial.epochs(loop["weights"], ranks, wrap=ray.train.torch.prepare_model):
        metrics = {**epoch_metrics(result, trial.labeled), "workers": ranks.world}
        last_epoch = result.epoch
        if ranks.validates:
            epochs.append(metrics)
            best_state = result.best_state
        if not result.last:
            ray.train.report(metrics)  # a barrier: ranks wait here while rank 0 validates
    if not ranks.validates:
        ray.train.report({"epoch": last_epoch})
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(best_state, Path(directory) / BEST_STATE_FILE)
        (Path(directory) / EPOCHS_FILE).write_text(json.dumps(epochs))
        ray.train.report(epochs[-1], checkpoint=ray.train.Checkpoint.from_directory(directory))
