"""The durable job record: every job the service accepted, whatever Ray remembers.

Ray keeps job records only while its cluster lives; this store (SQLite by default, any
SQLAlchemy URL such as Postgres in production) is the source of truth for the API.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, create_engine, event, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from services.server.job_models import JobRecord, JobState, new_job_id, utcnow
from services.server.schema import upgrade
from services.server.store_files import private_sqlite_file


def make_engine(url: str) -> Engine:
    """The store's engine, its tables created or upgraded (see `schema.upgrade`)."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_conn, _record) -> None:  # readers never wait for the one writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    upgrade(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session, session.begin():
        yield session


def scoped_idempotency_key(owner: str, key: str) -> str:
    """The stored form of a caller's Idempotency-Key: a digest of (user, key), so the one
    unique column holds each user's keys apart and B's key never finds A's job."""
    return hashlib.sha256(f"{owner}\x00{key}".encode()).hexdigest()


def create_job(
    *,
    session: Session,
    owner: str,
    kind: str,
    name: str | None,
    spec: dict,
    idempotency_key: str | None,
) -> JobRecord:
    job_id = new_job_id()
    record = JobRecord(
        id=job_id,
        owner=owner,
        kind=kind,
        name=name,
        spec=spec,
        state=JobState.PENDING.value,
        submission_id=f"selfie-{job_id}",
        idempotency_key=scoped_idempotency_key(owner, idempotency_key) if idempotency_key else None,
        created_at=utcnow(),
    )
    session.add(record)
    session.flush()  # IntegrityError here: another request holds the idempotency key
    return record


def delete_job(*, session: Session, job_id: str) -> None:
    record = session.get(JobRecord, job_id)
    if record is not None:
        session.delete(record)


def get_job(*, session: Session, job_id: str, owner: str | None = None) -> JobRecord | None:
    """The job, if it exists and (`owner` given) that user submitted it: another user's job
    reads as missing, so its id tells the caller nothing."""
    record = session.get(JobRecord, job_id)
    if record is None or (owner is not None and record.owner != owner):
        return None
    return record


def get_by_idempotency_key(*, session: Session, owner: str, key: str) -> JobRecord | None:
    scoped = scoped_idempotency_key(owner, key)
    return session.scalar(select(JobRecord).where(JobRecord.idempotency_key == scoped))


def unfinished_count(*, session: Session, owner: str) -> int:
    live = (JobState.PENDING.value, JobState.RUNNING.value)
    return session.scalar(
        select(func.count())
        .select_from(JobRecord)
        .where(JobRecord.owner == owner, JobRecord.state.in_(live))
    )


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
    owner: str | None = None,
    state: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[JobRecord], str | None]:
    """Newest first; keyset pagination on (created_at, id), stable under inserts. `owner`:
    only that user's jobs (None: everyone's, for admins)."""
    query = select(JobRecord)
    if owner is not None:
        query = query.where(JobRecord.owner == owner)
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
