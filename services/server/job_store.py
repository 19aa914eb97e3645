"""The durable job record: every job the service accepted, whatever Ray remembers.

Ray keeps job records only while its cluster lives; this store (SQLite by default, any
SQLAlchemy URL such as Postgres in production) is the source of truth for the API.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, create_engine, event, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from services.server.job_models import Base, JobRecord, JobState, new_job_id, utcnow


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _record) -> None:  # readers never wait for the one writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session, session.begin():
        yield session


def create_job(
    *, session: Session, kind: str, name: str | None, spec: dict, idempotency_key: str | None
) -> JobRecord:
    job_id = new_job_id()
    record = JobRecord(
        id=job_id,
        kind=kind,
        name=name,
        spec=spec,
        state=JobState.PENDING.value,
        submission_id=f"selfie-{job_id}",
        idempotency_key=idempotency_key,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()  # IntegrityError here: another request holds the idempotency key
    return record


def delete_job(*, session: Session, job_id: str) -> None:
    record = session.get(JobRecord, job_id)
    if record is not None:
        session.delete(record)


def get_job(*, session: Session, job_id: str) -> JobRecord | None:
    return session.get(JobRecord, job_id)


def get_by_idempotency_key(*, session: Session, key: str) -> JobRecord | None:
    return session.scalar(select(JobRecord).where(JobRecord.idempotency_key == key))


def _encode_cursor(record: JobRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        when = datetime.fromisoformat(created)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)), job_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None


def list_jobs(
    *,
    session: Session,
    state: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[JobRecord], str | None]:
    """Newest first; keyset pagination on (created_at, id), stable under inserts."""
    query = select(JobRecord)
    if state:
        query = query.where(JobRecord.state == state)
    if kind:
        query = query.where(JobRecord.kind == kind)
    if name:
        query = query.where(JobRecord.name == name)
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(
                JobRecord.created_at < created,
                and_(JobRecord.created_at == created, JobRecord.id < job_id),
            )
        )
    query = query.order_by(JobRecord.created_at.desc(), JobRecord.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def unfinished_jobs(*, session: Session) -> list[JobRecord]:
    live = (JobState.PENDING.value, JobState.RUNNING.value)
    return list(session.scalars(select(JobRecord).where(JobRecord.state.in_(live))))


def count_by_state(*, session: Session) -> dict[str, int]:
    rows = session.execute(select(JobRecord.state, func.count()).group_by(JobRecord.state))
    return {state: count for state, count in rows}


def set_state(
    record: JobRecord,
    state: JobState,
    *,
    message: str | None = None,
    result: dict | None = None,
) -> None:
    if record.state != state.value:
        record.state = state.value
        if state == JobState.RUNNING and record.started_at is None:
            record.started_at = utcnow()
        if state.finished:
            record.finished_at = utcnow()
    if message is not None:
        record.message = message
    if result is not None:
        record.result = result
