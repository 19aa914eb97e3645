"""The sweep driver: subsets, the MLflow parent run, the Tuner, test accuracy of each cell's
best-validation trial, and the report.

Test data is read once per (architecture, init, fraction, seed), for the trial and epoch that
validation chose; nothing is selected on it.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.data.geometry import model_image_size
from pipelines.data.loader import ShardData
from pipelines.report.publish import publish_report
from pipelines.report.results_table import CellResult
from pipelines.runtime.interrupt import stop_on_interrupt
from pipelines.runtime.tracked_run import TrackedRun, tracked_run
from pipelines.specs import SpecError, SweepSpec, build_spec
from pipelines.specs.names import FAILED_TRIALS_TAG, PRETRAIN_RUN_TAG, WEIGHTS_TAG, run_ids_tag
from pipelines.specs.settings import Settings
from pipelines.sweep.trial import finetune_trial
from pipelines.sweep.trial_plan import (
    CELL_KEY,
    REPLICATE_PHASE,
    SEARCH_PHASE,
    Cell,
    all_cells,
    cell_of,
    chosen_settings,
    replicate_cells,
    replicate_space,
    search_cells,
    search_space,
    stops_early,
    trial_count,
    trial_params,
)
from pipelines.sweep.trial_resources import resolve_trial_shape, trial_resources
from pipelines.sweep.trial_setup import BEST_STATE_FILE, setup_trial, subset_key
from pipelines.sweep.weights_source import ResolvedWeights
from selfie_core.config import SelfieConfig


@dataclass
class SweepResult:
    run_name: str
    mlflow_run_id: str
    pretrain_run_ids: list[str]
    trials: int
    failed_trials: int
    table_markdown: str
    report_dir: str
    cells: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _test_accuracy(sweep: dict, config: dict, model_config: dict, checkpoint) -> float:
    """Test accuracy of a chosen trial's best weights, set up as its trial was."""
    import torch

    trial = setup_trial(sweep, config, None, model_config)
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / BEST_STATE_FILE, map_location="cpu", weights_only=True)
    return trial.test_accuracy(state)


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def select_and_test(results, spec: SweepSpec, model_config: dict) -> list[CellResult]:
    """Per cell, the trial with the best validation accuracy, then its test accuracy.

    A cell is (architecture, init, pretraining seed, fraction, seed): with several pretrained
    weights each pretraining seed of a selfie cell is a cell of its own; the report averages
    them per finetune seed. Cells of the plan with no result at all are listed as failed.
    """
    import ray

    groups: dict[Cell, list] = defaultdict(list)
    for result in results:
        groups[cell_of(trial_params(result.config))].append(result)
    remote = ray.remote(_test_accuracy).options(
        num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial
    )
    cells, pending = [], []
    for cell in all_cells(spec):
        done = [r for r in groups.get(cell, []) if _usable(r)]
        key = (cell.architecture, cell.init, cell.fraction, cell.seed)
        if not done:
            cells.append(CellResult(*key, status="failed", pretrain_seed=cell.pretrain_seed))
            continue
        best = max(done, key=lambda r: r.metrics.get("best_val_accuracy", -1.0))
        params = trial_params(best.config)
        result = CellResult(
            *key, status="ok",
            val_accuracy=float(best.metrics["best_val_accuracy"]),
            lr=float(params["lr"]), weight_decay=float(params["weight_decay"]),
            trial_id=best.metrics.get("trial_id"),
            best_epoch=_int_or_none(best.metrics.get("best_epoch")),
            epochs_run=_int_or_none(best.metrics.get("epoch")),
            epochs_budget=_int_or_none(best.metrics.get("epochs_budget")),
            steps_per_epoch=_int_or_none(best.metrics.get("steps_per_epoch")),
            pretrain_seed=cell.pretrain_seed,
        )  # fmt: skip
        cells.append(result)
        pending.append(
            (result, remote.remote(spec.model_dump(), params, model_config, best.checkpoint))
        )
    for result, ref in pending:
        result.test_accuracy = float(ray.get(ref))
    return cells


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    *,
    parent_run_id: str | None = None,
) -> SweepResult:
    from pipelines.data.labels import labeled_positions
    from pipelines.sweep.weights_source import resolve_weights

    spec.check_paths()
    data = ShardData.open(spec.data_dir(), verify=spec.verify)
    for split in ("val", "test"):
        if not data.manifest.counts.get(split):
            raise SpecError(f"data dir {spec.data!r} has no {split} split: re-ingest with one")
    spec = build_spec(SweepSpec, spec.model_dump() | {"data": str(data.data_dir.resolve())})
    resolved = [resolve_weights(ref, settings) for ref in spec.pretrained]
    _refuse_the_same_weights_twice(resolved)
    if resolved:
        # The loader resizes the data to the size the weights were pretrained at.
        model_config = resolved[0].weights.config
        for weights in resolved[1:]:
            if weights.weights.config != model_config:
                raise SpecError(
                    f"pretrained weights {weights.location!r} were trained as another model "
                    f"than {resolved[0].location!r}: give weights of one preset and image size"
                )
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
        tags[WEIGHTS_TAG] = json.dumps([w.location for w in resolved])
        run_ids = [w.pretrain_run_id for w in resolved if w.pretrain_run_id]
        if run_ids:
            tags[PRETRAIN_RUN_TAG] = run_ids_tag(run_ids)
    with tracked_run(
        spec,
        settings,
        kind="sweep",
        parent_run_id=parent_run_id,
        tags=tags,
        params=spec.model_dump(),
    ) as run:
        return _tune(spec, settings, run, resolved, subsets, model_config)


