"""Users who own their jobs, over real HTTP (a real `selfie serve` with the local job
backend), on SQLite and on a real PostgreSQL job store: what one user submits, another can
neither see nor touch; scopes; revoked and expired keys; per-user idempotency keys, run
names and data dirs; the per-user quota. And the store's upgrade and the `selfie users` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from tests.service_process import ServiceProcess, keyed, new_key, wait_for_state

DONE = {"SUCCEEDED", "FAILED", "STOPPED"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"users-{request.param}")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"u_{uuid.uuid4().hex[:8]}")
    proc = ServiceProcess(root / "work", None, root, database_url=url)
    proc.env["SELFIE_MAX_UNFINISHED_JOBS_PER_USER"] = "2"
    proc.start()
    proc.root = root
    proc.store_url = url or f"sqlite:///{root / 'work' / 'jobs.db'}"
    yield proc
    proc.kill()


def _ingest(svc, out: str, **extra) -> dict:
    spec = {"source": "synthetic:16", "out": str(svc.root / out), **extra}
    return {"kind": "ingest", "spec": spec}


def _pretrain(svc, run_name: str, resume: bool = False) -> dict:
    spec = {"data": str(svc.root / "nodata"), "run_name": run_name, "resume": resume,
            "max_steps": 1}  # fmt: skip
    return {"kind": "pretrain", "spec": spec}


def test_a_users_jobs_are_invisible_and_untouchable_to_another(svc) -> None:
    tag = uuid.uuid4().hex[:6]
    with svc.client() as admin:
        alice_key = new_key(admin, f"alice-{tag}")
        bob_key = new_key(admin, f"bob-{tag}")
    with keyed(svc, alice_key) as alice, keyed(svc, bob_key) as bob, svc.client() as admin:
        a = alice.post("/v1/jobs", json=_ingest(svc, f"a-{tag}"), headers={"Idempotency-Key": "k"})
        assert a.status_code == 201, a.text
        job = a.json()
        assert job["owner"] == f"alice-{tag}"
        run = alice.post("/v1/jobs", json=_pretrain(svc, f"run-{tag}"))
        assert run.status_code == 201, run.text

        assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["items"]]
        for call in (
            bob.get(f"/v1/jobs/{job['id']}"),
            bob.get(f"/v1/jobs/{job['id']}/logs"),
            bob.get(f"/v1/jobs/{job['id']}/logs", params={"tail": 5}),
            bob.post(f"/v1/jobs/{job['id']}/cancel"),
            bob.delete(f"/v1/jobs/{job['id']}"),
        ):
            assert call.status_code == 404, call.text  # not 403: the id tells bob nothing
        # Bob's Idempotency-Key "k" is his own: a new job, not Alice's back.
        b = bob.post("/v1/jobs", json=_ingest(svc, f"b-{tag}"), headers={"Idempotency-Key": "k"})
        assert b.status_code == 201 and b.json()["id"] != job["id"], b.text
        # Resuming (or reusing) Alice's run name writes into her MLflow run: refused.
        resumed = bob.post("/v1/jobs", json=_pretrain(svc, f"run-{tag}", resume=True))
        assert resumed.status_code == 409 and "another user" in resumed.json()["detail"]
        stray = bob.post("/v1/jobs", json=_pretrain(svc, f"never-{tag}", resume=True))
        assert stray.status_code == 409 and "cannot be resumed" in stray.json()["detail"]
        # Overwriting the data dir Alice's job writes: refused.
        over = bob.post("/v1/jobs", json=_ingest(svc, f"a-{tag}", overwrite=True))
        assert over.status_code == 409 and "another user's data" in over.json()["detail"]

        everyone = {j["id"] for j in admin.get("/v1/jobs", params={"limit": 500}).json()["items"]}
        assert {job["id"], b.json()["id"], run.json()["id"]} <= everyone
        assert admin.get(f"/v1/jobs/{job['id']}").status_code == 200
        for done in (job["id"], b.json()["id"], run.json()["id"]):
            wait_for_state(admin, done, DONE)
        assert alice.delete(f"/v1/jobs/{job['id']}").status_code == 204
        audit = _audit_rows(svc, f"alice-{tag}")
        assert ("submit ingest", job["id"], "ok") in audit and ("delete", job["id"], "ok") in audit
        assert any(a == "cancel" and o.startswith("refused 404") for a, _, o in _audit_rows(
            svc, f"bob-{tag}"))  # fmt: skip


def _audit_rows(svc, actor: str) -> list[tuple]:
    engine = create_engine(svc.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT action, job_id, outcome FROM audit WHERE actor = :a"), {"a": actor}
            )
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def test_scopes_revocation_and_expiry(svc) -> None:
    tag = uuid.uuid4().hex[:6]
    with svc.client() as admin:
        reader_key = new_key(admin, f"reader-{tag}", "read_only")
        user_key = new_key(admin, f"user-{tag}")
        short_key = new_key(admin, f"short-{tag}", expires_days=1)
        with keyed(svc, reader_key) as reader:
            assert reader.get("/v1/jobs").status_code == 200
            assert reader.get("/v1/experiments").status_code == 200
            refused = reader.post("/v1/jobs", json=_ingest(svc, f"r-{tag}"))
            assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
        assert [(a, o[:12]) for a, _, o in _audit_rows(svc, f"reader-{tag}")] == [
            ("POST /v1/jobs", "refused 403:")
        ]
        with keyed(svc, user_key) as user:
            assert user.get("/v1/users").status_code == 403  # only admins manage users
            assert user.get("/v1/users/me").json()["scope"] == "user"
            assert admin.post(f"/v1/users/user-{tag}/revoke").status_code == 200
            gone = user.get("/v1/jobs")
            assert gone.status_code == 401 and "revoked" in gone.json()["detail"]
        _expire(svc.store_url, f"short-{tag}")
        with keyed(svc, short_key) as short:
            assert short.get("/v1/jobs").status_code == 401
        listed = {k["user"]: k for k in admin.get("/v1/users").json()}
        assert listed[f"user-{tag}"]["revoked_at"] and "key" not in listed[f"user-{tag}"]


def _expire(url: str, user: str) -> None:
    """Move the user's key expiry into the past, as if its day had gone by."""
    from sqlalchemy import update

    from services.server.account_models import ApiKeyRecord
    from services.server.job_models import utcnow
    from services.server.job_store import make_engine, session_factory, session_scope

    engine = make_engine(url)
    with session_scope(session_factory(engine)) as session:
        past = utcnow() - timedelta(seconds=5)
        mine = update(ApiKeyRecord).where(ApiKeyRecord.user == user)
        session.execute(mine.values(expires_at=past))
    engine.dispose()


