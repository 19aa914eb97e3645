"""The Tune trial: finetune one (architecture, init, fraction, seed, lr, weight decay) and report
validation accuracy each epoch, checkpointing the best-validation weights."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from pipelines.specs import SweepSpec
from pipelines.sweep.trial_plan import trial_params, weights_index
from pipelines.sweep.trial_setup import BEST_STATE_FILE, epoch_metrics, setup_trial, subset_key
from pipelines.training.checkpoint import EncoderFile


def trial_weights(params: dict, weights: list) -> EncoderFile | None:
    """The pretrained weights of a selfie trial (its pretraining seed's); None for scratch.

    `weights` holds one object-store reference per pretraining, so a trial fetches only the
    weights it finetunes, not all K of them."""
    import ray

    index = weights_index(params)
    return None if index is None else ray.get(weights[index])


def finetune_trial(
    config: dict,
    *,
    sweep: dict,
    subsets: dict[str, list[int] | None],
    model_config: dict,
    weights: list,  # ray.ObjectRef[EncoderFile], one per pretraining
    may_stop_early: bool = False,
) -> None:
    from ray import tune

    config = trial_params(config)
    pretrained = trial_weights(config, weights)
    indices = subsets[subset_key(config["fraction"], config["seed"])]
    if SweepSpec.model_validate(sweep).workers_per_trial > 1:  # DDP on Train workers
        from pipelines.sweep.distributed_trial import run_distributed_trial

        return run_distributed_trial(
            config, sweep=sweep, indices=indices, model_config=model_config, weights=pretrained
        )
    trial = setup_trial(sweep, config, indices, model_config)
    for result in trial.epochs(pretrained):
        metrics = epoch_metrics(result, trial.labeled)
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
