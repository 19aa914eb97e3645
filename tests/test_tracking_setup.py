"""MLflow as a newcomer meets it (real MLflow on SQLite): a job run from any directory writes
its artifacts under the work dir, never `./mlruns` where it ran; its experiment is tagged so
MLflow 3's UI shows it as model training, not GenAI."""

from __future__ import annotations

from pathlib import Path

from pipelines.runtime.tracked_run import tracked_run
from pipelines.runtime.tracking import artifact_location
from pipelines.specs.common import TrackedRunSpec
from pipelines.specs.settings import Settings


def test_artifacts_go_under_the_work_dir_whatever_the_cwd(tmp_path: Path, monkeypatch) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # As a job of the service sees it: the tracking URI set explicitly, to the work dir's DB.
    settings = Settings(workdir=work, mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    spec = TrackedRunSpec(experiment="where-artifacts-go", run_name="tiny")
    with tracked_run(spec, settings, kind="pretrain") as run:
        run.client.log_text(run.run_id, "hello", "note.txt")
    assert not (elsewhere / "mlruns").exists()
    assert list((work / "mlartifacts").rglob("note.txt"))
    experiment = run.client.get_experiment(run.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_mlflow_server_keeps_its_own_artifact_store(tmp_path: Path) -> None:
    server = Settings(workdir=tmp_path, mlflow_tracking_uri="http://mlflow:5000")
    assert artifact_location(server) is None
    assert artifact_location(Settings(workdir=tmp_path)) == (tmp_path / "mlartifacts").as_uri()
