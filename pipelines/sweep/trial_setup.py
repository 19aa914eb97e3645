"""What one-process and distributed trials share: the name of the best-weights file, the key of
a labeled subset, and the finetune configuration a trial's parameters resolve to. Kept apart
from both trial modules so neither imports the other."""

from __future__ import annotations

from pipelines.specs import SweepSpec
from pipelines.sweep.finetune import FinetuneConfig

BEST_STATE_FILE = "best_model.pt"


def subset_key(fraction: float, seed: int) -> str:
    return f"{fraction:g}/{seed}"


def finetune_config(spec: SweepSpec, config: dict) -> FinetuneConfig:
    return FinetuneConfig(
        encoder=config["encoder"],
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
    )
