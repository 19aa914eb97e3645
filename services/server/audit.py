"""The audit trail: one row per mutating call (who, what, which job, when, how it ended),
written in its own transaction so a refused call is recorded even though its own work is
rolled back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.server.account_models import AuditRecord
from services.server.api_keys import Principal
from services.server.job_models import utcnow

log = logging.getLogger(__name__)


@dataclass
class AuditEntry:
    job_id: str | None = None  # set inside the block when the job is made there (submit)


def record(
    sessions: sessionmaker[Session], who: str, action: str, job_id: str | None, outcome: str
) -> None:
    try:
        with sessions() as session, session.begin():
            session.add(
                AuditRecord(at=utcnow(), actor=who, action=action, job_id=job_id, outcome=outcome)
            )
    except Exception:  # the audit must not turn a done call into an error; the log keeps it
        log.exception("audit write failed: %s %s %s %s", who, action, job_id, outcome)


@contextmanager
def audited(
    sessions: sessionmaker[Session], who: Principal, action: str, job_id: str | None = None
) -> Iterator[AuditEntry]:
    entry = AuditEntry(job_id)
    try:
        yield entry
    except HTTPException as exc:
        record(sessions, who.user, action, entry.job_id, f"refused {exc.status_code}: {exc.detail}")
        raise
    except Exception as exc:
        record(sessions, who.user, action, entry.job_id, f"error: {type(exc).__name__}")
        raise
    record(sessions, who.user, action, entry.job_id, "ok")


def recent(*, session: Session, limit: int = 100) -> list[AuditRecord]:
    query = select(AuditRecord).order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
    return list(session.scalars(query.limit(limit)))
