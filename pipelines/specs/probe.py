"""What `selfie probe` measures: one pretrained encoder's frozen representations on one data
dir, against randomly initialised encoders of the same preset. Imports neither torch nor Ray."""

from __future__ import annotations

from pydantic import Field

from pipelines.specs.common import (
    DataSpec,
    ExperimentName,
    PretrainedWeights,
    RunName,
)

DEFAULT_PROBE_EXPERIMENT = "selfie-probe"


class ProbeSpec(DataSpec):
    """kNN and linear-probe accuracy of `u` and of the trunk's features (docs/RESULTS.md)."""

    pretrained: PretrainedWeights = Field(
        description="The encoder to probe: runs:/ID, a run id, an encoder.pt or a result folder."
    )
    seeds: int = Field(
        default=3, ge=1, le=20, description="Random-init encoders (seeds 0..N-1): the baseline."
    )
    experiment: ExperimentName | None = Field(
        default=None,
        description="MLflow experiment (default: the pretraining run's, else "
        f"{DEFAULT_PROBE_EXPERIMENT}).",
    )
    run_name: RunName | None = Field(default=None, description="Run name (default: generated).")
    calibration_images: int = Field(
        default=1024,
        ge=1,
        le=100_000,
        description="Training images that re-estimate BatchNorm statistics before reading.",
    )
    # Features are held in memory (n x d floats per representation) and kNN compares every
    # val image with every train image: capped, the first images in shard order (ingest
    # shuffles each split, so they are a random sample). 50,000 x 1,024 floats: 200 MB.
    max_train_images: int = Field(
        default=50_000, ge=10, le=200_000,
        description="Train images read at most (the kNN bank and the probe's training set).",
    )  # fmt: skip
    max_val_images: int = Field(
        default=10_000, ge=10, le=50_000, description="Validation images read at most."
    )
