"""A real sweep on Ray Tune (2 CPUs) with MLflow on SQLite, and the whole pipeline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipelines.ingest.driver import ingest
from pipelines.pipeline.driver import run_pipeline
from pipelines.report.from_run import report_for_run
from pipelines.runtime import interrupt
from pipelines.specs import IngestSpec, PipelineSpec, SearchSpec, SpecError, SweepSpec
from pipelines.specs.errors import DataError, SelfieError
from pipelines.specs.names import PROGRESS_ENV, PROGRESS_MARKER
from pipelines.specs.settings import Settings
from pipelines.sweep.driver import run_sweep
from pipelines.training.checkpoint import ENCODER_FILE
from selfie_core import SelfieConfig, SelfieModel

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "data"
    ingest(IngestSpec(source="synthetic:300", out=out, shard_max_count=100))
    return out


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    config = SelfieConfig()
    path = tmp_path_factory.mktemp("enc") / ENCODER_FILE
    torch.save(
        {"config": config.to_dict(), "state_dict": SelfieModel(config).state_dict(),
         "manifest_digest": "test", "step": 1},
        path,
    )  # fmt: skip
    return path


def _sweep(data_dir: Path, encoder: Path | str, **kw) -> SweepSpec:
    base = dict(
        data=str(data_dir), pretrained=str(encoder), architectures=["resnet50"],
        fractions=[0.2, 1.0], seeds=2, epochs=2, min_steps_per_epoch=3, min_steps=0,
        search=SearchSpec(lr=[1e-2], weight_decay=[0.05]),
    )  # fmt: skip
    base.update(kw)
    return SweepSpec(**base)


def test_sweep_runs_every_cell_and_reports(data_dir, encoder_file, tmp_path, ray_session) -> None:
    settings = Settings(workdir=tmp_path)
    result = run_sweep(_sweep(data_dir, encoder_file), settings)
    assert result.trials == 8 and result.failed_trials == 0
    cells = result.cells
    assert len(cells) == 8 and all(c["status"] == "ok" for c in cells)
    assert all(0 <= c["test_accuracy"] <= 1 for c in cells)
    assert "| resnet50 | 20% |" in result.table_markdown
    client = MlflowClient(settings.tracking_uri)
    parent = client.get_run(result.mlflow_run_id)
    assert parent.data.params["seeds"] == "2"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.mlflow_run_id}'",
    )
    assert len(children) == 8
    history = client.get_metric_history(children[0].info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert {a.path for a in client.list_artifacts(result.mlflow_run_id, "report")} >= {
        "report/table.md", "report/accuracy_gain.png", "report/results.json",
    }  # fmt: skip
    markdown, out_dir = report_for_run(result.mlflow_run_id, settings)
    assert markdown == result.table_markdown and (out_dir / "table.csv").is_file()


def test_bad_encoder_and_report_inputs(data_dir, encoder_file, tmp_path, ray_session) -> None:
    settings = Settings(workdir=tmp_path)
    # One encoder under two names (a link to it) passes the spec's text check, not the
    # check of what the names resolve to.
    link = tmp_path / "link.pt"
    link.symlink_to(encoder_file)
    with pytest.raises(SpecError, match="names the same weights twice"):
        run_sweep(_sweep(data_dir, link, pretrained=[str(encoder_file), str(link)]), settings)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(SelfieError, match=r"broken\.pt.*truncated or corrupt"):
        run_sweep(_sweep(data_dir, broken), settings)
    with pytest.raises(SpecError, match=r"pretrained weights file .*nosuch\.pt' does not exist"):
        run_sweep(_sweep(data_dir, Path("nosuch.pt")), settings)
    with pytest.raises(SpecError, match="no MLflow run '" + "ab" * 16):
        run_sweep(_sweep(data_dir, "runs:/" + "ab" * 16), settings)
    with pytest.raises(SpecError, match="no MLflow run"):
        report_for_run("0123456789abcdef", settings)


def test_pipeline_nests_runs_and_links_lineage(
    data_dir, tmp_path, ray_session, monkeypatch, capsys
) -> None:
    """Two pretraining seeds, the search on seed 0 then the chosen setting on the rest; the
    live progress counts the trials of both phases."""
    monkeypatch.setenv(PROGRESS_ENV, "1")
    settings = Settings(workdir=tmp_path)
    spec = PipelineSpec(
        data=str(tmp_path / "digits"),
        source="synthetic:200",
        pretrain_seeds=2,
        pretrain={"max_steps": 6, "batch_size": 16, "checkpoint_every": 3, "loader_workers": 0},
        sweep={
            "architectures": ["hybrid"], "fractions": [0.5], "seeds": 2, "epochs": 1,
            "min_steps_per_epoch": 2, "min_steps": 0,
            "search": {"lr": [1e-2, 1e-4], "weight_decay": [0.05], "scope": "first-seed"},
        },
    )  # fmt: skip
    result = run_pipeline(spec, settings)
    progress = [
        json.loads(line.split(PROGRESS_MARKER, 1)[1])
        for line in capsys.readouterr().out.splitlines()
        if PROGRESS_MARKER in line
    ]
    sweep_lines = [p for p in progress if p["stage"] == "sweep"]
    # "starting the trials" at once, then one line per finished trial of either phase.
    assert [(p["done"], p["total"]) for p in sweep_lines] == [(0, None)] + [
        (n, 8) for n in range(1, 9)
    ]
    client = MlflowClient(settings.tracking_uri)
    pipeline_run = client.get_run(result.mlflow_run_id)
    assert pipeline_run.info.status == "FINISHED"
    pres = [client.get_run(i) for i in result.pretrain_run_ids]
    assert [p.data.params["seed"] for p in pres] == ["0", "1"]
    sweep = client.get_run(result.sweep_run_id)
    assert all(p.data.tags["mlflow.parentRunId"] == result.mlflow_run_id for p in pres)
    assert sweep.data.tags["mlflow.parentRunId"] == result.mlflow_run_id
    assert sweep.data.tags["selfie.pretrain_run_id"] == ",".join(result.pretrain_run_ids)
    # Search: {scratch, selfie0} x seed 0 x 2 lrs; replicates: scratch s1, selfie0 s1,
    # selfie1 s0 and s1, each with the lr its (architecture, init) search chose.
    trials = client.search_runs(
        [sweep.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.sweep_run_id}'"
    )
    assert len(trials) == 8
    cells = json.loads((Path(result.report_dir) / "results.json").read_text())["cells"]
    arms = {(c["init"], c["pretrain_seed"], c["seed"]): c for c in cells}
    assert set(arms) == {(i, p, s) for i, p in [("scratch", None), ("selfie", 0), ("selfie", 1)]
                         for s in (0, 1)}  # fmt: skip
    assert all(c["status"] == "ok" for c in cells)
    for (init, pseed, _), cell in arms.items():
        searched = arms[init, None if pseed is None else 0, 0]
        assert cell["lr"] == searched["lr"]
    assert "| hybrid | 50% |" in result.table_markdown
    markdown, _ = report_for_run(result.mlflow_run_id, settings)
    assert markdown == result.table_markdown
    # Resuming a pipeline reopens its run and does not pretrain again.
    again = run_pipeline(
        spec.model_copy(update={"run_name": result.run_name, "resume": True}), settings
    )
    assert again.mlflow_run_id == result.mlflow_run_id
    assert again.pretrain_run_ids == result.pretrain_run_ids
    assert again.sweep_run_id == result.sweep_run_id


def test_cli_sweep_errors_are_one_sentence(data_dir) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "sweep", "--data", str(data_dir),
         "--fractions", "0.1,1.5", "--inits", "scratch"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2
    assert "labeled fractions must lie in (0, 1]" in run.stderr
    assert "Traceback" not in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.main", "sweep", "--data", str(data_dir)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "needs pretrained weights" in run.stderr


def test_sweep_verify_names_a_changed_shard(tmp_path, ray_session) -> None:
    out = tmp_path / "data"
    manifest = ingest(IngestSpec(source="synthetic:60", out=out))
    shard = out / manifest.shards["train"][0].path
    shard.write_bytes(shard.read_bytes() + b"\0" * 512)
    spec = SweepSpec(data=str(out), inits=["scratch"], verify=True)
    with pytest.raises(DataError, match="does not match its manifest checksum"):
        run_sweep(spec, Settings(workdir=tmp_path))


def _descends_from_this_process(pid: int) -> bool:
    """Whether `pid` is in this test session's process tree (its Ray's workers are), so the
    hunt never touches another Ray on the machine."""
    me = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent, after "(comm) state"
        if pid == me:
            return True
    return False


def _kill_one_running_trial(after_s: float, killed: list[int]) -> threading.Thread:
    """SIGKILL the first Tune trial process of this session's Ray seen alive for `after_s`
    seconds (a crashed node or the OOM killer, as far as Tune can tell)."""

    def hunt() -> None:
        first_seen: dict[int, float] = {}
        deadline = time.time() + 180
        while time.time() < deadline:
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if not cmdline.read_bytes().startswith(b"ray::ImplicitFunc"):
                        continue
                except OSError:
                    continue
                pid = int(cmdline.parent.name)
                if not _descends_from_this_process(pid):
                    continue
                if time.time() - first_seen.setdefault(pid, time.time()) >= after_s:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=hunt, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("retries", "failed"), [(1, 0), (0, 1)], ids=["retried", "recorded"])
def test_a_crashed_trial_is_retried_or_its_cell_reported_missing(
    data_dir, tmp_path, ray_session, retries: int, failed: int
) -> None:
    settings = Settings(workdir=tmp_path)
    spec = SweepSpec(
        data=str(data_dir), inits=["scratch"], architectures=["resnet50"], fractions=[1.0],
        seeds=2, epochs=8, min_steps_per_epoch=3, min_steps=0,
        search=SearchSpec(lr=[1e-2], weight_decay=[0.05]),
        trial_max_failures=retries,
    )  # fmt: skip
    killed: list[int] = []
    hunter = _kill_one_running_trial(after_s=4.0, killed=killed)
    result = run_sweep(spec, settings)
    hunter.join(timeout=5)
    assert len(killed) == 1, "no trial process was found to kill"
    assert result.trials == 2 and result.failed_trials == failed
    statuses = sorted(c["status"] for c in result.cells)
    assert statuses == ["ok", "ok"] if failed == 0 else statuses == ["failed", "ok"]
    if failed:  # the table names the missing seed instead of averaging over one silently
        assert "(n=1/2)" in result.table_markdown, result.table_markdown
    else:
        assert "(n=" not in result.table_markdown and "missing" not in result.table_markdown
    tags = MlflowClient(settings.tracking_uri).get_run(result.mlflow_run_id).data.tags
    assert tags["selfie.failed_trials"] == str(failed)


def test_an_interrupted_search_stops_the_sweep_and_resume_finishes_it(
    data_dir, tmp_path, ray_session
) -> None:
    """Ctrl+C during the search (Tune saves its state and returns with trials pending) must
    not start the replicates from a partial search; --resume then finishes both phases."""
    settings = Settings(workdir=tmp_path)
    spec = SweepSpec(
        data=str(data_dir), inits=["scratch"], architectures=["resnet50"], fractions=[1.0],
        seeds=2, epochs=4, min_steps_per_epoch=3, min_steps=0, max_concurrent=1,
        search=SearchSpec(lr=[1e-2, 1e-3], weight_decay=[0.05], scope="first-seed"),
        run_name="interrupted", storage_path=str(tmp_path / "tune"),
    )  # fmt: skip
    tune_dir = Path(settings.run_storage(spec.storage_path, spec.experiment))
    search_dir = tune_dir / "interrupted"

    def interrupt_once_a_trial_reports() -> None:
        # Ctrl+C once the first trial has reported, while the sweep's handler is in place.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            reported = any(p.stat().st_size for p in search_dir.glob("*/result.json"))
            if reported and isinstance(signal.getsignal(signal.SIGINT), interrupt._Watch):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.2)

    threading.Thread(target=interrupt_once_a_trial_reports, daemon=True).start()
    with pytest.raises(SelfieError, match=r"sweep \(search phase\) was interrupted \(Ctrl\+C\)"):
        run_sweep(spec, settings)
    assert not (tune_dir / "interrupted-replicates").exists()
    # Tune did stop: not every search trial ran its budget.
    ran = [json.loads(p.read_text().splitlines()[-1]) for p in search_dir.glob("*/result.json")
           if p.stat().st_size]  # fmt: skip
    assert sum(r["epoch"] == r["epochs_budget"] for r in ran) < 2
    result = run_sweep(spec.model_copy(update={"resume": True}), settings)
    assert result.trials == 3 and result.failed_trials == 0
    assert [c["status"] for c in result.cells] == ["ok", "ok"]


def test_with_asha_only_the_search_checkpoints_every_improvement(
    data_dir, tmp_path, ray_session
) -> None:
    """ASHA may stop a search trial at any epoch, so it checkpoints at each improvement; the
    replicates are never stopped early and checkpoint once, at the end of their budget."""
    settings = Settings(workdir=tmp_path)
    spec = SweepSpec(
        data=str(data_dir), inits=["scratch"], architectures=["resnet50"], fractions=[1.0],
        seeds=2, epochs=3, min_steps_per_epoch=2, min_steps=0, max_concurrent=1,
        search=SearchSpec(lr=[1e-2], weight_decay=[0.05], scope="first-seed", asha=True),
        run_name="asha", storage_path=str(tmp_path / "tune"),
    )  # fmt: skip
    result = run_sweep(spec, settings)
    assert result.trials == 2 and result.failed_trials == 0

    def checkpointed_epochs(experiment: str) -> list[int]:
        tune_dir = Path(settings.run_storage(spec.storage_path, spec.experiment))
        [trial] = (tune_dir / experiment).glob("*/result.json")
        rows = [json.loads(line) for line in trial.read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3]
        return [r["epoch"] for r in rows if "checkpoint_epoch" in r]

    assert checkpointed_epochs("asha")[0] == 1  # the first epoch always improves
    assert checkpointed_epochs("asha-replicates") == [3]
