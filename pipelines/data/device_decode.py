"""JPEG decoded on the training device (nvJPEG on a GPU), cropped and resized there.

At 224 px a GPU step of the `paper` preset outruns the CPU cores that decode and crop
JPEGs for it. In this mode the loader processes do only the cheap part: read the header
for the image size, draw the crop box and the flip from the reader's generator (the CPU
path's distribution; the very same draws unless the CPU path decodes that JPEG at reduced
scale, where its box is drawn in the smaller image's pixels), and ship the JPEG's bytes as
they are. The training process then decodes a whole batch with one
`torchvision.io.decode_jpeg(list, device=...)` call and crops, resizes (bilinear,
antialiased) and flips on the device.

Images that are not JPEG (PNG, WebP, CMYK JPEGs nvJPEG refuses) fall back to the CPU: a
non-JPEG is decoded by the loader process as before (and only cropped on the device); a JPEG
the device decoder refuses is decoded on the CPU in the training process, with one warning
per process. Running out of device memory is not a refusal: it is raised. Small images
(<= 64 px, CIFAR and digits) keep the CPU path, where decoding costs nothing.

`jpeg_decode: auto` does not choose this path on a GPU until the installed torch/torchvision
pair has been proven by `selfie bench gpu` (`PROVEN_DEVICE_DECODE`): the unfenced decode
broke training on an H200 (docs/PERFORMANCE.md, GPU).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pipelines.data.augment import ImageTransform, decode_rgb, random_resized_crop_box
from pipelines.specs.common import JpegDecode

log = logging.getLogger(__name__)


PROVEN_DEVICE_DECODE: frozenset[tuple[str, str]] = frozenset()
"""(torch, torchvision) release pairs (e.g. ("2.11.0", "0.26.0")) whose device decode has
passed `selfie bench gpu` (hundreds of training steps, finite and learning) on a GPU. Empty:
on an H200 with torch 2.11 / torchvision 0.26 the batched nvJPEG decode corrupted device
memory inside training (pytorch/vision PR #9606), and the fenced decode below has not yet
been run on a GPU. `auto` uses the device decoder only for a pair listed here."""


def _release(version: str) -> str:
    """ "2.11.0+cu130" -> "2.11.0": the build suffix does not change the decoder."""
    return version.split("+", 1)[0]


def device_decode_proven() -> bool:
    """Whether this torch/torchvision pair is listed in `PROVEN_DEVICE_DECODE`."""
    import torchvision

    pair = (_release(torch.__version__), _release(torchvision.__version__))
    return pair in PROVEN_DEVICE_DECODE


def decode_device(choice: JpegDecode, device: torch.device) -> torch.device | None:
    """Where JPEGs are decoded: on `device` for `device`; for `auto`, on a GPU only when this
    torch/torchvision pair is proven there (`PROVEN_DEVICE_DECODE`), else in the loader
    processes (None), the path that trains correctly everywhere."""
    if choice == "device":
        return device
    if choice == "auto" and device.type == "cuda" and device_decode_proven():
        return device
    return None


@dataclass(frozen=True)
class PlannedSample:
    """What a loader process ships: the JPEG's bytes (or, for another format, its decoded
    uint8 (3, H, W) pixels), the crop box in its pixels and whether to flip."""

    data: torch.Tensor
    decoded: bool
    box: tuple[int, int, int, int]
    flip: bool


@dataclass(frozen=True)
class PlannedBatch:
    samples: list[PlannedSample]
    labels: torch.Tensor


def eval_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The region that resize-shorter-to S*256/224 then centre-crop S keeps, in the original
    pixels (the same for every S: the centred square of side 224/256 of the shorter side)."""
    side = min(width, height) * 224 / 256
    left, top = (width - side) / 2, (height - side) / 2
    return round(left), round(top), round(left + side), round(top + side)


