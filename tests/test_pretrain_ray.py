"""Pretraining on a real local Ray (2 CPUs) with MLflow on SQLite, tiny preset, tiny data.

One uninterrupted two-worker run (`finished`) is read by the MLflow checks, is the reference
a run whose worker is killed must equal bit for bit once resumed, and is then resumed for
more steps: each Ray Train run costs ~20 s of start-up on 2 cores. The same build / restore /
loop without Ray, and that another seed gives other weights: tests/test_resume_loop.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines.ingest.driver import ingest
from pipelines.pretrain.driver import PretrainResult, run_pretrain
from pipelines.specs import IngestSpec, OptimSpec, PretrainSpec, SpecError
from pipelines.specs.settings import Settings
from pipelines.training.checkpoint import load_encoder
from tests.ray_cluster import train_worker_pids

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """256 images, ~7 steps a pass at 2 x 16: a run of 60 steps crosses passes, so a resumed
    run must find every rank's place in the reshuffled stream."""
    out = tmp_path_factory.mktemp("pretrain") / "data"
    ingest(IngestSpec(source="synthetic:256", out=out, shard_max_count=64))
    return out


def _spec(data_dir: Path, **kw) -> PretrainSpec:
    base = dict(
        data=str(data_dir),
        workers=2,
        cpus_per_worker=1,
        batch_size=16,
        optim=OptimSpec(lr=6e-3, warmup_steps=5),
        loader_workers=0,
        epochs=100,
        seed=5,
        max_failures=2,
    )
    base.update(kw)
    return PretrainSpec(**base)


def _reference_spec(data_dir: Path, run_name: str) -> PretrainSpec:
    return _spec(data_dir, max_steps=60, checkpoint_every=10, eval_every=25, run_name=run_name)


@dataclass(frozen=True)
class Finished:
    result: PretrainResult
    settings: Settings
    weights: dict[str, torch.Tensor]
    """The encoder as the run ended (its file is overwritten when the run is resumed)."""


@pytest.fixture(scope="module")
def finished(data_dir: Path, tmp_path_factory, ray_session) -> Finished:
    settings = Settings(workdir=tmp_path_factory.mktemp("pretrain-work"))
    result = run_pretrain(_reference_spec(data_dir, "r1"), settings)
    return Finished(result, settings, load_encoder(result.encoder_file).state_dict)


def test_two_workers_finish_and_mlflow_holds_everything(finished: Finished) -> None:
    result, settings = finished.result, finished.settings
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
    assert run.data.params["preset"] == "tiny" and run.data.params["optim.lr"] == "0.006"
    losses = [m.value for m in client.get_metric_history(result.mlflow_run_id, "loss")]
    assert len(losses) >= 10
    assert losses[-1] < 0.9 * losses[0], losses
    assert {"selection_accuracy", "images_per_s", "lr", "checkpoint_stall_s"} <= set(
        run.data.metrics
    )
    # The recipe as it ran: 2 workers x 16 images, lr_scaling none, warmup_steps 5.
    assert run.data.params["global_batch_size"] == "32"
    assert run.data.params["effective_lr"] == "0.006"
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


def test_a_run_resumed_at_a_checkpoint_equals_the_uninterrupted_run(
    data_dir: Path, finished: Finished
) -> None:
    """Rank 1 is killed after a checkpoint; Ray Train restarts both workers from it. Every
    rank continues its own generators and the data stream where it stopped, so the final
    weights equal the uninterrupted run's bit for bit."""
    settings = finished.settings
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["result"] = run_pretrain(_reference_spec(data_dir, "killed"), settings)
        except BaseException as exc:  # surfaced by the assertion below
            outcome["result"] = exc

    earlier = set(train_worker_pids())
    thread = threading.Thread(target=drive)
    thread.start()
    run_dir = Path(settings.run_storage(None, _spec(data_dir).experiment)) / "killed"
    deadline = time.time() + 240

    def newest_step() -> int:
        return max((int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*")), default=0)

    # A third checkpoint folder: reports are barriers, so the earlier checkpoints are then
    # surely registered with the Train controller, which restarts from one of them.
    while time.time() < deadline and newest_step() < 30:
        time.sleep(0.05)
    assert newest_step() >= 30, "no checkpoints appeared"
    pids = [p for p in train_worker_pids() if p not in earlier]
    assert len(pids) == 2, pids
    os.kill(pids[1], signal.SIGKILL)
    thread.join(timeout=400)
    resumed = outcome["result"]
    assert not isinstance(resumed, BaseException), resumed
    assert 0 < resumed.resumed_from_step < 60 and resumed.steps == 60
    a, b = finished.weights, load_encoder(resumed.encoder_file).state_dict
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


def test_stopped_run_resumes_from_its_last_step(data_dir: Path, finished: Finished) -> None:
    """The finished run, asked for more steps under its name, continues from step 60 in its
    own MLflow run."""
    first, settings = finished.result, finished.settings
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
