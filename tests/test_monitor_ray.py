"""The representation monitor (on by default, `--eval-every`) runs inside the real Ray Train
worker and its readings reach MLflow at the steps it was due, the random-init baseline at
step 0 included."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.ingest.driver import ingest
from pipelines.pretrain.driver import run_pretrain
from pipelines.specs import IngestSpec, PretrainSpec
from pipelines.specs.settings import Settings

pytestmark = pytest.mark.ray


def test_monitor_readings_reach_mlflow(tmp_path: Path, ray_session) -> None:
    data = tmp_path / "data"
    ingest(IngestSpec(source="synthetic:400", out=data, shard_max_count=200))
    settings = Settings(workdir=tmp_path / "work")
    spec = PretrainSpec(
        data=str(data), batch_size=32, max_steps=12, eval_every=5, loader_workers=0,
        cpus_per_worker=1, epochs=5,
    )  # fmt: skip
    result = run_pretrain(spec, settings)
    client = MlflowClient(settings.tracking_uri)
    for name in ("knn_u", "knn_trunk", "linear_u", "linear_trunk", "monitor_seconds"):
        history = client.get_metric_history(result.mlflow_run_id, name)
        assert sorted(m.step for m in history) == [0, 5, 10, 12], name
    assert all(0 <= m.value <= 1 for m in client.get_metric_history(result.mlflow_run_id, "knn_u"))