def _refuse_the_same_weights_twice(resolved: list[ResolvedWeights]) -> None:
    """Each weights counts as one pretraining seed: the same encoder named twice (a result
    folder and its encoder.pt, two spellings of one path, a run and its artifact file)
    would understate the spread between pretrainings. The spec checks its text; this, what
    the names resolved to."""
    seen: dict[str, str] = {}
    for weights in resolved:
        keys = [str(Path(weights.location).resolve())] if "://" not in weights.location else []
        keys += [f"run {weights.pretrain_run_id}"] if weights.pretrain_run_id else []
        for key in keys:
            if key in seen:
                raise SpecError(
                    f"pretrained names the same weights twice ({seen[key]!r} and "
                    f"{weights.location!r}): each entry counts as one pretraining seed, so "
                    "give each weights once"
                )
            seen[key] = weights.location


def _tune(
    spec: SweepSpec,
    settings: Settings,
    run: TrackedRun,
    resolved: list[ResolvedWeights],
    subsets: dict,
    model_config: SelfieConfig,
) -> SweepResult:
    import ray
    from ray import tune

    from pipelines.runtime.ray_cluster import ensure_ray

    ensure_ray(settings)
    storage = settings.run_storage(spec.storage_path, spec.experiment)
    # Trials see the resolved shape and storage, validated as any spec is.
    spec = build_spec(SweepSpec, resolve_trial_shape(spec).model_dump() | {"storage_path": storage})
    weights = [ray.put(w.weights) for w in resolved]

    @functools.cache
    def trainable(may_stop_early: bool):
        # One per distinct flag: without ASHA both phases share it (the subsets go to the
        # object store once).
        return tune.with_resources(
            tune.with_parameters(
                finetune_trial,
                sweep=spec.model_dump(),
                subsets=subsets,
                model_config=model_config.to_dict(),
                weights=weights,
                may_stop_early=may_stop_early,
            ),
            trial_resources(spec),
        )

    phases = _Phases(spec, settings, run, lambda phase: trainable(stops_early(spec, phase)))
    search = phases.fit(SEARCH_PHASE, search_space(spec, search_cells(spec)))
    results = list(search)
    replicates = replicate_cells(spec)
    if replicates:
        searched = [(r.config, r.metrics["best_val_accuracy"]) for r in results if _usable(r)]
        space = replicate_space(replicates, chosen_settings(searched))
        phases.expect(len(results) + (len(space[CELL_KEY]["grid_search"]) if space else 0))
        if space is not None:
            results += list(phases.fit(REPLICATE_PHASE, space))
    cells = select_and_test(results, spec, model_config.to_dict())
    markdown = publish_report(run.client, run.run_id, cells, spec.seeds, run.out_dir)
    failed = sum(1 for r in results if r.error is not None)
    run.client.set_tag(run.run_id, FAILED_TRIALS_TAG, str(failed))
    result = SweepResult(
        run_name=run.name,
        mlflow_run_id=run.run_id,
        pretrain_run_ids=[w.pretrain_run_id for w in resolved if w.pretrain_run_id],
        trials=len(results),
        failed_trials=failed,
        table_markdown=markdown,
        report_dir=str(run.out_dir),
        cells=[asdict(c) for c in cells],
    )
    run.write_result(result.to_dict())
    return result


