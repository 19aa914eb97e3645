"""`selfie export`: P as a torchvision ResNet-50 state dict or an ONNX graph, from the same
weights references a sweep takes (a file, a result folder, an MLflow run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from pipelines.export.encoder_export import export_encoder, patch_network
from pipelines.export.onnx_file import require_onnx
from pipelines.runtime.tracking import ensure_experiment, tracking_client
from pipelines.specs import SpecError
from pipelines.specs.errors import SelfieError
from pipelines.specs.names import ENCODER_ARTIFACT_DIR, RESULT_FILE
from pipelines.specs.settings import Settings
from pipelines.training.checkpoint import load_encoder, save_encoder
from selfie_core import SelfieConfig, SelfieModel

# The paper preset at the smallest geometry with 32 px patches (the ImageNet stem): 2x2 grid.
PAPER_32PX = SelfieConfig(preset="paper", image_size=64, patch_size=32)
TINY = SelfieConfig(preset="tiny", image_size=32)


def _random_model(config: SelfieConfig) -> SelfieModel:
    """Random BatchNorm scales, shifts and statistics (a fresh model has zero-init last BNs
    and unit variances, under which a wrongly mapped tensor could go unnoticed), with the
    statistics measured on random patches so the features still depend on the input."""
    model = SelfieModel(config)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over the calibration batches
        p = config.patch_size
        model.train()
        for _ in range(2):
            model.patch_network(torch.randn(4, 2, 3, p, p))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def _encoder_file(path: Path, model: SelfieModel) -> Path:
    state = {"config": model.config.to_dict(), "model": model.state_dict()}
    return save_encoder(path, state | {"manifest_digest": "test", "step": 1})


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> tuple[SelfieModel, Path]:
    model = _random_model(PAPER_32PX)
    return model, _encoder_file(tmp_path_factory.mktemp("paper") / "encoder.pt", model)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[SelfieModel, Path]:
    model = _random_model(TINY)
    return model, _encoder_file(tmp_path_factory.mktemp("tiny") / "encoder.pt", model)


def _settings(tmp_path: Path) -> Settings:
    return Settings(workdir=tmp_path / "work")


def _torchvision_stage3(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer3(net.layer2(net.layer1(x)))


def test_torchvision_resnet50_loads_p_and_gives_our_stage3_features(paper, tmp_path) -> None:
    model, path = paper
    out = tmp_path / "resnet50.pt"
    result = export_encoder(str(path), "torchvision", out, _settings(tmp_path))
    assert result.preset == "paper" and result.feature_dim == 1024

    tv = resnet50()
    keys = tv.load_state_dict(torch.load(out, weights_only=True), strict=False)
    assert keys.unexpected_keys == []
    # BatchNorm never reports a missing num_batches_tracked (it fills one in on load).
    stage4_and_head = {
        k
        for k in tv.state_dict()
        if k.startswith(("layer4.", "fc.")) and not k.endswith("num_batches_tracked")
    }
    assert set(keys.missing_keys) == stage4_and_head

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = model.patch_network.trunk(x)
        theirs = _torchvision_stage3(tv.eval(), x)
    assert theirs.shape == ours.shape == (2, 1024, 4, 4)
    assert (ours[0] - ours[1]).abs().max() > 0.1, "features must depend on the input"
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", ["encoder_file", "encoder"])  # encoder: written before the rename
def test_a_result_folder_names_the_same_weights(paper, tmp_path, key: str) -> None:
    _, path = paper
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / RESULT_FILE).write_text(json.dumps({key: str(path), "mlflow_run_id": None}))
    result = export_encoder(str(folder), "torchvision", tmp_path / "r50.pt", _settings(tmp_path))
    assert result.source == str(path)


def test_a_result_folder_naming_no_weights_is_one_sentence(tmp_path) -> None:
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / RESULT_FILE).write_text(json.dumps({"mlflow_run_id": None}))
    with pytest.raises(SpecError, match="names no encoder_file: name the pretraining's"):
        export_encoder(str(folder), "torchvision", tmp_path / "r50.pt", _settings(tmp_path))
    assert not (tmp_path / "r50.pt").exists()


def test_a_pretraining_run_is_exported_by_its_id(paper, tmp_path) -> None:
    """A real MLflow run (SQLite, local artifacts) with the encoder where pretraining logs it."""
    _, path = paper
    settings = _settings(tmp_path)
    client = tracking_client(settings)
    run = client.create_run(ensure_experiment(client, "export-test", settings))
    client.log_artifact(run.info.run_id, str(path), ENCODER_ARTIFACT_DIR)
    for ref in (f"runs:/{run.info.run_id}", run.info.run_id):
        out = tmp_path / f"{len(ref)}.pt"
        result = export_encoder(ref, "torchvision", out, settings)
        assert result.pretrain_run_id == run.info.run_id
        assert torch.load(out, weights_only=True).keys() >= {"conv1.weight", "layer3.5.bn3.weight"}


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (TINY, "is not ResNet-50's layout"),
        (SelfieConfig(preset="paper", image_size=32), "8 px patches with a 3x3 stride-1 stem"),
    ],
    ids=["tiny-preset", "paper-8px-patches"],
)
def test_p_without_resnet50s_layout_is_refused(config, needle, tmp_path) -> None:
    path = _encoder_file(tmp_path / "encoder.pt", SelfieModel(config))
    out = tmp_path / "resnet50.pt"
    with pytest.raises(SpecError, match=needle) as info:
        export_encoder(str(path), "torchvision", out, _settings(tmp_path))
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [path], "a refused export leaves no file behind"


def test_p_that_does_not_fit_its_preset_is_one_sentence(tiny, tmp_path) -> None:
    _, path = tiny
    encoder = load_encoder(path)
    encoder.state_dict.pop("patch_network.trunk.stage1.0.conv1.weight")
    with pytest.raises(SelfieError, match="do not fit preset 'tiny'"):
        patch_network(encoder, str(path))


def test_onnx_graph_has_a_dynamic_batch_axis(tiny, tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    _, path = tiny
    out = tmp_path / "p.onnx"
    result = export_encoder(str(path), "onnx", out, _settings(tmp_path))
    graph = onnx.load(str(out)).graph
    onnx.checker.check_model(onnx.load(str(out)))
    (patches,) = graph.input
    dims = patches.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value, "the batch axis must be symbolic"
    assert [d.dim_value for d in dims[1:]] == [3, 8, 8]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == result.feature_dim


def test_onnx_runtime_gives_our_features_at_any_batch(tiny, tmp_path) -> None:
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, path = tiny
    out = tmp_path / "p.onnx"
    export_encoder(str(path), "onnx", out, _settings(tmp_path))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        patches = torch.randn(batch, 3, 8, 8)
        with torch.no_grad():
            ours = model.patch_network(patches.unsqueeze(1)).squeeze(1)
        (theirs,) = session.run(None, {"patches": patches.numpy()})
        assert batch == 1 or (ours[0] - ours[1]).abs().max() > 0.1, "must depend on the input"
        torch.testing.assert_close(torch.from_numpy(theirs), ours, rtol=1e-4, atol=1e-4)


def test_missing_onnx_packages_are_named(monkeypatch) -> None:
    monkeypatch.setattr(
        "pipelines.export.onnx_file.ONNX_PACKAGES", ("onnx_package_that_is_not_installed",)
    )
    with pytest.raises(SpecError, match=r"pip install 'selfie-pipelines\[onnx\]'"):
        require_onnx()


def _selfie_export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"SELFIE_WORKDIR": str(tmp_path / "work")}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_verb_errors_are_one_sentence(tiny, tmp_path) -> None:
    """Through the real command: bad path, a run without an encoder, the wrong preset."""
    _, tiny_path = tiny
    settings = _settings(tmp_path)
    client = tracking_client(settings)
    bare_run = client.create_run(ensure_experiment(client, "export-test", settings)).info.run_id
    cases = [
        ([str(tmp_path / "nope.pt"), "--format", "onnx"], "does not exist"),
        ([f"runs:/{bare_run}", "--format", "onnx"], "has no encoder/encoder.pt artifact"),
        ([str(tiny_path), "--format", "torchvision"], "is not ResNet-50's layout"),
    ]
    for args, needle in cases:
        done = _selfie_export(tmp_path, *args, "--out", str(tmp_path / "out.bin"))
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize(
    ("source", "fmt", "overwrite", "needle"),
    [
        ("0" * 32, "onnx", True, "no MLflow run"),
        ("TINY", "keras", True, "--format must be one of torchvision, onnx"),
        ("TINY", "torchvision", True, "is not ResNet-50's layout"),
        ("TINY", "onnx", False, "exists: pass --overwrite"),
        ("bad\npath", "onnx", True, "neither a run id nor a usable path: a path may not hold"),
    ],
)
def test_a_failed_export_keeps_the_file_it_would_replace(
    tiny, tmp_path, source, fmt, overwrite, needle
) -> None:
    _, tiny_path = tiny
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"already here")
    source = str(tiny_path) if source == "TINY" else source
    with pytest.raises(SpecError, match=needle) as info:
        export_encoder(source, fmt, kept, _settings(tmp_path), overwrite=overwrite)
    assert "\n" not in str(info.value)
    assert kept.read_bytes() == b"already here"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
