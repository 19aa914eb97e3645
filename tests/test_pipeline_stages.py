"""A resumed pipeline and its stages, on real MLflow (SQLite): a stage is done when its MLflow
run FINISHED, the one record of it; a result file left by a run that did not finish does not
make it done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.pipeline.driver import _pretrain
from pipelines.runtime.tracked_run import results_dir, tracked_run
from pipelines.runtime.tracking import create_named_run
from pipelines.specs import PipelineSpec, SpecError
from pipelines.specs.names import RESULT_FILE
from pipelines.specs.settings import Settings


def _pipeline_with_a_pretraining(tmp_path: Path, status: str) -> tuple[PipelineSpec, Settings]:
    settings = Settings(workdir=tmp_path / "work")
    spec = PipelineSpec(data=str(tmp_path / "no-data"), run_name="p", experiment="e")
    with pytest.raises(RuntimeError), tracked_run(spec, settings, kind="pipeline") as first:
        stage = create_named_run(
            first.client, first.experiment_id, name="p-pretrain", kind="pretrain"
        )
        done = {"run_name": "p-pretrain", "mlflow_run_id": stage, "checkpoint": "c",
                "encoder_file": "e.pt", "storage_path": "s", "steps": 3, "resumed_from_step": 0,
                "final_loss": 1.0, "final_selection_accuracy": 0.5}  # fmt: skip
        results_dir(settings, "e", "p-pretrain").mkdir(parents=True)
        (results_dir(settings, "e", "p-pretrain") / RESULT_FILE).write_text(json.dumps(done))
        first.client.set_terminated(stage, status=status)
        raise RuntimeError("the pipeline stopped after its pretraining")
    return spec.model_copy(update={"resume": True}), settings


def test_a_finished_pretraining_is_not_run_again(tmp_path: Path) -> None:
    spec, settings = _pipeline_with_a_pretraining(tmp_path, "FINISHED")
    with tracked_run(spec, settings, kind="pipeline") as run:
        pre = _pretrain(spec, settings, run, 0)
    assert pre.weights == "e.pt" and pre.result_dir == str(results_dir(settings, "e", "p-pretrain"))


def test_a_finished_pretraining_with_an_older_result_file_is_refused(tmp_path: Path) -> None:
    """A result file of before the weights file was `encoder_file` (it was `encoder`): one
    sentence, not a TypeError."""
    spec, settings = _pipeline_with_a_pretraining(tmp_path, "FINISHED")
    path = results_dir(settings, "e", "p-pretrain") / RESULT_FILE
    done = json.loads(path.read_text())
    done["encoder"] = done.pop("encoder_file")
    path.write_text(json.dumps(done))
    with (
        tracked_run(spec, settings, kind="pipeline") as run,
        pytest.raises(SpecError, match="written by an older version: start the pipeline anew"),
    ):
        _pretrain(spec, settings, run, 0)


def test_a_result_file_of_an_unfinished_pretraining_does_not_make_it_done(tmp_path: Path) -> None:
    spec, settings = _pipeline_with_a_pretraining(tmp_path, "KILLED")
    # Not done: it is resumed, which here reaches the (missing) data.
    with (
        tracked_run(spec, settings, kind="pipeline") as run,
        pytest.raises(SpecError, match="no manifest"),
    ):
        _pretrain(spec, settings, run, 0)
