"""One MLflow run per driver, named, resumed or created, and marked the same way by all.

Pretraining, sweeps and pipelines each own one run: a new one under the spec's run name (or
a generated one), or, with `resume`, the stopped run of that name. The run is FINISHED when
the driver's block ends, FAILED when it raises (KILLED when its user stopped it), and the
driver's result is written to `<workdir>/results/<name>/result.json`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipelines.runtime.tracking import (
    create_named_run,
    ensure_experiment,
    find_named_run,
    tracking_client,
)
from pipelines.specs import SpecError
from pipelines.specs.common import TrackedRunSpec
from pipelines.specs.errors import Interrupted
from pipelines.specs.names import RESULT_FILE, RUN_NAME_TAG
from pipelines.specs.settings import Settings


@dataclass
class TrackedRun:
    client: MlflowClient
    experiment_id: str
    run_id: str
    name: str
    resumed: bool
    out_dir: Path

    def write_result(self, result: Mapping) -> Path:
        """Write the driver's result beside its report files; return the file."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / RESULT_FILE
        path.write_text(json.dumps(dict(result), indent=2, default=str))
        return path


def results_dir(settings: Settings, experiment: str, name: str) -> Path:
    """Where a run writes its result and encoder: keyed by experiment and run name, so the
    same run name in two experiments never overwrites the other's encoder.pt (both names
    are refused if they hold a separator or only dots)."""
    return settings.resolved_workdir / "results" / experiment / name


def read_result(run, settings: Settings, experiment: str) -> dict:
    """The result a FINISHED run of `experiment` wrote (its `result.json`); one sentence when
    it is gone."""
    name = run.data.tags.get(RUN_NAME_TAG) or run.info.run_name
    path = results_dir(settings, experiment, name) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise SpecError(
            f"run {name!r} finished but its result file {str(path)!r} is missing or unreadable "
            "(was the work dir cleaned?): start the pipeline anew under another run name"
        ) from None


def generated_name(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@contextmanager
def tracked_run(
    spec: TrackedRunSpec,
    settings: Settings,
    *,
    kind: str,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping | None = None,
) -> Iterator[TrackedRun]:
    """Create (or, with `spec.resume`, reopen) the run; mark it FINISHED or FAILED."""
    client = tracking_client(settings)
    experiment_id = ensure_experiment(client, spec.experiment, settings)
    if spec.resume:
        name = spec.run_name or ""
        found = find_named_run(client, experiment_id, name)
        if found is None:
            raise SpecError(
                f"no {kind} run named {name!r} in experiment {spec.experiment!r}: check the "
                "name (`selfie jobs`, the MLflow UI) or start a new run without resume"
            )
        run_id = found.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        name = spec.run_name or generated_name(kind)
        if find_named_run(client, experiment_id, name) is not None:
            raise SpecError(
                f"a {kind} run named {name!r} exists already in experiment "
                f"{spec.experiment!r}: pass resume (--resume) to continue it, or another name"
            )
        run_id = create_named_run(
            client,
            experiment_id,
            name=name,
            kind=kind,
            parent_run_id=parent_run_id,
            tags=tags,
            params=params,
        )
    run = TrackedRun(
        client,
        experiment_id,
        run_id,
        name,
        spec.resume,
        results_dir(settings, spec.experiment, name),
    )
    try:
        yield run
    except (Interrupted, KeyboardInterrupt):
        client.set_terminated(run_id, status="KILLED")  # stopped by its user: --resume
        raise
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
