"""The sweep driver: subsets, the MLflow parent run, the Tuner, test accuracy of each cell's
best-validation trial, and the report.

Test data is read once per (encoder, init, fraction, seed), for the trial and epoch that
validation chose; nothing is selected on it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.data.geometry import model_image_size
from pipelines.data.loader import ShardData
from pipelines.report.publish import publish_report
from pipelines.report.results_table import CellResult
from pipelines.settings import Settings
from pipelines.specs import SpecError, SweepSpec
from pipelines.specs.names import FAILED_TRIALS_TAG, PRETRAIN_RUN_TAG, WEIGHTS_TAG
from pipelines.sweep.placing import resolve_trial_shape, trial_resources
from pipelines.sweep.trial import BEST_STATE_FILE, finetune_config, finetune_trial, subset_key
from pipelines.tracked_run import TrackedRun, tracked_run


@dataclass
class SweepResult:
    run_name: str
    mlflow_run_id: str
    pretrain_run_id: str | None
    trials: int
    failed_trials: int
    table_markdown: str
    report_dir: str
    cells: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _param_space(spec: SweepSpec) -> tuple[dict, int]:
    from ray import tune

    space = {
        "encoder": tune.grid_search(list(spec.architectures)),
        "init": tune.grid_search(list(spec.inits)),
        "fraction": tune.grid_search(list(spec.fractions)),
        "seed": tune.grid_search(list(range(spec.seeds))),
    }
    if spec.search.mode == "grid":
        space["lr"] = tune.grid_search(list(spec.search.lr))
        space["weight_decay"] = tune.grid_search(list(spec.search.weight_decay))
        return space, 1
    lo, hi = min(spec.search.lr), max(spec.search.lr)
    space["lr"] = tune.loguniform(lo, hi) if hi > lo else lo
    wlo, whi = min(spec.search.weight_decay), max(spec.search.weight_decay)
    space["weight_decay"] = tune.uniform(wlo, whi) if whi > wlo else wlo
    return space, spec.search.num_samples


def trial_count(spec: SweepSpec) -> int:
    """How many trials the sweep runs: the grid of cells times the search per cell."""
    cells = len(spec.architectures) * len(spec.inits) * len(spec.fractions) * spec.seeds
    if spec.search.mode == "grid":
        return cells * len(spec.search.lr) * len(spec.search.weight_decay)
    return cells * spec.search.num_samples


def _test_accuracy(sweep: dict, config: dict, model_config: dict, checkpoint) -> float:
    import torch

    from pipelines.sweep.finetune import evaluate_on_test
    from selfie_core.config import SelfieConfig

    spec = SweepSpec.model_validate(sweep)
    torch.set_num_threads(spec.cpus_per_trial)
    device = torch.device("cuda" if spec.gpus_per_trial and torch.cuda.is_available() else "cpu")
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / BEST_STATE_FILE, map_location="cpu", weights_only=True)
    data = ShardData.open(spec.data_dir())
    cfg = finetune_config(spec, config)
    return evaluate_on_test(cfg, data, SelfieConfig.from_dict(model_config), state, device)


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def select_and_test(results, spec: SweepSpec, model_config: dict) -> list[CellResult]:
    """Per cell, the trial with the best validation accuracy, then its test accuracy.

    With several pretrained encoders (trial config `pretrain_seed`, selfie trials only) each
    pretraining seed is a cell of its own; the report averages them per finetune seed.
    """
    import ray

    groups: dict[tuple, list] = defaultdict(list)
    for result in results:
        c = result.config
        pseed = c.get("pretrain_seed") if c["init"] == "selfie" else None
        groups[(c["encoder"], c["init"], c["fraction"], c["seed"], pseed)].append(result)
    remote = ray.remote(_test_accuracy).options(
        num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial
    )
    cells, pending = [], []
    ordered = sorted(
        groups.items(), key=lambda kv: (*kv[0][:4], -1 if kv[0][4] is None else kv[0][4])
    )
    for (encoder, init, fraction, seed, pseed), members in ordered:
        done = [r for r in members if r.error is None and r.metrics and r.checkpoint is not None]
        if not done:
            cells.append(
                CellResult(encoder, init, fraction, seed, status="failed", pretrain_seed=pseed)
            )
            continue
        best = max(done, key=lambda r: r.metrics.get("best_val_accuracy", -1.0))
        checkpoint = best.checkpoint
        cell = CellResult(
            encoder, init, fraction, seed, status="ok",
            val_accuracy=float(best.metrics["best_val_accuracy"]),
            lr=float(best.config["lr"]), weight_decay=float(best.config["weight_decay"]),
            trial_id=best.metrics.get("trial_id"),
            best_epoch=_int_or_none(best.metrics.get("best_epoch")),
            epochs_run=_int_or_none(best.metrics.get("epoch")),
            epochs_budget=_int_or_none(best.metrics.get("epochs_budget")),
            steps_per_epoch=_int_or_none(best.metrics.get("steps_per_epoch")),
            pretrain_seed=pseed,
        )  # fmt: skip
        cells.append(cell)
        pending.append(
            (cell, remote.remote(spec.model_dump(), best.config, model_config, checkpoint))
        )
    for cell, ref in pending:
        cell.test_accuracy = float(ray.get(ref))
    # Cells missing from the results entirely (never started) are missing seeds too.
    seen = {(c.encoder, c.init, c.fraction, c.seed) for c in cells}
    grid = itertools.product(spec.architectures, spec.inits, spec.fractions, range(spec.seeds))
    cells += [CellResult(*key, status="failed") for key in grid if key not in seen]
    return cells


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    *,
    parent_run_id: str | None = None,
) -> SweepResult:
    from pipelines.data.labels import labeled_positions
    from pipelines.sweep.weights_source import resolve_weights
    from selfie_core.config import SelfieConfig

    spec.check_paths()
    data = ShardData.open(spec.data_dir(), verify=spec.verify)
    for split in ("val", "test"):
        if not data.manifest.counts.get(split):
            raise SpecError(f"data dir {spec.data!r} has no {split} split: re-ingest with one")
    spec = spec.model_copy(update={"data": str(data.data_dir.resolve())})
    resolved = resolve_weights(spec.pretrained, settings) if spec.pretrained else None
    if resolved is not None:
        # The loader resizes the data to the size the encoder was pretrained at.
        model_config = resolved.encoder.config
    else:
        size = model_image_size(data.manifest.image_size, spec.image_size)
        model_config = SelfieConfig(preset=spec.preset, image_size=size)

    labels = data.labels("train")  # from the label sidecar: no image bytes are read
    subsets = {
        subset_key(f, s): labeled_positions(labels, f, s)
        for f in spec.fractions
        for s in range(spec.seeds)
    }

    tags = {}
    if resolved:
        tags[WEIGHTS_TAG] = resolved.location
        if resolved.pretrain_run_id:
            tags[PRETRAIN_RUN_TAG] = resolved.pretrain_run_id
    with tracked_run(
        spec,
        settings,
        kind="sweep",
        parent_run_id=parent_run_id,
        tags=tags,
        params=spec.model_dump(),
    ) as run:
        return _tune(spec, settings, run, resolved, subsets, model_config)


def _tune(
    spec: SweepSpec, settings: Settings, run: TrackedRun, resolved, subsets: dict, model_config
) -> SweepResult:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from pipelines.ray_runtime import ensure_ray
    from pipelines.sweep.mlflow_callback import MlflowTrialRuns

    client, run_id, name, experiment_id = run.client, run.run_id, run.name, run.experiment_id
    ensure_ray(settings)
    spec = resolve_trial_shape(spec).model_copy(  # trials see the resolved shape and storage
        update={"storage_path": spec.storage_path or settings.resolved_storage_path}
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            finetune_trial,
            sweep=spec.model_dump(),
            subsets=subsets,
            model_config=model_config.to_dict(),
            encoder=resolved.encoder if resolved else None,
        ),
        trial_resources(spec),
    )
    space, num_samples = _param_space(spec)
    storage = spec.storage_path or settings.resolved_storage_path
    experiment_path = f"{storage.rstrip('/')}/{name}"
    if run.resumed and tune.Tuner.can_restore(experiment_path):
        tuner = tune.Tuner.restore(
            experiment_path, trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        scheduler = None
        if spec.search.asha:
            scheduler = ASHAScheduler(
                time_attr="epoch", max_t=spec.epochs, grace_period=max(1, spec.epochs // 4)
            )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric="val_accuracy",
                mode="max",
                num_samples=num_samples,
                scheduler=scheduler,
                max_concurrent_trials=spec.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                callbacks=[
                    MlflowTrialRuns(settings.tracking_uri, experiment_id, run_id, trial_count(spec))
                ],
                failure_config=tune.FailureConfig(max_failures=spec.trial_max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,
                    checkpoint_score_attribute="best_val_accuracy",
                    checkpoint_score_order="max",
                ),
                verbose=1,
            ),
        )
    results = tuner.fit()
    cells = select_and_test(results, spec, model_config.to_dict())
    out_dir = run.out_dir
    markdown = publish_report(client, run_id, cells, spec.seeds, out_dir)
    failed = sum(1 for r in results if r.error is not None)
    client.set_tag(run_id, FAILED_TRIALS_TAG, str(failed))
    result = SweepResult(
        run_name=name,
        mlflow_run_id=run_id,
        pretrain_run_id=resolved.pretrain_run_id if resolved else None,
        trials=len(results),
        failed_trials=failed,
        table_markdown=markdown,
        report_dir=str(out_dir),
        cells=[asdict(c) for c in cells],
    )
    run.write_result(result.to_dict())
    return result
