"""Request dependencies, as `Annotated` aliases so routes read like prose."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session, sessionmaker

from services.server.job_backend import JobBackend
from services.server.metrics import ServiceMetrics
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

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), state.token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the bearer token is not valid")


AuthDep = Depends(require_token)
