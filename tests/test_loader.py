import io
import itertools
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from pipelines.data import shard_read
from pipelines.data.augment import ImageTransform, decode_rgb, transform_for
from pipelines.data.geometry import model_image_size
from pipelines.data.labels import labeled_positions, labels_path, split_labels, write_labels
from pipelines.data.loader import ShardData, ShardStream
from pipelines.data.normalize import to_device_normalized
from pipelines.data.partition import ReaderSlot
from pipelines.data.shard_io import iter_shard
from pipelines.data.shard_read import read_samples
from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec
from pipelines.specs.common import SpecError
from pipelines.specs.errors import DataError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("loader") / "d"
    # Uneven shards: ~236 train samples in shards of 50 -> 50, 50, 50, 50, 36.
    ingest(IngestSpec(source="synthetic:300", out=out, shard_max_count=50))
    return out


def _png_of_id(i: int, size: int = 32) -> bytes:
    """A flat-colour image whose colour is its id, so a decoded batch tells which it was."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = i // 256, i % 256
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_id_shards(root: Path, sizes: list[int], unlabeled: set[int] = frozenset()) -> list[str]:
    """Shards of `sizes` samples with keys s<id>; ids in `unlabeled` get no `.cls`."""
    root.mkdir(parents=True, exist_ok=True)
    paths, i = [], 0
    for s, n in enumerate(sizes):
        path = root / f"train-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for _ in range(n):
                sample = {"__key__": f"s{i:06d}", "png": _png_of_id(i)}
                if i not in unlabeled:
                    sample["cls"] = i % 3
                sink.write(sample)
                i += 1
        paths.append(str(path))
    return paths


def _identity(size: int = 32) -> ImageTransform:
    return ImageTransform(size=size, train=False, flip=False)


def _one_pass_keys(stream: ShardStream, ranks: int, workers: int, pass_no: int) -> list[list]:
    """Each (rank, worker) reader's keys in one pass, through the stream's real partition."""
    count = ranks * workers
    return [
        [s.key for s in stream.pass_samples(ReaderSlot(r * workers + w, count), pass_no)]
        for r in range(ranks)
        for w in range(workers)
    ]


@pytest.mark.parametrize("num_shards", [3, 8, 41])  # fewer than, as many as, many more than 8
def test_one_pass_reads_every_sample_exactly_once(tmp_path: Path, num_shards: int) -> None:
    rng = np.random.default_rng(num_shards)
    sizes = [int(n) for n in rng.integers(5, 30, size=num_shards)]
    paths = write_id_shards(tmp_path, sizes)
    total = sum(sizes)
    stream = ShardStream(paths, sizes, _identity(), seed=7)
    for pass_no in (0, 1, 2):
        per_reader = _one_pass_keys(stream, ranks=2, workers=4, pass_no=pass_no)
        keys = list(itertools.chain(*per_reader))
        assert sorted(keys) == [f"s{i:06d}" for i in range(total)], "each key exactly once"
        assert {len(k) for k in per_reader} <= {total // 8, total // 8 + 1}, "balanced shares"
    first = _one_pass_keys(stream, 2, 4, 0)
    assert first != _one_pass_keys(stream, 2, 4, 1), "every pass is shuffled afresh"
    assert first == _one_pass_keys(stream, 2, 4, 0), "a seed fixes the order"


def test_a_subset_streams_exactly_its_samples(tmp_path: Path) -> None:
    sizes = [17, 3, 25, 9]
    paths = write_id_shards(tmp_path, sizes)
    chosen = [0, 5, 16, 17, 20, 21, 30, 53]
    stream = ShardStream(paths, sizes, _identity(), indices=chosen)
    for pass_no in (0, 1):
        keys = list(itertools.chain(*_one_pass_keys(stream, 1, 3, pass_no)))
        assert sorted(keys) == [f"s{i:06d}" for i in chosen]
    # Only the index set is held, never image bytes: the stream pickles to a few KB.
    assert len(pickle.dumps(stream)) < 8_000


def test_ranks_times_loader_processes_cover_a_pass(tmp_path: Path) -> None:
    """Through real torch DataLoaders, 2 processes each, for 2 ranks and 3 shards."""
    sizes = [20, 7, 13]
    paths = write_id_shards(tmp_path, sizes)
    train = ImageTransform(size=32, train=True, flip=True)
    seen = []
    for rank in range(2):
        stream = ShardStream(paths, sizes, train, rank=rank, world_size=2, passes=1, seed=3)
        for images, _ in DataLoader(stream, batch_size=4, num_workers=2):
            assert images.dtype == torch.uint8
            centre = images[:, :2, 16, 16].long()  # flat colour survives pad-crop and flip
            seen += (centre[:, 0] * 256 + centre[:, 1]).tolist()
    assert sorted(seen) == list(range(sum(sizes)))


def test_a_reader_reads_only_the_positions_it_owns(tmp_path: Path) -> None:
    (path,) = write_id_shards(tmp_path, [12])
    got = list(read_samples(path, [2, 5, 6]))
    assert [(s.key, s.position) for s in got] == [("s000002", 2), ("s000005", 5), ("s000006", 6)]
    labels_only = list(read_samples(path, images=False))
    assert len(labels_only) == 12 and all(s.image is None for s in labels_only)


def test_a_subset_walks_each_shards_headers_once_then_seeks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pass after pass over a sparse subset, each shard's headers are walked once per process
    (they were walked every pass: half of a digits finetune trial), and the samples read by
    seeking are the ones, bytes and labels, a walk in file order reads."""
    sizes = [30, 30]
    paths = write_id_shards(tmp_path, sizes)
    chosen = [3, 7, 11, 29, 31, 44, 58]
    walks = []
    real_open = shard_read.tarfile.open
    monkeypatch.setattr(
        shard_read.tarfile, "open", lambda *a, **k: walks.append(1) or real_open(*a, **k)
    )
    stream = ShardStream(paths, sizes, _identity(), indices=chosen, shuffle=False, passes=3)
    read = [
        (s.key, s.label, s.image)
        for p in range(3)
        for s in stream.pass_samples(ReaderSlot(0, 1), p)
    ]
    assert len(walks) == len(paths)
    walked = [
        (s.key, s.label, s.image)
        for path, positions in ((paths[0], [3, 7, 11, 29]), (paths[1], [1, 14, 28]))
        for s in read_samples(path, positions)
    ]
    assert read == walked * 3 and len(walked) == 7
    # A DataLoader process gets the stream without what this one located.
    assert len(pickle.dumps(stream)) < 8_000


