"""The tables behind users: API keys (one active per user), the audit trail of every
mutating call, and who owns each MLflow run name and each data dir a job wrote.

They share the job table's `Base`, so `make_engine` creates them beside it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.server.job_models import Base, UTCDateTime, utcnow


class Scope(StrEnum):
    """What a key may do: `admin` everything and every job; `user` submit and manage its own
    jobs; `read_only` list, get and read the logs of its own jobs and browse MLflow."""

    ADMIN = "admin"
    USER = "user"
    READ_ONLY = "read_only"


class ApiKeyRecord(Base):
    """One API key. Only the key's sha256 is stored: the key is shown once, at creation."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditRecord(Base):
    """Who did what to which job, when, and how it ended (`ok`, or the refusal's status)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(36), index=True)
    outcome: Mapped[str] = mapped_column(Text)


class RunNameRecord(Base):
    """The user who first submitted a job naming this MLflow run (per experiment)."""

    __tablename__ = "run_names"

    experiment: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DataDirRecord(Base):
    """The user whose job first wrote this data dir. Keyed by the sha256 of the resolved
    path: a path may be 4,096 characters, longer than PostgreSQL indexes."""

    __tablename__ = "data_dirs"

    path_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


Index("ix_audit_at", AuditRecord.at)
