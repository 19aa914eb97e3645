"""Finetuning without Ray: subsets, both inits, best-validation state, test read separately."""

from pathlib import Path

import pytest
import torch

from pipelines.data.ingest import ingest
from pipelines.data.loader import ShardData, read_subset
from pipelines.specs import IngestSpec
from pipelines.sweep.finetune import (
    FinetuneConfig,
    build_model,
    epoch_budget,
    evaluate_on_test,
    finetune,
    steps_per_epoch,
)
from pipelines.training.checkpoint import EncoderFile
from selfie_core import SelfieConfig, SelfieModel


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> ShardData:
    out = tmp_path_factory.mktemp("ft") / "d"
    ingest(IngestSpec(source="synthetic:400", out=out, shard_max_count=100))
    return ShardData.open(out)


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        encoder="resnet50", init="scratch", lr=1e-2, weight_decay=0.05, epochs=4,
        batch_size=32, min_steps_per_epoch=5, warmup_epochs=1, seed=0,
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)


def test_small_subsets_still_get_min_steps() -> None:
    assert steps_per_epoch(10, _cfg()) == 5
    assert steps_per_epoch(1000, _cfg()) == 32


def test_budget_in_steps_has_a_floor_and_an_exact_form() -> None:
    # 10 labels: 5 steps an epoch; 4 epochs = 20 steps, lifted to the 100-step floor.
    assert epoch_budget(10, _cfg()) == 4
    assert epoch_budget(10, _cfg(min_steps=100)) == 20
    assert epoch_budget(1000, _cfg(min_steps=100)) == 4  # 4 x 32 = 128 steps already
    # `steps` is exact whatever the subset (rounded up to whole epochs).
    assert epoch_budget(10, _cfg(steps=52, min_steps=1000)) == 11
    assert epoch_budget(1000, _cfg(steps=64)) == 2


def test_patience_stops_when_validation_stalls(data: ShardData, monkeypatch) -> None:
    from pipelines.sweep import finetune as ft
    from pipelines.training.steps import StepMetrics

    vals = iter([0.5, 0.6, 0.6, 0.55, 0.7, 0.8])
    monkeypatch.setattr(
        ft, "evaluate_classifier", lambda *a, **k: StepMetrics(loss=1.0, accuracy=next(vals))
    )
    samples = read_subset(data.shards("train"), [0, 1, 2, 3])
    cfg = _cfg(epochs=6, patience=2, min_steps_per_epoch=1)
    results = list(finetune(cfg, data, samples, SelfieConfig(), None, torch.device("cpu")))
    assert [r.epoch for r in results] == [1, 2, 3, 4]  # best at 2; 3 and 4 did not improve
    assert results[-1].last and not any(r.last for r in results[:-1])
    assert results[-1].best_epoch == 2 and results[-1].epochs_budget == 6


def test_scratch_learns_and_keeps_best_state(data: ShardData) -> None:
    samples = read_subset(data.shards("train"), None)
    results = list(finetune(_cfg(), data, samples, SelfieConfig(), None, torch.device("cpu")))
    assert [r.epoch for r in results] == [1, 2, 3, 4]
    assert results[-1].last and results[-1].epochs_budget == 4
    best = max(results, key=lambda r: r.val_accuracy)
    assert results[-1].best_val_accuracy == best.val_accuracy
    assert best.val_accuracy > 0.5, "4 easy synthetic classes"
    acc = evaluate_on_test(
        _cfg(), data, SelfieConfig(), results[-1].best_state, torch.device("cpu")
    )
    assert 0.0 <= acc <= 1.0


@pytest.mark.parametrize("kind", ["resnet50", "hybrid"])
def test_selfie_init_copies_the_encoder(kind: str) -> None:
    config = SelfieConfig()
    pretrained = SelfieModel(config)
    with torch.no_grad():  # make pretrained weights differ from any fresh initialisation
        for p in pretrained.parameters():
            p.add_(1.0)
    encoder = EncoderFile(config, pretrained.state_dict(), manifest_digest="x", step=1)
    model = build_model(_cfg(encoder=kind, init="selfie"), config, 4, encoder)
    src = pretrained.patch_network.trunk.stem[0].weight
    dst = (model.trunk if kind == "resnet50" else model.patch_network.trunk).stem[0].weight
    assert torch.equal(src, dst)
    scratch = build_model(_cfg(encoder=kind), config, 4, None)
    s_dst = (scratch.trunk if kind == "resnet50" else scratch.patch_network.trunk).stem[0].weight
    assert not torch.equal(src, s_dst)


def test_selfie_init_without_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a pretrained encoder"):
        build_model(_cfg(init="selfie"), SelfieConfig(), 4, None)


def test_subset_file_is_not_the_test_split(data: ShardData, tmp_path: Path) -> None:
    train = read_subset(data.shards("train"), [0, 1, 2])
    assert len(train) == 3
    assert data.manifest.counts["test"] > 0
