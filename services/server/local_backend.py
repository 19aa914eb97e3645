"""Jobs as child processes of the service (`SELFIE_JOB_BACKEND=local`): for a laptop or a
test that has no Ray head to submit to. The jobs themselves still start a local Ray when
they need one (pretraining, sweeps); only the job runner is local.

Each job is `python -m services.server.local_runner`, which runs the same entrypoint Ray Jobs would
(`python -m pipelines.cli.job_entry`) in its own process group, writes the log to
`<workdir>/job_logs/<id>.log` and the exit status to `<id>.exit`. A job outlives a restart
of the service, which finds it again from those files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from services.server.job_backend import (
    BackendJobStatus,
    JobLogsMissing,
    job_environment,
)
from services.server.job_models import JobState
from services.server.log_limits import tail_file
from services.server.settings import ServiceSettings

FOLLOW_POLL_S = 0.25

# What a local job takes from the service's environment: how to run Python and find its
# packages, the locale, and how to reach its Ray and MLflow. Never the service's own secrets
# (SELFIE_API_TOKEN, SELFIE_DATABASE_URL) or anything else the service happens to hold.
INHERITED_ENV = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH",
    "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
    "RAY_ADDRESS", "SELFIE_RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
    "SELFIE_RAY_OBJECT_STORE_MB",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
)  # fmt: skip


def local_job_environment(
    settings: ServiceSettings, *, submission_id: str, kind: str, spec: dict
) -> dict[str, str]:
    """A local job's whole environment: the allow-listed variables, then the job's own."""
    inherited = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    job = job_environment(settings, submission_id=submission_id, kind=kind, spec=spec)
    return inherited | job


class LocalProcessJobs:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.root = settings.resolved_workdir / "job_logs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"local processes ({self.root})"

    def _file(self, submission_id: str, suffix: str) -> Path:
        return self.root / f"{submission_id}.{suffix}"

    def reachable(self) -> bool:
        return self.root.is_dir()

    def health(self) -> str:
        return "ok" if self.reachable() else f"unreachable at {self.url}"

    def submit(self, *, submission_id: str, kind: str, spec: dict) -> None:
        env = local_job_environment(
            self.settings, submission_id=submission_id, kind=kind, spec=spec
        )
        python = self.settings.job_python or sys.executable
        process = subprocess.Popen(
            [
                python, "-m", "services.server.local_runner",
                str(self._file(submission_id, "log")), str(self._file(submission_id, "exit")),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends the job's children too
        )  # fmt: skip
        self._file(submission_id, "pid").write_text(str(process.pid))

    def _alive(self, submission_id: str) -> bool:
        pid_file = self._file(submission_id, "pid")
        if not pid_file.is_file():
            return False
        pid = int(pid_file.read_text())
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child if it ended
            return finished == 0
        except ChildProcessError:  # not our child (the service restarted): ask the OS
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True

    def status(self, submission_id: str) -> BackendJobStatus:
        exit_file = self._file(submission_id, "exit")
        if exit_file.is_file():
            if self._file(submission_id, "stopped").is_file():
                return BackendJobStatus(JobState.STOPPED, "stopped on request")
            code = int(exit_file.read_text().strip() or "1")
            if code == 0:
                return BackendJobStatus(JobState.SUCCEEDED, None)
            return BackendJobStatus(JobState.FAILED, f"the job exited with status {code}")
        if self._alive(submission_id):
            return BackendJobStatus(JobState.RUNNING, None)
        if self._file(submission_id, "pid").is_file():
            return BackendJobStatus(JobState.FAILED, "the job's process ended without a status")
        return BackendJobStatus(None, None)

    def logs(self, submission_id: str) -> str:
        log = self._file(submission_id, "log")
        if not log.is_file():
            if self._file(submission_id, "pid").is_file():
                return ""
            raise JobLogsMissing.of(submission_id)
        return log.read_text(errors="replace")

    def tail_logs(self, submission_id: str, lines: int, max_bytes: int) -> str:
        log = self._file(submission_id, "log")
        if not log.is_file():
            return self.logs(submission_id)
        return tail_file(log, lines, max_bytes)

    async def follow_logs(self, submission_id: str) -> AsyncIterator[str]:
        log = self._file(submission_id, "log")
        offset = 0
        while True:
            done = self._file(submission_id, "exit").is_file()
            if log.is_file():
                with open(log, errors="replace") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                if chunk:
                    yield chunk
            if done:
                return
            await asyncio.sleep(FOLLOW_POLL_S)

    def stop(self, submission_id: str) -> None:
        if self._file(submission_id, "exit").is_file() or not self._alive(submission_id):
            return
        self._file(submission_id, "stopped").touch()
        pid = int(self._file(submission_id, "pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