def test_unfinished_jobs_per_user_are_capped(svc) -> None:
    tag = uuid.uuid4().hex[:6]
    with svc.client() as admin:
        key = new_key(admin, f"busy-{tag}")
    big = {"source": "synthetic:400000"}
    with keyed(svc, key) as busy:
        ids = [
            busy.post("/v1/jobs", json=_ingest(svc, f"q{i}-{tag}", **big)).json()["id"]
            for i in range(2)
        ]
        third = busy.post("/v1/jobs", json=_ingest(svc, f"q2-{tag}"))
        assert third.status_code == 429, third.text
        assert "SELFIE_MAX_UNFINISHED_JOBS_PER_USER" in third.json()["detail"]
        for job_id in ids:
            busy.post(f"/v1/jobs/{job_id}/cancel")
        assert busy.post("/v1/jobs", json=_ingest(svc, f"q3-{tag}")).status_code == 201


def test_an_old_store_gains_owners_and_keeps_its_jobs(database_url) -> None:
    """A job store made before users existed (no `owner` column) is upgraded in place."""
    from services.server.job_store import list_jobs, make_engine, session_factory

    old = create_engine(database_url)
    with old.begin() as conn:
        conn.execute(text(
            "CREATE TABLE jobs (id VARCHAR(36) PRIMARY KEY, kind VARCHAR(16), name VARCHAR(200),"
            " spec JSON, state VARCHAR(16), message TEXT, submission_id VARCHAR(64) UNIQUE,"
            " idempotency_key VARCHAR(200) UNIQUE, result JSON, created_at TIMESTAMP,"
            " submitted_at TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP)"
        ))  # fmt: skip
        conn.execute(text(
            "INSERT INTO jobs (id, kind, spec, state, submission_id, created_at) VALUES "
            "('old1', 'ingest', '{}', 'SUCCEEDED', 'selfie-old1', '2026-01-01 00:00:00')"
        ))  # fmt: skip
    old.dispose()
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        everyone, _ = list_jobs(session=session)
        assert [(j.id, j.owner) for j in everyone] == [("old1", None)]
        assert list_jobs(session=session, owner="alice")[0] == []
    engine.dispose()
    make_engine(database_url).dispose()  # a second start finds nothing to add


def test_users_cli_issues_lists_and_revokes_keys(tmp_path) -> None:
    env = {**os.environ, "SELFIE_WORKDIR": str(tmp_path / "work")}

    def selfie(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", "users", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    assert "no API keys yet" in selfie("list").stdout  # a fresh work dir: a word, not nothing
    made = selfie("add", "carol", "--read-only", "--expires-days", "30")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk_") and "read_only" in made.stderr
    assert key not in (tmp_path / "work" / "jobs.db").read_bytes().decode("latin-1")
    assert "carol" in selfie("list").stdout
    twice = selfie("add", "carol")
    assert twice.returncode == 2 and "already has an active key" in twice.stdout + twice.stderr
    assert selfie("revoke", "carol").returncode == 0
    store = create_engine(f"sqlite:///{tmp_path / 'work' / 'jobs.db'}")
    with store.connect() as conn:
        actions = [r[0] for r in conn.execute(text("SELECT action FROM audit ORDER BY id"))]
    store.dispose()
    assert actions == ["users.add carol", "users.revoke carol"]
    from services.server.api_keys import authenticate
    from services.server.job_store import make_engine, session_factory

    engine = make_engine(f"sqlite:///{tmp_path / 'work' / 'jobs.db'}")
    with session_factory(engine)() as session:
        assert authenticate(session=session, presented=key, bootstrap_token="x" * 40) is None
    engine.dispose()
