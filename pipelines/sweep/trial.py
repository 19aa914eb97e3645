"""The Tune trial: finetune one (encoder, init, fraction, seed, lr, weight decay) and report
validation accuracy each epoch, checkpointing the best-validation weights."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from pipelines.data.device_decode import decode_device
from pipelines.data.loader import ShardData
from pipelines.specs import SweepSpec
from pipelines.sweep.finetune import finetune
from pipelines.sweep.trial_plan import trial_params, weights_index
from pipelines.sweep.trial_setup import BEST_STATE_FILE, finetune_config, subset_key
from pipelines.training.checkpoint import EncoderFile
from selfie_core.config import SelfieConfig


def trial_encoder(params: dict, encoders: list) -> EncoderFile | None:
    """The pretrained weights of a selfie trial (its pretraining seed's); None for scratch.

    `encoders` holds one object-store reference per pretraining, so a trial fetches only the
    encoder it finetunes, not all K of them."""
    import ray

    index = weights_index(params)
    return None if index is None else ray.get(encoders[index])


def finetune_trial(
    config: dict,
    *,
    sweep: dict,
    subsets: dict[str, list[int] | None],
    model_config: dict,
    encoders: list,  # ray.ObjectRef[EncoderFile], one per pretraining
    may_stop_early: bool = False,
) -> None:
    from ray import tune

    spec = SweepSpec.model_validate(sweep)
    config = trial_params(config)
    encoder = trial_encoder(config, encoders)
    if spec.workers_per_trial > 1:  # DDP on Ray Train workers: pipelines/sweep/distributed_trial
        from pipelines.sweep.distributed_trial import run_distributed_trial

        return run_distributed_trial(
            config, sweep=sweep, subsets=subsets, model_config=model_config, encoder=encoder
        )
    torch.set_num_threads(spec.cpus_per_trial)
    device = torch.device("cuda" if spec.gpus_per_trial and torch.cuda.is_available() else "cpu")
    data = ShardData.open(spec.data_dir())
    # Positions in manifest order (None: all); the trial streams them, holding no bytes.
    indices = subsets[subset_key(config["fraction"], config["seed"])]
    labeled = len(indices) if indices is not None else data.manifest.counts["train"]
    cfg = finetune_config(spec, config)
    for result in finetune(
        cfg,
        data,
        indices,
        SelfieConfig.from_dict(model_config),
        encoder,
        device,
        loader_workers=spec.loader_workers,
        decode_on=decode_device(spec.jpeg_decode, device),
    ):
        metrics = {
            "epoch": result.epoch,
            "train_loss": result.train_loss,
            "train_accuracy": result.train_accuracy,
            "val_loss": result.val_loss,
            "val_accuracy": result.val_accuracy,
            "best_val_accuracy": result.best_val_accuracy,
            "labeled_samples": labeled,
            "best_epoch": result.best_epoch,
            "epochs_budget": result.epochs_budget,
            "steps_per_epoch": result.steps_per_epoch,
        }
        # Checkpoint the best-validation weights once, at the end; a trial ASHA may stop at
        # any epoch (`may_stop_early`: the search's, with asha) at every improvement.
        last = result.last
        if (last and result.best_state) or (may_stop_early and result.improved):
            with tempfile.TemporaryDirectory() as directory:
                torch.save(result.best_state, Path(directory) / BEST_STATE_FILE)
                metrics["checkpoint_epoch"] = result.best_epoch
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
