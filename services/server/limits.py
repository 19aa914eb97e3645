"""What one submission may ask of the cluster, checked before a job is recorded.

Each limit is a service setting (`SELFIE_MAX_...`); a spec over one is refused with one
sentence naming the field, the limit and the setting that raises it. Whether the nodes can
host the asked worker shape is checked by the job itself against the alive nodes
(`pipelines/runtime/placement.py`), before anything is scheduled."""

from __future__ import annotations

from pipelines.specs import IngestSpec, PipelineSpec, PretrainSpec, SweepSpec
from pipelines.specs.common import Spec
from pipelines.specs.errors import SelfieError
from pipelines.specs.ingest import IngestOptions
from pipelines.specs.pretrain import PretrainOptions
from pipelines.specs.sweep import SweepOptions
from pipelines.specs.sweep_cells import cell_count, trial_count
from services.server.settings import ServiceSettings

SYNTHETIC_DEFAULT_SIDE = 32  # the side `synthetic` sources use without image_size


class LimitExceeded(SelfieError):
    """A spec that asks more than the service allows one job."""


def _over(field: str, value: float, limit: int, setting: str, what: str = "") -> LimitExceeded:
    return LimitExceeded(
        f"{field} is {value:,}{what}, over this service's limit of {limit:,} "
        f"(SELFIE_{setting.upper()}): ask for less, or have an admin raise the setting"
    )


def _cap(field: str, value: int | None, limit: int, setting: str) -> None:
    if value is not None and value > limit:
        raise _over(field, value, limit, setting)


def _pretrain(section: PretrainOptions, at: str, s: ServiceSettings) -> None:
    _cap(f"{at}max_steps", section.max_steps, s.max_steps, "max_steps")
    _cap(f"{at}epochs", section.epochs, s.max_epochs, "max_epochs")
    _cap(f"{at}workers", section.workers, s.max_workers, "max_workers")


def _sweep_shape(section: SweepOptions, at: str, s: ServiceSettings) -> None:
    _cap(f"{at}steps", section.steps, s.max_steps, "max_steps")
    _cap(f"{at}min_steps", section.min_steps, s.max_steps, "max_steps")
    _cap(f"{at}epochs", section.epochs, s.max_epochs, "max_epochs")
    _cap(f"{at}workers_per_trial", section.workers_per_trial, s.max_workers, "max_workers")


def _sweep_trials(spec: SweepSpec, at: str, s: ServiceSettings) -> None:
    cells = cell_count(spec)  # first, by arithmetic: every cell runs at least one trial
    if cells > s.max_sweep_trials:
        raise _over(f"{at}the sweep", cells, s.max_sweep_trials, "max_sweep_trials", " cells")
    trials = trial_count(spec)
    if trials > s.max_sweep_trials:
        raise _over(f"{at}the sweep", trials, s.max_sweep_trials, "max_sweep_trials", " trials")


def _source(source: str | None, options: IngestOptions, at: str, s: ServiceSettings) -> None:
    """`synthetic:COUNT` generates COUNT images in memory: bound their pixels."""
    if not source or not source.startswith("synthetic:"):
        return
    try:
        count = int(source.removeprefix("synthetic:"))
    except ValueError:
        return  # not a count: the ingest refuses it in its own words
    side = options.image_size or SYNTHETIC_DEFAULT_SIDE
    megabytes = count * side * side * 3 / 2**20
    if megabytes > s.max_synthetic_mb:
        raise LimitExceeded(
            f"{at}source {source[:40]!r} would generate {megabytes:,.0f} MB of pixels "
            f"({count:,} images of {side}x{side}), over this service's limit of "
            f"{s.max_synthetic_mb:,} MB (SELFIE_MAX_SYNTHETIC_MB): ask for fewer or smaller "
            "images"
        )


def check_limits(spec: Spec, settings: ServiceSettings) -> None:
    """Raise `LimitExceeded` when the spec asks more than one job may."""
    if isinstance(spec, IngestSpec):
        _source(spec.source, spec, "spec.", settings)
    elif isinstance(spec, PretrainSpec):
        _pretrain(spec, "spec.", settings)
    elif isinstance(spec, SweepSpec):
        _sweep_shape(spec, "spec.", settings)
        _sweep_trials(spec, "spec: ", settings)
    elif isinstance(spec, PipelineSpec):
        _source(spec.source, spec.ingest, "spec.", settings)
        _pretrain(spec.pretrain, "spec.pretrain.", settings)
        _sweep_shape(spec.sweep, "spec.sweep.", settings)
        # The pipeline's sweep finetunes one encoder per pretraining seed.
        stand_ins = [{"run_id": f"{k:032x}"} for k in range(spec.pretrain_seeds)]
        pretrained = stand_ins if "selfie" in spec.sweep.inits else []
        _sweep_trials(spec.sweep_spec(pretrained, "limits-check"), "spec.sweep: ", settings)
