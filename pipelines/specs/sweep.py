"""The sweep spec: labeled fraction x seed x init x searched hyper-parameters on Ray Tune."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from pipelines.specs.common import (
    CompileChoice,
    DataSpec,
    ExperimentName,
    FileWeights,
    JpegDecode,
    PresetName,
    PretrainedWeights,
    Spec,
    StoragePath,
    TrackedRunSpec,
)

ArchitectureName = Literal["resnet50", "hybrid"]
"""Finetune architectures: `resnet50` (P's stages inside a ResNet-50 on the whole image) and
`hybrid` (P on patches + attention pooling A + a linear head, the pretraining regime)."""
InitName = Literal["selfie", "scratch"]
FinetuneMode = Literal["full", "linear"]
"""`full`: every layer trains; `linear`: the encoder is frozen (BatchNorm statistics too) and
only the classification head trains, a linear probe of the pretrained (or random) encoder."""


def _one_or_many(value: object) -> object:
    """One weights reference (YAML, REST or a flag) is a list of one; none is an empty list."""
    if value is None:
        return []
    return value if isinstance(value, list | tuple) else [value]


class SearchSpec(Spec):
    """The hyper-parameters searched, identically for both inits (a fair baseline)."""

    mode: Literal["grid", "random"] = Field(default="grid", description="grid or random.")
    lr: list[float] = Field(
        default=[3e-4, 1e-3, 3e-3, 1e-2],
        min_length=1,
        max_length=32,
        description="Learning rates searched (log-spaced, both inits).",
    )
    weight_decay: list[float] = Field(
        default=[0.0, 0.05], min_length=1, max_length=32, description="Weight decays searched."
    )
    num_samples: int = Field(
        default=4, ge=1, le=1000, description="Random mode: draws, the same for every cell."
    )
    seed: int = Field(default=0, ge=0, description="Random mode: seed of the draws.")
    asha: bool = Field(default=False, description="Stop weak trials early (ASHA, on val).")
    scope: Literal["every-seed", "first-seed"] = Field(
        default="every-seed",
        description="every-seed: every cell searches; first-seed: finetune seed 0 with the "
        "first pretrained weights searches, the other seeds and weights train its choice.",
    )

    @model_validator(mode="after")
    def _random_needs_a_range(self) -> SearchSpec:
        if (
            self.mode == "random"
            and self.num_samples > 1
            and len(set(self.lr)) == 1
            and len(set(self.weight_decay)) == 1
        ):
            raise ValueError(
                "random search draws between the lowest and highest lr and weight decay, and "
                "one value of each gives identical draws: give two learning rates (or two "
                "weight decays) as bounds, or set num_samples to 1"
            )
        return self

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, values: list[float]) -> list[float]:
        if any(v <= 0 or v > 10 for v in values):
            raise ValueError("every learning rate must lie in (0, 10]")
        return values

    @field_validator("weight_decay")
    @classmethod
    def _wd_range(cls, values: list[float]) -> list[float]:
        if any(v < 0 or v > 1 for v in values):
            raise ValueError("every weight decay must lie in [0, 1]")
        return values


class SweepOptions(Spec):
    """The grid, the search and the trial shape: the part of a sweep a pipeline can set."""

    preset: PresetName = Field(
        default="tiny", description="Model size; used only when no pretrained weights are given."
    )
    image_size: int | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="Model image size when no pretrained weights are given (default: the "
        "stored size; needed for data of varied sizes).",
    )
    architectures: list[ArchitectureName] = Field(
        default=["resnet50", "hybrid"], min_length=1, description="Finetune architectures."
    )
    inits: list[InitName] = Field(
        default=["scratch", "selfie"], min_length=1, description="Inits: scratch, selfie."
    )
    fractions: list[float] = Field(
        default=[0.05, 0.1, 0.2, 1.0], min_length=1, max_length=32, description="Labeled fractions."
    )
    seeds: int = Field(default=3, ge=1, le=100, description="Seeds 0..seeds-1 per cell.")
    search: SearchSpec = SearchSpec()
    epochs: int = Field(
        default=30, ge=1, le=10_000, description="Finetune epochs (passes over the subset)."
    )
    min_steps_per_epoch: int = Field(
        default=10, ge=1, le=100_000, description="Small subsets are sampled up to this."
    )
    min_steps: int = Field(
        default=500,
        ge=0,
        le=10_000_000,
        description="Optimizer steps per trial at least, whatever the subset's size.",
    )
    steps: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Exact optimizer steps per trial (overrides epochs and min_steps).",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Stop a trial when validation has not improved for this many epochs.",
    )
    batch_size: int = Field(default=64, ge=2, le=65536, description="Images per step.")
    warmup_epochs: int = Field(default=1, ge=0, le=1000, description="Linear warmup epochs.")
    finetune_mode: FinetuneMode = Field(
        default="full",
        description="full: every layer trains; linear: the encoder is frozen (BatchNorm "
        "statistics too) and only the classification head trains (a linear probe).",
    )
    pretrained_lr_scale: float = Field(
        default=1.0, gt=0, le=10,
        description="Learning-rate multiplier for the layers selfie init copies from "
        "pretraining (the same layers of a scratch encoder get it too).",
    )  # fmt: skip
    lp_ft_epochs: int = Field(
        default=0, ge=0, le=10_000,
        description="LP-FT: train only the head for this many first epochs (encoder frozen), "
        "then every layer for the rest of the budget.",
    )  # fmt: skip
    reinit_attention: bool = Field(
        default=False,
        description="Hybrid with selfie init: keep the pretrained patch network P but start "
        "the attention pooling A afresh instead of copying it.",
    )
    verify: bool = Field(default=False, description="Check shard checksums before the sweep.")
    cpus_per_trial: int = Field(
        default=1, ge=1, le=256, description="CPUs per trial (per worker when distributed)."
    )
    loader_workers: int = Field(
        default=1, ge=0, le=64, description="DataLoader processes per trial (0: in the trial)."
    )
    jpeg_decode: JpegDecode = "auto"
    compile: CompileChoice = "auto"
    gpus_per_trial: float | None = Field(
        default=None, ge=0, le=16,
        description="GPUs per trial, per worker when distributed (default: 1 if the cluster "
        "has GPUs, else 0).",
    )  # fmt: skip
    workers_per_trial: int = Field(
        default=1, ge=1, le=1024,
        description="Ray Train (DDP) workers per trial; 1 runs the trial in one process.",
    )  # fmt: skip
    max_concurrent: int | None = Field(
        default=None, ge=1, le=10_000, description="Trials at once (default: as resources allow)."
    )
    trial_max_failures: int = Field(default=1, ge=0, le=10, description="Retries of a crash.")
    storage_path: StoragePath | None = Field(
        default=None, description="Trial storage; overrides SELFIE_STORAGE_PATH."
    )

    @model_validator(mode="after")
    def _recipe_fits(self) -> SweepOptions:
        if self.finetune_mode == "linear" and self.lp_ft_epochs:
            raise ValueError(
                "lp_ft_epochs probes and then finetunes, but finetune_mode linear never "
                "trains the encoder: set lp_ft_epochs to 0 or finetune_mode to full"
            )
        if self.finetune_mode == "linear" and self.pretrained_lr_scale != 1.0:
            raise ValueError(
                "pretrained_lr_scale has no effect with finetune_mode linear (the encoder is "
                "frozen): leave it at 1"
            )
        if self.steps is None and self.lp_ft_epochs >= self.epochs:
            raise ValueError(
                f"lp_ft_epochs ({self.lp_ft_epochs}) must be fewer than epochs "
                f"({self.epochs}), or the encoder never trains after its probe"
            )
        if self.steps is not None and self.lp_ft_epochs * self.min_steps_per_epoch >= self.steps:
            raise ValueError(
                f"lp_ft_epochs ({self.lp_ft_epochs}) of at least min_steps_per_epoch "
                f"({self.min_steps_per_epoch}) steps use all {self.steps} steps, so the "
                "encoder never trains after its probe: lower lp_ft_epochs"
            )
        if self.reinit_attention and "hybrid" not in self.architectures:
            raise ValueError(
                "reinit_attention re-initialises the hybrid's attention pooling, but "
                "architectures has no hybrid: add hybrid or drop reinit_attention"
            )
        return self

    def recipe(self) -> dict[str, object]:
        """The finetune recipe every trial of the sweep follows, by field name."""
        names = ("finetune_mode", "pretrained_lr_scale", "lp_ft_epochs", "reinit_attention")
        return {name: getattr(self, name) for name in names}

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"labeled fractions must lie in (0, 1], got {bad[0]}")
        return sorted(set(values))


class SweepSpec(TrackedRunSpec, SweepOptions, DataSpec):
    """Labeled-fraction finetune sweep: fraction x seed x init x searched hyper-parameters."""

    kind: Literal["sweep"] = "sweep"
    pretrained: Annotated[list[PretrainedWeights], BeforeValidator(_one_or_many)] = Field(
        default=[],
        max_length=64,
        description="Pretrained weights for init 'selfie', one per pretraining seed: MLflow "
        "run ids (runs:/ID), encoder.pt files or pretraining result folders.",
    )
    experiment: ExperimentName = Field(default="selfie-sweep", description="MLflow experiment.")

    @model_validator(mode="after")
    def _weights_needed(self) -> SweepSpec:
        if "selfie" in self.inits and not self.pretrained:
            raise ValueError("init 'selfie' needs pretrained weights: set pretrained to a run id")
        seen = set()
        for weights in self.pretrained:
            key = weights.model_dump_json()
            if key in seen:
                named = weights.path if isinstance(weights, FileWeights) else weights.run_id
                raise ValueError(
                    f"pretrained names the same weights twice ({named}): each "
                    "entry counts as one pretraining seed, so give each weights once"
                )
            seen.add(key)
        return self
