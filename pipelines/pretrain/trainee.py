"""Build and restore one rank's training objects (torchtitan's build / restore): plain
PyTorch, no Ray, so the Ray worker and `selfie bench gpu` build them the same way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from pipelines.data.device_decode import decode_device
from pipelines.data.loader import ShardData
from pipelines.data.stream_position import StreamPosition
from pipelines.pretrain.plan import PretrainPlan
from pipelines.training.checkpoint import training_state
from pipelines.training.compile import compiled_for, is_compiled
from pipelines.training.optim import build_optimizer, build_scheduler
from pipelines.training.rng_state import rank_rng_state, restore_rank_rng_state
from pipelines.training.steps import place, unwrap
from selfie_core.selfie_model import SelfieModel


@dataclass
class Trainee:
    """One rank's model (possibly wrapped by DDP and compile), optimizer, schedule, mask
    generator and where it stands: `step`, and the data stream's position at `resumed_from`
    (the loader takes one batch per step from there)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    rank: int
    device: torch.device
    stream: StreamPosition
    step: int = 0
    resumed_from: int = 0
    restored_rng: bool = False
    saved_rng: dict | None = field(default=None, repr=False)

    @property
    def compiled(self) -> bool:
        return is_compiled(self.model)

    def stream_now(self) -> StreamPosition:
        """The loader's position after the batches of the steps taken since the restore."""
        return self.stream.advanced(self.step - self.resumed_from)


def build_trainee(plan: PretrainPlan, rank: int, device: torch.device) -> Trainee:
    """Fresh objects for `rank`: weights from the spec's seed (alike on every rank), other
    draws (dropout, masks) from per-rank seeds."""
    spec = plan.spec
    torch.manual_seed(spec.seed)  # the initial weights follow the spec's seed
    model = place(SelfieModel(plan.model), device)
    torch.manual_seed(spec.seed * 1_000_003 + rank)  # dropout and other draws, per rank
    optimizer = build_optimizer(model, spec.optim, lr=plan.recipe.effective_lr)
    scheduler = build_scheduler(
        optimizer, spec.optim, plan.total_steps, warmup_steps=plan.recipe.effective_warmup_steps
    )
    # Masks are drawn on the training device: no host work or copy per step.
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed * 1_000_003 + rank * 7919)
    stream = StreamPosition(0, 0, spec.batch_size, spec.loader_workers, spec.workers)
    return Trainee(model, optimizer, scheduler, generator, rank, device, stream)


def restore_trainee(trainee: Trainee, state: dict, plan: PretrainPlan) -> None:
    """Continue from a training state: weights, optimizer, schedule, step and the data
    stream's position; this rank's own generator states are kept for `resume_rng`. A state
    saved by another number of
    ranks (or before these were saved) cannot continue the streams exactly: masks are then
    re-seeded from (seed, rank, step) and the data starts a fresh pass."""
    trainee.model.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    trainee.scheduler.load_state_dict(state["scheduler"])
    step = int(state["step"])
    trainee.step = trainee.resumed_from = step
    ranks = state.get("ranks") or []
    if len(ranks) == plan.spec.workers:
        trainee.saved_rng = ranks[trainee.rank]  # set by `resume_rng`, just before the loop
    else:
        trainee.generator.manual_seed(plan.spec.seed * 1_000_003 + trainee.rank * 7919 + step)
    if "loader" in state:
        trainee.stream = StreamPosition.from_dict(state["loader"])
    else:
        trainee.stream = StreamPosition(plan.epoch_of(step) + 1, 0, plan.spec.batch_size)


def resume_rng(trainee: Trainee) -> None:
    """Set this rank's generators to their saved states, last thing before the loop: what
    runs between build and loop (creating the data iterator draws a seed from torch's
    generator) runs in a fresh run too, so restoring earlier would shift every stream."""
    if trainee.saved_rng is not None:
        trainee.restored_rng = restore_rank_rng_state(trainee.saved_rng, trainee.generator)
        if not trainee.restored_rng:  # saved on another kind of device
            seed = trainee.generator.initial_seed() + trainee.step
            trainee.generator.manual_seed(seed)
        trainee.saved_rng = None


def data_stream(
    trainee: Trainee, plan: PretrainPlan, data: ShardData, world: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches from where the trainee's stream stands, then its generators set
    (`resume_rng`): the last step before the loop, in fresh and resumed runs alike."""
    spec = plan.spec
    loader = data.train_loader(
        spec.batch_size,
        rank=trainee.rank,
        world_size=world,
        num_workers=spec.loader_workers,
        seed=plan.loader_seed,
        image_size=plan.model.image_size,
        decode_on=decode_device(spec.jpeg_decode, trainee.device),
        start=trainee.stream,
    )
    batches = iter(loader)
    resume_rng(trainee)
    return batches


def compile_trainee(trainee: Trainee, plan: PretrainPlan) -> None:
    """Put the (possibly DDP-wrapped) model under torch.compile when `compile` resolves to
    on for this device; the first step then compiles (the loop says so)."""
    trainee.model = compiled_for(trainee.model, plan.spec.compile, trainee.device)


def snapshot(trainee: Trainee, plan: PretrainPlan, ranks: list[dict]) -> dict:
    """The full training state at `trainee.step` on the host; `ranks`: every rank's
    `rank_rng_state`, gathered by the caller."""
    return training_state(
        model=unwrap(trainee.model),
        optimizer=trainee.optimizer,
        scheduler=trainee.scheduler,
        step=trainee.step,
        epoch=plan.epoch_of(trainee.step),
        ranks=ranks,
        loader=trainee.stream_now().to_dict(),
        config=plan.model,
        manifest_digest=plan.manifest_digest,
    )


def own_rng_state(trainee: Trainee) -> dict:
    return rank_rng_state(trainee.generator)
