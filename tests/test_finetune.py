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


def test_scratch_learns_and_keeps_best_state(data: ShardData) -> None:
    samples = read_subset(data.shards("train"), None)
    results = list(finetune(_cfg(), data, samples, SelfieConfig(), None, torch.device("cpu")))
    assert [r.epoch for r in results] == [1, 2, 3, 4]
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
