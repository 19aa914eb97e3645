"""Ray's own job system underneath the service.

The service builds every entrypoint itself (`exec <python> -m pipelines.cli.job_entry`) and
passes the validated spec in the job's environment, as base64 nothing expands: a caller's text
never reaches a shell. Ray runs an entrypoint through `sh -c`; `exec` makes the driver that
shell's process rather than its child, so a driver killed by anything is the job's end, and no
shell's death can leave a driver training on as an orphan. With no `SELFIE_RAY_DASHBOARD_URL`,
a local Ray head is started as its own daemon (`ray start --head`, in the work dir), so jobs
outlive a restart of the service and the service finds them again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from services.server.job_backend import (
    ENTRY_MODULE,
    BackendJobStatus,
    BackendUnavailable,
    JobLogsMissing,
    job_environment,
)
from services.server.job_models import JobState
from services.server.log_limits import until_ended
from services.server.settings import ServiceSettings

log = logging.getLogger(__name__)

LOCAL_DASHBOARD_PORT = 8265
SUBMIT_RETRY_SECONDS = 60.0
DRIVER_CPUS = 1
LOCAL_DRIVER_SLOTS = 100
PROBE_SECONDS = 30.0  # how long /healthz trusts the last proof that submission works
PROBE_RETRY_SECONDS = 2.0  # how soon it asks again after a failed proof
PROBE_PREFIX = "selfie-probe-"
FOLLOW_STATUS_POLL_S = 1.0  # a silent follow asks Ray whether the job has ended this often


def _says_missing(exc: Exception) -> bool:
    return "does not exist" in str(exc) or "404" in str(exc)


def _brief(exc: Exception) -> str:
    """Ray's errors carry its server's whole traceback (40 lines for a deleted working
    directory): callers get the last line, the log gets the rest."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


_RAY_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.STOPPED,
}


