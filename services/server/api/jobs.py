"""/v1/jobs: submit typed specs, list, inspect, follow logs, cancel, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, HTTPException, Query, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError

from pipelines.specs.paths import Confinement, PathOutsideRoots, confine
from services.server.api_errors import error_responses
from services.server.api_keys import Principal
from services.server.audit import audited
from services.server.deps import AuthDep, ReadSessionDep, SessionDep, StateDep, UserDep, WriterDep
from services.server.job_backend import BackendUnavailable, JobLogsMissing
from services.server.job_models import (
    JobCreate,
    JobKindName,
    JobList,
    JobPublic,
    JobRecord,
    JobState,
    utcnow,
)
from services.server.job_store import (
    create_job,
    delete_job,
    get_by_idempotency_key,
    get_job,
    list_jobs,
    session_scope,
    set_state,
    unfinished_count,
)
from services.server.limits import LimitExceeded, check_limits
from services.server.log_limits import idle_limited
from services.server.ownership import NotYours, claim

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    dependencies=[AuthDep],
    responses=error_responses(401, 403, 422),
)
# Scopes: every route needs a valid key (AuthDep); submit, cancel and delete a key that may
# write (WriterDep); a user sees and changes only the jobs it submitted, an admin all.


def _check_paths(job: JobCreate, confinement: Confinement) -> None:
    """Every path the spec names, found from its types, must lie under the data roots (the
    job entry checks again on its node)."""
    try:
        confine(job.spec, confinement)
    except PathOutsideRoots as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"spec.{exc}") from None


def _found(session, job_id: str, who: Principal) -> JobRecord:
    """The job if the caller may see it: an admin any, a user their own. Another user's job
    answers 404 like a missing one, so ids do not leak."""
    record = get_job(session=session, job_id=job_id, owner=None if who.admin else who.user)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return record


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobPublic,
    responses={
        200: {"model": JobPublic, "description": "An earlier job with this Idempotency-Key."},
        **error_responses(400, 409, 413, 429, 503),
    },
)
def submit_job(
    job: Annotated[JobCreate, Body()],
    state: StateDep,
    who: WriterDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Validate a spec, record the job, and hand it to Ray Jobs. A repeated
    `Idempotency-Key` (per user) returns that user's first job (200) instead of a second.

    The record is committed before Ray sees the job, so an accepted job is never lost."""
    with audited(state.sessions, who, f"submit {job.kind}") as entry:
        public = _submit(job, state, who, response, idempotency_key)
        entry.job_id = public.id
        return public


def _submit(
    job: JobCreate, state, who: Principal, response: Response, idempotency_key: str | None
) -> JobPublic:
    def existing() -> JobPublic | None:
        if not idempotency_key:
            return None
        with session_scope(state.sessions) as session:
            found = get_by_idempotency_key(session=session, owner=who.user, key=idempotency_key)
            return JobPublic.from_record(found) if found else None

    if (first := existing()) is not None:
        response.status_code = status.HTTP_200_OK
        return first
    _check_paths(job, state.settings.confinement())
    try:
        check_limits(job.spec, state.settings)
    except LimitExceeded as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    limit = state.settings.max_unfinished_jobs_per_user
    with session_scope(state.sessions) as session:
        if unfinished_count(session=session, owner=who.user) >= limit:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"user {who.user!r} has {limit} unfinished jobs, this service's limit "
                "(SELFIE_MAX_UNFINISHED_JOBS_PER_USER): wait for one to finish or cancel one",
            )
    if not state.jobs.reachable():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the job runner at {state.jobs.url} is unreachable: no job was created; retry "
            "when it is back",
        )
    spec = job.spec.model_dump(mode="json")
    try:
        with session_scope(state.sessions) as session:
            claim(session, who, job.spec)
            record = create_job(
                session=session,
                owner=who.user,
                kind=job.kind,
                name=job.name,
                spec=spec,
                idempotency_key=idempotency_key,
            )
            public = JobPublic.from_record(record)
    except NotYours as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except IntegrityError:
        if (first := existing()) is None:
            raise
        response.status_code = status.HTTP_200_OK
        return first
    try:
        state.jobs.submit(submission_id=public.submission_id, kind=job.kind, spec=spec)
    except BackendUnavailable as exc:
        with session_scope(state.sessions) as session:
            delete_job(session=session, job_id=public.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"{exc}: no job was created; retry later"
        ) from None
    with session_scope(state.sessions) as session:
        record = get_job(session=session, job_id=public.id)
        record.submitted_at = utcnow()
        return JobPublic.from_record(record)


