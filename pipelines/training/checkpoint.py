"""Training state on disk: everything needed to continue a run exactly where it stopped,
and the encoder file a finetune sweep loads."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipelines.specs.errors import SelfieError
from selfie_core.config import SelfieConfig

STATE_FILE = "training_state.pt"
ENCODER_FILE = "encoder.pt"


class CheckpointError(SelfieError):
    """A checkpoint or encoder file that cannot be used; the message names the file."""


def _to_cpu(value):
    """A copy of `value` with every tensor copied to the host: training may go on changing
    the originals in place while the copy is written."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def training_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    epoch: int,
    ranks: list[dict],
    loader: dict,
    config: SelfieConfig,
    manifest_digest: str,
) -> dict:
    """A snapshot of the full training state on the host (tensors copied, not shared):
    `ranks` holds every rank's random generators (`rng_state`), `loader` the data stream's
    position (`StreamPosition.to_dict`), so a resumed run continues both exactly."""
    return _to_cpu(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "ranks": ranks,
            "loader": loader,
            "config": config.to_dict(),
            "manifest_digest": manifest_digest,
        }
    )


def write_training_state(directory: Path, state: dict) -> Path:
    path = directory / STATE_FILE
    torch.save(state, path)
    return path


def _load(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is truncated or corrupt ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(data, dict) or "config" not in data:
        raise CheckpointError(f"{str(path)!r} is not a Selfie checkpoint")
    return data


def load_training_state(directory: Path) -> dict:
    return _load(directory / STATE_FILE)


@dataclass
class EncoderFile:
    """A pretrained Selfie model's weights and what it was trained as/on."""

    config: SelfieConfig
    state_dict: dict[str, torch.Tensor]
    manifest_digest: str
    step: int


def save_encoder(path: Path, state: dict) -> Path:
    """Write the encoder file from a training state (weights, config, data digest, step)."""
    torch.save(
        {
            "config": state["config"],
            "state_dict": state["model"],
            "manifest_digest": state["manifest_digest"],
            "step": state["step"],
        },
        path,
    )
    return path


def load_encoder(path: str | Path) -> EncoderFile:
    """Read an encoder file, or a training state / checkpoint dir holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / ENCODER_FILE if (p / ENCODER_FILE).is_file() else p / STATE_FILE
    data = _load(p)
    weights = data.get("state_dict", data.get("model"))
    if weights is None:
        raise CheckpointError(f"{str(p)!r} holds no model weights")
    return EncoderFile(
        config=SelfieConfig.from_dict(data["config"]),
        state_dict=weights,
        manifest_digest=data.get("manifest_digest", ""),
        step=int(data.get("step", 0)),
    )
