"""Pretrained weights from where the spec says: an MLflow run, an encoder file, or a
pretraining result folder. The reference is typed (`PretrainedWeights`), so nothing here
guesses whether a string is a path or a run id."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.specs import FileWeights, PretrainedWeights, SpecError
from pipelines.specs.names import ENCODER_ARTIFACT_DIR, RESULT_FILE
from pipelines.specs.paths import check_inside
from pipelines.specs.settings import Settings
from pipelines.training.checkpoint import ENCODER_FILE, EncoderFile, load_encoder


@dataclass
class ResolvedWeights:
    weights: EncoderFile
    location: str
    pretrain_run_id: str | None


def resolve_weights(ref: PretrainedWeights, settings: Settings) -> ResolvedWeights:
    if isinstance(ref, FileWeights):
        return _from_file(Path(ref.path).expanduser(), settings)
    return _from_run(ref.run_id, settings)


def _from_file(path: Path, settings: Settings) -> ResolvedWeights:
    if path.is_dir():
        if not (path / RESULT_FILE).is_file():
            raise SpecError(
                f"pretrained weights folder {str(path)!r} holds no {RESULT_FILE}: name the "
                f"pretraining's result folder or its {ENCODER_FILE}"
            )
        info = json.loads((path / RESULT_FILE).read_text())
        # Pretrainings written before `encoder_file` named their weights file `encoder`.
        named = info.get("encoder_file", info.get("encoder"))
        if named is None:
            raise SpecError(
                f"{RESULT_FILE} in {str(path)!r} names no encoder_file: name the "
                f"pretraining's {ENCODER_FILE} instead"
            )
        # A result.json is data a caller may have written: in a job, the encoder file it
        # names must lie under the data roots like a path in the spec.
        encoder_file = check_inside(
            str(named), f"the encoder file named in {RESULT_FILE}", settings.confinement()
        )
        return ResolvedWeights(load_encoder(encoder_file), str(named), info["mlflow_run_id"])
    if not path.is_file():
        raise SpecError(f"pretrained weights file {str(path)!r} does not exist")
    return ResolvedWeights(load_encoder(path), str(path), None)


def _from_run(run_id: str, settings: Settings) -> ResolvedWeights:
    from mlflow.exceptions import MlflowException

    from pipelines.runtime.tracking import tracking_client

    client = tracking_client(settings)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise SpecError(
            f"pretrained weights: no MLflow run {run_id!r} in {settings.tracking_uri}"
        ) from None
    target = tempfile.mkdtemp(prefix="selfie-encoder-")
    artifact = f"{ENCODER_ARTIFACT_DIR}/{ENCODER_FILE}"
    try:
        local = client.download_artifacts(run_id, artifact, target)
    except (MlflowException, OSError):
        raise SpecError(f"MLflow run {run_id!r} has no {artifact} artifact") from None
    return ResolvedWeights(load_encoder(local), f"runs:/{run_id}/{artifact}", run_id)
