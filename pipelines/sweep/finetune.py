"""Finetuning one architecture on one labeled subset: plain PyTorch, no Ray.

The one epoch loop of every trial: `finetune` yields one `EpochResult` per epoch with the
model state of the best validation epoch so far, in one process (the Tune trial, the tests)
or on each rank of a DDP trial (`Ranks`: the steps split among ranks, rank 0 validates, and
every rank stops together when patience runs out). Validation data chooses; the test split
is never read here.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipelines.data.geometry import model_image_size
from pipelines.data.loader import ShardData
from pipelines.data.manifest import Manifest
from pipelines.data.normalize import normalized_batches
from pipelines.specs import OptimSpec
from pipelines.sweep.frozen_encoder import freeze_encoder, train_mode
from pipelines.training.checkpoint import EncoderFile
from pipelines.training.compile import compiled_for
from pipelines.training.optim import build_optimizer, build_scheduler
from pipelines.training.steps import classify_step, evaluate_classifier, place, unwrap
from selfie_core.config import SelfieConfig
from selfie_core.finetune_networks import FinetuneArchitecture, build_finetune_network
from selfie_core.weight_transfer import pretrained_names, transfer_pretrained


@dataclass(frozen=True)
class FinetuneConfig:
    """One trial's recipe. `architecture` is the network finetuned (resnet50 | hybrid); the
    pretrained weights a selfie trial starts from are its `weights`, passed beside it. The
    budget is the same for both inits of a cell.

    Budget in optimizer steps: `epochs` passes over the subset (an epoch is at least
    `min_steps_per_epoch` steps), but at least `min_steps` in all, so a tiny subset still gets
    enough updates; or exactly `steps` when set, whatever the subset's size. Either way the
    trial validates once an epoch, and with `patience` it stops when validation has not
    improved for that many epochs (the schedule still spans the whole budget).

    Recipe for the pretrained layers (`pretrained_names`: P's, and A's unless
    `reinit_attention`), the same for both inits (a scratch network's same layers): their
    learning rate times `pretrained_lr_scale`. `finetune_mode` `linear` trains only the head
    (encoder frozen, BatchNorm statistics too); `lp_ft_epochs` does so for the first epochs of
    the budget, then every layer trains (LP-FT, Kumar et al. 2022), under one schedule.
    `reinit_attention`: a selfie hybrid copies P but keeps A's fresh initialisation.
    """

    architecture: FinetuneArchitecture
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
    compile: bool | str = "auto"  # the train step under torch.compile (`resolve_compile`)
    finetune_mode: str = "full"  # "full" | "linear"
    pretrained_lr_scale: float = 1.0
    lp_ft_epochs: int = 0
    reinit_attention: bool = False

    def __post_init__(self) -> None:
        if self.finetune_mode not in ("full", "linear"):
            raise ValueError(f"finetune_mode must be full or linear, got {self.finetune_mode!r}")
        if self.finetune_mode == "linear" and self.lp_ft_epochs:
            raise ValueError("finetune_mode linear never trains the encoder: set lp_ft_epochs 0")


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


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in its trial: the only process, or one rank of a DDP trial
    (whose process group is up). Rank 0 validates and decides when to stop; the others
    follow its decision, so every rank runs the same number of epochs (DDP hangs else)."""

    rank: int = 0
    world: int = 1

    @property
    def validates(self) -> bool:
        return self.rank == 0

    def agree(self, stop: bool) -> bool:
        """Rank 0's `stop`, on every rank."""
        if self.world == 1:
            return stop
        flag = torch.tensor([1 if stop else 0])
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())


def build_model(
    cfg: FinetuneConfig, model_config: SelfieConfig, num_classes: int, weights: EncoderFile | None
) -> nn.Module:
    """The same network (the `cfg.architecture`) for both inits; `selfie` copies the
    pretrained P (and A, unless `cfg.reinit_attention`) from `weights` into it."""
    torch.manual_seed(cfg.seed)
    model = build_finetune_network(cfg.architecture, model_config, num_classes)
    if cfg.init == "selfie":
        if weights is None:
            raise ValueError("init 'selfie' needs pretrained weights")
        transfer_pretrained(
            model,
            weights.state_dict,
            pretrained_config=weights.config,
            network_config=model_config,
            reinit_attention=cfg.reinit_attention,
        )
    return model


