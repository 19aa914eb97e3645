"""`selfie demo` / `make demo`: the main job driven through the control service, as a user
would: `selfie serve` with the embedded defaults, the demo pipeline submitted over REST with
the client, its logs followed, the table printed, the service stopped at the end (the Ray
head it started stays up for the next job: `ray stop` would end every Ray on the machine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from pipelines.specs import PipelineSpec, build_spec, load_spec_file
from pipelines.specs.errors import SelfieError
from services.client.rest_client import SelfieClient
from services.server.settings import ServiceSettings


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SelfieError(f"the service exited at start; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SelfieError(f"the service did not become healthy in {timeout:.0f}s; see {log}")


def run_demo(workdir: Path, config: Path, port: int, console: Console, *, raw: bool) -> None:
    from services.client.job_view import follow_live

    settings = ServiceSettings(workdir=workdir)
    root = settings.resolved_workdir
    root.mkdir(parents=True, exist_ok=True)
    fields = load_spec_file(config)
    fields["data"] = str(root / "data")
    spec = build_spec(PipelineSpec, fields)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SELFIE_WORKDIR": str(root)}
    env.pop("SELFIE_RAY_DASHBOARD_URL", None)
    log = root / "service.log"
    console.print(f"[bold]1/4[/] starting the control service on {url} (log: {log})")
    with open(log, "a") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    start = time.perf_counter()
    try:
        _wait_healthy(url, service, log)
        with SelfieClient(url, settings.resolved_api_token()) as client:
            job = client.submit("pipeline", spec.model_dump(mode="json"), name="demo")
            console.print(
                f"[bold]2/4[/] submitted pipeline job {job.id} over REST; following it "
                f"(raw log: `selfie logs {job.id}`, or `selfie demo --raw`)"
            )
            if raw:
                for chunk in client.follow_logs(job.id):
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            else:
                follow_live(client, job.id, console)
            console.print("[bold]3/4[/] waiting for the job's final state")
            job = client.wait(job.id, timeout=300)
        if job.state != "SUCCEEDED":
            raise SelfieError(f"demo job {job.id} ended {job.state}: {job.message}")
        result = job.result or {}
        minutes = (time.perf_counter() - start) / 60
        print("\n" + result.get("table_markdown", "(no table)"))
        print(
            f"pipeline run {result.get('mlflow_run_id')} finished in {minutes:.1f} min; "
            f"report files and plot in {result.get('report_dir')}\n"
            "Open the runs in the MLflow UI:\n"
            f"  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000"
        )
    finally:
        console.print("[bold]4/4[/] stopping the control service")
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
        console.print(
            "The local Ray head keeps running for the next job; stop it with `.venv/bin/ray stop`."
        )
