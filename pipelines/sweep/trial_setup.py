"""What one-process and distributed trials share: the name of the best-weights file, the key of
a labeled subset, the finetune configuration a trial's parameters resolve to, the setup every
trial process does before its first step, and the metrics an epoch reports. Kept apart from
both trial modules so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.data.device_decode import decode_device
from pipelines.data.loader import ShardData
from pipelines.specs import SweepSpec
from pipelines.sweep.finetune import (
    EpochResult,
    FinetuneConfig,
    Ranks,
    evaluate_on_test,
    finetune,
)
from pipelines.sweep.trial_plan import architecture_of
from pipelines.training.checkpoint import EncoderFile
from selfie_core.config import SelfieConfig

BEST_STATE_FILE = "best_model.pt"


def subset_key(fraction: float, seed: int) -> str:
    return f"{fraction:g}/{seed}"


def finetune_config(spec: SweepSpec, config: dict) -> FinetuneConfig:
    return FinetuneConfig(
        architecture=architecture_of(config),
        init=config["init"],
        lr=float(config["lr"]),
        weight_decay=float(config["weight_decay"]),
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        min_steps_per_epoch=spec.min_steps_per_epoch,
        warmup_epochs=spec.warmup_epochs,
        seed=int(config["seed"]),
        steps=spec.steps,
        min_steps=spec.min_steps,
        patience=spec.patience,
        compile=spec.compile,
        **spec.recipe(),
    )


@dataclass
class TrialSetup:
    """A trial process ready to finetune: the validated spec, its recipe, its data, the
    device. Built the same way in a one-process trial and on every rank of a DDP one."""

    spec: SweepSpec
    cfg: FinetuneConfig
    data: ShardData
    indices: list[int] | None  # positions of the labeled subset, manifest order (None: all)
    model_config: SelfieConfig
    device: torch.device

    @property
    def labeled(self) -> int:
        return len(self.indices) if self.indices is not None else self.data.manifest.counts["train"]

    @property
    def streaming(self) -> dict:
        """How the trial's data is read: its spec's loader processes and JPEG decode."""
        return {
            "loader_workers": self.spec.loader_workers,
            "decode_on": decode_device(self.spec.jpeg_decode, self.device),
        }

    def epochs(self, weights: EncoderFile | None, ranks: Ranks = Ranks(), wrap=lambda model: model):
        """The trial's epochs (`finetune.finetune`)."""
        cfg, data, config = self.cfg, self.data, self.model_config
        return finetune(
            cfg, data, self.indices, config, weights, self.device,
            ranks=ranks, wrap=wrap, **self.streaming,
        )  # fmt: skip

    def test_accuracy(self, state: dict[str, torch.Tensor]) -> float:
        """Accuracy on the test split of the weights validation chose (read once, after)."""
        config = self.model_config
        return evaluate_on_test(self.cfg, self.data, config, state, self.device, **self.streaming)


def setup_trial(
    sweep: dict,
    config: dict,
    indices: list[int] | None,
    model_config: dict,
    device: torch.device | None = None,
) -> TrialSetup:
    """Validate the sweep spec, size torch's threads to the trial's CPUs, pick the device
    (given: a Train rank's; else CUDA when the trial asks for GPUs), open the data."""
    spec = SweepSpec.model_validate(sweep)
    torch.set_num_threads(spec.cpus_per_trial)
    if device is None:
        use_cuda = bool(spec.gpus_per_trial) and torch.cuda.is_available()
        device = torch.device("cuda" if use_cuda else "cpu")
    return TrialSetup(
        spec=spec,
        cfg=finetune_config(spec, config),
        data=ShardData.open(spec.data_dir()),
        indices=indices,
        model_config=SelfieConfig.from_dict(model_config),
        device=device,
    )


def epoch_metrics(result: EpochResult, labeled: int) -> dict:
    """What a trial reports to Tune for one epoch (rank 0's, in a DDP trial)."""
    return {
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
