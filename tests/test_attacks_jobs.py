"""Attacks on the job-launch path (issue 23, part A), each as the reviewer ran it: over real
HTTP against a real `selfie serve` where the attack comes in through the API, through the Ray
backend for the `${VAR}` expansion. Each failed on the code before the fix.

The local-backend service here runs ingest jobs only (a process pool, no Ray); the tests
marked `ray` start Ray and run under the shared lock.
"""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.service_process import ServiceProcess, free_port, wait_for_state


@pytest.fixture(scope="module")
def local_svc(tmp_path_factory):
    """A real `selfie serve` with the local job backend, its one data root `root`, and a
    folder beside the root that no job may touch."""
    base = tmp_path_factory.mktemp("attacks")
    root, outside = base / "root", base / "outside"
    (root / "train").mkdir(parents=True)
    outside.mkdir()
    (outside / "evil.tar").write_bytes(b"not a shard")
    proc = ServiceProcess(base / "work", None, root).start()
    proc.root, proc.outside = root, outside
    yield proc
    proc.kill()


def _ingest(out: str, source: str = "synthetic:20", **spec) -> dict:
    return {"kind": "ingest", "spec": {"source": source, "out": out, **spec}}


def _refused(client: httpx.Client, body: dict, *words: str) -> str:
    before = len(client.get("/v1/jobs").json()["items"])
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    detail = detail if isinstance(detail, str) else str(detail)
    assert "Traceback" not in detail and all(w in detail for w in words), detail
    assert len(client.get("/v1/jobs").json()["items"]) == before, "nothing stored"
    return detail


def test_storage_path_outside_the_roots_is_refused(local_svc) -> None:
    body = {
        "kind": "pretrain",
        "spec": {"data": str(local_svc.root / "data"), "storage_path": str(local_svc.outside)},
    }
    with local_svc.client() as client:
        _refused(client, body, "storage_path", "outside the allowed data roots")
        body["spec"]["storage_path"] = "s3://bucket/x?endpoint_override=attacker.example"
        _refused(client, body, "storage_path", "not under an allowed prefix")


def test_nested_pipeline_storage_path_is_refused(local_svc) -> None:
    body = {
        "kind": "pipeline",
        "spec": {
            "data": str(local_svc.root / "data"),
            "sweep": {"storage_path": str(local_svc.outside)},
        },
    }
    with local_svc.client() as client:
        _refused(client, body, "sweep.storage_path")


@pytest.mark.parametrize(
    "source",
    [
        "shards:{root}/*/../../outside/*.tar",
        "cifar10:{root}/{{split}}/../../outside/evil.tar",
    ],
)
def test_glob_and_split_escapes_are_refused(local_svc, source: str) -> None:
    body = _ingest(str(local_svc.root / "d"), source=source.format(root=local_svc.root))
    with local_svc.client() as client:
        _refused(client, body, "source")


def test_names_that_expand_are_refused(local_svc) -> None:
    body = {
        "kind": "pretrain",
        "spec": {"data": str(local_svc.root / "data"), "experiment": "x-${AWS_SECRET_ACCESS_KEY}"},
    }
    with local_svc.client() as client:
        _refused(client, body, "experiment", "may not hold '$'")


def _cifar_with_payload(path: Path, marker: Path) -> Path:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    batch = path.parent / "data_batch_1"
    batch.write_bytes(pickle.dumps(Evil()))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(batch, arcname="cifar-10-batches-py/data_batch_1")
    return path


def test_a_malicious_cifar_tarball_runs_nothing(local_svc) -> None:
    marker = local_svc.root / "pwned"
    tar = _cifar_with_payload(local_svc.root / "cifar-10-python.tar.gz", marker)
    with local_svc.client() as client:
        job = client.post("/v1/jobs", json=_ingest(str(local_svc.root / "c"), f"cifar10:{tar}"))
        assert job.status_code == 201, job.text
        done = wait_for_state(client, job.json()["id"], {"SUCCEEDED", "FAILED"}, timeout=120)
        logs = client.get(f"/v1/jobs/{done['id']}/logs").text
    assert done["state"] == "FAILED", done
    assert "not a CIFAR-10 batch" in logs and "posix.system" in logs, logs[-2000:]
    assert "Traceback" not in logs
    assert not marker.exists(), "the pickle ran a command"


