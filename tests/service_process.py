"""A real `selfie serve` process on 127.0.0.1 for service tests (started, killed, restarted)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "test-token-abc123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    def __init__(
        self,
        workdir: Path,
        dashboard_url: str | None,
        data_root: Path,
        database_url: str | None = None,
    ) -> None:
        """`dashboard_url` None: the local job backend (jobs as child processes, no Ray)."""
        self.workdir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SELFIE_WORKDIR": str(workdir),
            "SELFIE_API_TOKEN": TOKEN,
            "SELFIE_DATA_ROOTS": str(data_root),
            "SELFIE_RECONCILE_SECONDS": "0.5",
            "SELFIE_MAX_BODY_BYTES": "65536",
        }
        if dashboard_url:
            self.env["SELFIE_RAY_DASHBOARD_URL"] = dashboard_url
        else:
            self.env["SELFIE_JOB_BACKEND"] = "local"
        if database_url:
            self.env["SELFIE_DATABASE_URL"] = database_url
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("RAY_AUTH_MODE", None)  # as in a fresh shell: the service must cope
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "service.log"

    def start(self) -> ServiceProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "a")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()  # no fixture will: it never got the process
        raise RuntimeError(f"service never answered: {self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )


def wait_for_state(
    client: httpx.Client, job_id: str, states: set[str], timeout: float = 240
) -> dict:
    """Poll a job until its state is one of `states`; fail the test naming where it stuck."""
    deadline = time.time() + timeout
    job: dict = {}
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def new_key(admin: httpx.Client, name: str, scope: str = "user", **extra) -> str:
    """A fresh API key for `name` (scope admin, user or read_only), issued over REST."""
    made = admin.post("/v1/users", json={"name": name, "scope": scope, **extra})
    assert made.status_code == 201, made.text
    return made.json()["key"]


def keyed(service: ServiceProcess, key: str) -> httpx.Client:
    """A client of `service` that sends `key`."""
    return httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )
