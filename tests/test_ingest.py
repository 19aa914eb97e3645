import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import webdataset as wds

from pipelines.data.ingest import IngestError, ingest
from pipelines.data.manifest import load_manifest, sha256_file, verify_shards
from pipelines.errors import DataError
from pipelines.specs import IngestSpec
from tests.data_factories import make_cifar_tarball, make_image_folder


def test_mnist_sample_manifest(tmp_path: Path) -> None:
    m = ingest(IngestSpec(source="mnist-sample", out=tmp_path / "d", shard_max_count=700))
    assert m.counts == {"train": 4000, "val": 500, "test": 500}
    assert m.image_size == 32 and not m.flip_ok and m.num_classes == 10
    # stratified: every class in every split
    assert all(min(c) > 0 for c in m.class_counts.values())
    assert len(m.shards["train"]) == 6  # 4000 / 700 -> 6 shards
    for shard in m.shards["train"]:
        assert sha256_file(tmp_path / "d" / shard.path) == shard.sha256
    assert 0.05 < m.mean[0] < 0.2 and m.std[0] > 0.2
    assert load_manifest(tmp_path / "d") == m


def test_shards_readable_by_stock_webdataset(tmp_path: Path) -> None:
    m = ingest(IngestSpec(source="synthetic:120", out=tmp_path / "d", shard_max_count=50))
    urls = [str(tmp_path / "d" / s.path) for s in m.shards["train"]]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb").to_tuple("png", "cls")
    samples = list(ds)
    assert len(samples) == m.counts["train"]
    img, cls = samples[0]
    assert img.shape == (32, 32, 3) and isinstance(cls, int)


@pytest.mark.ray
def test_shards_readable_by_ray_data(tmp_path: Path, ray_session) -> None:
    import ray.data

    m = ingest(IngestSpec(source="synthetic:120", out=tmp_path / "d", shard_max_count=50))
    urls = [str(tmp_path / "d" / s.path) for s in m.shards["train"]]
    rows = ray.data.read_webdataset(urls).take_all()
    assert len(rows) == m.counts["train"]
    assert {"png", "cls"} <= set(rows[0])


def test_cifar10_tarball_keeps_its_test_split(tmp_path: Path) -> None:
    tar = make_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    m = ingest(IngestSpec(source=f"cifar10:{tar}", out=tmp_path / "d"))
    assert m.counts["test"] == 20 and m.counts["train"] + m.counts["val"] == 100
    assert m.class_names[0] == "airplane" and m.flip_ok


def test_truncated_cifar_tarball_is_named(tmp_path: Path) -> None:
    tar = make_cifar_tarball(tmp_path / "c.tar.gz")
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"c\.tar\.gz.*truncated or corrupt"):
        ingest(IngestSpec(source=f"cifar10:{tar}", out=tmp_path / "d"))
    assert not (tmp_path / "d" / "manifest.json").exists()


def _broken_folder(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "imgs", size=40)
    (root / "class_1" / "broken.png").write_bytes(b"not a png at all")
    (root / "stray.png").write_bytes((root / "class_0" / "img_1.png").read_bytes())
    return root


def test_imagefolder_bad_input_fails_by_default(tmp_path: Path) -> None:
    root = _broken_folder(tmp_path)
    with pytest.raises(IngestError, match=r"stray\.png: file outside any class folder"):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d"))
    (root / "stray.png").unlink()
    with pytest.raises(IngestError, match=r"broken\.png.*cannot be decoded"):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d"))
    assert not (tmp_path / "d" / "manifest.json").exists()
    assert not any((tmp_path / "d").glob(".staging-*"))


def test_imagefolder_skip_counts_and_names(tmp_path: Path) -> None:
    root = _broken_folder(tmp_path)
    m = ingest(
        IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d", on_error="skip", image_size=32)
    )
    reasons = {Path(s.item).name: s.reason for s in m.skipped}
    assert set(reasons) == {"broken.png", "stray.png"}
    assert sum(m.counts.values()) == 30 and m.image_size == 32


def test_rerun_refused_and_failed_overwrite_keeps_old_data(tmp_path: Path) -> None:
    out = tmp_path / "d"
    first = ingest(IngestSpec(source="synthetic:60", out=out))
    with pytest.raises(IngestError, match="--overwrite"):
        ingest(IngestSpec(source="synthetic:60", out=out))
    root = _broken_folder(tmp_path)
    with pytest.raises(IngestError):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=out, overwrite=True))
    assert load_manifest(out) == first
    verify_shards(out, first)
    second = ingest(IngestSpec(source="synthetic:80", out=out, overwrite=True))
    assert sum(second.counts.values()) == 80


def test_existing_shards_indexed_in_place(tmp_path: Path) -> None:
    src = ingest(IngestSpec(source="synthetic:100", out=tmp_path / "src", shard_max_count=30))
    pattern = str(tmp_path / "src" / "{split}" / "*.tar")
    m = ingest(IngestSpec(source=f"shards:{pattern}", out=tmp_path / "idx"))
    assert m.counts == src.counts
    assert Path(m.shards["train"][0].path).is_absolute()
    assert not (tmp_path / "idx" / "train").exists(), "indexed in place, not copied"
    # A truncated shard is named.
    victim = tmp_path / "src" / "train" / "train-000001.tar"
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(IngestError, match=r"train-000001\.tar.*truncated"):
        ingest(IngestSpec(source=f"shards:{pattern}", out=tmp_path / "idx2"))
    m2 = ingest(IngestSpec(source=f"shards:{pattern}", out=tmp_path / "idx3", on_error="skip"))
    assert m2.counts["train"] < m.counts["train"] and m2.skipped


def test_verify_names_a_changed_shard(tmp_path: Path) -> None:
    m = ingest(IngestSpec(source="synthetic:60", out=tmp_path / "d"))
    shard = tmp_path / "d" / m.shards["val"][0].path
    shard.write_bytes(shard.read_bytes() + b"\0" * 512)
    with pytest.raises(DataError, match="does not match its manifest checksum"):
        verify_shards(tmp_path / "d", m)


def test_cli_ingest_errors_are_one_sentence(tmp_path: Path) -> None:
    selfie = [sys.executable, "-m", "pipelines.cli"]
    ok = subprocess.run(
        [*selfie, "ingest", "--source", "synthetic:40", "--out", str(tmp_path / "d"), "--json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["counts"]["train"] > 0
    bad = subprocess.run(
        [*selfie, "ingest", "--source", "nosuch:x", "--out", str(tmp_path / "e")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown source" in bad.stderr and "Traceback" not in bad.stderr
    shutil.rmtree(tmp_path / "d")
