"""Pretraining on a real local Ray (2 CPUs) with MLflow on SQLite, tiny preset, tiny data.

A worker killed mid-run and replaced from a checkpoint is `test_reproducible_pretrain`'s
(which also checks the resumed weights equal an uninterrupted run's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.ingest.driver import ingest
from pipelines.pretrain.driver import PretrainResult, run_pretrain
from pipelines.specs import IngestSpec, OptimSpec, PretrainSpec, SpecError
from pipelines.specs.settings import Settings
from pipelines.training.checkpoint import load_encoder

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "data"
    ingest(IngestSpec(source="mnist-sample", out=out, shard_max_count=500))
    return out


def _spec(data_dir: Path, **kw) -> PretrainSpec:
    base = dict(
        data=str(data_dir),
        workers=2,
        cpus_per_worker=1,
        batch_size=32,
        optim=OptimSpec(lr=3e-3, warmup_steps=5),
        loader_workers=0,
        epochs=10,
    )
    base.update(kw)
    return PretrainSpec(**base)


@pytest.fixture(scope="module")
def finished(data_dir: Path, tmp_path_factory, ray_session) -> tuple[PretrainResult, Settings]:
    """One two-worker run of 60 steps, read by the first test and resumed by the second (a
    Ray Train run costs ~20 s of start-up on 2 cores)."""
    settings = Settings(workdir=tmp_path_factory.mktemp("pretrain-work"))
    spec = _spec(data_dir, max_steps=60, checkpoint_every=30, eval_every=25, run_name="r1")
    return run_pretrain(spec, settings), settings


def test_two_workers_finish_and_mlflow_holds_everything(finished) -> None:
    result, settings = finished
    assert result.steps == 60 and result.resumed_from_step == 0
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    # The representation monitor, inside rank 0 of the two: at random init, every
    # `eval_every` steps and at the last step.
    for name in ("knn_u", "knn_trunk", "linear_u", "linear_trunk", "monitor_seconds"):
        history = client.get_metric_history(result.mlflow_run_id, name)
        assert sorted(m.step for m in history) == [0, 25, 50, 60], name
    knn = client.get_metric_history(result.mlflow_run_id, "knn_u")
    assert all(0 <= m.value <= 1 for m in knn)
    assert run.info.status == "FINISHED"
    assert run.data.params["preset"] == "tiny" and run.data.params["optim.lr"] == "0.003"
    losses = [m.value for m in client.get_metric_history(result.mlflow_run_id, "loss")]
    assert len(losses) >= 10
    assert losses[-1] < 0.9 * losses[0], losses
    assert {"selection_accuracy", "images_per_s", "lr", "checkpoint_stall_s"} <= set(
        run.data.metrics
    )
    # The recipe as it ran: 2 workers x 32 images, lr_scaling none, warmup_steps 5.
    assert run.data.params["global_batch_size"] == "64"
    assert run.data.params["effective_lr"] == "0.003"
    assert run.data.params["effective_warmup_steps"] == "5"
    assert run.data.params["resolved_cpus_per_worker"] == "1"
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert "encoder" in artifacts
    encoder = load_encoder(result.encoder_file)
    assert encoder.config.preset == "tiny" and encoder.step == 60
    versions = client.search_model_versions("name='selfie-encoder'")
    assert any(v.run_id == result.mlflow_run_id for v in versions)
    assert Path(result.checkpoint).is_dir()


def test_stopped_run_resumes_from_its_last_step(data_dir: Path, finished) -> None:
    """The finished run, asked for more steps under its name, continues from step 60 in its
    own MLflow run."""
    first, settings = finished
    second = run_pretrain(
        _spec(data_dir, max_steps=64, checkpoint_every=30, run_name="r1", resume=True),
        settings,
    )
    assert second.resumed_from_step == 60 and second.steps == 64
    assert second.mlflow_run_id == first.mlflow_run_id
    with pytest.raises(SpecError, match="no pretrain run named 'nope'"):
        run_pretrain(_spec(data_dir, run_name="nope", resume=True), settings)
    with pytest.raises(SpecError, match="exists already"):
        run_pretrain(_spec(data_dir, run_name="r1"), settings)


def test_bad_specs_are_one_sentence(tmp_path: Path) -> None:
    from pipelines.specs import build_spec

    with pytest.raises(SpecError, match="unknown preset 'huge'"):
        build_spec(PretrainSpec, {"data": "x", "preset": "huge"})
    with pytest.raises(SpecError, match="mask_fraction"):
        build_spec(PretrainSpec, {"data": "x", "mask_fraction": 1.5})
    with pytest.raises(SpecError, match="does not divide"):
        build_spec(PretrainSpec, {"data": "x", "image_size": 32, "patch_size": 5})
    with pytest.raises(SpecError, match=r"no manifest\.json"):
        PretrainSpec(data=str(tmp_path)).check_paths()