def pretrained_lr_scales(cfg: FinetuneConfig, model: nn.Module) -> dict[str, float]:
    """Each parameter's learning-rate multiplier that differs from 1: `pretrained_lr_scale`
    for the layers selfie init copies (`pretrained_names`), whichever the init, so a scratch
    arm trains under the same recipe as its selfie arm."""
    if cfg.pretrained_lr_scale == 1.0:
        return {}
    pretrained = set(pretrained_names(model, reinit_attention=cfg.reinit_attention))
    return {n: cfg.pretrained_lr_scale for n, _ in model.named_parameters() if n in pretrained}


def steps_per_epoch(num_samples: int, cfg: FinetuneConfig) -> int:
    """One pass over the subset, but at least `min_steps_per_epoch` (the subset's stream
    repeats, reshuffled each pass) so a 5% subset still gets a useful number of updates."""
    return max(math.ceil(num_samples / cfg.batch_size), cfg.min_steps_per_epoch)


def epoch_budget(num_samples: int, cfg: FinetuneConfig) -> int:
    """Epochs the trial may run: `steps` (or `epochs` passes, at least `min_steps`) in
    whole epochs, rounded up."""
    per_epoch = steps_per_epoch(num_samples, cfg)
    total = cfg.steps if cfg.steps else max(cfg.epochs * per_epoch, cfg.min_steps)
    return max(1, math.ceil(total / per_epoch))


def finetune_image_size(manifest: Manifest, model_config: SelfieConfig) -> int:
    """The side the trial's images are loaded at (the model's, checked for patching)."""
    return model_image_size(manifest.image_size, model_config.image_size, model_config.patch_size)


