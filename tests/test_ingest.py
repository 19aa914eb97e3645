import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from pipelines.data.images import BadImage, check_image, decode_rgb
from pipelines.data.manifest import load_manifest, sha256_file, verify_shards
from pipelines.data.shard_io import iter_shard
from pipelines.ingest.driver import IngestError, ingest
from pipelines.runtime.progress import shown_by
from pipelines.specs import IngestSpec
from pipelines.specs.errors import DataError
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
    selfie = [sys.executable, "-m", "pipelines.cli.main"]
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


# --- Issue 12: ingest at ImageNet scale -------------------------------------------------


def _varied_folder(root: Path, classes: int = 3, per_class: int = 7) -> Path:
    """JPEG, PNG and WebP files of varied sizes (and one PNG misnamed .jpg)."""
    rng = np.random.default_rng(1)
    for c in range(classes):
        d = root / f"c{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(20, 60, size=2))
            img = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
            fmt = ["JPEG", "PNG", "WEBP"][i % 3]
            name = f"im{i}.{ {'JPEG': 'jpg', 'PNG': 'png', 'WEBP': 'webp'}[fmt] }"
            img.save(d / name, format=fmt)
    Image.fromarray(np.zeros((9, 11, 3), np.uint8)).save(root / "c0" / "really_png.jpg", "PNG")
    return root


def _payloads(out: Path, m) -> list[tuple[str, bytes, int]]:
    """(extension, image bytes, label) of every stored sample, in manifest order."""
    found = []
    for split in ("train", "val", "test"):
        for shard in m.shards[split]:
            for _key, fields in iter_shard(str(out / shard.path)):
                ext = next(e for e in fields if e != "cls")
                found.append((ext, fields[ext], int(fields["cls"])))
    return found


def test_image_files_kept_byte_for_byte_with_labels_sidecar(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "imgs")
    out = tmp_path / "d"
    m = ingest(IngestSpec(source=f"imagefolder:{root}", out=out, shard_max_count=4, workers=1))
    assert m.image_size is None and m.channels == 3
    stored = _payloads(out, m)
    sources = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in root.rglob("*.*"))
    assert sorted(hashlib.sha256(b).hexdigest() for _, b, _ in stored) == sources
    by_hash = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in root.rglob("*.*")}
    for ext, data, _ in stored:
        src = by_hash[hashlib.sha256(data).hexdigest()]
        expected = "png" if src.name == "really_png.jpg" else src.suffix[1:]
        assert ext == expected, src
    assert m.image_formats == {"jpg": 9, "png": 7, "webp": 6}
    stored_labels = [label for _, _, label in stored]
    for split, start in (("train", 0), ("val", m.counts["train"])):
        labels = np.load(out / "labels" / f"{split}.npy")
        assert labels.dtype == np.int32
        assert labels.tolist() == stored_labels[start : start + m.counts[split]]
        assert m.labels[split].path == f"labels/{split}.npy"
    verify_shards(out, m)
    # varied sizes decode with the stock webdataset library
    urls = [str(out / s.path) for s in m.shards["train"]]
    ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8").to_tuple("jpg;png;webp", "cls")
    shapes = {img.shape for img, _ in ds}
    assert len(shapes) > 3 and all(s[2] == 3 for s in shapes)


def test_shards_identical_whatever_the_worker_count(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "imgs", per_class=9)
    seen: dict[int, list[dict]] = {}
    manifests = {}
    for workers in (1, 2):
        seen[workers] = []
        with shown_by(seen[workers].append):
            manifests[workers] = ingest(
                IngestSpec(
                    source=f"imagefolder:{root}",
                    out=tmp_path / f"w{workers}",
                    shard_max_count=5,
                    workers=workers,
                )
            )
    one, two = manifests[1], manifests[2]
    assert one.shards == two.shards and one.mean == two.mean and one.labels == two.labels
    assert len(one.shards["train"]) > 3
    # Progress as every stage reports it: images done of the total, the last one complete.
    last = seen[2][-1]
    assert last["stage"] == "ingest" and last["done"] == last["total"] == sum(one.counts.values())