@dataclass(frozen=True)
class CropPlan:
    """The loader-process half of `ImageTransform` for large images: no JPEG decode."""

    transform: ImageTransform

    def __call__(self, data: bytes, rng: np.random.Generator) -> PlannedSample:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            fmt, (width, height) = img.format, img.size
            mode = img.mode
        if fmt == "JPEG" and mode in ("RGB", "L"):
            payload, decoded = torch.frombuffer(bytearray(data), dtype=torch.uint8), False
        else:
            rgb = np.asarray(decode_rgb(data), dtype=np.uint8)
            payload, decoded = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), True
        t = self.transform
        if t.train:
            box = random_resized_crop_box(width, height, rng)
            flip = bool(t.flip and rng.random() < 0.5)
        else:
            box, flip = eval_box(width, height), False
        return PlannedSample(payload, decoded, box, flip)


def collate_planned(batch: Sequence[tuple[PlannedSample, int]]) -> PlannedBatch:
    """Samples of different byte lengths and sizes cannot be stacked: keep them a list."""
    return PlannedBatch([s for s, _ in batch], torch.tensor([label for _, label in batch]))


class DecodeFence:
    """Keeps nvJPEG's side stream apart from the training stream (pytorch/vision PR #9606).

    torchvision's CUDA decoder runs on its own stream and waits for nothing queued on the
    caller's: the caching allocator can hand it blocks that queued kernels still read or
    write, and free its outputs while it still writes them. So `before` waits for the
    caller's stream to drain (no block in use can be handed out) and `after` waits for the
    whole device (the side stream included) while the inputs and outputs are still held by
    the caller. On any other device both are no-ops, so CPU tests run the same code path.
    Unproven on a GPU: see docs/PERFORMANCE.md."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.device = torch.device(device)

    def before(self) -> None:
        if self.cuda:
            torch.cuda.current_stream(self.device).synchronize()

    def after(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


def _decode_jpegs(payloads: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """One batched device decode; if the decoder refuses the batch, image by image, and the
    images it refuses alone are decoded on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(data: torch.Tensor | list[torch.Tensor], on: torch.device | str):
        fence = DecodeFence(on)
        fence.before()
        with warnings.catch_warnings():  # torchvision 0.29 marks its decoders deprecated
            warnings.simplefilter("ignore")
            out = decode_jpeg(data, mode=ImageReadMode.RGB, device=on)
        fence.after()  # `data` and `out` are alive here: nothing freed under nvJPEG
        return out

    try:
        return list(decode(payloads, device))
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:
        pass
    images = []
    for payload in payloads:
        try:
            images.append(decode(payload, device))
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as error:
            _warn_cpu_fallback(error)
            images.append(decode(payload, "cpu").to(device))
    return images


_warned = False


def _warn_cpu_fallback(error: RuntimeError) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "the device JPEG decoder refused an image (%s); decoding such images on "
            "the CPU in the training process",
            str(error).splitlines()[0][:200],
        )


def _crop_resize(image: torch.Tensor, sample: PlannedSample, size: int) -> torch.Tensor:
    left, top, right, bottom = sample.box
    crop = image[:, top:bottom, left:right].unsqueeze(0).float()
    out = torch.nn.functional.interpolate(
        crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]
    if sample.flip:
        out = out.flip(-1)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def device_images(batch: PlannedBatch, size: int, device: torch.device) -> torch.Tensor:
    """A planned batch as uint8 (N, 3, size, size) on `device`."""
    samples = batch.samples
    jpeg = [i for i, s in enumerate(samples) if not s.decoded]
    images: dict[int, torch.Tensor] = {}
    if jpeg:
        decoded = _decode_jpegs([samples[i].data for i in jpeg], device)
        images.update(zip(jpeg, decoded, strict=True))
    for i, s in enumerate(samples):
        if s.decoded:
            images[i] = s.data.to(device, non_blocking=True)
    return torch.stack([_crop_resize(images[i], s, size) for i, s in enumerate(samples)])


class DeviceDecodedBatches:
    """Iterates a loader of planned batches as (uint8 images on `device`, labels)."""

    def __init__(self, loader: Iterable[PlannedBatch], size: int, device: torch.device) -> None:
        self.loader, self.size, self.device = loader, size, device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            yield device_images(batch, self.size, self.device), batch.labels
