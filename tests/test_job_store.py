"""The job store on SQLite and on a real PostgreSQL: idempotency under a race, keyset
cursors under inserts, and aware UTC times on the way back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError, StatementError

from services.server.job_models import JobState
from services.server.job_store import (
    create_job,
    get_by_idempotency_key,
    list_jobs,
    make_engine,
    session_factory,
    session_scope,
    set_state,
)


def _store(url: str):
    return session_factory(make_engine(url))


def test_idempotency_key_admits_one_job_under_a_race(database_url: str) -> None:
    factory = _store(database_url)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def submit() -> None:
        barrier.wait()
        try:
            with session_scope(factory) as session:
                create_job(
                    session=session,
                    owner="u",
                    kind="ingest",
                    name=None,
                    spec={},
                    idempotency_key="k",
                )
            outcomes.append("created")
        except IntegrityError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("created") == 1 and outcomes.count("conflict") == 7
    with session_scope(factory) as session:
        assert get_by_idempotency_key(session=session, owner="u", key="k") is not None


def test_cursor_pages_see_every_job_once_while_jobs_arrive(database_url: str) -> None:
    factory = _store(database_url)
    with session_scope(factory) as session:
        made = [
            create_job(
                session=session,
                owner="u",
                kind="pretrain",
                name=f"j{i}",
                spec={},
                idempotency_key=None,
            )
            for i in range(7)
        ]
        # Two jobs in the same microsecond: the id breaks the tie, no row is skipped.
        made[3].created_at = made[4].created_at
    seen: list[str] = []
    cursor = None
    while True:
        with session_scope(factory) as session:
            page, cursor = list_jobs(session=session, limit=3, cursor=cursor)
            seen += [r.id for r in page]
            # A job submitted while a client pages is newer than every page: never in them.
            create_job(
                session=session,
                owner="u",
                kind="sweep",
                name="late",
                spec={},
                idempotency_key=None,
            )
        if cursor is None:
            break
    assert sorted(seen) == sorted(r.id for r in made)
    with session_scope(factory) as session:
        rows, _ = list_jobs(session=session, limit=100, kind="pretrain")
    times = [r.created_at for r in rows]
    assert times == sorted(times, reverse=True)


def test_times_come_back_aware_utc(database_url: str) -> None:
    factory = _store(database_url)
    with session_scope(factory) as session:
        record = create_job(
            session=session,
            owner="u",
            kind="pipeline",
            name=None,
            spec={},
            idempotency_key=None,
        )
        set_state(record, JobState.RUNNING)
        set_state(record, JobState.SUCCEEDED)
        job_id = record.id
    with session_scope(factory) as session:
        rows, _ = list_jobs(session=session, state="SUCCEEDED")
        (back,) = [r for r in rows if r.id == job_id]
        for when in (back.created_at, back.started_at, back.finished_at):
            assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - when) < timedelta(minutes=5)
        back.finished_at = datetime.now()  # naive: refused, nothing is written
        with pytest.raises(StatementError, match="timezone-aware"):
            session.flush()


def test_a_stored_result_names_its_runs_whatever_release_stored_it(database_url: str) -> None:
    """Jobs stored before sweeps took several pretrainings have `pretrain_run_id` (a key no
    longer read: their sweep run's lineage names the pretraining); newer ones
    `pretrain_run_ids`: both are listed without error."""
    from services.server.job_models import JobPublic

    old, new = "a" * 32, ["b" * 32, "c" * 32]
    factory = _store(database_url)
    with session_scope(factory) as session:
        ids = []
        for result in (
            {"mlflow_run_id": "1" * 32, "pretrain_run_id": old, "sweep_run_id": "2" * 32},
            {"mlflow_run_id": "3" * 32, "pretrain_run_ids": new, "sweep_run_id": "4" * 32},
        ):
            record = create_job(
                session=session,
                owner="u",
                kind="pipeline",
                name=None,
                spec={},
                idempotency_key=None,
            )
            record.result = result
            ids.append(record.id)
    with session_scope(factory) as session:
        rows, _ = list_jobs(session=session)
        public = {r.id: JobPublic.from_record(r).mlflow_run_ids for r in rows}
    assert public[ids[0]] == ["1" * 32, "2" * 32] and old not in public[ids[0]]
    assert public[ids[1]] == ["3" * 32, *new, "4" * 32]
