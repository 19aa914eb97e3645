"""A Ray cluster of the test's own on this machine (`ray start`), next to the session's.

Every port is chosen free (the defaults may be held by the session's Ray), and stopping
kills only this cluster's processes: `ray stop` would end every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.service_process import free_port

RAY = str(Path(sys.executable).with_name("ray"))


class PrivateRayCluster:
    def __init__(self, dashboard_port: int | None = None) -> None:
        self.port = free_port()
        self.dashboard_port = dashboard_port or free_port()
        self.temp_dir = f"/tmp/selfie-ray-{os.getpid()}-{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env["RAY_AUTH_MODE"] = "token"  # nodes and drivers present the head's token

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _node_flags(self, num_cpus: int = 1, resources: dict | None = None) -> list[str]:
        extra = ["--resources", json.dumps(resources)] if resources else []
        return ["--num-cpus", str(num_cpus), *extra,
                "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                "--object-store-memory", str(200 * 1024 * 1024),
                "--dashboard-agent-listen-port", str(free_port()),
                "--dashboard-agent-grpc-port", str(free_port()),
                "--metrics-export-port", str(free_port())]  # fmt: skip

    def start_head(self, num_cpus: int = 2, resources: dict | None = None) -> PrivateRayCluster:
        """The head; 2 CPUs by default: a submitted job's driver holds one
        (entrypoint_num_cpus), its training worker the other."""
        cmd = [RAY, "start", "--head", "--port", str(self.port), "--temp-dir", self.temp_dir,
               "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(self.dashboard_port),
               *self._node_flags(num_cpus, resources)]  # fmt: skip
        subprocess.run(cmd, check=True, env=self.env, capture_output=True, timeout=120)
        return self

    def add_node(
        self, num_cpus: int = 1, resources: dict | None = None
    ) -> subprocess.CompletedProcess:
        cmd = [RAY, "start", "--address", self.address, *self._node_flags(num_cpus, resources)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        """Kill this cluster's processes, and the job drivers it started: a driver outlives
        its head (found orphaned, still running, 13 minutes after the outage test), and
        names the cluster only in its environment (`RAY_ADDRESS=<ip>:<port>`)."""
        address = f":{self.port}".encode()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                ours = self.temp_dir.encode() in cmdline or any(
                    var.startswith(b"RAY_ADDRESS=") and var.endswith(address)
                    for var in (proc / "environ").read_bytes().split(b"\0")
                )
                if ours and int(proc.name) != os.getpid():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def train_worker_pids() -> list[int]:
    """Process ids of this test session's alive Ray Train workers (to kill one mid-run)."""
    from ray.util.state import list_actors

    # This session's cluster by address: with another Ray on the machine (the head `make
    # demo` leaves up), the state API would otherwise ask that one.
    actors = list_actors(
        address=os.environ["SELFIE_TEST_RAY_DASHBOARD"],
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    return [a.pid for a in actors]
