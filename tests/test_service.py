"""The control service over real HTTP: uvicorn on 127.0.0.1, real Ray Jobs, real MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ray_cluster import PrivateRayCluster
from tests.service_process import TOKEN, ServiceProcess, wait_for_state

pytestmark = pytest.mark.ray


def _pretrain_body(data_dir: Path, **spec) -> dict:
    base = {"data": str(data_dir), "workers": 1, "cpus_per_worker": 1, "batch_size": 16,
            "max_steps": 6, "checkpoint_every": 3, "loader_workers": 0}  # fmt: skip
    base.update(spec)
    return {"kind": "pretrain", "spec": base, "name": "tiny"}


def test_a_pretrain_job_outlives_a_service_restart_and_its_run_is_browsable(service) -> None:
    """The service is killed while the job runs: the restarted one has every job, follows
    the job's log to its end and serves its MLflow run (one Ray job for both checks: each
    costs ~40 s on 2 busy cores)."""
    with service.client() as client:
        created = client.post("/v1/jobs", json=_pretrain_body(service.data_dir, max_steps=10))
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["state"] == "PENDING" and job["submission_id"].startswith("selfie-")
        wait_for_state(client, job["id"], {"RUNNING"})
        before = {j["id"]: j["state"] for j in client.get("/v1/jobs").json()["items"]}
    service.kill()
    service.start()
    with service.client() as client:
        after = {j["id"]: j["state"] for j in client.get("/v1/jobs").json()["items"]}
        assert set(before) <= set(after), "no job may be lost"
        follow = {"follow": "true"}
        with client.stream("GET", f"/v1/jobs/{job['id']}/logs", params=follow, timeout=None) as s:
            streamed = "".join(s.iter_text())
        assert "SELFIE_RESULT" in streamed
        done = wait_for_state(client, job["id"], {"SUCCEEDED", "FAILED"})
        assert done["state"] == "SUCCEEDED", (done, streamed[-3000:])
        run_id = done["result"]["mlflow_run_id"]
        assert done["mlflow_run_ids"] == [run_id]
        run = client.get(f"/v1/runs/{run_id}").json()
        assert run["params"]["max_steps"] == "10" and run["status"] == "FINISHED"
        assert run["inputs"][0]["digest"]
        history = client.get(f"/v1/runs/{run_id}/metrics/loss").json()["history"]
        assert history and history[-1]["step"] == 10
        arts = client.get(f"/v1/runs/{run_id}/artifacts", params={"path": "encoder"}).json()
        assert [f["path"] for f in arts["files"]] == ["encoder/encoder.pt"]
        blob = client.get(
            f"/v1/runs/{run_id}/artifacts/download", params={"path": "encoder/encoder.pt"}
        )
        assert blob.status_code == 200 and len(blob.content) > 10_000
        found = client.get("/v1/runs", params={"filter": "params.max_steps = '10'"}).json()
        assert run_id in [r["run_id"] for r in found["items"]]
        exps = client.get("/v1/experiments").json()["items"]
        assert "selfie-pretrain" in [e["name"] for e in exps]
        listed = client.get("/v1/jobs", params={"state": "SUCCEEDED", "kind": "pretrain"}).json()
        assert job["id"] in [j["id"] for j in listed["items"]]
        same = client.get("/v1/jobs", params={"name": "tiny"}).json()["items"]
        assert sum(1 for j in same if j["id"] == job["id"]) == 1
        whole = client.get(f"/v1/jobs/{job['id']}/logs")
        assert "SELFIE_RESULT" in whole.text
        # The follow closed once the job ended (not Ray's ~5 s later) with nothing lost.
        assert streamed == whole.text
        # A follow of a finished job is its log whole, answered at once, not Ray's tail
        # (streamed, it would end only after Ray's ~5 s of polling an ended job).
        ended = client.get(f"/v1/jobs/{job['id']}/logs", params=follow)
        assert ended.text == whole.text and "content-length" in ended.headers
        metrics = client.get("/metrics").text
        assert 'selfie_jobs{state="SUCCEEDED"}' in metrics
        assert "selfie_http_request_seconds_bucket" in metrics
        assert "selfie_event_loop_lag_seconds_count" in metrics
        assert 'selfie_gc_pause_seconds_count{generation="0"}' in metrics
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_cancel_stops_a_running_job(service) -> None:
    body = _pretrain_body(service.data_dir, max_steps=5000, run_name="cancel-on-ray")
    runs = {"filter": "tags.`selfie.run_name` = 'cancel-on-ray'"}
    with service.client() as client:
        job = client.post("/v1/jobs", json=body).json()
        wait_for_state(client, job["id"], {"RUNNING"})
        deadline = time.time() + 120
        while not client.get("/v1/runs", params=runs).json()["items"]:
            assert time.time() < deadline, "the job never created its MLflow run"
            time.sleep(0.5)
        conflict = client.delete(f"/v1/jobs/{job['id']}")
        assert conflict.status_code == 409 and "cancel it first" in conflict.json()["detail"]
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel").json()
        assert cancelled["state"] == "STOPPED"
        # The stop reached the job itself (Ray Jobs' SIGTERM): its MLflow run ends KILLED.
        deadline = time.time() + 60
        while (run := client.get("/v1/runs", params=runs).json()["items"][0])[
            "status"
        ] == "RUNNING":
            assert time.time() < deadline, run
            time.sleep(0.5)
        assert run["status"] == "KILLED", run
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "STOPPED"
        deleted = client.delete(f"/v1/jobs/{job['id']}")
        assert deleted.status_code == 204
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_client_verbs(service) -> None:
    env = {**os.environ, "SELFIE_SERVER_URL": service.url, "SELFIE_API_TOKEN": TOKEN}
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "jobs", "--json"], env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "services.cli", "status", "nosuchjob"], env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "no job 'nosuchjob'" in bad.stderr


def test_service_never_imports_torch() -> None:
    code = (
        "import sys, services.server.app, services.client.rest_client; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_bounded_load_loses_nothing(service) -> None:
    from services.client.bench.service_load import bench_service

    body = _pretrain_body(service.data_dir, max_steps=2) | {"name": "under-load"}
    result = bench_service(
        service.url, TOKEN, clients=50, seconds=5, submit_body=body, submits=2, interval=0.2
    )
    # The jobs it submitted are not what this test measures: cancelled, they do not run on
    # (a driver and two Ray Train actors each) under the tests that follow.
    with service.client() as client:
        submitted = client.get("/v1/jobs", params={"name": "under-load"}).json()["items"]
        for job in submitted:
            client.post(f"/v1/jobs/{job['id']}/cancel")
    assert len(submitted) == 2, submitted
    assert result["reads"] > 50 * 5 / 0.2 / 2, result  # at least half the polls answered
    assert result["server_errors"] == 0 and result["transport_errors"] == 0, result
    assert set(result["status_counts"]) <= {"200", "201"}, result
    with pytest.raises(ValueError, match="this machine only"):
        bench_service("http://10.0.0.1:8000", TOKEN, clients=1, seconds=1)


def _driver_pids(needle: bytes) -> list[int]:
    """Processes of the job entry whose environment holds `needle` (the submission id)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            cmdline = (environ.parent / "cmdline").read_bytes()
            if b"pipelines.cli.job_entry" in cmdline and needle in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_killed_job_driver_ends_failed_not_running(service) -> None:
    """The driver is one process (Ray's `sh -c` execs it): killed, the job ends FAILED and
    nothing of it trains on as an orphan."""
    import signal

    with service.client() as client:
        job = client.post("/v1/jobs", json=_pretrain_body(service.data_dir, max_steps=5000)).json()
        wait_for_state(client, job["id"], {"RUNNING"})
        needle = f"SELFIE_SUBMISSION_ID={job['submission_id']}".encode()
        deadline = time.time() + 60
        while not (pids := _driver_pids(needle)) and time.time() < deadline:
            time.sleep(0.5)
        assert len(pids) == 1, f"the job's driver should be one process, found {pids}"
        os.kill(pids[0], signal.SIGKILL)
        done = wait_for_state(client, job["id"], {"FAILED", "SUCCEEDED", "STOPPED"}, timeout=120)
        assert done["state"] == "FAILED" and done["message"], done
        assert not _driver_pids(needle), "a process of the killed job's driver lives on"


