"""Keeping the job store true: poll Ray for every unfinished job and record what it says.

Runs in the service's background; after a restart it picks up where the store left off, so
no job is lost and each one's state becomes true again without a second submission. Each
job is updated in its own transaction: one job that cannot be read (its logs are gone, its
record is odd) is logged and skipped, and every other job's state still moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.server.job_backend import (
    BackendUnavailable,
    JobBackend,
    JobLogsMissing,
    parse_result,
)
from services.server.job_models import JobRecord, JobState, utcnow
from services.server.job_store import session_scope, set_state, unfinished_jobs
from services.server.log_lines import last_error_line

log = logging.getLogger(__name__)


# A job recorded but not handed to Ray within this long was lost between the two steps
# (the service died in between): it will never run.
UNSUBMITTED_GRACE = timedelta(minutes=2)


def reconcile_job(record: JobRecord, ray: JobBackend) -> None:
    if record.submitted_at is None:
        if utcnow() - record.created_at > UNSUBMITTED_GRACE:
            set_state(record, JobState.FAILED, message="the job never reached Ray; resubmit it")
        return
    status = ray.status(record.submission_id)
    if status.state is None:
        set_state(
            record,
            JobState.FAILED,
            message="Ray has no record of this job (its cluster was restarted); resubmit it",
        )
        return
    if status.state == record.state:
        return
    if status.state.finished:
        logs = ""  # gone or unreachable: the state is still recorded, without the result
        with contextlib.suppress(BackendUnavailable, JobLogsMissing):
            logs = ray.logs(record.submission_id)
        result = parse_result(logs)
        message = status.message
        if status.state == JobState.FAILED:
            message = last_error_line(logs) or status.message or "the job failed"
        set_state(record, status.state, message=message, result=result)
    else:
        set_state(record, status.state)


def reconcile_once(factory: sessionmaker[Session], ray: JobBackend) -> int:
    """Update every unfinished job, each in its own transaction; return how many were
    looked at. A backend that cannot be reached ends the tick (`BackendUnavailable`)."""
    with session_scope(factory) as session:
        job_ids = [record.id for record in unfinished_jobs(session=session)]
    for job_id in job_ids:
        try:
            with session_scope(factory) as session:
                record = session.get(JobRecord, job_id)
                # Re-read: a cancel or a delete may have come since the list was taken.
                if record is not None and not JobState(record.state).finished:
                    reconcile_job(record, ray)
        except BackendUnavailable:
            raise
        except Exception:
            log.exception("reconciling job %s failed; the other jobs go on", job_id)
    return len(job_ids)


async def reconcile_forever(factory: sessionmaker[Session], ray: JobBackend, every: float) -> None:
    while True:
        try:
            await asyncio.to_thread(reconcile_once, factory, ray)
        except BackendUnavailable as exc:
            log.warning("reconcile skipped: %s", exc)
        except Exception:  # keep the loop alive; the next tick retries
            log.exception("reconcile failed")
        await asyncio.sleep(every)