def _usable(result) -> bool:
    """A trial that finished with a best-validation score and its checkpoint: the only kind
    a search may choose from and a cell may be tested with."""
    return (
        result.error is None
        and bool(result.metrics)
        and "best_val_accuracy" in result.metrics
        and result.checkpoint is not None
    )


class _Phases:
    """The sweep's Tune experiments (the search, then the replicates under `first-seed`):
    each created, or restored when the sweep resumes, with one MLflow writer that counts the
    trials of every phase towards the sweep's total."""

    def __init__(
        self, spec: SweepSpec, settings: Settings, run: TrackedRun, trainable: Callable[[str], Any]
    ) -> None:
        from pipelines.sweep.mlflow_callback import MlflowTrialRuns

        self.spec, self.run, self.trainable = spec, run, trainable  # phase -> Tune trainable
        # `_tune` resolved the storage into the spec: the experiment's folder.
        self.storage = str(spec.storage_path).rstrip("/")
        # Restoring unpickles Tune's state (tuner.pkl): in a job, only from the storage the
        # settings own, never from a folder or URL the caller named.
        self.may_restore = settings.confinement() is None or self.storage == settings.run_storage(
            None, spec.experiment
        )
        self.callback = MlflowTrialRuns(
            settings.tracking_uri, run.experiment_id, run.run_id, trial_count(spec), spec.recipe()
        )

    def expect(self, trials: int) -> None:
        """The sweep's total once the replicates are known (cells whose search failed have
        none), so the progress reaches it."""
        self.callback.total_trials = trials

    def fit(self, phase: str, space: dict):
        """Run the phase (restored when the sweep resumes and Tune saved it); Ctrl+C stops
        the sweep after it with `Interrupted` rather than going on from partial results."""
        from ray import tune

        name = self.run.name if phase == SEARCH_PHASE else f"{self.run.name}-{phase}"
        path = f"{self.storage}/{name}"
        if self.run.resumed and not self.may_restore:
            raise SpecError(
                f"resume restores a sweep only from the configured storage "
                f"(SELFIE_STORAGE_PATH), not from storage_path {self.storage!r}: drop "
                "storage_path from the spec to resume"
            )
        restore = self.run.resumed and tune.Tuner.can_restore(path)
        with stop_on_interrupt(f"the sweep ({phase} phase)"):
            if restore:
                tuner = tune.Tuner.restore(
                    path, self.trainable(phase), resume_unfinished=True, resume_errored=True
                )
            else:
                tuner = self._new_tuner(phase, name, space)
            grid = tuner.fit()
        if restore:
            # A restored experiment reports through its own (unpickled) callback: count its
            # trials in ours (those that failed before reporting by their folder), so the
            # next phase's progress goes on from them.
            self.callback.finished.update(
                (r.metrics or {}).get("trial_id") or str(r.path) for r in grid
            )
        return grid

    def _new_tuner(self, phase: str, name: str, space: dict):
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        spec = self.spec
        scheduler = None
        if stops_early(spec, phase):
            scheduler = ASHAScheduler(
                time_attr="epoch", max_t=spec.epochs, grace_period=max(1, spec.epochs // 4)
            )
        return tune.Tuner(
            self.trainable(phase),
            param_space=space,
            tune_config=tune.TuneConfig(
                metric="val_accuracy",
                mode="max",
                scheduler=scheduler,
                max_concurrent_trials=spec.max_concurrent,
                # A finished trial's process takes the next trial of the same shape: no
                # new Python, torch import and (on a GPU) CUDA context per trial.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=self.storage,
                callbacks=[self.callback],
                failure_config=tune.FailureConfig(max_failures=spec.trial_max_failures),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,
                    checkpoint_score_attribute="best_val_accuracy",
                    checkpoint_score_order="max",
                ),
                verbose=1,
            ),
        )
