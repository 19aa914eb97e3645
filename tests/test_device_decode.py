"""JPEG decoded and cropped on the training device: the same batches as the CPU path.

CI has no GPU, so the device here is the CPU: the same code runs (`decode_jpeg(list,
device=...)`, crop, antialiased resize, flip, stack); on a GPU `device` is `cuda` and the
decoder is nvJPEG. Images are smooth (gradients and a square), sized so libjpeg's draft
mode does not apply, and include grayscale and CMYK JPEGs and PNGs (the CPU fallbacks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.data import device_decode
from pipelines.data.device_decode import DeviceDecodedBatches, decode_device, eval_box
from pipelines.data.loader import ShardData
from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec

SIZE = 96
CPU = torch.device("cpu")


def _smooth(width: int, height: int, shade: int) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    arr = np.concatenate([x + 0 * y, y + 0 * x, np.full((height, width, 1), shade)], axis=2)
    arr[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 40)
    return arr.astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("varied")
    rng = np.random.default_rng(0)
    for c in range(2):
        folder = root / "images" / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(24):
            w, h = (int(v) for v in rng.integers(100, 180, size=2))
            img = Image.fromarray(_smooth(w, h, 60 * c + 5 * i))
            kind = i % 6
            if kind == 4:
                img.save(folder / f"{i}.png")
            elif kind == 5:
                img.convert("L").save(folder / f"{i}.jpg", quality=95)
            elif kind == 3:
                img.convert("CMYK").save(folder / f"{i}.jpg", quality=95)
            else:
                img.save(folder / f"{i}.jpg", quality=95)
    out = root / "data"
    ingest(IngestSpec(source=f"imagefolder:{root / 'images'}", out=out, shard_max_count=10))
    return out


def test_eval_batches_match_the_cpu_path(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    cpu = list(data.eval_loader("val", 8, image_size=SIZE))
    device = data.eval_loader("val", 8, image_size=SIZE, decode_on=CPU)
    assert isinstance(device, DeviceDecodedBatches)
    on_device = list(device)
    assert len(cpu) == len(on_device) and len(cpu) > 0
    for (a, la), (b, lb) in zip(cpu, on_device, strict=True):
        assert b.dtype == torch.uint8 and b.shape == a.shape == (len(la), 3, SIZE, SIZE)
        assert torch.equal(la, lb)
        diff = (a.float() - b.float()).abs()
        assert diff.mean() < 3.0, "same region, resized by PIL or by torch"


def test_train_batches_draw_the_same_crops_and_flips(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    kw = dict(num_workers=0, seed=3, image_size=SIZE)
    cpu = iter(data.train_loader(8, **kw))
    device = iter(data.train_loader(8, decode_on=CPU, **kw))
    labels_seen = []
    for _ in range(4):
        (a, la), (b, lb) = next(cpu), next(device)
        assert torch.equal(la, lb)
        labels_seen += la.tolist()
        assert (a.float() - b.float()).abs().mean() < 3.0
    assert set(labels_seen) == {0, 1}


def test_one_pass_reads_every_sample_once_with_loader_processes(data_dir: Path) -> None:
    data = ShardData.open(data_dir)
    loader = data.eval_loader("train", 5, num_workers=2, image_size=SIZE, decode_on=CPU)
    labels = torch.cat([lb for _, lb in loader])
    assert sorted(labels.tolist()) == sorted(data.labels("train").tolist())


def test_where_jpegs_are_decoded(monkeypatch) -> None:
    """`auto` keeps JPEGs on the CPU, even on a GPU, until this torch/torchvision pair is
    listed as proven by `selfie bench gpu`; `device` is obeyed as asked."""
    import torchvision

    gpu = torch.device("cuda")
    assert not device_decode.PROVEN_DEVICE_DECODE  # nothing proven today
    assert decode_device("auto", gpu) is None and decode_device("auto", CPU) is None
    assert decode_device("cpu", gpu) is None and decode_device("device", CPU) == CPU
    assert decode_device("device", gpu) == gpu
    pair = (torch.__version__.split("+")[0], torchvision.__version__.split("+")[0])
    monkeypatch.setattr(device_decode, "PROVEN_DEVICE_DECODE", frozenset({pair}))
    assert decode_device("auto", gpu) == gpu and decode_device("auto", CPU) is None


def test_the_device_decode_is_fenced_from_the_training_stream(monkeypatch) -> None:
    """On CUDA the decode first waits for the caller's stream, and the device is synchronised
    after it while inputs and outputs are still held (pytorch/vision PR #9606). The CUDA calls
    are recorded (this machine has no GPU); the decode itself runs on the CPU."""
    import torchvision.io

    events: list[str] = []
    real = torchvision.io.decode_jpeg

    class Stream:
        def synchronize(self) -> None:
            events.append("caller stream drained")

    def decode(data, *, mode, device):
        events.append(f"decode {len(data)}")
        return real(data, mode=mode, device="cpu")

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("device"))
    monkeypatch.setattr(torchvision.io, "decode_jpeg", decode)
    images = device_decode._decode_jpegs([_jpeg(10), _jpeg(90)], torch.device("cuda"))
    assert events == ["caller stream drained", "decode 2", "device"]
    assert [tuple(i.shape) for i in images] == [(3, 100, 120)] * 2
    events.clear()
    device_decode._decode_jpegs([_jpeg(10)], CPU)  # off CUDA the fence does nothing
    assert events == ["decode 1"]


def test_the_eval_box_is_the_centre_crop_of_the_shorter_side() -> None:
    assert eval_box(256, 128) == (72, 8, 184, 120)


def _jpeg(shade: int) -> torch.Tensor:
    import io

    buffer = io.BytesIO()
    Image.fromarray(_smooth(120, 100, shade)).save(buffer, format="JPEG", quality=95)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def test_only_the_images_the_device_refuses_go_to_the_cpu(monkeypatch, caplog) -> None:
    """The device decoder refuses the batch because of one image: that image alone is
    decoded on the CPU (with a warning), the others still on the device."""
    import torchvision.io

    payloads = [_jpeg(10), _jpeg(200), _jpeg(90)]
    real, calls = torchvision.io.decode_jpeg, []

    def refusing(data, *, mode, device):
        # The device path passes a torch.device (here the CPU); the fallback passes "cpu".
        where = "device" if isinstance(device, torch.device) else "cpu"
        calls.append((len(data) if isinstance(data, list) else 1, where))
        if where == "device" and (isinstance(data, list) or data is payloads[1]):
            raise RuntimeError("nvjpeg: unsupported image")
        return real(data, mode=mode, device="cpu")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", refusing)
    monkeypatch.setattr(device_decode, "_warned", False)
    images = device_decode._decode_jpegs(payloads, CPU)
    assert calls == [(3, "device"), (1, "device"), (1, "device"), (1, "cpu"), (1, "device")]
    expected = [real(p, mode=torchvision.io.ImageReadMode.RGB) for p in payloads]
    assert all(torch.equal(a, b) for a, b in zip(images, expected, strict=True))
    assert "refused an image" in caplog.text


def test_running_out_of_device_memory_is_raised_not_hidden(monkeypatch) -> None:
    import torchvision.io

    def out_of_memory(data, *, mode, device):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        device_decode._decode_jpegs([_jpeg(10)], CPU)