def test_shards_cut_by_count_and_source_bytes(tmp_path: Path) -> None:
    from pipelines.ingest.driver import plan_chunks
    from pipelines.ingest.sources import Entry

    entries = [Entry(ref=i, label=0, size=100) for i in range(10)]
    assert plan_chunks(entries, max_count=4, max_bytes=10**9) == [(0, 4), (4, 8), (8, 10)]
    assert plan_chunks(entries, max_count=100, max_bytes=250) == [
        (0, 2),
        (2, 4),
        (4, 6),
        (6, 8),
        (8, 10),
    ]
    big = [Entry(ref=0, label=0, size=1000), *entries[:2]]
    assert plan_chunks(big, max_count=100, max_bytes=250) == [(0, 1), (1, 3)]


def test_optional_resize_and_reencode(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "imgs")
    m = ingest(
        IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "j", resize=16, reencode="jpeg")
    )
    stored = _payloads(tmp_path / "j", m)
    assert {ext for ext, _, _ in stored} == {"jpg"} and m.image_formats == {"jpg": 22}
    assert all(min(decode_rgb(b).shape[:2]) == 16 for _, b, _ in stored)
    m = ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "p", reencode="png"))
    stored = _payloads(tmp_path / "p", m)
    assert {ext for ext, _, _ in stored} == {"png"} and m.image_size is None
    m = ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "s", image_size=12))
    assert m.image_size == 12 and m.image_formats == {"jpg": 9, "png": 13}, "resized JPEG stay JPEG"
    assert {decode_rgb(b).shape for _, b, _ in _payloads(tmp_path / "s", m)} == {(12, 12, 3)}


