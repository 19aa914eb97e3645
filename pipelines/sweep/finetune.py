"""Finetuning one encoder on one labeled subset: plain PyTorch, no Ray.

The Tune trial and the tests both drive `finetune`, which yields one `EpochResult` per
epoch with the model state of the best validation epoch so far. Validation data chooses;
the test split is never read here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from pipelines.data.augment import transform_for
from pipelines.data.loader import EncodedSamples, ShardData
from pipelines.specs import OptimSpec
from pipelines.training.checkpoint import EncoderFile
from pipelines.training.optim import build_optimizer, build_scheduler
from pipelines.training.steps import classify_step, evaluate_classifier, place
from selfie_core.config import SelfieConfig
from selfie_core.finetune_encoders import EncoderKind, build_encoder
from selfie_core.weight_transfer import transfer_pretrained


@dataclass(frozen=True)
class FinetuneConfig:
    """One trial's recipe. The budget is the same for both inits of a cell.

    Budget in optimizer steps: `epochs` passes over the subset (an epoch is at least
    `min_steps_per_epoch` steps), but at least `min_steps` in all, so a tiny subset still gets
    enough updates; or exactly `steps` when set, whatever the subset's size. Either way the
    trial validates once an epoch, and with `patience` it stops when validation has not
    improved for that many epochs (the schedule still spans the whole budget).
    """

    encoder: EncoderKind
    init: str  # "selfie" | "scratch"
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    min_steps_per_epoch: int
    warmup_epochs: int
    seed: int
    steps: int | None = None
    min_steps: int = 0
    patience: int | None = None


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    improved: bool
    best_val_accuracy: float
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    epochs_budget: int = 0
    steps_per_epoch: int = 0
    last: bool = False  # no epoch follows: budget spent or patience ran out


def build_model(
    cfg: FinetuneConfig, model_config: SelfieConfig, num_classes: int, encoder: EncoderFile | None
) -> nn.Module:
    """The same network for both inits; `selfie` copies the pretrained P (and A) into it."""
    torch.manual_seed(cfg.seed)
    model = build_encoder(cfg.encoder, model_config, num_classes)
    if cfg.init == "selfie":
        if encoder is None:
            raise ValueError("init 'selfie' needs a pretrained encoder")
        transfer_pretrained(
            model,
            encoder.state_dict,
            pretrained_config=encoder.config,
            encoder_config=model_config,
        )
    return model


def steps_per_epoch(num_samples: int, cfg: FinetuneConfig) -> int:
    """One pass over the subset, but at least `min_steps_per_epoch` (sampled with
    replacement) so a 5% subset still gets a useful number of updates."""
    return max(math.ceil(num_samples / cfg.batch_size), cfg.min_steps_per_epoch)


def epoch_budget(num_samples: int, cfg: FinetuneConfig) -> int:
    """Epochs the trial may run: `steps` (or `epochs` passes, at least `min_steps`) in
    whole epochs, rounded up."""
    per_epoch = steps_per_epoch(num_samples, cfg)
    total = cfg.steps if cfg.steps else max(cfg.epochs * per_epoch, cfg.min_steps)
    return max(1, math.ceil(total / per_epoch))


def finetune(
    cfg: FinetuneConfig,
    data: ShardData,
    samples: list[tuple[bytes, int]],
    model_config: SelfieConfig,
    encoder: EncoderFile | None,
    device: torch.device,
) -> Iterator[EpochResult]:
    model = place(build_model(cfg, model_config, data.manifest.num_classes, encoder), device)
    steps = steps_per_epoch(len(samples), cfg)
    dataset = EncodedSamples(samples, transform_for(data.manifest, train=True), seed=cfg.seed)
    sampler = RandomSampler(
        dataset,
        replacement=True,
        num_samples=steps * cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    train_loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    optim = OptimSpec(
        lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_epochs * steps,
        min_lr_ratio=0.0,
    )  # fmt: skip
    optimizer = build_optimizer(model, optim)
    epochs = epoch_budget(len(samples), cfg)
    scheduler = build_scheduler(optimizer, optim, epochs * steps)
    best_acc, best_epoch, best_state = -1.0, 0, {}
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum, acc_sum, n = 0.0, 0.0, 0
        for images, labels in train_loader:
            m = classify_step(
                model, images.to(device), labels.to(device), optimizer, scheduler, optim.grad_clip
            )
            loss_sum, acc_sum, n = loss_sum + m.loss, acc_sum + m.accuracy, n + 1
        val = evaluate_classifier(model, data.eval_loader("val", 256), device)
        improved = val.accuracy > best_acc
        if improved:
            best_acc, best_epoch = val.accuracy, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        out_of_patience = cfg.patience is not None and epoch - best_epoch >= cfg.patience
        yield EpochResult(
            epoch=epoch,
            train_loss=loss_sum / max(n, 1),
            train_accuracy=acc_sum / max(n, 1),
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            improved=improved,
            best_val_accuracy=best_acc,
            best_epoch=best_epoch,
            best_state=best_state,
            epochs_budget=epochs,
            steps_per_epoch=steps,
            last=epoch == epochs or out_of_patience,
        )
        if out_of_patience:
            return


def evaluate_on_test(
    cfg: FinetuneConfig,
    data: ShardData,
    model_config: SelfieConfig,
    state: dict[str, torch.Tensor],
    device: torch.device,
) -> float:
    """Test accuracy of the model validation chose: the test split is read once, never to select."""
    model = build_encoder(cfg.encoder, model_config, data.manifest.num_classes)
    model.load_state_dict(state)
    model = place(model, device)
    return evaluate_classifier(model, data.eval_loader("test", 256), device).accuracy
