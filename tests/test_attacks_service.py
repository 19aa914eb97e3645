"""Attacks on the control service, over real HTTP against a real `selfie serve` (local job
backend, SQLite): each was verified live against the service before this suite, and each test
fails on that code. Users and ownership are in tests/test_users.py."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service_process import TOKEN, ServiceProcess, wait_for_state

BODY_LIMIT = 65536  # ServiceProcess sets SELFIE_MAX_BODY_BYTES to this
IDLE_S = 3.0


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    proc = ServiceProcess(root / "work", None, root)
    proc.env["SELFIE_FOLLOW_IDLE_SECONDS"] = str(IDLE_S)
    os.umask(0o022)  # a usual shell's: the service must make its files private itself
    proc.start()
    proc.root = root
    yield proc
    proc.kill()


def _raw_chunked(svc, headers: dict[str, str], first: bytes) -> socket.socket:
    """Open a chunked POST /v1/jobs and send only its first chunk."""
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(
        f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{head}\r\n".encode()
    )
    sock.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n")
    return sock


def test_a_chunked_body_without_a_key_is_refused_before_it_is_read(svc) -> None:
    """The body was parsed before auth ran: a 3 MB chunked body with no token was read whole
    and answered 422. Now the answer (401) comes after the first chunk, the rest unsent."""
    sock = _raw_chunked(svc, {}, b"x" * 1024)
    try:
        answer = sock.recv(4096).decode("latin-1")  # times out (10 s) if it waits for more
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 401"), answer[:200]


def test_a_chunked_body_over_the_limit_is_413_on_the_bytes_read(svc) -> None:
    """The limit read Content-Length only: chunked bodies of any size were read whole."""

    def chunks():
        for _ in range(48):  # 3 MB in 64 KiB chunks
            yield b"x" * 65536

    with svc.client() as client:
        answer = client.post(
            "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 413, answer.text
    assert f"{BODY_LIMIT}-byte limit" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "setting"),
    [
        # 6,553,600 trials: 32 fractions x 100 seeds x 2 inits x 2 architectures x 32 x 16 lrs/wds
        (
            {"kind": "sweep", "spec": {
                "data": "DATA", "inits": ["scratch", "selfie"], "pretrained": ["a" * 32],
                "fractions": [round(0.03 * (i + 1), 2) for i in range(32)], "seeds": 100,
                "search": {"lr": [1e-3 * (i + 1) for i in range(32)],
                           "weight_decay": [0.01 * i for i in range(16)]},
                }},
            "SELFIE_MAX_SWEEP_TRIALS",
        ),
        (
            {"kind": "sweep", "spec": {"data": "DATA", "inits": ["scratch"], "steps": 10_000_000}},
            "SELFIE_MAX_STEPS",
        ),
        ({"kind": "pretrain", "spec": {"data": "DATA", "max_steps": 10**7}}, "SELFIE_MAX_STEPS"),
        ({"kind": "pretrain", "spec": {"data": "DATA", "epochs": 5000}}, "SELFIE_MAX_EPOCHS"),
        ({"kind": "pretrain", "spec": {"data": "DATA", "workers": 1000}}, "SELFIE_MAX_WORKERS"),
        (
            {"kind": "ingest", "spec": {"source": "synthetic:100000000000", "out": "DATA"}},
            "SELFIE_MAX_SYNTHETIC_MB",
        ),
        (
            {"kind": "pipeline", "spec": {"data": "DATA", "source": "synthetic:60",
                                          "sweep": {"seeds": 100, "fractions": [0.1, 0.2, 0.5]}}},
            "SELFIE_MAX_SWEEP_TRIALS",
        ),
    ],
)  # fmt: skip
def test_a_job_over_a_limit_is_refused_naming_the_setting(svc, body: dict, setting: str) -> None:
    spec = {k: (str(svc.root / "d") if v == "DATA" else v) for k, v in body["spec"].items()}
    with svc.client() as client:
        answer = client.post("/v1/jobs", json={**body, "spec": spec})
    assert answer.status_code == 422, answer.text
    assert setting in answer.json()["detail"], answer.text
    assert "\n" not in answer.json()["detail"]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_tail_of_a_large_log_reads_only_its_end(svc) -> None:
    """`tail` read the whole log into memory and split it: 160 MB of log cost the service
    hundreds of MB for five lines. Now it seeks to the end: the service's peak stays put."""
    with svc.client() as client:
        body = {"kind": "ingest", "spec": {"source": "synthetic:16", "out": str(svc.root / "t")}}
        job = client.post("/v1/jobs", json=body).json()
        wait_for_state(client, job["id"], {"SUCCEEDED", "FAILED"})
        log = svc.workdir / "job_logs" / f"{job['submission_id']}.log"
        line = b"progress " + b"." * 70 + b"\n"
        with open(log, "ab") as out:
            for _ in range(160):
                out.write(line * (1024 * 1024 // len(line)))
            out.write(b"the very last line\n")
        before = _peak_rss_mb(svc.proc.pid)
        answer = client.get(f"/v1/jobs/{job['id']}/logs", params={"tail": 5})
        grown = _peak_rss_mb(svc.proc.pid) - before
    assert answer.status_code == 200 and answer.text.endswith("the very last line\n")
    assert len(answer.text.splitlines()) == 5
    assert grown < 40, f"the service's peak memory grew {grown:.0f} MB for a 5-line tail"


def test_a_follow_of_a_job_without_its_exit_record_does_not_hang(svc) -> None:
    """A follow streamed until the job's exit record appeared: a job whose runner died without
    one (here: its exit file removed) held the connection forever. A finished job's follow is
    now its log at once; a running job gone silent ends at the idle limit
    (tests/test_log_limits.py)."""
    with svc.client() as client:
        body = {"kind": "ingest", "spec": {"source": "synthetic:16", "out": str(svc.root / "f")}}
        job = client.post("/v1/jobs", json=body).json()
        wait_for_state(client, job["id"], {"SUCCEEDED", "FAILED"})
        (svc.workdir / "job_logs" / f"{job['submission_id']}.exit").unlink()
        start = time.monotonic()
        with client.stream(
            "GET", f"/v1/jobs/{job['id']}/logs", params={"follow": "true"}, timeout=30
        ) as stream:
            text = "".join(stream.iter_text())
        took = time.monotonic() - start
    assert "SELFIE_RESULT" in text and took < IDLE_S + 10, (took, text[-300:])


def test_the_services_files_are_private_from_creation(svc) -> None:
    """jobs.db, mlflow.db and the job logs were world-readable (created under umask 022)."""
    work = svc.workdir
    assert stat.S_IMODE((work / "jobs.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((work / "job_logs").stat().st_mode) == 0o700
    for log in (work / "job_logs").glob("*.log"):
        assert stat.S_IMODE(log.stat().st_mode) & 0o077 == 0, log


def test_the_development_token_file_is_created_private(tmp_path) -> None:
    """The token file was written, then chmod-ed: readable by others in between."""
    from services.server.settings import ServiceSettings

    old = os.umask(0)
    try:
        token = ServiceSettings(workdir=tmp_path / "w").resolved_api_token()
    finally:
        os.umask(old)
    path = tmp_path / "w" / "api_token"
    assert path.read_text().strip() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "w").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SELFIE_API_TOKEN": "change-me"}, "SELFIE_API_TOKEN is a shipped placeholder"),
        ({"SELFIE_API_TOKEN": "short-but-not-default"}, "at least 32"),
        ({"SELFIE_API_TOKEN": "a" * 40, "RAY_AUTH_TOKEN": "a" * 40}, "give Ray its own secret"),
        ({"SELFIE_API_TOKEN": "a" * 40, "RAY_AUTH_TOKEN": "change-me"}, "RAY_AUTH_TOKEN is a"),
    ],
)
def test_production_refuses_weak_or_shared_secrets(tmp_path, env: dict, needle: str) -> None:
    full = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    full.update({"SELFIE_ENVIRONMENT": "production", "SELFIE_WORKDIR": str(tmp_path),
                 "SELFIE_JOB_BACKEND": "local", **env})  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--port", "1"],
        env=full, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 2 and needle in out, out[-2000:]
    assert "Traceback" not in out and env["SELFIE_API_TOKEN"] not in out.replace(needle, "")


def test_the_bootstrap_token_still_works_as_admin(svc) -> None:
    me = httpx.get(f"{svc.url}/v1/users/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert me.json() == {"user": "admin", "scope": "admin", "key_id": None}


def test_the_limit_counts_cells_as_the_sweep_does() -> None:
    """The bound taken before building any cell equals the cells the sweep runs."""
    from pipelines.specs import SweepSpec
    from pipelines.specs.sweep_cells import all_cells, cell_count

    for extra in (
        {"inits": ["scratch"]},
        {"inits": ["scratch", "selfie"], "pretrained": ["a" * 32, "b" * 32]},
        {"inits": ["selfie", "selfie"], "pretrained": ["c" * 32], "architectures": ["hybrid"]},
    ):
        spec = SweepSpec(data="d", fractions=[0.1, 0.5], seeds=3, **extra)
        assert cell_count(spec) == len(all_cells(spec)), extra
