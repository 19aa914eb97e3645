"""Jobs in three layers: the request (`JobCreate`), the table (`JobRecord`), the response
(`JobPublic`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import JSON, DateTime, Dialect, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from pipelines.specs import JOB_KINDS, JobKind

JobKindName = Literal[tuple(JOB_KINDS)]  # type: ignore[valid-type]


class JobState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no offset, so without this a job read
    back from the default store would carry naive times, which are not RFC 3339
    `date-time` values in the API and cannot be compared with `utcnow()`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("job times must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    # The user who submitted it (NULL: a job stored before users existed; admins only).
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200), index=True)
    spec: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str | None] = mapped_column(Text)
    submission_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Stored as `scoped_idempotency_key(owner, key)`: unique per user, not across users.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    result: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_jobs_created", "created_at", "id"),)


def new_job_id() -> str:
    return uuid.uuid4().hex


def _job_create_model(kind: JobKind) -> type[BaseModel]:
    """`{kind, spec, name}` for one job kind, its spec typed by the registry's model."""
    return create_model(
        f"{kind.spec.__name__.removesuffix('Spec')}JobCreate",
        __config__=ConfigDict(extra="forbid"),
        __doc__=kind.summary,
        kind=(Literal[kind.name], ...),
        spec=(kind.spec, ...),
        name=(str | None, Field(default=None, max_length=200)),
    )


JobCreate = Annotated[
    Union[tuple(_job_create_model(k) for k in JOB_KINDS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]
"""The body of POST /v1/jobs: one model per registered job kind, told apart by `kind`."""


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: JobKindName
    name: str | None
    owner: str | None = Field(default=None, description="The user who submitted it.")
    state: JobState
    message: str | None
    spec: dict[str, Any]
    submission_id: str
    mlflow_run_ids: list[str] = []
    result: dict[str, Any] | None
    created_at: datetime
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: JobRecord) -> JobPublic:
        public = cls.model_validate(record)
        result = record.result or {}
        ids: list[str] = []
        for key in ("mlflow_run_id", "pretrain_run_ids", "sweep_run_id"):
            value = result.get(key) or []
            ids += [str(v) for v in value] if isinstance(value, list) else [str(value)]
        public.mlflow_run_ids = ids
        return public


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")
