"""One job runner for the CLI and the job entry: Ctrl+C (SIGINT) and a cancel (SIGTERM) are
the same interruption. Real processes, real signals, real MLflow on SQLite: the MLflow run
ends KILLED, the exit status is 130 either way, and the job's processes are gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.job_processes import kill_group, wait_group_gone

# Both signals land inside Ray Train's `fit()`, where Ray's own SIGINT handler would abort
# the run and exit with status 1 (a cancel's SIGTERM during ingest: tests/test_cancel.py).
ARGS, LANDMARK = (
    ["--source", "synthetic:400", "--pretrain.epochs", "200", "--pretrain.checkpoint-every",
     "5", "--pretrain.eval-every", "100000", "--pretrain.loader-workers", "0"],
    "**/checkpoint-0*",
)  # fmt: skip


def wait_for_file(pattern: str, root: Path, proc: subprocess.Popen, timeout: float) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        assert proc.poll() is None, f"the job ended early: {proc.communicate()[1][-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern} under {root} after {timeout}s")


@pytest.mark.cluster  # the CLI starts a local Ray head of its own, as on a fresh machine
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signalled_cli_job_ends_killed_with_status_130(tmp_path: Path, sig: int) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "SELFIE_WORKDIR": str(work)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli.main", "pipeline", "--data", str(tmp_path / "d"),
         *ARGS, "--run-name", "stop-me"],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        # Pretraining runs once it has written a checkpoint.
        wait_for_file(LANDMARK, work, proc, timeout=180)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err[-3000:]
        # Ray Train's placement-group cleaner actor prints a traceback of its own polling
        # thread when another Ray instance runs on the machine (a test session's, a head left
        # up): Ray's state API, asked with no address, stops at "Found multiple active Ray
        # instances" (read in a job log, 2026-11-30). Ray's log, forwarded, not ours; any
        # other traceback fails the test.
        ours = [ln for ln in err.splitlines() if "(PlacementGroupCleaner pid=" not in ln]
        assert not any("Traceback" in ln for ln in ours) and "stopped" in err, err[-3000:]
        assert not wait_group_gone(proc.pid, timeout=30)
    finally:
        kill_group(proc.pid)
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("selfie-pipeline").experiment_id],
        filter_string="tags.`selfie.run_name` = 'stop-me'",
    )
    assert run.info.status == "KILLED"
    assert not list(work.glob("**/encoder.pt")), "a stopped pretraining saved an encoder"


def test_the_job_entry_prints_ingest_progress_as_every_stage_does(tmp_path: Path) -> None:
    """Progress travels one way: the ingest stage reports as pretraining and sweeps do, and a
    job (PROGRESS_ENV set by the backends) prints it as JSON lines with the total."""
    import json

    from pipelines.specs.names import (
        JOB_KIND_ENV,
        JOB_SPEC_DIGEST_ENV,
        JOB_SPEC_ENV,
        PROGRESS_ENV,
        PROGRESS_MARKER,
        RESULT_MARKER,
    )
    from pipelines.specs.transport import encode_spec

    encoded, digest = encode_spec({"source": "synthetic:60", "out": str(tmp_path / "d")})
    env = {**os.environ, JOB_KIND_ENV: "ingest", JOB_SPEC_ENV: encoded,
           JOB_SPEC_DIGEST_ENV: digest, PROGRESS_ENV: "1", "SELFIE_DATA_ROOTS": str(tmp_path),
           "SELFIE_WORKDIR": str(tmp_path / "work")}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.job_entry"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line.split(PROGRESS_MARKER, 1)[1])
             for line in out.stdout.splitlines() if PROGRESS_MARKER in line]  # fmt: skip
    assert lines and lines[-1]["stage"] == "ingest"
    assert lines[-1]["done"] == lines[-1]["total"] == 60
    assert out.stdout.splitlines()[-1].startswith(RESULT_MARKER)
