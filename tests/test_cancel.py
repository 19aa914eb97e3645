"""A REST cancel, end to end over real HTTP with the real service (local job backend, SQLite
store, MLflow on SQLite): the job's MLflow run ends KILLED and its processes are gone. The
route marks the job STOPPED whatever the backend did, so only what the job itself did (its
run, its processes) shows that the stop reached it."""

from __future__ import annotations

import time

import pytest

from tests.job_processes import kill_group, process_group, wait_group_gone
from tests.service_process import ServiceProcess, wait_for_state


@pytest.fixture
def local_service(tmp_path):
    proc = ServiceProcess(tmp_path / "work", None, tmp_path).start()
    proc.data_root = tmp_path
    yield proc
    proc.kill()


def _run_status(client, name: str) -> dict | None:
    page = client.get("/v1/runs", params={"filter": f"tags.`selfie.run_name` = '{name}'"})
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    return items[0] if items else None


def _wait_run(client, name: str, statuses: set[str], timeout: float) -> dict | None:
    deadline = time.time() + timeout
    run = None
    while time.time() < deadline:
        run = _run_status(client, name)
        if run and run["status"] in statuses:
            return run
        time.sleep(0.3)
    return run


def test_cancel_ends_the_jobs_mlflow_run_killed_and_its_processes(local_service) -> None:
    # Generating 100k images takes far longer than the checks wait, so a job the cancel did
    # not reach is still ingesting when the test ends (and kills it): it never starts Ray.
    spec = {"data": str(local_service.data_root / "d"), "source": "synthetic:100000",
            "run_name": "cancel-me"}  # fmt: skip
    with local_service.client() as client:
        job = client.post("/v1/jobs", json={"kind": "pipeline", "spec": spec}).json()
        pid_file = local_service.workdir / "job_logs" / f"{job['submission_id']}.pid"
        wait_for_state(client, job["id"], {"RUNNING"}, timeout=120)
        pgid = int(pid_file.read_text())
        try:
            running = _wait_run(client, "cancel-me", {"RUNNING"}, timeout=120)
            assert running and running["status"] == "RUNNING", running
            assert process_group(pgid)
            cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "STOPPED"
            ended = _wait_run(client, "cancel-me", {"KILLED", "FAILED", "FINISHED"}, timeout=30)
            assert ended and ended["status"] == "KILLED", ended
            assert not wait_group_gone(pgid, timeout=30)
            log = client.get(f"/v1/jobs/{job['id']}/logs").text
            assert "stopped (Ctrl+C or a cancel)" in log and "Traceback" not in log, log[-3000:]
        finally:
            kill_group(pgid)
