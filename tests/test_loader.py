import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.data.augment import ImageTransform
from pipelines.data.ingest import ingest
from pipelines.data.loader import EncodedSamples, ShardData, ShardStream, read_subset
from pipelines.errors import DataError
from pipelines.specs import IngestSpec
from selfie_core.subsets import labeled_subset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loader") / "d"
    # Uneven shards: 233 train samples in shards of 50 -> 50, 50, 50, 50, 33.
    ingest(IngestSpec(source="synthetic:300", out=out, shard_max_count=50))
    return out


def _identity() -> ImageTransform:
    return ImageTransform(mean=(0, 0, 0), std=(1, 1, 1), train=False, flip=False)


def _labels_of(stream: ShardStream) -> list[int]:
    return [label for _, label in stream]


@pytest.mark.parametrize("world", [2, 3, 7])
def test_ranks_partition_the_samples(data_dir: Path, world: int) -> None:
    data = ShardData.open(data_dir)
    shards = data.shards("train")
    seen = []
    for rank in range(world):
        stream = ShardStream(shards, _identity(), rank=rank, world_size=world, repeat=False)
        seen.append([hash(img.numpy().tobytes()) for img, _ in stream])
    total = sum(len(s) for s in seen)
    assert total == data.manifest.counts["train"]
    flat = list(itertools.chain(*seen))
    assert len(set(flat)) == len(flat), "no sample is read by two ranks"


def test_every_rank_gets_the_same_number_of_steps(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    steps = data.steps_per_epoch(world_size=3, batch_size=16)
    assert steps == data.manifest.counts["train"] // 48
    for rank in range(3):
        loader = data.train_loader(16, rank=rank, world_size=3, num_workers=0)
        batches = list(itertools.islice(iter(loader), steps * 2))
        assert len(batches) == steps * 2, "streams repeat, so no rank runs dry"
        assert batches[0][0].shape == (16, 3, 32, 32)


def test_training_transform_augments_and_normalises(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    loader = data.train_loader(64, num_workers=0)
    images, labels = next(iter(loader))
    assert abs(images.mean().item()) < 0.5 and 0.5 < images.std().item() < 2.0
    assert labels.dtype == torch.int64
    evals = list(data.eval_loader("val", 32))
    assert sum(len(b[1]) for b in evals) == data.manifest.counts["val"]


def test_two_loader_processes_split_the_work(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    loader = data.train_loader(8, num_workers=2)
    batches = list(itertools.islice(iter(loader), 10))
    assert all(b[0].shape == (8, 3, 32, 32) for b in batches)


def test_subset_is_read_once_and_matches_indices(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    labels = data.train_labels()
    idx = labeled_subset(labels, 0.1, seed=0)
    samples = read_subset(data.shards("train"), idx)
    assert [lab for _, lab in samples] == [labels[i] for i in idx]
    ds = EncodedSamples(samples, _identity(), seed=0)
    assert len(ds) == len(idx) and ds[0][0].shape == (3, 32, 32)
    assert np.bincount(ds.labels).min() >= 1


def test_verify_on_open(data_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    ShardData.open(copy, verify=True)
    shard = copy / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-1024] + b"\1" * 1024)
    with pytest.raises(DataError, match=r"train-000000\.tar"):
        ShardData.open(copy, verify=True)