def use_ray_token_auth() -> None:
    """Ray 2.60 clusters require a bearer token; drivers that call `ray.init` switch the
    client side on themselves, a plain `JobSubmissionClient` does not. Switch it on when a
    token is at hand (RAY_AUTH_TOKEN, or the file `ray start` writes) and nobody chose."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _dashboard_alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/version", timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def entrypoint_resources(settings: ServiceSettings) -> dict:
    """Where a job's driver may run: one CPU (so never on a head started with 0 CPUs) and,
    when SELFIE_DRIVER_RESOURCE names one, one unit of that custom resource (so only on the
    nodes that carry it)."""
    out: dict = {"entrypoint_num_cpus": DRIVER_CPUS}
    if settings.driver_resource:
        out["entrypoint_resources"] = {settings.driver_resource: 1}
    return out


def local_head_resources(settings: ServiceSettings) -> list[str]:
    """`ray start` flags giving the development head the driver resource, so dev still runs
    jobs when SELFIE_DRIVER_RESOURCE is set."""
    if not settings.driver_resource:
        return []
    return ["--resources", json.dumps({settings.driver_resource: LOCAL_DRIVER_SLOTS})]


def start_local_head(settings: ServiceSettings) -> str:
    """A local Ray head with its dashboard on 127.0.0.1, reused if one is already up."""
    url = f"http://127.0.0.1:{LOCAL_DASHBOARD_PORT}"
    if _dashboard_alive(url):
        return url
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_bin), "start", "--head", "--dashboard-host", "127.0.0.1",
        # One CPU more than the machine has: each job's driver holds one (entrypoint_num_cpus)
        # while mostly waiting, and its workers should still get every core.
        "--dashboard-port", str(LOCAL_DASHBOARD_PORT),
        "--num-cpus", str(DRIVER_CPUS + (os.cpu_count() or 1)),
        *local_head_resources(settings),
        "--object-store-memory", str(settings.ray_object_store_mb * 1024 * 1024),
        # Not the agent's fixed default port: this head outlives the service, and any other
        # local Ray started later (a `ray.init()`, a test run) would find it taken and come
        # up without a job agent ("No available agent to submit job").
        "--dashboard-agent-listen-port", str(_free_port()),
        "--disable-usage-stats",
    ]  # fmt: skip
    log.info("starting a local Ray head: %s", " ".join(cmd))
    # The head is a daemon that keeps the working directory it started in, and Ray's job
    # submission resolves paths against it: started from a folder deleted later, every
    # submission fails. The work dir outlives the service, so the head runs there.
    # Training is throughput work and the API latency work: on a machine they share, the
    # head (and every job it starts, which inherit it) runs at a lower CPU priority.
    workdir = settings.resolved_workdir
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        timeout=120,
        cwd=workdir,
        preexec_fn=lambda: os.nice(10),
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if _dashboard_alive(url):
            return url
        time.sleep(0.5)
    raise BackendUnavailable(f"started a local Ray head but its dashboard at {url} never answered")


class RayJobs:
    """Thin, typed wrapper over `JobSubmissionClient`, with Ray's errors made ours."""

    def __init__(self, settings: ServiceSettings, dashboard_url: str) -> None:
        self.settings = settings
        self.url = dashboard_url
        self._client = None
        self._proof: tuple[float, str] | None = None  # (monotonic time, "ok" or why not)

    @staticmethod
    def preload() -> None:
        """Import Ray's job client now, at start-up: the import holds the interpreter, which
        inside a request would stall every other request with it."""
        use_ray_token_auth()  # before Ray is imported: it reads the auth mode then
        import ray.job_submission  # noqa: F401

    def _jobs(self):
        self.preload()
        from ray.job_submission import JobSubmissionClient

        if self._client is None:
            try:
                self._client = JobSubmissionClient(self.url)
            except Exception as exc:  # Ray raises plain ConnectionError/RuntimeError here
                why = _brief(exc)
                raise BackendUnavailable(f"Ray at {self.url} is unreachable ({why})") from None
        return self._client

    def reachable(self) -> bool:
        return _dashboard_alive(self.url)

    def health(self) -> str:
        """Says "ok" only when a job can be submitted: a dashboard that answers is not enough
        (a head whose working directory was deleted answers, and refuses every job). Proven
        by a no-op job through the same submission path, at most every PROBE_SECONDS; a
        real submission proves it too."""
        if not self.reachable():
            return f"unreachable at {self.url}"
        now = time.monotonic()
        if self._proof is not None:
            age, trust = now - self._proof[0], PROBE_SECONDS
            if self._proof[1] != "ok":
                trust = PROBE_RETRY_SECONDS
            if age <= trust:
                return self._proof[1]
        try:
            self._submit(
                submission_id=f"{PROBE_PREFIX}{uuid.uuid4().hex[:12]}",
                entrypoint="true",
                env={},
                metadata={"selfie_kind": "probe"},
                resources={},
                retry_seconds=0.0,  # /healthz answers now; a head still starting is retried
            )
        except BackendUnavailable as exc:
            self._proof = (now, f"broken: {exc}")
        return self._proof[1] if self._proof else "ok"

    def _submit(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        env: dict,
        metadata: dict,
        resources: dict,
        retry_seconds: float = SUBMIT_RETRY_SECONDS,
    ) -> None:
        # A freshly started head answers "No available agent ... try again later" for a
        # few seconds: retry that (and only that) for up to `retry_seconds`.
        deadline = time.monotonic() + retry_seconds
        while True:
            try:
                self._jobs().submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env={"env_vars": env},
                    metadata=metadata,
                    **resources,
                )
                self._proof = (time.monotonic(), "ok")
                return
            except BackendUnavailable:
                raise
            except Exception as exc:
                if "try again" in str(exc) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                self._client = None
                log.error("Ray at %s refused job %s", self.url, submission_id, exc_info=exc)
                raise BackendUnavailable(
                    f"Ray at {self.url} refused the job ({_brief(exc)})"
                ) from None

    def submit(self, *, submission_id: str, kind: str, spec: dict) -> None:
        env = job_environment(self.settings, submission_id=submission_id, kind=kind, spec=spec)
        python = self.settings.job_python or sys.executable
        try:
            self._submit(
                submission_id=submission_id,
                entrypoint=f"exec {shlex.quote(python)} -m {ENTRY_MODULE}",
                env=env,
                metadata={"selfie_kind": kind},
                resources=entrypoint_resources(self.settings),
            )
        except BackendUnavailable as exc:
            self._proof = (time.monotonic(), f"broken: {exc}")
            raise

    def status(self, submission_id: str) -> BackendJobStatus:
        try:
            info = self._jobs().get_job_info(submission_id)
        except BackendUnavailable:
            raise
        except RuntimeError as exc:
            if _says_missing(exc):
                log.warning("Ray has no job %s: %s", submission_id, exc)
                return BackendJobStatus(state=None, message=None)
            self._client = None
            raise BackendUnavailable(f"Ray at {self.url} did not answer ({_brief(exc)})") from None
        except Exception as exc:
            self._client = None
            raise BackendUnavailable(f"Ray at {self.url} did not answer ({_brief(exc)})") from None
        raw = getattr(info.status, "value", info.status)  # JobStatus is a str Enum
        state = _RAY_STATES.get(str(raw))
        if state is None:
            raise BackendUnavailable(f"Ray reported an unknown job status {raw!r}")
        return BackendJobStatus(state=state, message=info.message)

    def logs(self, submission_id: str) -> str:
        try:
            return self._jobs().get_job_logs(submission_id)
        except BackendUnavailable:
            raise
        except Exception as exc:
            if _says_missing(exc):
                raise JobLogsMissing.of(submission_id) from None
            self._client = None
            why = _brief(exc)
            raise BackendUnavailable(f"Ray at {self.url} did not return the logs ({why})") from None

    def tail_logs(self, submission_id: str, lines: int, max_bytes: int) -> str:
        """Ray's job API returns whole logs only: cut here (memory not bounded by Ray)."""
        text = self.logs(submission_id)[-max_bytes:]
        return "\n".join(text.splitlines()[-lines:]) + "\n"

    async def follow_logs(self, submission_id: str) -> AsyncIterator[str]:
        """Ray's log tail, closed as soon as Ray reports the job ended (its own tail reads on
        for ~5 s after that: experiments/ray_log_tail_close.py). Once the response has
        started its status can no longer change, so a tail that breaks off ends with one
        line saying why instead of a cut stream."""
        try:
            async for chunk in until_ended(
                self._jobs().tail_job_logs(submission_id),
                lambda: asyncio.to_thread(self._ended, submission_id),
                lambda: asyncio.to_thread(self.logs, submission_id),
                FOLLOW_STATUS_POLL_S,
            ):
                yield chunk
        except Exception as exc:
            self._client = None
            yield f"\n[selfie] the log stream from Ray ended early: {_brief(exc)}\n"

    def _ended(self, submission_id: str) -> bool:
        state = self.status(submission_id).state
        return state is None or JobState(state).finished

    def stop(self, submission_id: str) -> None:
        try:
            self._jobs().stop_job(submission_id)
        except BackendUnavailable:
            raise
        except Exception as exc:
            self._client = None
            raise BackendUnavailable(f"Ray could not stop the job ({_brief(exc)})") from None
