"""The pretraining driver: validate, start the MLflow run, run Ray Train, publish the encoder.

The driver owns the MLflow run (created here, passed by id to rank 0, closed here), so a
restarted worker keeps logging into the same run and a resumed run (`resume`)
continues its own history.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.data.loader import ShardData
from pipelines.pretrain.plan import PretrainPlan, plan_pretrain
from pipelines.runtime.interrupt import interruptible_trainer, restore_sigint
from pipelines.runtime.progress import report_progress
from pipelines.runtime.tracked_run import TrackedRun, tracked_run
from pipelines.specs import PretrainSpec
from pipelines.specs.names import (
    ENCODER_ARTIFACT_DIR,
    MANIFEST_DIGEST_TAG,
    PRESET_TAG,
    RESULT_FILE,
)
from pipelines.specs.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    run_name: str
    mlflow_run_id: str
    checkpoint: str
    encoder_file: str  # the pretrained weights (encoder.pt) sweeps load
    storage_path: str
    steps: int
    resumed_from_step: int
    final_loss: float
    final_selection_accuracy: float
    result_file: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def run_pretrain(
    spec: PretrainSpec,
    settings: Settings,
    parent_run_id: str | None = None,
) -> PretrainResult:
    """Run (or resume) one pretraining; return where its run, checkpoint and encoder are."""
    spec.check_paths()
    plan = plan_pretrain(spec, ShardData.open(spec.data_dir()))
    spec = plan.spec  # the data dir and image size resolved, validated again
    storage = settings.run_storage(spec.storage_path, spec.experiment)
    with tracked_run(
        spec, settings, kind="pretrain", parent_run_id=parent_run_id, params=spec.model_dump()
    ) as run:
        if not run.resumed:
            _log_dataset(run.client, run.run_id, spec.data, plan.manifest_digest)
        return _train(plan, settings, run, storage)


def _train(plan: PretrainPlan, settings: Settings, run: TrackedRun, storage: str) -> PretrainResult:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.pretrain.worker_loop import pretrain_worker
    from pipelines.runtime.placement import alive_nodes, worker_shape
    from pipelines.runtime.ray_cluster import ensure_ray
    from pipelines.training.checkpoint import ENCODER_FILE, load_training_state, save_encoder

    spec = plan.spec
    client, run_id, name = run.client, run.run_id, run.name
    ensure_ray(settings)
    shape = worker_shape(
        alive_nodes(), spec.workers, spec.cpus_per_worker, spec.requested_gpus, "a worker"
    )
    _log_recipe(run, plan, shape)
    trainer = interruptible_trainer(TorchTrainer)(
        pretrain_worker,
        train_loop_config={
            "plan": plan,
            "cpus_per_worker": shape.cpus,
            "tracking_uri": settings.tracking_uri,
            "mlflow_run_id": run_id,
        },
        scaling_config=ScalingConfig(
            num_workers=spec.workers,
            use_gpu=shape.gpus > 0,
            resources_per_worker=shape.resources(),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    with restore_sigint():  # Ray Train leaves its own SIGINT handler installed
        try:
            result = trainer.fit()
        except KeyboardInterrupt:
            trainer.wait_for_abort()  # workers stopped, nothing of the run left running
            raise
    stopped_at = (result.metrics or {}).get("step")
    if stopped_at is not None and int(stopped_at) < plan.total_steps:
        # A run aborted from outside (`fit()` returns without an error before the last
        # step) is an interruption too: never a partial encoder saved and registered.
        log.warning("pretraining %r stopped at step %d of %d", name, stopped_at, plan.total_steps)
        raise KeyboardInterrupt
    if result.checkpoint is None:
        raise RuntimeError(f"pretraining run {name!r} ended without a checkpoint")

    total = plan.total_steps
    out_dir = run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    report_progress("pretrain", total, total, status="saving the encoder")
    with result.checkpoint.as_directory() as directory:
        state = load_training_state(Path(directory))
    encoder_path = save_encoder(out_dir / ENCODER_FILE, state)
    client.log_artifact(run_id, str(encoder_path), ENCODER_ARTIFACT_DIR)
    if spec.register_model:
        status = f"registering the encoder as MLflow model {spec.register_model!r}"
        report_progress("pretrain", total, total, status=status)
    _register(settings, run_id, spec, state)
    report_progress("pretrain", total, total, status="done")
    metrics = result.metrics or {}

    outcome = PretrainResult(
        run_name=name,
        mlflow_run_id=run_id,
        checkpoint=result.checkpoint.path,
        encoder_file=str(encoder_path),
        storage_path=storage,
        steps=int(metrics.get("step", state["step"])),
        resumed_from_step=int(metrics.get("resumed_from_step", 0)),
        final_loss=float(metrics.get("loss", float("nan"))),
        final_selection_accuracy=float(metrics.get("selection_accuracy", float("nan"))),
    )
    outcome.result_file = str(out_dir / RESULT_FILE)
    run.write_result(outcome.to_dict())
    return outcome


def _log_recipe(run: TrackedRun, plan: PretrainPlan, shape) -> None:
    """What actually trains, as MLflow params: the worker shape and the recipe resolved for
    the global batch (effective_lr, effective_warmup_steps, global_batch_size). A resumed
    run on another cluster shape keeps its first values as params and notes the new ones as
    tags (MLflow params are write-once)."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    values = {
        **plan.recipe.params(),
        "resolved_cpus_per_worker": str(shape.cpus),
        "resolved_gpus_per_worker": str(shape.gpus),
    }
    log.info("placement and recipe: %s", values)
    try:
        run.client.log_batch(run.run_id, params=[Param(k, v) for k, v in values.items()])
    except MlflowException:
        for key, value in values.items():
            run.client.set_tag(run.run_id, f"resumed.{key}", value)


def _log_dataset(client, run_id: str, data_dir: str, digest: str) -> None:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    dataset = MetaDataset(
        LocalArtifactDatasetSource(data_dir), name=Path(data_dir).name, digest=digest[:36]
    )
    client.log_inputs(
        run_id,
        [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "pretrain")])],
    )


def _register(settings: Settings, run_id: str, spec: PretrainSpec, state: dict) -> None:
    """Log the encoder as an MLflow PyTorch model and register a version of it."""
    if not spec.register_model:
        return
    import mlflow
    import mlflow.pytorch

    from selfie_core.config import SelfieConfig
    from selfie_core.selfie_model import SelfieModel

    model = SelfieModel(SelfieConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    # `set_tracking_uri` also sets this process's MLFLOW_TRACKING_URI: put the previous value
    # back after, or every later run in the process (a test session, a notebook) would
    # silently write to this pretraining's store.
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        with mlflow.start_run(run_id=run_id):
            mlflow.pytorch.log_model(
                model,
                name="model",
                registered_model_name=spec.register_model,
                serialization_format="pickle",
                pip_requirements=["torch==2.14.1", "selfie-pipelines"],
            )
            mlflow.set_tags(
                {PRESET_TAG: spec.preset, MANIFEST_DIGEST_TAG: state["manifest_digest"]}
            )
    finally:
        mlflow.set_tracking_uri(previous)  # None unsets the variable
