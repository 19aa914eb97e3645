"""Turning `--encoder` into weights: an MLflow run id, an encoder file, or a checkpoint dir."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.settings import Settings
from pipelines.specs import SpecError
from pipelines.training.checkpoint import ENCODER_FILE, EncoderFile, load_encoder


@dataclass
class ResolvedEncoder:
    encoder: EncoderFile
    location: str
    pretrain_run_id: str | None


def resolve_encoder(ref: str, settings: Settings) -> ResolvedEncoder:
    path = Path(ref).expanduser()
    if path.exists():
        if path.is_dir() and (path / "result.json").is_file():
            import json

            info = json.loads((path / "result.json").read_text())
            return ResolvedEncoder(
                load_encoder(info["encoder"]), info["encoder"], info["mlflow_run_id"]
            )
        return ResolvedEncoder(load_encoder(path), str(path), None)
    from mlflow.exceptions import MlflowException

    from pipelines.tracking import tracking_client

    client = tracking_client(settings)
    try:
        client.get_run(ref)
    except MlflowException:
        raise SpecError(
            f"encoder {ref!r} is neither a file, a checkpoint dir nor an MLflow run id in "
            f"{settings.tracking_uri}"
        ) from None
    target = tempfile.mkdtemp(prefix="selfie-encoder-")
    try:
        local = client.download_artifacts(ref, f"encoder/{ENCODER_FILE}", target)
    except (MlflowException, OSError):
        raise SpecError(f"MLflow run {ref!r} has no encoder/{ENCODER_FILE} artifact") from None
    return ResolvedEncoder(load_encoder(local), f"runs:/{ref}/encoder/{ENCODER_FILE}", ref)
