"""The pretraining spec: one Selfie pretraining run on Ray Train."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from pipelines.specs.common import (
    CompileChoice,
    DataSpec,
    ExperimentName,
    JpegDecode,
    NameText,
    PresetName,
    Spec,
    StoragePath,
    TrackedRunSpec,
)
from selfie_core.presets import PRESETS


class OptimSpec(Spec):
    """AdamW with linear warmup then cosine decay to `min_lr_ratio` of the peak.

    The recipe is stated against the global batch, so a run moved from 1 to 32 workers keeps
    it: the peak LR is `lr` scaled by (global batch / `base_batch_size`) per `lr_scaling`, and
    warmup given in epochs or samples becomes steps of the actual global batch."""

    lr: float = Field(
        default=2e-3, gt=0, le=10, description="Peak learning rate at base_batch_size."
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        default="none", description="How the peak LR follows the global batch: none, linear, sqrt."
    )
    base_batch_size: int = Field(
        default=256, ge=1, le=1_000_000, description="Global batch at which lr is the peak LR."
    )
    weight_decay: float = Field(default=0.05, ge=0, le=1, description="AdamW weight decay.")
    warmup_steps: int = Field(
        default=50, ge=0, le=1_000_000,
        description="Linear warmup steps (used when neither warmup_epochs nor warmup_samples).",
    )  # fmt: skip
    warmup_epochs: float | None = Field(
        default=None, ge=0, le=10_000, description="Warmup in epochs of the training split."
    )
    warmup_samples: int | None = Field(
        default=None, ge=0, description="Warmup in images seen (global batch x steps)."
    )
    min_lr_ratio: float = Field(
        default=0.05, ge=0, le=1, description="Final learning rate as a share of the peak."
    )
    grad_clip: float | None = Field(default=1.0, gt=0, description="Gradient norm clip.")

    @model_validator(mode="after")
    def _one_warmup(self) -> OptimSpec:
        if self.warmup_epochs is not None and self.warmup_samples is not None:
            raise ValueError("give warmup_epochs or warmup_samples, not both")
        return self


class PretrainOptions(Spec):
    """The model, the cluster shape and the schedule: the part of a pretraining that a
    pipeline can set."""

    retired_fields: ClassVar[dict[str, str]] = {
        "use_gpu": "set gpus_per_worker (1: a GPU per worker, 0: none; unset: from the cluster)"
    }

    preset: PresetName = Field(default="tiny", description=f"Model size: {', '.join(PRESETS)}.")
    image_size: int | None = Field(
        default=None, gt=0, le=1024, description="Defaults to the manifest's image size."
    )
    patch_size: int | None = Field(
        default=None, gt=0, le=512, description="Defaults to 8 for <=64px images, else 32."
    )
    mask_fraction: float = Field(default=0.25, gt=0, lt=1, description="Share of patches masked.")
    pos_on_visible: bool = Field(
        default=True, description="Add row+column embeddings to visible patches before A."
    )
    workers: int = Field(default=1, ge=1, le=1024, description="Ray Train workers.")
    cpus_per_worker: int | None = Field(
        default=None, ge=1, le=256,
        description="Default: the most that lets all workers fit on the nodes that can host one.",
    )  # fmt: skip
    gpus_per_worker: float | None = Field(
        default=None, ge=0, le=16, description="Default: 1 when the cluster has GPUs, else 0."
    )
    batch_size: int = Field(default=64, ge=2, le=65536, description="Images per worker per step.")
    epochs: int = Field(default=1, ge=1, le=10_000, description="Passes over the training split.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps.")
    loader_workers: int = Field(
        default=1, ge=0, le=64, description="DataLoader processes per worker."
    )
    jpeg_decode: JpegDecode = "auto"
    verify: bool = Field(default=False, description="Check shard checksums before training.")
    optim: OptimSpec = OptimSpec()
    seed: int = Field(default=0, ge=0, description="Seed of the model, masks and data order.")
    checkpoint_every: int | None = Field(
        default=100, ge=1, description="Steps between checkpoints (null: by minutes only)."
    )
    checkpoint_minutes: float | None = Field(
        default=None, gt=0, le=10_000, description="Also checkpoint after this many minutes."
    )
    eval_every: int | None = Field(
        default=500, ge=1, le=10_000_000, description="Steps between readings of the "
        "representation monitor (kNN and linear probe of u and the trunk on 512 train / 256 "
        "val images; also before the first step and at the last; null: off; about 1.7% of a "
        "tiny run at 500, docs/RESULTS.md)."
    )  # fmt: skip
    compile: CompileChoice = "auto"
    max_failures: int = Field(default=3, ge=0, le=100, description="Worker losses to survive.")
    storage_path: StoragePath | None = Field(
        default=None, description="Checkpoint storage; overrides SELFIE_STORAGE_PATH."
    )
    register_model: NameText | None = Field(
        default="selfie-encoder", description="Registered model name for the encoder; null skips."
    )

    @model_validator(mode="after")
    def _geometry(self) -> PretrainOptions:
        if self.image_size and self.patch_size and self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}"
            )
        return self

    @property
    def requested_gpus(self) -> float | None:
        """GPUs per worker as asked (None: decided from the cluster)."""
        return self.gpus_per_worker


class PretrainSpec(TrackedRunSpec, PretrainOptions, DataSpec):
    """One Selfie pretraining run on Ray Train."""

    kind: Literal["pretrain"] = "pretrain"
    experiment: ExperimentName = Field(default="selfie-pretrain", description="MLflow experiment.")
