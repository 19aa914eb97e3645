"""Positive controls on real digits, no Ray: a trunk trained with labels must (1) transfer
through the encoder file sweeps load, beating scratch at a few dozen labels, and (2) show
in `selfie probe` as far better than random init. If either fails, a flat result for Selfie
says nothing about Selfie."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.data.labels import labeled_positions
from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.probe.driver import run_probe
from pipelines.specs import FileWeights, IngestSpec, SpecError
from pipelines.specs.names import KIND_TAG
from pipelines.specs.probe import ProbeSpec
from pipelines.specs.settings import Settings
from pipelines.sweep.finetune import FinetuneConfig, finetune
from pipelines.sweep.weights_source import resolve_weights
from tests.supervised_encoder import write_digit_folder, write_supervised_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> ShardData:
    root = tmp_path_factory.mktemp("digits")
    folder = write_digit_folder(root / "png", per_class=100)
    out = root / "data"
    ingest(
        IngestSpec(
            source=f"imagefolder:{folder}", out=out, image_size=32, val_fraction=0.25,
            test_fraction=0.05,
        )
    )  # fmt: skip
    return ShardData.open(out)


@pytest.fixture(scope="module")
def supervised(digits: ShardData, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    return write_supervised_encoder(digits, path, steps=200)


def _best_val(init: str, digits: ShardData, encoder_path: Path | None, seed: int) -> float:
    """Finetune the resnet50 architecture as a sweep trial does, at 3-4 labels a class."""
    settings = Settings()
    encoder = (
        resolve_weights(FileWeights(path=str(encoder_path)), settings) if encoder_path else None
    )
    model_config = encoder.weights.config if encoder else None
    indices = labeled_positions(digits.labels("train"), 0.05, seed=seed)
    cfg = FinetuneConfig(
        architecture="resnet50", init=init, lr=2e-3, weight_decay=0.05, epochs=3, batch_size=32,
        min_steps_per_epoch=20, warmup_epochs=0, seed=seed,
    )  # fmt: skip
    from selfie_core import SelfieConfig

    results = list(
        finetune(
            cfg,
            digits,
            indices,
            model_config or SelfieConfig(preset="tiny"),
            encoder.weights if encoder else None,
            torch.device("cpu"),
        )
    )
    return results[-1].best_val_accuracy


def test_supervised_weights_transfer_through_the_encoder_file(
    digits: ShardData, supervised: Path
) -> None:
    labeled = labeled_positions(digits.labels("train"), 0.05, seed=0)
    assert labeled is not None and 10 <= len(labeled) <= 40  # a few dozen labels
    pretrained = _best_val("selfie", digits, supervised, seed=0)
    scratch = _best_val("scratch", digits, None, seed=0)
    assert pretrained > scratch + 0.12, (pretrained, scratch)  # measured 0.52 vs 0.29


def test_probe_sees_supervised_features(digits: ShardData, supervised: Path, tmp_path) -> None:
    settings = Settings(workdir=tmp_path)
    spec = ProbeSpec(data=str(digits.data_dir), pretrained={"path": str(supervised)}, seeds=2)
    result = run_probe(spec, settings)
    rows = {(r.representation, r.protocol): r for r in result.rows}
    assert set(rows) == {(a, b) for a in ("u", "trunk") for b in ("knn", "linear")}
    for protocol in ("knn", "linear"):
        row = rows[("trunk", protocol)]
        assert len(row.random) == 2
        assert row.pretrained > row.random_mean + 0.15, row  # labels shaped the trunk
    from mlflow.tracking import MlflowClient

    run = MlflowClient(settings.tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags[KIND_TAG] == "probe"
    assert run.data.metrics["knn_trunk_pretrained"] == rows[("trunk", "knn")].pretrained
    assert Path(result.report_dir, "result.json").is_file()


def test_a_probe_job_over_rest_reads_at_most_its_caps(
    digits: ShardData, supervised: Path, tmp_path: Path
) -> None:
    """`probe` is a job kind: submitted over REST (a real service, local backend), it runs
    in its own process, reads no more images than its caps and returns its table."""
    import shutil

    from tests.service_process import ServiceProcess, wait_for_state

    root = digits.data_dir.parent
    shutil.copy(supervised, root / "encoder.pt")
    svc = ServiceProcess(tmp_path / "work", None, root).start()
    try:
        with svc.client() as client:
            spec = {"data": str(digits.data_dir), "pretrained": str(root / "encoder.pt"),
                    "seeds": 1, "max_train_images": 64, "max_val_images": 32}  # fmt: skip
            created = client.post("/v1/jobs", json={"kind": "probe", "spec": spec})
            assert created.status_code == 201, created.text
            job = wait_for_state(client, created.json()["id"], {"SUCCEEDED", "FAILED"})
            assert job["state"] == "SUCCEEDED", client.get(f"/v1/jobs/{job['id']}/logs").text
            assert (job["result"]["train_images"], job["result"]["val_images"]) == (64, 32)
            assert "| trunk |" in job["result"]["table_markdown"]
            outside = {**spec, "pretrained": "/etc/passwd"}
            refused = client.post("/v1/jobs", json={"kind": "probe", "spec": outside})
            assert refused.status_code == 422 and "SELFIE_DATA_ROOTS" in refused.text
    finally:
        svc.kill()


def test_probe_refuses_what_it_cannot_read(digits: ShardData, tmp_path) -> None:
    settings = Settings(workdir=tmp_path)
    with pytest.raises(SpecError, match="does not exist"):
        run_probe(
            ProbeSpec(data=str(digits.data_dir), pretrained={"path": str(tmp_path / "no.pt")}),
            settings,
        )
    with pytest.raises(SpecError, match=r"no manifest\.json"):
        run_probe(ProbeSpec(data=str(tmp_path), pretrained={"path": "x.pt"}), settings)


def test_probe_cli_errors_are_one_sentence(tmp_path) -> None:
    hostile = "runs:/" + "z" * 300 + "\n"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli.main",
            "probe",
            "--pretrained",
            hostile,
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={"SELFIE_WORKDIR": str(tmp_path), "PATH": "/usr/bin:/bin", **_pythonpath()},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "probe", "--pretrained", "x.pt", "--data",
         str(tmp_path), "--seeds", "1000"],
        capture_output=True, text=True, env={"SELFIE_WORKDIR": str(tmp_path), **_pythonpath()},
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "seeds" in proc.stderr and "Traceback" not in proc.stderr


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")}


def test_the_monitor_reads_features_and_leaves_the_model_alone(
    digits: ShardData, supervised: Path
) -> None:
    from pipelines.probe.monitor import monitor_batches, monitor_scores
    from pipelines.training.checkpoint import load_encoder
    from selfie_core import SelfieModel

    cpu = torch.device("cpu")
    train = monitor_batches(digits, "train", 300, 32, cpu)
    val = monitor_batches(digits, "val", 100, 32, cpu)
    assert sum(len(x) for x, _ in train) == 300 and sum(len(x) for x, _ in val) == 100
    encoder = load_encoder(supervised)
    model = SelfieModel(encoder.config)
    model.load_state_dict(encoder.state_dict)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learned = monitor_scores(model, train, val)
    assert model.training  # the training loop's mode and statistics are untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    torch.manual_seed(0)
    random = monitor_scores(SelfieModel(encoder.config), train, val)
    assert set(learned) == {"knn_u", "knn_trunk", "linear_u", "linear_trunk", "monitor_seconds"}
    assert learned["knn_trunk"] > random["knn_trunk"] + 0.15, (learned, random)


def test_the_loop_monitor_runs_when_due(digits: ShardData) -> None:
    from pipelines.probe.monitor import RepresentationMonitor
    from selfie_core import SelfieConfig, SelfieModel

    monitor = RepresentationMonitor(digits, 32, torch.device("cpu"), eval_every=3)
    model = SelfieModel(SelfieConfig(preset="tiny"))
    due = [monitor.maybe_run(model, step, last=step == 4) is not None for step in (1, 2, 3, 4)]
    assert due == [False, False, True, True]