def test_samples_without_a_label_are_counted_and_skipped(tmp_path: Path) -> None:
    paths = write_id_shards(tmp_path, [6, 6], unlabeled={1, 8})
    stream = ShardStream(paths, [5, 5], _identity(), shuffle=False, passes=1)
    labels = [label for _, label in stream]
    assert len(labels) == 10 and stream.stats.unlabeled == 2


def test_ranks_partition_the_ingested_samples(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    seen = []
    for world in (2, 3, 7):
        seen = []
        for rank in range(world):
            loader = data.eval_loader("train", 64)
            stream = loader.dataset
            stream.rank, stream.world_size = rank, world
            seen += [img.numpy().tobytes() for batch, _ in loader for img in batch]
        assert len(seen) == data.manifest.counts["train"]
        assert len(set(seen)) == len(seen), "no sample is read by two ranks"


def test_every_rank_gets_the_same_number_of_steps(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    steps = data.steps_per_epoch(world_size=3, batch_size=16)
    assert steps == data.manifest.counts["train"] // 48
    for rank in range(3):
        loader = data.train_loader(16, rank=rank, world_size=3, num_workers=0)
        batches = list(itertools.islice(iter(loader), steps * 2))
        assert len(batches) == steps * 2, "streams repeat, so no rank runs dry"
        assert batches[0][0].shape == (16, 3, 32, 32)


def test_batches_are_uint8_and_normalised_on_the_device(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    images, labels = next(iter(data.train_loader(64, num_workers=0)))
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    x = to_device_normalized(images, data.manifest.mean, data.manifest.std, torch.device("cpu"))
    assert x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.5 and 0.5 < x.std().item() < 2.0
    c = 1
    expected = (images[:, c].float() / 255 - data.manifest.mean[c]) / data.manifest.std[c]
    assert torch.allclose(x[:, c], expected, atol=1e-5)
    evals = list(data.eval_loader("val", 32))
    assert sum(len(b[1]) for b in evals) == data.manifest.counts["val"]


def test_labels_come_from_the_sidecar_or_one_cls_scan(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shutil.rmtree(copy / "labels", ignore_errors=True)
    data = ShardData.open(copy)
    truth = [int(f["cls"]) for p in data.shards("train") for _, f in iter_shard(p) if "cls" in f]
    assert not labels_path(copy, "train").exists()
    scanned = split_labels(copy, data.manifest, "train")
    assert scanned.dtype == np.int32 and scanned.tolist() == truth
    assert labels_path(copy, "train").exists(), "the scan is cached for the next driver"
    write_labels(copy, "train", [9] * len(truth))  # the sidecar wins over the shards
    assert data.labels("train").tolist() == [9] * len(truth)
    idx = labeled_positions(data.labels("train"), 0.5, seed=0)
    assert idx is not None and len(idx) == len(truth) // 2


def test_labeled_positions_leave_out_unlabeled() -> None:
    labels = np.array([0, 1, -1, 0, 1, -1, 0, 1] * 10, dtype=np.int32)
    idx = labeled_positions(labels, 0.5, seed=1)
    assert idx and all(labels[i] >= 0 for i in idx)
    assert labeled_positions(labels, 1.0, seed=1) is None


def test_missing_shard_is_named(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    (copy / "val" / "val-000000.tar").unlink()
    with pytest.raises(DataError, match=r"val-000000\.tar.*does not exist"):
        ShardData.open(copy)


def test_verify_on_open(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    ShardData.open(copy, verify=True)
    shard = copy / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-1024] + b"\1" * 1024)
    with pytest.raises(DataError, match=r"train-000000\.tar"):
        ShardData.open(copy, verify=True)


def _encoded(mode: str, size: tuple[int, int], fmt: str) -> bytes:
    channels = {"L": 1, "RGBA": 4, "CMYK": 4, "RGB": 3}
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        shape = (size[1], size[0], channels[mode])
        arr = rng.integers(0, 255, shape, dtype=np.uint8)
        img = Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode=mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("RGBA", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG"), ("RGB", "WEBP")],
)
def test_any_stored_format_decodes_to_rgb(mode: str, fmt: str) -> None:
    img = decode_rgb(_encoded(mode, (40, 30), fmt))
    assert img.mode == "RGB" and img.size == (40, 30)
    if mode == "I;16":
        assert np.asarray(img).max() > 128, "16-bit samples are scaled, not clipped"


def test_large_images_get_the_imagenet_recipe_at_the_model_size() -> None:
    jpeg = _encoded("RGB", (500, 375), "JPEG")
    rng = np.random.default_rng(0)
    train = ImageTransform(size=224, train=True, flip=True)
    a, b = train(jpeg, rng), train(jpeg, rng)
    assert a.shape == (3, 224, 224) and a.dtype == torch.uint8
    assert not torch.equal(a, b), "random resized crops differ"
    evaluated = ImageTransform(size=224, train=False, flip=True)
    assert torch.equal(evaluated(jpeg, rng), evaluated(jpeg, rng)), "eval is deterministic"
    small = ImageTransform(size=32, train=True, flip=False)(jpeg, rng)
    assert small.shape == (3, 32, 32), "stored larger than the model: resized first"


def test_model_size_is_checked_against_patching(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    assert transform_for(data.manifest, train=True, image_size=224).size == 224
    with pytest.raises(SpecError, match="image size 100 cannot be cut into 32x32"):
        transform_for(data.manifest, train=True, image_size=100)
    with pytest.raises(SpecError, match="varied sizes"):
        model_image_size(None, None)
    with pytest.raises(SpecError, match="12x12"):
        model_image_size(32, None, patch_size=12)


def test_unflippable_small_images_get_a_small_affine_jitter() -> None:
    import io

    import numpy as np
    from PIL import Image

    from pipelines.data.augment import ImageTransform

    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[10:22, 12:20] = 255  # a bar off the patch grid's symmetry
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    digits = ImageTransform(size=32, train=True, flip=False)
    rng = np.random.default_rng(0)
    outs = [digits(buf.getvalue(), rng).float() for _ in range(20)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert len({o.sum().item() for o in outs}) > 10, "jittered, not a fixed copy"
    ys, xs = np.nonzero(pixels[..., 0])
    for o in outs:
        mass = o[0].numpy()
        cy = (mass.sum(1) * np.arange(32)).sum() / mass.sum()
        cx = (mass.sum(0) * np.arange(32)).sum() / mass.sum()
        # Small: the bar's centre moves a few pixels at most, never a patch.
        assert abs(cy - ys.mean()) < 3.5 and abs(cx - xs.mean()) < 3.5


@pytest.mark.parametrize("workers", [0, 2])
def test_a_loader_rebuilt_at_a_position_continues_the_stream_exactly(
    data_dir: Path, workers: int
) -> None:
    """A run resumed after `taken` batches gets the very batches (pixels, augmentation draws
    and labels) the uninterrupted loader yields next, across pass boundaries, whatever the
    number of loader processes; a loader of another shape starts on a fresh pass."""
    from pipelines.data.stream_position import StreamPosition

    data = ShardData.open(data_dir)
    size = data.manifest.image_size
    first = data.train_loader(16, rank=1, world_size=2, num_workers=workers, seed=7)
    taken, more = 11, 9  # 236 samples / (2 ranks x 16): a pass is ~7 batches per rank
    batches = list(itertools.islice(iter(first), taken + more))
    start = StreamPosition(0, taken, 16, workers, 2)
    again = data.train_loader(16, rank=1, world_size=2, num_workers=workers, seed=7, start=start)
    resumed = list(itertools.islice(iter(again), more))
    for (a, la), (b, lb) in zip(batches[taken:], resumed, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    assert resumed[0][0].shape == (16, 3, size, size)
    other = start.for_loader(16, workers + 3, 2, data.manifest.counts["train"])
    assert (other.first_pass, other.batches) == (3, 0)  # 11 x 16 x 2 = 352 read: 2 passes begun
