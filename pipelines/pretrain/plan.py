"""The run plan: a pretraining's sizes and recipe, resolved once and handed down typed.

The driver (and `selfie bench gpu`) resolves the model's image size, the steps per epoch,
the total steps and the learning-rate recipe for the global batch here, checks them
together, and passes the frozen plan to every worker: no worker recomputes any of it, so
what MLflow records as the recipe is what trains.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.data.geometry import model_image_size
from pipelines.data.loader import ShardData
from pipelines.specs import PretrainSpec, build_spec
from pipelines.specs.common import SpecError
from pipelines.training.optim import EffectiveOptim, effective_optim
from selfie_core.config import SelfieConfig


@dataclass(frozen=True)
class PretrainPlan:
    """Everything a pretraining worker needs beyond its rank: the spec with the data dir and
    image size resolved, the model's config, and the schedule for `workers` ranks."""

    spec: PretrainSpec
    model: SelfieConfig
    steps_per_epoch: int
    total_steps: int
    recipe: EffectiveOptim
    manifest_digest: str

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise SpecError("a pretraining needs at least one step: check epochs and max_steps")
        if self.model.image_size != self.spec.image_size:
            raise SpecError("the plan's model size and the spec's image_size disagree")
        if self.recipe.global_batch_size != self.spec.batch_size * self.spec.workers:
            raise SpecError("the plan's recipe was resolved for another global batch")

    @property
    def loader_seed(self) -> int:
        """One seed for the whole run's data order: a resumed run continues the same stream
        (at its saved position), it does not draw a new one."""
        return self.spec.seed * 31

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch


def total_steps_for(spec: PretrainSpec, steps_per_epoch: int) -> int:
    total = spec.epochs * steps_per_epoch
    return min(total, spec.max_steps) if spec.max_steps else total


def plan_pretrain(spec: PretrainSpec, data: ShardData) -> PretrainPlan:
    """Resolve `spec` against its ingested data: the model's image size (checked against
    patching), the absolute data dir, steps and the recipe for `spec.workers` ranks. The
    resolved spec is validated again (never copied past its validators)."""
    manifest = data.manifest
    size = model_image_size(manifest.image_size, spec.image_size, spec.patch_size)
    resolved = build_spec(
        PretrainSpec,
        {**spec.model_dump(), "data": str(data.data_dir.resolve()), "image_size": size},
    )
    steps_per_epoch = data.steps_per_epoch(resolved.workers, resolved.batch_size)
    return PretrainPlan(
        spec=resolved,
        model=SelfieConfig(
            preset=resolved.preset,
            image_size=size,
            patch_size=resolved.patch_size,
            mask_fraction=resolved.mask_fraction,
            pos_on_visible=resolved.pos_on_visible,
        ),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps_for(resolved, steps_per_epoch),
        recipe=effective_optim(
            resolved.optim, resolved.batch_size, resolved.workers, steps_per_epoch
        ),
        manifest_digest=manifest.digest(),
    )
