"""Request dependencies, as `Annotated` aliases so routes read like prose."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

from services.server import audit
from services.server.api_keys import Principal
from services.server.job_backend import JobBackend
from services.server.metrics import ServiceMetrics
from services.server.request_guard import PRINCIPAL
from services.server.settings import ServiceSettings


@dataclass
class ServiceState:
    """What the app holds for its lifetime (built in the lifespan, read by dependencies)."""

    settings: ServiceSettings
    sessions: sessionmaker[Session]
    jobs: JobBackend
    mlflow: MlflowClient
    token: str
    metrics: ServiceMetrics


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session, session.begin():
        yield session


# scope="function": the transaction commits before the response leaves, so a client that
# reads right after a 2xx sees its own write (the default scope commits after sending).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_read_session(state: StateDep) -> AsyncIterator[Session]:
    """A session for endpoints that only read, used on the event loop itself.

    A read of the job store takes a fraction of a millisecond and never waits for the
    writer (SQLite in WAL mode), while handing it to the threadpool and back costs more
    than the query and lets reads queue behind slow Ray calls there. Anything that writes,
    and so may wait on the database's write lock, takes `SessionDep` in the threadpool."""
    with state.sessions() as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]

# Documents the scheme in OpenAPI; the key itself is checked by `request_guard.Authenticate`
# before the body is read, and the caller it found waits in the request's state.
_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    who = getattr(request.state, PRINCIPAL, None)
    if who is None:  # a route outside /v1 asked for a user: refuse rather than guess
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return who


UserDep = Annotated[Principal, Depends(current_user)]
AuthDep = Depends(current_user)


def writing_user(who: UserDep, state: StateDep, request: Request) -> Principal:
    """The caller, if its key may write; a read-only key's attempt is refused and audited
    (the route's own audit never runs for it)."""
    if not who.may_write:
        detail = (
            f"user {who.user!r} has a read-only key: it may list and read jobs, not change them"
        )
        action = f"{request.method} {request.url.path}"[:32]
        audit.record(state.sessions, who.user, action, None, f"refused 403: {detail}")
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail)
    return who


async def admin_user(who: UserDep) -> Principal:
    if not who.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin key")
    return who


WriterDep = Annotated[Principal, Depends(writing_user)]
AdminDep = Annotated[Principal, Depends(admin_user)]