@dataclass(frozen=True)
class FinetunePlan:
    """What one trial does, resolved once from its recipe, its data and its model, before
    its first step: the image size, the steps of an epoch on each rank, the epochs budgeted
    and the learning-rate recipe (a validated `OptimSpec`: AdamW, warmup, then cosine to
    zero over the whole budget), and the first `probe_epochs` that train the head alone
    (every epoch for `linear`, LP-FT's probe else). The loop, the optimizer and the reports
    read it; nothing downstream recomputes a value of it."""

    image_size: int
    steps_per_epoch: int
    epochs: int
    optim: OptimSpec
    probe_epochs: int = 0

    def __post_init__(self) -> None:
        if min(self.image_size, self.steps_per_epoch, self.epochs) < 1:
            raise ValueError(f"a finetune plan needs positive sizes and counts, got {self}")
        if not 0 <= self.probe_epochs <= self.epochs:
            raise ValueError(f"probe epochs must lie in [0, {self.epochs}], got {self}")

    def encoder_frozen(self, epoch: int) -> bool:
        """Whether epoch `epoch` (from 1) trains the head alone."""
        return epoch <= self.probe_epochs

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def plan_finetune(
    cfg: FinetuneConfig,
    manifest: Manifest,
    model_config: SelfieConfig,
    num_labeled: int,
    world: int = 1,
) -> FinetunePlan:
    """The trial's plan; on `world` ranks the one-process steps of an epoch are split among
    them (each streams its share of the subset), the budget in epochs unchanged."""
    steps = -(-steps_per_epoch(num_labeled, cfg) // world)
    epochs = epoch_budget(num_labeled, cfg)
    if cfg.finetune_mode != "linear" and cfg.lp_ft_epochs >= epochs:
        raise ValueError(
            f"lp_ft_epochs ({cfg.lp_ft_epochs}) must be fewer than the trial's budget of "
            f"{epochs} epochs, or the encoder never trains after its probe"
        )
    return FinetunePlan(
        image_size=finetune_image_size(manifest, model_config),
        steps_per_epoch=steps,
        epochs=epochs,
        probe_epochs=epochs if cfg.finetune_mode == "linear" else cfg.lp_ft_epochs,
        optim=OptimSpec(
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_steps=cfg.warmup_epochs * steps,
            min_lr_ratio=0.0,
        ),
    )


def finetune_optimizer(
    model: nn.Module, plan: FinetunePlan, lr_scales: dict[str, float] | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, float | None]:
    """The plan's recipe, the same for both inits and for one-process and distributed
    trials, with `lr_scales` (`pretrained_lr_scales`); returns the gradient clip too."""
    optimizer = build_optimizer(model, plan.optim, lr_scales=lr_scales)
    return optimizer, build_scheduler(optimizer, plan.optim, plan.total_steps), plan.optim.grad_clip


def train_epoch(
    model: nn.Module,
    batches: Iterator,
    steps: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float | None,
    encoder_frozen: bool = False,
) -> tuple[float, float]:
    """`steps` classification steps from the endless `batches`; mean loss and accuracy."""
    train_mode(model, encoder_frozen)
    loss_sum, acc_sum, n = 0.0, 0.0, 0
    epoch_batches = itertools.islice(batches, steps)
    for images, labels in normalized_batches(epoch_batches, mean, std, device):
        m = classify_step(model, images, labels, optimizer, scheduler, grad_clip)
        loss_sum, acc_sum, n = loss_sum + m.loss, acc_sum + m.accuracy, n + 1
    return loss_sum / max(n, 1), acc_sum / max(n, 1)


def finetune(
    cfg: FinetuneConfig,
    data: ShardData,
    indices: Sequence[int] | None,
    model_config: SelfieConfig,
    weights: EncoderFile | None,
    device: torch.device,
    *,
    loader_workers: int = 0,
    decode_on: torch.device | None = None,
    ranks: Ranks = Ranks(),
    wrap: Callable[[nn.Module], nn.Module] = lambda model: model,
) -> Iterator[EpochResult]:
    """Finetune on the training samples at `indices` (manifest order; None: all of them).

    The subset is streamed from the shards by `loader_workers` processes (0: this
    process), never held in memory; batches arrive as uint8 and are normalised on the
    device. The stream is seeded by `cfg.seed` alone, so both inits see the same batches.
    On several ranks each streams its share and takes the one-process step count split
    among them; `wrap` is the DDP wrapper; results of ranks other than 0 carry no
    validation figures (NaN) and no state.
    """
    num_labeled = len(indices) if indices is not None else data.manifest.counts["train"]
    plan = plan_finetune(cfg, data.manifest, model_config, num_labeled, ranks.world)
    size, steps, epochs = plan.image_size, plan.steps_per_epoch, plan.epochs
    model = place(build_model(cfg, model_config, data.manifest.num_classes, weights), device)
    train_batches = iter(
        data.train_loader(
            cfg.batch_size,
            rank=ranks.rank,
            world_size=ranks.world,
            num_workers=loader_workers,
            seed=cfg.seed,
            image_size=size,
            indices=indices,
            decode_on=decode_on,
        )
    )
    val_loader = data.eval_loader("val", 256, loader_workers, image_size=size, decode_on=decode_on)
    mean, std = data.manifest.mean, data.manifest.std
    # Built over every parameter, frozen or not: a frozen one gets no gradient, which AdamW
    # skips (no update, no decay), and LP-FT's encoder joins the same schedule when it thaws.
    scales = pretrained_lr_scales(cfg, model)
    optimizer, scheduler, grad_clip = finetune_optimizer(model, plan, scales)
    frozen = plan.encoder_frozen(1)
    freeze_encoder(model, frozen)

    def ready(network: nn.Module) -> nn.Module:
        """The network as the steps run it: DDP-wrapped (`wrap`), then compiled if asked
        (validation reads it unwrapped, eager). Compiling is lazy: the first step pays."""
        return compiled_for(wrap(network), cfg.compile, device)

    model = ready(model)
    best_acc, best_epoch, best_state = -1.0, 0, {}
    for epoch in range(1, epochs + 1):
        if plan.encoder_frozen(epoch) != frozen:  # LP-FT: the probe is over
            frozen = plan.encoder_frozen(epoch)
            freeze_encoder(unwrap(model), frozen)
            # DDP registers the parameters that train when it wraps: wrap again.
            model = ready(unwrap(model))
        train_loss, train_acc = train_epoch(
            model, train_batches, steps, mean, std, device, optimizer, scheduler, grad_clip,
            encoder_frozen=frozen,
        )  # fmt: skip
        val_loss, val_acc, improved = math.nan, math.nan, False
        if ranks.validates:
            val = evaluate_classifier(
                unwrap(model), normalized_batches(val_loader, mean, std, device), device
            )
            val_loss, val_acc, improved = val.loss, val.accuracy, val.accuracy > best_acc
            if improved:
                best_acc, best_epoch = val.accuracy, epoch
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
                )
        out_of_patience = ranks.agree(
            cfg.patience is not None and epoch - best_epoch >= cfg.patience
        )
        yield EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_acc,
            val_loss=val_loss,
            val_accuracy=val_acc,
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
    *,
    loader_workers: int = 0,
    decode_on: torch.device | None = None,
) -> float:
    """Test accuracy of the model validation chose: the test split is read once, never to select."""
    model = build_finetune_network(cfg.architecture, model_config, data.manifest.num_classes)
    model.load_state_dict(state)
    model = place(model, device)
    size = finetune_image_size(data.manifest, model_config)
    batches = data.eval_loader("test", 256, loader_workers, image_size=size, decode_on=decode_on)
    mean, std = data.manifest.mean, data.manifest.std
    test = normalized_batches(batches, mean, std, device)
    return evaluate_classifier(model, test, device).accuracy