def _mode_files() -> dict[str, bytes]:
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 255, size=(13, 17, 3), dtype=np.uint8))
    grey16 = Image.fromarray(np.full((13, 17), 65535, dtype=np.uint16))
    made = {
        "L.png": rgb.convert("L"),
        "LA.png": rgb.convert("LA"),
        "RGBA.png": rgb.convert("RGBA"),
        "P.png": rgb.convert("P"),
        "1.png": rgb.convert("1"),
        "I16.png": grey16,
        "CMYK.jpg": rgb.convert("CMYK"),
        "L.jpg": rgb.convert("L"),
        "RGBA.webp": rgb.convert("RGBA"),
    }
    out = {}
    for name, img in made.items():
        buf = io.BytesIO()
        img.save(buf, format={"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[name.split(".")[1]])
        out[name] = buf.getvalue()
    return out


def test_decode_rgb_any_mode() -> None:
    files = _mode_files()
    for name, data in files.items():
        arr = decode_rgb(data)
        assert arr.shape == (13, 17, 3) and arr.dtype == np.uint8, name
        assert check_image(data).ext == name.split(".")[1], name
    assert Image.open(io.BytesIO(files["I16.png"])).mode.startswith("I")
    assert (decode_rgb(files["I16.png"]) == 255).all(), "16-bit white stays white, not clipped"
    small = decode_rgb(_jpeg_of_size(400, 300), max_side=64)
    assert max(small.shape[:2]) <= 64


def _jpeg_of_size(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)).save(
        buf, format="JPEG"
    )
    return buf.getvalue()


def test_any_mode_folder_ingests_with_bytes_kept(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "m" / c).mkdir(parents=True)
        for name, data in _mode_files().items():
            (tmp_path / "m" / c / name).write_bytes(data)
        Image.new("RGB", (17, 13), (9, 99, 199)).save(tmp_path / "m" / c / "x.bmp")
    m = ingest(IngestSpec(source=f"imagefolder:{tmp_path / 'm'}", out=tmp_path / "d"))
    assert sum(m.counts.values()) == 20 and not m.skipped
    assert m.image_formats == {"png": 14, "jpg": 4, "webp": 2}, "BMP re-encoded as PNG"
    for _, data, _ in _payloads(tmp_path / "d", m):
        assert decode_rgb(data).shape == (13, 17, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_named_or_skipped(tmp_path: Path, fmt: str) -> None:
    root = _varied_folder(tmp_path / "imgs")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, format=fmt
    )
    data = buf.getvalue()
    with pytest.raises(BadImage):
        check_image(data[: len(data) * 2 // 3])
    victim = root / "c1" / "cut.img"
    victim = victim.with_suffix({"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[fmt])
    victim.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(IngestError, match=rf"{victim.name}.*cannot be decoded.*--on-error skip"):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d", workers=2))
    assert not (tmp_path / "d" / "manifest.json").exists()
    assert not any((tmp_path / "d").iterdir()), "staging removed, nothing left"
    m = ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d", on_error="skip"))
    assert [Path(s.item).name for s in m.skipped] == [victim.name]
    assert sum(m.counts.values()) == 22


def test_empty_class_folder_and_missing_paths_are_named(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "imgs")
    (root / "c9").mkdir()
    with pytest.raises(IngestError, match=r"class folder .*c9.* holds no images"):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=tmp_path / "d", on_error="skip"))
    for source in (f"imagefolder:{tmp_path}/nope", f"cifar10:{tmp_path}/nope.tar.gz"):
        with pytest.raises(IngestError, match="does not exist"):
            ingest(IngestSpec(source=source, out=tmp_path / "d"))
    with pytest.raises(IngestError, match=r"no training shards match .*does not exist"):
        ingest(IngestSpec(source=f"shards:{tmp_path}/nope/*.tar", out=tmp_path / "d"))
    with pytest.raises(IngestError, match="indexed in place as they are"):
        ingest(IngestSpec(source=f"shards:{tmp_path}/*.tar", out=tmp_path / "d", resize=64))
    with pytest.raises(ValueError, match="not both"):
        IngestSpec(source="mnist-sample", out=tmp_path / "d", resize=64, image_size=32)


def test_statistics_from_a_seeded_sample(tmp_path: Path) -> None:
    def run(name: str, sample: int):
        return ingest(IngestSpec(source="synthetic:200", out=tmp_path / name, stats_sample=sample))

    a, b = run("a", 10), run("b", 10)
    assert a.stats_images == 10 and a.mean == b.mean and a.std == b.std
    full = run("full", 10_000)
    assert full.stats_images == full.counts["train"]
    assert np.allclose(a.mean, full.mean, atol=0.05) and a.mean != full.mean


def _handmade_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, fields in samples:
            for ext, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_shards_of_varied_jpeg_indexed_without_decoding(tmp_path: Path, monkeypatch) -> None:
    from pipelines.ingest import shard_tasks

    sizes = [(300, 200), (120, 340), (64, 64), (500, 90)]
    for s in range(3):
        _handmade_shard(
            tmp_path / f"part-{s}.tar",
            [
                (f"s{s}_{i}", {"jpeg": _jpeg_of_size(*sizes[i % 4]), "cls": str(i % 3).encode()})
                for i in range(8)
            ],
        )
    decoded = []
    real = shard_tasks.decode_rgb
    monkeypatch.setattr(shard_tasks, "decode_rgb", lambda b, **k: decoded.append(1) or real(b, **k))
    spec = dict(source=f"shards:{tmp_path}/part-*.tar", stats_sample=5, workers=1)
    m = ingest(IngestSpec(out=tmp_path / "idx", **spec))
    assert m.counts["train"] == 24 and m.image_size is None
    assert len(decoded) == 5 == m.stats_images, "only the statistics sample is decoded"
    labels = np.load(tmp_path / "idx" / "labels" / "train.npy")
    assert labels.tolist() == [i % 3 for i in range(8)] * 3
    assert m.class_counts["train"] == [9, 9, 6]
    again = ingest(IngestSpec(out=tmp_path / "idx2", **spec))
    assert again.mean == m.mean


def test_shard_samples_without_label_and_cut_tars(tmp_path: Path) -> None:
    img = _jpeg_of_size(40, 30)
    good = [(f"k{i}", {"jpg": img, "cls": b"1"}) for i in range(4)]
    _handmade_shard(tmp_path / "a-0.tar", [*good, ("nolabel", {"jpg": img})])
    pattern = f"shards:{tmp_path}/a-*.tar"
    with pytest.raises(IngestError, match=r"a-0\.tar:nolabel: sample lacks an image or a cls"):
        ingest(IngestSpec(source=pattern, out=tmp_path / "d"))
    m = ingest(IngestSpec(source=pattern, out=tmp_path / "d", on_error="skip"))
    assert m.counts["train"] == 4 and [s.item.split(":")[-1] for s in m.skipped] == ["nolabel"]
    _handmade_shard(tmp_path / "b-0.tar", good)
    full = _handmade_shard(tmp_path / "b-1.tar", good).read_bytes()
    pattern = f"shards:{tmp_path}/b-*.tar"
    with tarfile.open(tmp_path / "b-1.tar") as tar:
        third = tar.getmembers()[2]
    # cut inside the third member's header, just before it, inside the first image's bytes
    for cut in (third.offset + 100, third.offset, 512 + len(img) // 2):
        (tmp_path / "b-1.tar").write_bytes(full[:cut])
        with pytest.raises(IngestError, match=r"b-1\.tar.*truncated"):
            ingest(IngestSpec(source=pattern, out=tmp_path / f"e{cut}", on_error="fail"))
        m = ingest(IngestSpec(source=pattern, out=tmp_path / "e", on_error="skip", overwrite=True))
        assert m.counts["train"] == 4 and any(s.item.endswith("b-1.tar") for s in m.skipped)


def test_failed_ingest_keeps_old_labels(tmp_path: Path) -> None:
    out = tmp_path / "d"
    first = ingest(IngestSpec(source="synthetic:60", out=out))
    before = (out / "labels" / "train.npy").read_bytes()
    root = _broken_folder(tmp_path)
    with pytest.raises(IngestError):
        ingest(IngestSpec(source=f"imagefolder:{root}", out=out, overwrite=True, workers=2))
    assert (out / "labels" / "train.npy").read_bytes() == before
    verify_shards(out, first)


def test_ingest_bench_keeps_bytes_and_reports_rates(tmp_path: Path) -> None:
    from pipelines.bench.ingest_bench import bench_ingest

    r = bench_ingest(images=40, distinct=3, reencode_subset=6, work_dir=str(tmp_path))
    assert r["bytes_kept_exactly"] and r["jpeg_bytes_in"] == r["image_payload_bytes_out"] > 0
    assert r["shards_identical_across_worker_counts"] and r["bytes_read_equal_payload_written"]
    assert all(v > 0 for v in r["cores_used"].values()) and r["index_counts_match"]
    assert set(r["images_per_s"]) == {"1_workers", "2_workers"} and r["speedup"]["1_vs_1"] == 1
    assert r["png_reencode_subset"]["png_bytes_out"] > 0
    assert not any(tmp_path.iterdir()), "generated files removed"


def test_a_folder_of_same_size_squares_records_its_size(tmp_path: Path) -> None:
    """A folder of uniform 32-px PNGs gets `image_size: 32` (pretraining then needs no
    --image-size); one image of another size makes it None again."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    spec = {"source": f"imagefolder:{root}", "shard_max_count": 4, "workers": 1}
    assert ingest(IngestSpec(**spec, out=tmp_path / "same")).image_size == 32
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "c1" / "odd.png")
    assert ingest(IngestSpec(**spec, out=tmp_path / "mixed")).image_size is None


def test_a_synthetic_source_too_big_to_hold_is_refused_before_generating(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"over the 1 GiB limit: ask for fewer"):
        ingest(IngestSpec(source="synthetic:100000000", out=tmp_path / "d"))
    with pytest.raises(IngestError, match="at 4096 px"):
        ingest(IngestSpec(source="synthetic:100", image_size=4096, out=tmp_path / "d"))
    assert not (tmp_path / "d" / "manifest.json").exists()
