"""One MLflow child run per Tune trial, written from the Tune driver: a single writer, so
SQLite never sees concurrent writers however many trials run at once."""

from __future__ import annotations

import time

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray import tune

from pipelines.runtime.progress import report_progress
from pipelines.specs.names import PARENT_RUN_TAG, TRIAL_TAG
from pipelines.sweep.trial_plan import architecture_of, trial_params

LOGGED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "best_val_accuracy")


def _arm(c: dict) -> str:
    """The init, with the pretraining seed of a selfie arm: scratch, selfie0, selfie1..."""
    return c["init"] if c.get("pretrain_seed") is None else f"{c['init']}{c['pretrain_seed']}"


def _label(c: dict) -> str:
    return f"{architecture_of(c)}/{_arm(c)}@{c['fraction']:g}"


class MlflowTrialRuns(tune.Callback):
    """Also prints the sweep's progress (trials done of the total, best validation so far)
    for the live view."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        total_trials: int,
        recipe: dict | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.recipe = dict(recipe or {})  # the sweep's finetune recipe, a param of every trial
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.total_trials = total_trials
        self.run_ids: dict[str, str] = {}
        self.finished: set[str] = set()
        self.best_val = 0.0
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict:
        # Tune pickles callbacks into its experiment state (for --resume): leave the client out.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _run_for(self, trial) -> str:
        if trial.trial_id in self.run_ids:
            return self.run_ids[trial.trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{TRIAL_TAG}` = '{trial.trial_id}' and "
                f"tags.`{PARENT_RUN_TAG}` = '{self.parent_run_id}'"
            ),
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            c = trial_params(trial.config)
            arch = architecture_of(c)
            name = f"{arch}-{_arm(c)}-{c['fraction']:g}-s{c['seed']}-{trial.trial_id}"
            run = self.client.create_run(
                self.experiment_id,
                run_name=name,
                tags={PARENT_RUN_TAG: self.parent_run_id, TRIAL_TAG: trial.trial_id},
            )
            run_id = run.info.run_id
            params = [Param(k, str(v)) for k, v in sorted((self.recipe | c).items())]
            self.client.log_batch(run_id, params=params)
        self.run_ids[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        now = int(time.time() * 1000)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        metrics = [Metric(k, float(result[k]), now, step) for k in LOGGED if k in result]
        if metrics:
            self.client.log_batch(self._run_for(trial), metrics=metrics)
        self.best_val = max(self.best_val, float(result.get("val_accuracy", 0.0)))

    def _progress(self, trial, failed: bool = False) -> None:
        self.finished.add(trial.trial_id)
        report_progress(
            "sweep",
            len(self.finished),
            self.total_trials,
            best_val_accuracy=round(self.best_val, 4),
            last=_label(trial_params(trial.config)) + (" failed" if failed else ""),
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.client.set_terminated(self._run_for(trial), status="FINISHED")
        self._progress(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.client.set_terminated(self._run_for(trial), status="FAILED")
        self._progress(trial, failed=True)
