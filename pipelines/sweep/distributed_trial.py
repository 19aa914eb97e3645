"""A sweep trial on several Ray Train workers (DDP), for trials too big for one process.

Train V2 inside Tune: the trial is a plain function that builds a `TorchTrainer` and calls
`fit()` under a run name unique to the trial (reusing one would silently resume an old run).
The Train workers finetune with DDP, each rank on its own draw of the labeled subset, the
same number of steps on every rank; rank 0 validates and keeps the best-validation weights,
writing them with the per-epoch metrics into the run's final checkpoint. The trial function
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
    subsets: dict[str, list[int] | None],
    model_config: dict,
    encoder,
) -> None:
    from ray import tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.specs.settings import get_settings
    from pipelines.sweep.trial_setup import BEST_STATE_FILE, subset_key

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
            "indices": subsets[subset_key(config["fraction"], config["seed"])],
            "model_config": model_config,
            "encoder": encoder,
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
    """One rank of a distributed trial: DDP finetune, rank 0 validates and checkpoints."""
    import ray.train
    import ray.train.torch

    from pipelines.data.device_decode import decode_device
    from pipelines.data.geometry import model_image_size
    from pipelines.data.loader import ShardData
    from pipelines.data.normalize import normalized_batches
    from pipelines.sweep.finetune import (
        build_model,
        epoch_budget,
        finetune_optimizer,
        steps_per_epoch,
        train_epoch,
    )
    from pipelines.sweep.trial_setup import BEST_STATE_FILE, finetune_config
    from pipelines.training.steps import evaluate_classifier, place, unwrap
    from selfie_core.config import SelfieConfig

    spec = SweepSpec.model_validate(loop["sweep"])
    cfg = finetune_config(spec, loop["config"])
    torch.set_num_threads(spec.cpus_per_trial)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    decode_on = decode_device(spec.jpeg_decode, device)
    data = ShardData.open(spec.data_dir())
    indices = loop["indices"]
    labeled = len(indices) if indices is not None else data.manifest.counts["train"]
    model_config = SelfieConfig.from_dict(loop["model_config"])
    size = model_image_size(
        data.manifest.image_size, model_config.image_size, model_config.patch_size
    )
    model = place(
        build_model(cfg, model_config, data.manifest.num_classes, loop["encoder"]), device
    )
    # The same number of steps on every rank (DDP would hang otherwise): the one-process
    # trial's steps, split among the ranks, which stream disjoint shares of the subset.
    steps = -(-steps_per_epoch(labeled, cfg) // world)
    batches = iter(
        data.train_loader(
            cfg.batch_size,
            rank=rank,
            world_size=world,
            num_workers=spec.loader_workers,
            seed=cfg.seed,
            image_size=size,
            indices=indices,
            decode_on=decode_on,
        )
    )
    mean, std = data.manifest.mean, data.manifest.std
    num_epochs = epoch_budget(labeled, cfg)
    optimizer, scheduler, grad_clip = finetune_optimizer(model, cfg, steps, num_epochs)
    model = ray.train.torch.prepare_model(model)

    epochs: list[dict] = []
    best_acc, best_epoch, best_state = -1.0, 0, {}
    for epoch in range(1, num_epochs + 1):
        train_loss, train_acc = train_epoch(
            model, batches, steps, mean, std, device, optimizer, scheduler, grad_clip
        )
        metrics = {"epoch": epoch, "train_loss": train_loss,
                   "train_accuracy": train_acc, "labeled_samples": labeled,
                   "epochs_budget": num_epochs, "steps_per_epoch": steps,
                   "workers": world}  # fmt: skip
        if rank == 0:
            val_batches = data.eval_loader("val", 256, image_size=size, decode_on=decode_on)
            val = evaluate_classifier(
                unwrap(model), normalized_batches(val_batches, mean, std, device), device
            )
            if val.accuracy > best_acc:
                best_acc, best_epoch = val.accuracy, epoch
                best_state = {
                    k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()
                }
            metrics.update(val_loss=val.loss, val_accuracy=val.accuracy,
                           best_val_accuracy=best_acc, best_epoch=best_epoch)  # fmt: skip
            epochs.append(metrics)
        if epoch < num_epochs:
            ray.train.report(metrics)  # a barrier: ranks wait here while rank 0 validates
    if rank != 0:
        ray.train.report({"epoch": num_epochs})
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(best_state, Path(directory) / BEST_STATE_FILE)
        (Path(directory) / EPOCHS_FILE).write_text(json.dumps(epochs))
        ray.train.report(epochs[-1], checkpoint=ray.train.Checkpoint.from_directory(directory))
