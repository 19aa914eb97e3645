"""Shared fixtures: one local Ray per test session, real MLflow on SQLite in a temp dir."""

from __future__ import annotations

import os
from typing import IO

import pytest
import torch

# Keep CPU tests predictable on the 2-core CI box.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Ray Train's controller, for every run of the session (the drivers and jobs the tests start
# inherit these): look at the workers every 0.5 s instead of 2, so a finished run of a few
# steps is noticed in half a second rather than up to four (measured: 4.8 -> 0.6-1.3 s from
# the last report to `fit()` returning); and no preemption watcher actor (one more process
# per run, polling for the spot-node preemption a test box never has).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the items
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for `pytest -n 2 --dist loadgroup` (make test): every test that needs the
    session's Ray runs on one worker, so there is one Ray on the box and each of its module
    fixtures is built once; each other test file is a group of its own, run beside them.
    The Ray tests leave about a third of the two cores idle (process start-ups, polls), which
    the rest of the suite fills. Without -n the groups change nothing."""
    for item in items:
        needs_ray = item.get_closest_marker("ray") or "ray_session" in item.fixturenames
        group = "ray" if needs_ray else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: on the shared 2-core box two threads ran
    their steps up to 4x slower. Put back after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hold_the_one_ray(tmp_path_factory: pytest.TempPathFactory) -> IO[str] | None:
    """Under xdist, a lock in the run's shared temp dir that the worker holding the Ray tests
    takes: a second Ray on the box breaks the first one's job agent, so Ray tests spread over
    two workers (a grouping xdist lost) fail here, saying so, instead of deep in a job."""
    import fcntl

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return None
    lock = open(tmp_path_factory.getbasetemp().parent / "ray-session.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pytest.fail(
            "another xdist worker already runs this session's Ray: the Ray tests must share "
            "one worker (xdist_group 'ray' with --dist loadgroup; see pytest_collection_"
            "modifyitems in tests/conftest.py)"
        )
    return lock


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for the whole test session (starting Ray costs seconds and ~2 GiB)."""
    import ray

    held = _hold_the_one_ray(tmp_path_factory)
    if not ray.is_initialized():
        context = ray.init(
            address="local",  # always a fresh cluster of our own, never a leftover head
            # The 2 cores, plus one CPU for a job's driver (each asks for one, as on the
            # development head `selfie serve` starts), so a submitted job never waits for
            # its own driver's slot behind training.
            num_cpus=3,
            object_store_memory=256 * 1024 * 1024,
            include_dashboard=True,  # Train V2 and the state API talk to it
            dashboard_host="127.0.0.1",
            log_to_driver=True,
        )
        os.environ["SELFIE_TEST_RAY_DASHBOARD"] = f"http://{context.dashboard_url}"
    yield ray
    ray.shutdown()
    if held is not None:
        held.close()


@pytest.fixture(scope="session")
def service(tmp_path_factory, ray_session):
    """A real `selfie serve` on 127.0.0.1 against the session's Ray, with 200 synthetic
    images ingested under its only data root. One per session: the schemathesis run then
    meets the jobs and MLflow runs the other service tests left."""
    from pipelines.ingest.driver import ingest
    from pipelines.specs import IngestSpec
    from tests.service_process import ServiceProcess

    root = tmp_path_factory.mktemp("svc")
    ingest(IngestSpec(source="synthetic:200", out=root / "data", shard_max_count=100))
    proc = ServiceProcess(root / "work", os.environ["SELFIE_TEST_RAY_DASHBOARD"], root).start()
    proc.data_dir = root / "data"
    yield proc
    proc.kill()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session (see tests/postgres_cluster.py)."""
    from tests.postgres_cluster import PostgresCluster, server_bin

    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed on this machine")
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The job store's URL: SQLite in a temp dir, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    import uuid

    return request.getfixturevalue("postgres").create_database(f"jobs_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def local_service(request, tmp_path_factory):
    """A real `selfie serve` with the local job backend (no Ray) on each job store."""
    import uuid

    from tests.service_process import ServiceProcess

    root = tmp_path_factory.mktemp(f"local-{request.param}")
    url = None
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres")
        url = pg.create_database(f"svc_{uuid.uuid4().hex[:8]}")
    proc = ServiceProcess(root / "work", None, root, database_url=url).start()
    proc.data_root = root
    proc.database = request.param
    yield proc
    proc.kill()
