"""Job specs: one pydantic model per kind of job, shared by the CLI, the REST API and the
job entrypoint (see `registry.JOB_KINDS`). Imports neither torch nor Ray, so the control
service can validate specs."""

from pipelines.specs.common import (
    MANIFEST_NAME,
    FileWeights,
    PathText,
    PretrainedWeights,
    RunWeights,
    Spec,
    SpecError,
    build_spec,
    describe_validation_error,
    load_spec_file,
)
from pipelines.specs.ingest import IngestOptions, IngestSpec
from pipelines.specs.pipeline import PipelineSpec
from pipelines.specs.pretrain import OptimSpec, PretrainOptions, PretrainSpec
from pipelines.specs.registry import JOB_KINDS, JobKind, JobSpec
from pipelines.specs.sweep import ArchitectureName, InitName, SearchSpec, SweepOptions, SweepSpec

__all__ = [
    "JOB_KINDS",
    "MANIFEST_NAME",
    "ArchitectureName",
    "FileWeights",
    "IngestOptions",
    "IngestSpec",
    "InitName",
    "JobKind",
    "JobSpec",
    "OptimSpec",
    "PathText",
    "PipelineSpec",
    "PretrainOptions",
    "PretrainSpec",
    "PretrainedWeights",
    "RunWeights",
    "SearchSpec",
    "Spec",
    "SpecError",
    "SweepOptions",
    "SweepSpec",
    "build_spec",
    "describe_validation_error",
    "load_spec_file",
]