def test_a_changed_spec_is_refused_by_the_job_entry(tmp_path: Path) -> None:
    from pipelines.specs.transport import encode_spec

    checked = {"source": "synthetic:20", "out": str(tmp_path / "data-${HOME}")}
    _, digest = encode_spec(checked)
    changed = base64.b64encode(b'{"source":"synthetic:20","out":"/root"}').decode()
    env = {**os.environ, "SELFIE_JOB_KIND": "ingest", "SELFIE_JOB_SPEC_B64": changed,
           "SELFIE_JOB_SPEC_SHA256": digest, "SELFIE_DATA_ROOTS": str(tmp_path)}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.job_entry"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("error: the job's spec does not match the sha256")
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_job_entry_checks_paths_again_on_its_node(tmp_path: Path) -> None:
    from pipelines.specs.transport import encode_spec

    encoded, digest = encode_spec({"source": "synthetic:20", "out": "/tmp/escaped"})
    env = {**os.environ, "SELFIE_JOB_KIND": "ingest", "SELFIE_JOB_SPEC_B64": encoded,
           "SELFIE_JOB_SPEC_SHA256": digest, "SELFIE_DATA_ROOTS": str(tmp_path)}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli.job_entry"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 2 and "out: '/tmp/escaped' lies outside" in run.stderr, run.stderr


def test_local_jobs_get_none_of_the_services_secrets(monkeypatch, tmp_path: Path) -> None:
    from services.server.local_backend import local_job_environment
    from services.server.settings import ServiceSettings

    monkeypatch.setenv("SELFIE_API_TOKEN", "service-token-123")
    monkeypatch.setenv("SELFIE_DATABASE_URL", "postgresql://svc:db-password@db/jobs")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    settings = ServiceSettings(workdir=tmp_path)
    env = local_job_environment(settings, submission_id="s", kind="ingest", spec={"a": 1})
    text = repr(env)
    assert "service-token-123" not in text and "db-password" not in text
    assert "aws-secret" not in text and env["SELFIE_DATA_ROOTS"] == str(tmp_path.resolve())
    assert env["PATH"] == os.environ["PATH"]


def test_a_tracking_uri_with_a_password_is_refused_at_start(tmp_path: Path) -> None:
    env = {**os.environ, "SELFIE_WORKDIR": str(tmp_path / "work"),
           "MLFLOW_TRACKING_URI": "http://alice:hunter2@127.0.0.1:1/",
           "SELFIE_JOB_BACKEND": "local", "SELFIE_API_TOKEN": "t" * 32}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "MLFLOW_TRACKING_USERNAME" in run.stderr and "hunter2" not in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_same_run_name_in_two_experiments_keeps_two_folders(tmp_path: Path) -> None:
    from pipelines.runtime.tracked_run import tracked_run
    from pipelines.specs import PretrainSpec
    from pipelines.specs.settings import Settings

    settings = Settings(workdir=tmp_path / "work")
    folders = []
    for experiment in ("alpha", "beta"):
        spec = PretrainSpec(data=str(tmp_path), experiment=experiment, run_name="same")
        with tracked_run(spec, settings, kind="pretrain") as run:
            folders.append(run.out_dir)
    assert folders[0] != folders[1]


@pytest.mark.ray
def test_dollar_in_a_path_is_not_expanded_by_ray(service) -> None:
    """Through the Ray backend: Ray expands `${VAR}` in runtime_env env vars; the job must
    write to the literal folder."""
    root = service.data_dir.parent
    out = root / "data-${HOME}"
    expanded = root / f"data-{os.environ.get('HOME', '')}"
    with service.client() as client:
        job = client.post("/v1/jobs", json=_ingest(str(out)))
        assert job.status_code == 201, job.text
        done = wait_for_state(client, job.json()["id"], {"SUCCEEDED", "FAILED"}, timeout=180)
    assert done["state"] == "SUCCEEDED", done
    assert (out / "manifest.json").is_file() and not expanded.exists()


def test_a_ray_refusal_reaches_the_caller_as_one_line() -> None:
    """Ray's errors carry the head's whole traceback; a 503 `detail` gets its last line."""
    from services.server.ray_backend import _brief

    ray_says = RuntimeError(
        "Request failed with status code 500: Traceback (most recent call last):\n"
        '  File "ray/dashboard/modules/job/job_head.py", line 1, in submit_job\n'
        "    os.path.abspath(path)\n"
        "FileNotFoundError: [Errno 2] No such file or directory\n"
    )
    assert _brief(ray_says) == "FileNotFoundError: [Errno 2] No such file or directory"
