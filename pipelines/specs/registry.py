"""The one list of job kinds: each kind's spec model and the function that runs it.

The entrypoint, the CLI, the REST job models and the client all read this table, so a new
kind is one entry here. Runners are named by import path, so reading the table imports
neither torch nor Ray (the control service validates specs without them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.specs.common import Spec
from pipelines.specs.ingest import IngestSpec
from pipelines.specs.pipeline import PipelineSpec
from pipelines.specs.pretrain import PretrainSpec
from pipelines.specs.probe import ProbeSpec
from pipelines.specs.sweep import SweepSpec


class JobResult(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JobKind:
    name: str
    spec: type[Spec]
    runner: str  # "module:function", called as function(spec, settings) -> JobResult
    summary: str

    def run(self, spec: Spec, settings: Any) -> JobResult:
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)(spec, settings)


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind(
            "ingest",
            IngestSpec,
            "pipelines.ingest.driver:run_ingest",
            "Turn images into WebDataset shards and a manifest.",
        ),
        JobKind(
            "pretrain",
            PretrainSpec,
            "pipelines.pretrain.driver:run_pretrain",
            "Pretrain Selfie on Ray Train; print the MLflow run id and checkpoint location.",
        ),
        JobKind(
            "sweep",
            SweepSpec,
            "pipelines.sweep.driver:run_sweep",
            "Finetune on labeled fractions with both inits on Ray Tune; print the table.",
        ),
        JobKind(
            "pipeline",
            PipelineSpec,
            "pipelines.pipeline.driver:run_pipeline",
            "Ingest (if needed), pretrain, sweep and report as one MLflow parent run.",
        ),
        JobKind(
            "probe",
            ProbeSpec,
            "pipelines.probe.driver:run_probe",
            "kNN and linear-probe accuracy of u and trunk features, pretrained vs random init.",
        ),
    )
}

JobSpec = IngestSpec | PretrainSpec | SweepSpec | PipelineSpec | ProbeSpec
