"""The reconciler on the real local job backend and a real SQLite job store: one job whose
logs are gone does not hold back the others; and one definition of an error line."""

from __future__ import annotations

import time

from services.client.job_view import JobView
from services.server.job_models import JobRecord, JobState
from services.server.job_store import (
    create_job,
    make_engine,
    session_factory,
    session_scope,
)
from services.server.local_backend import LocalProcessJobs
from services.server.log_lines import last_error_line
from services.server.reconciler import reconcile_once
from services.server.settings import ServiceSettings


def _submit(factory, jobs: LocalProcessJobs, spec: dict) -> tuple[str, str]:
    with session_scope(factory) as session:
        record = create_job(session=session, owner="admin", kind="ingest", name=None, spec=spec,
                            idempotency_key=None)  # fmt: skip
        job_id, submission_id = record.id, record.submission_id
        jobs.submit(submission_id=submission_id, kind="ingest", spec=spec)
        record.submitted_at = record.created_at
    return job_id, submission_id


def test_a_job_whose_logs_are_gone_does_not_block_the_others(tmp_path) -> None:
    settings = ServiceSettings(workdir=tmp_path / "work", data_roots=[tmp_path])
    factory = session_factory(make_engine(f"sqlite:///{tmp_path / 'jobs.db'}"))
    jobs = LocalProcessJobs(settings)
    submitted = [
        _submit(factory, jobs, {"source": "synthetic:40", "out": str(tmp_path / f"d{i}")})
        for i in range(2)
    ]
    deadline = time.time() + 120
    while not all((jobs.root / f"{sid}.exit").is_file() for _, sid in submitted):
        assert time.time() < deadline, "the ingest jobs never ended"
        time.sleep(0.3)
    (gone_id, gone_sid), (kept_id, _) = submitted
    for suffix in ("log", "pid"):  # its logs cleaned away: the backend no longer has them
        (jobs.root / f"{gone_sid}.{suffix}").unlink()

    assert reconcile_once(factory, jobs) == 2

    with session_scope(factory) as session:
        kept, gone = session.get(JobRecord, kept_id), session.get(JobRecord, gone_id)
        assert kept.state == JobState.SUCCEEDED and kept.result["counts"]["train"] > 0
        assert gone.state == JobState.SUCCEEDED and gone.result is None


LOG = """\
2026-11-30 12:00:01 INFO worker.py:1 -- Started a local Ray instance.
(TrainController pid=7) Failed to query Ray Train Controller actor state. Error
Traceback (most recent call last):
  File "x.py", line 3, in <module>
ValueError: shard 3 is truncated
error: data dir 'd' changed since ingest: ingest it again
SELFIE_RESULT {"ok": true}
"""


def test_the_service_and_the_client_agree_on_what_an_error_line_is() -> None:
    view = JobView()
    shown = view.feed(LOG)
    assert shown == ["ValueError: shard 3 is truncated", "error: data dir 'd' changed since "
                     "ingest: ingest it again"]  # fmt: skip
    assert last_error_line(LOG) == shown[-1]
    assert last_error_line(LOG.replace("error: data", "data")) == shown[0]
