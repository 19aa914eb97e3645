"""A cluster of unequal nodes on this machine: a head with 0 CPUs and a worker node with 2.

- a 2-worker pretraining with no CPU count given is sized from the node that can host it
  (1 CPU each, not "cluster CPUs / workers" counted with the head) and finishes there;
- a request no node can hold fails within seconds with one sentence naming the largest node;
- a job submitted through the service runs its driver on the worker node (entrypoint
  resources + SELFIE_DRIVER_RESOURCE), not on the head.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.ingest.driver import ingest
from pipelines.specs import IngestSpec
from tests.ray_cluster import RAY, PrivateRayCluster
from tests.service_process import ServiceProcess

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


def _ray_list(cluster: PrivateRayCluster, what: str, *filters: str) -> list[dict]:
    cmd = [RAY, "list", what, "--address", cluster.dashboard_url, "--format", "json",
           "--limit", "100", *[f for flt in filters for f in ("--filter", flt)]]  # fmt: skip
    out = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout[out.stdout.index("[") :])


def _wait_for_nodes(cluster: PrivateRayCluster, count: int) -> list[dict]:
    deadline = time.time() + 60
    while time.time() < deadline:
        nodes = [n for n in _ray_list(cluster, "nodes") if n["state"] == "ALIVE"]
        if len(nodes) >= count:
            return nodes
        time.sleep(1)
    raise AssertionError(f"only {nodes} joined")


def test_unequal_nodes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ingest(IngestSpec(source="synthetic:200", out=data, shard_max_count=50))
    cluster = PrivateRayCluster()
    try:
        cluster.start_head(num_cpus=0)
        joined = cluster.add_node(num_cpus=2, resources={"selfie_driver": 2})
        assert joined.returncode == 0, joined.stderr[-2000:]
        nodes = _wait_for_nodes(cluster, 2)
        head = next(n["node_id"] for n in nodes if n["is_head_node"])
        env = {**cluster.env, "RAY_ADDRESS": cluster.address, "SELFIE_WORKDIR": str(tmp_path),
               "SELFIE_STORAGE_PATH": str(tmp_path / "shared")}  # fmt: skip
        cli = [sys.executable, "-m", "pipelines.cli.main", "pretrain", "--data", str(data),
               "--workers", "2", "--batch-size", "16", "--max-steps", "4", "--epochs", "10",
               "--checkpoint-every", "2", "--json"]  # fmt: skip

        # Impossible: 3 CPUs per worker on a cluster whose largest node has 2.
        tick = time.monotonic()
        refused = subprocess.run([*cli, "--cpus-per-worker", "3", "--run-name", "too-big"],
                                 env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        seconds = time.monotonic() - tick
        assert refused.returncode == 2, refused.stderr[-3000:]
        lines = [ln for ln in refused.stderr.splitlines() if "no node can host it" in ln]
        assert lines and "the largest node has 2 CPUs (" in lines[0], refused.stderr
        assert seconds < 60, f"refusal took {seconds:.0f}s (python + torch + ray.init included)"
        print(f"impossible request refused in {seconds:.1f}s: {lines[0]}")

        # Placed from what exists: 2 workers x 1 CPU on the 2-CPU node; the head hosts none.
        run = subprocess.run([*cli, "--run-name", "placed"], env=env, capture_output=True,
                             text=True, timeout=400)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads(run.stdout[run.stdout.index("{") :])["steps"] == 4
        workers = _ray_list(cluster, "actors", "class_name=RayTrainWorker")
        assert len(workers) == 2 and all(a["node_id"] != head for a in workers), workers

        # Through the service: the job's driver asks for selfie_driver, so it runs off the head.
        svc = ServiceProcess(tmp_path / "svc", cluster.dashboard_url, data)
        svc.env["SELFIE_DRIVER_RESOURCE"] = "selfie_driver"
        svc.start()
        try:
            body = {"kind": "pretrain", "name": "off-head", "spec": {
                "data": str(data), "workers": 1, "cpus_per_worker": 1, "batch_size": 16,
                "max_steps": 2, "checkpoint_every": 2, "loader_workers": 0}}  # fmt: skip
            with svc.client() as client:
                job = client.post("/v1/jobs", json=body)
                assert job.status_code == 201, job.text
                deadline = time.time() + 300
                while time.time() < deadline:
                    state = client.get(f"/v1/jobs/{job.json()['id']}").json()
                    if state["state"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                        break
                    time.sleep(1)
                assert state["state"] == "SUCCEEDED", state
            # The driver is a child of the job's JobSupervisor actor, placed with the job's
            # entrypoint resources: its node is the driver's.
            supervisors = _ray_list(cluster, "actors", "class_name=JobSupervisor")
            ours = [a for a in supervisors if state["submission_id"] in (a.get("name") or "")]
            assert ours and ours[0]["node_id"] != head, supervisors
        finally:
            svc.kill()
    finally:
        cluster.stop()
