"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`,
one CPU each): a 2-worker tiny pretraining must place one worker on each node and leave its
checkpoint on the shared storage path. The driver runs as a subprocess, as on a cluster."""

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

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


def test_pretraining_spans_two_nodes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ingest(IngestSpec(source="synthetic:200", out=data, shard_max_count=50))
    cluster = PrivateRayCluster()
    env, port, dashboard = cluster.env, cluster.port, cluster.dashboard_port
    try:
        cluster.start_head(num_cpus=1)
        joined = cluster.add_node()
        assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
        shared = tmp_path / "shared"
        run_env = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "SELFIE_WORKDIR": str(tmp_path),
                   "SELFIE_STORAGE_PATH": str(shared)}  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline:  # both nodes registered
            status = subprocess.run([RAY, "status", "--address", f"127.0.0.1:{port}"],
                                    env=env, capture_output=True, text=True)  # fmt: skip
            if status.stdout.count("node_") >= 2 or "2.0 CPU" in status.stdout:
                break
            time.sleep(1)
        run = subprocess.run(
            [sys.executable, "-m", "pipelines.cli.main", "pretrain", "--data", str(data),
             "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "16", "--max-steps",
             "6", "--epochs", "10", "--checkpoint-every", "3", "--run-name", "two-nodes",
             "--json"],
            env=run_env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout[run.stdout.index("{") :])
        assert result["steps"] == 6
        assert Path(result["checkpoint"]).is_relative_to(shared)
        assert (Path(result["checkpoint"]) / "training_state.pt").is_file()
        listed = subprocess.run(
            [RAY, "list", "actors", "--address", f"http://127.0.0.1:{dashboard}",
             "--filter", "class_name=RayTrainWorker", "--format", "json", "--limit", "100"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        actors = json.loads(listed.stdout[listed.stdout.index("[") :])
        nodes = {a["node_id"] for a in actors}
        assert len(actors) == 2 and len(nodes) == 2, f"workers must span both nodes: {actors}"
    finally:
        cluster.stop()
