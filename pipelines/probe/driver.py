"""`selfie probe`: kNN and linear-probe accuracy of a pretrained encoder's frozen
representations (u, trunk), against random encoders of the same preset, in one process.

Selection accuracy says the pretext task is solved, not that the features help; finetuning
mixes the features' worth with optimisation. A frozen probe against a random-init baseline
reads the features alone (the kNN and linear protocols of InstDisc, solo-learn, VISSL).
The weights reference resolves exactly as a sweep's does; the run goes into the
pretraining's experiment, nested under the pretraining run when there is one.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch

from pipelines.data.geometry import model_image_size
from pipelines.data.loader import ShardData
from pipelines.data.normalize import normalized_batches
from pipelines.probe.features import PROTOCOLS, frozen_readers, probe_scores, read_features
from pipelines.runtime.progress import report_progress
from pipelines.runtime.tracked_run import tracked_run
from pipelines.runtime.tracking import tracking_client
from pipelines.specs.common import TrackedRunSpec
from pipelines.specs.names import MANIFEST_DIGEST_TAG, PRESET_TAG, PRETRAIN_RUN_TAG
from pipelines.specs.probe import DEFAULT_PROBE_EXPERIMENT, ProbeSpec
from pipelines.specs.settings import Settings
from pipelines.sweep.weights_source import ResolvedWeights, resolve_weights
from pipelines.training.checkpoint import CheckpointError
from selfie_core.representations import REPRESENTATIONS
from selfie_core.selfie_model import SelfieModel

EVAL_BATCH = 256


@dataclass(frozen=True)
class ProbeRow:
    """One (representation, protocol): the pretrained encoder's accuracy and the random
    encoders' (one per seed), with their mean and sample std."""

    representation: str
    protocol: str
    pretrained: float
    random: list[float]
    random_mean: float
    random_std: float

    @property
    def delta(self) -> float:
        return self.pretrained - self.random_mean


