"""A sweep whose trials each run on 2 Ray Train workers (DDP inside Tune), on the local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec, SearchSpec, SpecError, SweepSpec
from pipelines.specs.settings import Settings
from pipelines.sweep.driver import run_sweep
from pipelines.sweep.trial_resources import resolve_trial_shape, trial_resources

pytestmark = pytest.mark.ray


def _spec(data: Path, **kw) -> SweepSpec:
    base = dict(
        data=str(data), inits=["scratch"], architectures=["resnet50"], fractions=[1.0],
        seeds=1, epochs=1, min_steps_per_epoch=2, min_steps=0, batch_size=16,
        search=SearchSpec(lr=[1e-2], weight_decay=[0.05]),
        workers_per_trial=2, cpus_per_trial=1,
    )  # fmt: skip
    base.update(kw)
    return SweepSpec(**base)


def test_distributed_trial_shape_rules() -> None:
    spec = _spec(Path("d"))
    assert trial_resources(spec)["cpu"] == 0  # the Train workers hold the CPUs
    assert trial_resources(_spec(Path("d"), workers_per_trial=1)) == {"cpu": 1, "gpu": 0}
    with pytest.raises(SpecError, match="asha"):
        resolve_trial_shape(_spec(Path("d"), search=SearchSpec(lr=[1e-2], asha=True)), [])


def test_a_trial_on_two_workers_is_tested_and_stops_on_patience(
    tmp_path: Path, ray_session
) -> None:
    """One class: validation accuracy is 1.0 from the first epoch and never improves on it,
    so patience 1 ends the trial after epoch 2 of its 5 on both ranks (a rank that went on
    alone would hang DDP); the trial still reports, is tested and is tracked. One Ray Train
    run for both checks: each costs ~40 s on 2 busy cores."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs" / "only"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    data = tmp_path / "data"
    ingest(IngestSpec(source=f"imagefolder:{folder.parent}", out=data, shard_max_count=10))
    settings = Settings(workdir=tmp_path)
    result = run_sweep(_spec(data, epochs=5, patience=1), settings)
    assert result.trials == 1 and result.failed_trials == 0, result
    (cell,) = result.cells
    assert cell["status"] == "ok" and 0 <= cell["test_accuracy"] <= 1
    client = MlflowClient(settings.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    (child,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.mlflow_run_id}'",
    )
    assert "val_accuracy" in child.data.metrics
    # The Train run of the trial used 2 workers, under a name of its own.
    storage = Path(settings.run_storage(None, _spec(data).experiment))
    (run,) = storage.glob(f"{result.run_name}-train-*")
    (epochs,) = run.glob("checkpoint_*/epochs.json")
    reported = json.loads(epochs.read_text())
    assert [e["epoch"] for e in reported] == [1, 2]
    assert {e["workers"] for e in reported} == {2}
    assert reported[-1]["epochs_budget"] == 5 and reported[-1]["best_epoch"] == 1
