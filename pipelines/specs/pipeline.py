"""The pipeline spec: ingest (when needed), pretrain, sweep and report as one run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.specs.common import (
    DataSpec,
    ExperimentName,
    PathText,
    PretrainedWeights,
    TrackedRunSpec,
)
from pipelines.specs.ingest import IngestOptions, IngestSpec, SourceText
from pipelines.specs.pretrain import PretrainOptions, PretrainSpec
from pipelines.specs.sweep import SweepOptions, SweepSpec


class PipelineSpec(TrackedRunSpec, DataSpec):
    """Ingest `source` into `data` when it has no manifest, pretrain, sweep and report, as one
    MLflow parent run with the pretraining and sweep nested under it. Each section takes the
    options of its own spec; the pipeline sets the data dir, the experiment, the run names and
    the weights the sweep starts from."""

    kind: Literal["pipeline"] = "pipeline"
    data: PathText = Field(description="Data dir; ingested from `source` when it has no manifest.")
    source: SourceText | None = Field(default=None, description="Ingest source (see ingest).")
    ingest: IngestOptions = IngestOptions()
    pretrain: PretrainOptions = PretrainOptions()
    sweep: SweepOptions = SweepOptions()
    pretrain_seeds: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Pretrainings with seeds pretrain.seed, +1, ...; the selfie cells average "
        "over them.",
    )
    experiment: ExperimentName = Field(default="selfie-pipeline", description="MLflow experiment.")

    @model_validator(mode="after")
    def _seeds_need_selfie(self) -> PipelineSpec:
        if self.pretrain_seeds > 1 and "selfie" not in self.sweep.inits:
            raise ValueError(
                f"pretrain_seeds is {self.pretrain_seeds} but the sweep finetunes no 'selfie' "
                "init, so no cell would use the extra pretrainings: add selfie to sweep.inits "
                "or set pretrain_seeds to 1"
            )
        return self

    def ingest_spec(self) -> IngestSpec:
        assert self.source is not None
        return IngestSpec(**self.ingest.model_dump(), source=self.source, out=self.data)

    def pretrain_spec(self, k: int, run_name: str, *, resume: bool = False) -> PretrainSpec:
        """The k-th pretraining (0-based): the pretrain section with seed `pretrain.seed + k`."""
        return PretrainSpec(
            **(self.pretrain.model_dump() | {"seed": self.pretrain.seed + k}),
            data=self.data,
            experiment=self.experiment,
            run_name=run_name,
            resume=resume,
        )

    def sweep_spec(
        self, pretrained: list[PretrainedWeights], run_name: str, *, resume: bool = False
    ) -> SweepSpec:
        return SweepSpec(
            **self.sweep.model_dump(),
            data=self.data,
            pretrained=pretrained,
            experiment=self.experiment,
            run_name=run_name,
            resume=resume,
        )