@dataclass
class ProbeResult:
    source: str
    data: str
    pretrain_run_id: str | None
    mlflow_run_id: str
    preset: str
    pretrain_step: int
    seeds: int
    train_images: int
    val_images: int
    report_dir: str
    rows: list[ProbeRow] = field(default_factory=list)

    def table_markdown(self) -> str:
        lines = [
            f"| representation | protocol | pretrained | random init ({self.seeds} seeds) | Δ |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.representation} | {r.protocol} | {100 * r.pretrained:.1f} | "
                f"{100 * r.random_mean:.1f} ± {100 * r.random_std:.1f} | "
                f"{100 * r.delta:+.1f} |"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = asdict(self)
        for row, data in zip(self.rows, out["rows"], strict=True):
            data["delta"] = row.delta
        out["table_markdown"] = self.table_markdown()
        return out


def load_selfie_model(resolved: ResolvedWeights) -> SelfieModel:
    """The pretraining network with the file's weights, rebuilt from the file's own config."""
    model = SelfieModel(resolved.weights.config)
    try:
        model.load_state_dict(resolved.weights.state_dict)
    except RuntimeError:
        raise CheckpointError(
            f"the weights in {resolved.location!r} do not fit preset "
            f"{resolved.weights.config.preset!r} as this version defines it: probe with the "
            "version that pretrained them, or pretrain again"
        ) from None
    return model.eval()


def _experiment(spec: ProbeSpec, resolved: ResolvedWeights, settings: Settings) -> str:
    if spec.experiment:
        return spec.experiment
    if resolved.pretrain_run_id:
        client = tracking_client(settings)
        run = client.get_run(resolved.pretrain_run_id)
        return client.get_experiment(run.info.experiment_id).name
    return DEFAULT_PROBE_EXPERIMENT


def run_probe(spec: ProbeSpec, settings: Settings) -> ProbeResult:
    spec.check_paths()
    resolved = resolve_weights(spec.pretrained, settings)
    pretrained = load_selfie_model(resolved)
    config = resolved.weights.config
    data = ShardData.open(spec.data_dir())
    # The encoder's own size: u needs the grid it was pretrained with (its position tables).
    size = model_image_size(data.manifest.image_size, config.image_size, config.patch_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mean, std = data.manifest.mean, data.manifest.std
    num_classes = data.manifest.num_classes

    def batches(
        split: str, limit: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split's first `limit` images (shard order), normalised on the device."""
        loader = data.eval_loader(split, EVAL_BATCH, image_size=size)  # type: ignore[arg-type]
        seen = 0
        for images, labels in normalized_batches(loader, mean, std, device):
            take = len(images) if limit is None else min(len(images), limit - seen)
            if take <= 0:
                return
            seen += take
            yield images[:take], labels[:take]

    def calibration() -> Iterator[torch.Tensor]:
        seen = 0
        for images, _ in batches("train"):
            if seen >= spec.calibration_images:
                return
            take = images[: spec.calibration_images - seen]
            seen += len(take)
            yield take

    def scores(model: SelfieModel) -> tuple[dict[str, float], int, int]:
        readers = frozen_readers(model.to(device), calibration())
        train = read_features(readers, batches("train", spec.max_train_images))
        val = read_features(readers, batches("val", spec.max_val_images))
        return probe_scores(train, val, num_classes), len(train.labels), len(val.labels)

    run_spec = TrackedRunSpec(
        experiment=_experiment(spec, resolved, settings), run_name=spec.run_name
    )
    tags = {
        PRESET_TAG: config.preset,
        MANIFEST_DIGEST_TAG: data.manifest.digest(),
        "selfie.probe_of": resolved.location[:5000],
    }
    if resolved.pretrain_run_id:
        tags[PRETRAIN_RUN_TAG] = resolved.pretrain_run_id
    params = {
        "source": resolved.location,
        "data": spec.data,
        "seeds": spec.seeds,
        "calibration_images": spec.calibration_images,
        "max_train_images": spec.max_train_images,
        "max_val_images": spec.max_val_images,
        "knn_k": 20,
        "knn_temperature": 0.07,
        "model": config.to_dict(),
    }
    with tracked_run(
        run_spec,
        settings,
        kind="probe",
        parent_run_id=resolved.pretrain_run_id,
        tags=tags,
        params=params,
    ) as run:
        encoders = 1 + spec.seeds
        report_progress("probe", 0, encoders, status="reading the pretrained encoder")
        found, n_train, n_val = scores(pretrained)
        random_scores = []
        for seed in range(spec.seeds):
            report_progress("probe", 1 + seed, encoders, status=f"random encoder {seed}")
            torch.manual_seed(seed)
            random_scores.append(scores(SelfieModel(config).eval())[0])
        report_progress("probe", encoders, encoders, status="done")
        rows = []
        for name, protocol in itertools.product(REPRESENTATIONS, PROTOCOLS):
            key = f"{protocol}_{name}"
            values = [s[key] for s in random_scores]
            rows.append(
                ProbeRow(
                    representation=name,
                    protocol=protocol,
                    pretrained=found[key],
                    random=values,
                    random_mean=statistics.fmean(values),
                    random_std=statistics.stdev(values) if len(values) > 1 else 0.0,
                )
            )
        result = ProbeResult(
            source=resolved.location,
            data=spec.data,
            pretrain_run_id=resolved.pretrain_run_id,
            mlflow_run_id=run.run_id,
            preset=config.preset,
            pretrain_step=resolved.weights.step,
            seeds=spec.seeds,
            train_images=n_train,
            val_images=n_val,
            report_dir=str(run.out_dir),
            rows=rows,
        )
        _log(run, result)
        run.write_result(result.to_dict())
    return result


def _log(run, result: ProbeResult) -> None:
    from mlflow.entities import Metric

    metrics = {}
    for r in result.rows:
        key = f"{r.protocol}_{r.representation}"
        metrics[f"{key}_pretrained"] = r.pretrained
        metrics[f"{key}_random_mean"] = r.random_mean
        metrics[f"{key}_random_std"] = r.random_std
        metrics[f"{key}_delta"] = r.delta
    now = int(time.time() * 1000)
    run.client.log_batch(run.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    run.client.log_text(run.run_id, result.table_markdown(), "probe/table.md")