def _assert_ray_down(client: httpx.Client, service: ServiceProcess, body: dict) -> None:
    health = httpx.get(f"{service.url}/healthz")
    assert health.status_code == 503 and health.json()["ray"].startswith("unreachable")
    stored = client.get("/v1/jobs").json()["items"]
    refused = client.post("/v1/jobs", json=body)
    assert refused.status_code == 503 and "unreachable" in refused.json()["detail"]
    assert len(client.get("/v1/jobs").json()["items"]) == len(stored), "nothing created"


def _wait_healthy(service: ServiceProcess, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while httpx.get(f"{service.url}/healthz").status_code != 200:
        assert time.time() < deadline, httpx.get(f"{service.url}/healthz").json()
        time.sleep(0.5)


@pytest.mark.cluster  # two heads of its own, one after the other
def test_ray_outage_is_reported_refused_and_recovered_from(service, tmp_path) -> None:
    """The service outlives its Ray head: refuses work while it is gone, keeps every job
    readable, works again when a head is back, and closes the jobs the old head took along."""
    cluster = PrivateRayCluster()
    svc = ServiceProcess(tmp_path / "work", cluster.dashboard_url, service.data_dir)
    body = _pretrain_body(service.data_dir, max_steps=4)
    try:
        svc.start()
        with svc.client() as client:
            _assert_ray_down(client, svc, body)  # no head yet
            cluster.start_head()
            _wait_healthy(svc)
            # A job that runs proves the head works (a finished one is test_a_pretrain_job_*'s).
            long = client.post("/v1/jobs", json=_pretrain_body(service.data_dir, max_steps=5000))
            assert long.status_code == 201, long.text
            wait_for_state(client, long.json()["id"], {"RUNNING"})
            cluster.stop()  # the head dies with the job on it
            _assert_ray_down(client, svc, body)
            time.sleep(2)  # reconciler ticks while Ray is away change nothing
            kept = {j["id"]: j["state"] for j in client.get("/v1/jobs").json()["items"]}
            assert kept == {long.json()["id"]: "RUNNING"}
            cluster.start_head()  # a new head on the same address, knowing no old job
            _wait_healthy(svc)
            closed = wait_for_state(client, long.json()["id"], {"FAILED", "SUCCEEDED", "STOPPED"})
            assert closed["state"] == "FAILED" and "restarted" in closed["message"], closed
            for follow in ("false", "true"):  # its logs went with the old head: 404, said so
                gone = client.get(f"/v1/jobs/{closed['id']}/logs", params={"follow": follow})
                assert gone.status_code == 404 and "no longer holds" in gone.json()["detail"]
            again = client.post("/v1/jobs", json=body)
            assert again.status_code == 201, again.text
            client.post(f"/v1/jobs/{again.json()['id']}/cancel")
    finally:
        svc.kill()
        cluster.stop()