@router.get("", response_model=JobList)
async def list_all(
    session: ReadSessionDep,
    who: UserDep,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    kind: Annotated[JobKindName | None, Query()] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JobList:
    """Newest first, with cursor pagination: the caller's own jobs (an admin's: all)."""
    try:
        rows, next_cursor = list_jobs(
            session=session,
            owner=None if who.admin else who.user,
            state=state.value if state else None,
            kind=kind,
            name=name,
            limit=limit,
            cursor=cursor,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"cursor: {exc}") from None
    return JobList(items=[JobPublic.from_record(r) for r in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobPublic, responses=error_responses(404))
async def get_one(job_id: str, session: ReadSessionDep, who: UserDep) -> JobPublic:
    return JobPublic.from_record(_found(session, job_id, who))


@router.get(
    "/{job_id}/logs",
    response_class=PlainTextResponse,
    responses=error_responses(401, 403, 404, 422, 503, text_route=True),
)
def logs(
    job_id: str,
    state: StateDep,
    session: SessionDep,
    who: UserDep,
    follow: bool = False,
    tail: Annotated[int | None, Query(ge=1, le=100_000, description="Last N lines.")] = None,
):
    """The job's output; `follow=true` streams it until the job ends (or its output has
    been idle for SELFIE_FOLLOW_IDLE_SECONDS); `tail` reads only the end of the log. A
    finished job's log is whole already: a follow of it is answered like a read, at once
    (Ray's tail of an ended job closes only after ~5 s of polling)."""
    record = _found(session, job_id, who)
    settings = state.settings
    try:
        if follow and not JobState(record.state).finished:
            if state.jobs.status(record.submission_id).state is None:  # 404, not a cut stream
                raise JobLogsMissing.of(record.submission_id)
            chunks = state.jobs.follow_logs(record.submission_id)
            return StreamingResponse(
                idle_limited(chunks, settings.follow_idle_seconds), media_type="text/plain"
            )
        if tail:
            text = state.jobs.tail_logs(record.submission_id, tail, settings.max_log_tail_bytes)
        else:
            text = state.jobs.logs(record.submission_id)
    except JobLogsMissing as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except BackendUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return PlainTextResponse(text)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=error_responses(404, 503))
def cancel(job_id: str, state: StateDep, session: SessionDep, who: WriterDep) -> JobPublic:
    """Stop a pending or running job (a finished job is returned unchanged)."""
    with audited(state.sessions, who, "cancel", job_id):
        record = _found(session, job_id, who)
        if JobState(record.state).finished:
            return JobPublic.from_record(record)
        try:
            state.jobs.stop(record.submission_id)
        except BackendUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        set_state(record, JobState.STOPPED, message=f"cancelled by {who.user}")
        return JobPublic.from_record(record)


@router.delete(
    "/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409)
)
def delete(job_id: str, state: StateDep, session: SessionDep, who: WriterDep) -> Response:
    """Forget a finished job (its MLflow runs stay)."""
    with audited(state.sessions, who, "delete", job_id):
        record = _found(session, job_id, who)
        if not JobState(record.state).finished:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"job {job_id!r} is {record.state}: cancel it first"
            )
        session.delete(record)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
