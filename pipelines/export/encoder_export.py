"""Export a pretrained P: resolve the weights reference the way sweeps do, rebuild P from the
checkpoint's own config, and write the chosen format atomically (a failed export leaves no
file, and an existing file is replaced only when asked)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import TypeAdapter, ValidationError

from pipelines.export.onnx_file import write_onnx
from pipelines.specs import PretrainedWeights, SpecError
from pipelines.specs.settings import Settings
from pipelines.sweep.weights_source import resolve_weights
from pipelines.training.checkpoint import CheckpointError, EncoderFile
from selfie_core.patch_network import PatchNetwork
from selfie_core.torchvision_export import TorchvisionExportError, resnet50_state_dict

ExportFormat = Literal["torchvision", "onnx"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("torchvision", "onnx")
_P_PREFIX = "patch_network."


@dataclass(frozen=True)
class ExportResult:
    out: str
    format: ExportFormat
    source: str
    pretrain_run_id: str | None
    preset: str
    patch_size: int
    feature_dim: int

    def to_dict(self) -> dict:
        return asdict(self)


def parse_reference(text: str) -> PretrainedWeights:
    """`runs:/ID`, a bare run id, or a path: the same short forms a sweep's spec takes."""
    try:
        return TypeAdapter(PretrainedWeights).validate_python(text)
    except ValidationError as exc:
        # The short form picked one member of the union; the other member's complaints
        # (its field missing, this one's field extra) are noise.
        noise = ("missing", "extra_forbidden")
        errors = [e for e in exc.errors() if e["type"] not in noise] or exc.errors()
        reason = errors[0]["msg"].removeprefix("Value error, ")
        shown = text if len(text) <= 100 else f"{text[:100]}..."
        raise SpecError(f"{shown!r} is neither a run id nor a usable path: {reason}") from None


def patch_network(encoder: EncoderFile, location: str) -> PatchNetwork:
    """P with the checkpoint's weights, in eval mode (BatchNorm uses its running statistics).

    Only P's tensors are read: A may have changed shape since (the tiny preset's A grew a
    layer) without changing what P is."""
    config = encoder.config
    net = PatchNetwork(config.model_preset, config.stem)
    state = {
        name[len(_P_PREFIX) :]: tensor
        for name, tensor in encoder.state_dict.items()
        if name.startswith(_P_PREFIX)
    }
    if not state:
        raise CheckpointError(f"{location!r} holds no patch network (P) weights")
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"the P weights in {location!r} do not fit preset {config.preset!r} as this version "
            "defines it: export with the version that pretrained them, or pretrain again"
        ) from None
    return net.eval()


def export_encoder(
    source: str,
    fmt: str,
    out: str | Path,
    settings: Settings,
    *,
    overwrite: bool = False,
) -> ExportResult:
    """Write P from `source` (run id or path) as `fmt` to `out`."""
    if fmt not in EXPORT_FORMATS:
        raise SpecError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    target = _checked_out(Path(out).expanduser(), overwrite)
    resolved = resolve_weights(parse_reference(source), settings)
    config = resolved.weights.config
    net = patch_network(resolved.weights, resolved.location)
    with _atomic(target) as tmp:
        if fmt == "torchvision":
            try:
                state = resnet50_state_dict(net.trunk, config)
            except TorchvisionExportError as exc:
                raise SpecError(str(exc)) from None
            torch.save(state, tmp)
        else:
            write_onnx(net, config, tmp)
    assert config.patch_size is not None
    return ExportResult(
        out=str(target),
        format=fmt,  # type: ignore[arg-type]
        source=resolved.location,
        pretrain_run_id=resolved.pretrain_run_id,
        preset=config.preset,
        patch_size=config.patch_size,
        feature_dim=net.out_dim,
    )


def _checked_out(path: Path, overwrite: bool) -> Path:
    if path.is_dir():
        raise SpecError(f"--out {str(path)!r} is a folder: name the file to write")
    if not path.parent.is_dir():
        raise SpecError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist")
    if path.exists() and not overwrite:
        raise SpecError(f"--out {str(path)!r} exists: pass --overwrite or name another file")
    return path


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, renamed onto it only if the block succeeds."""
    # Created by the writer, so it gets the usual permissions (mkstemp's are owner-only).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
