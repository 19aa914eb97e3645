"""Two gates every request passes before FastAPI reads its body.

`Authenticate`: a request to the API (`/v1/...`) without a valid key is answered 401 from
its headers alone; FastAPI would parse a body before any dependency (auth included) ran.
`BodyLimit`: the body is counted as it arrives, chunked bodies included, and reading stops
with a 413 at the first byte over the limit; a `Content-Length` over it is refused unread.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.server.api_keys import Principal, authenticate

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "/v1/"
PRINCIPAL = "principal"  # where the caller is kept in the request's state


def _unauthorized(detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
    )


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" and key.strip() else None
    return None


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        key = _bearer(scope)
        if key is None:
            await _unauthorized("missing bearer key: send `Authorization: Bearer <key>`")(
                scope, receive, send
            )
            return
        service = scope["app"].state.service
        # One indexed read by the key's hash; on the loop, as the other fast reads are.
        try:
            with service.sessions() as session:
                who: Principal | None = authenticate(
                    session=session, presented=key, bootstrap_token=service.token
                )
        except SQLAlchemyError:
            log.exception("the job store did not answer a key lookup")
            response = JSONResponse(
                {"detail": "the job store is unreachable, so keys cannot be checked: retry"},
                status.HTTP_503_SERVICE_UNAVAILABLE,
            )
            await response(scope, receive, send)
            return
        if who is None:
            await _unauthorized(
                "the bearer key is not valid (unknown, revoked or expired): ask an admin for one"
            )(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = who
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body over the {self.max_bytes}-byte limit"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse(
                {"detail": self._too_large()}, status.HTTP_413_CONTENT_TOO_LARGE
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI lets an HTTPException raised while reading the body through
                    # to the error handlers: the caller gets this 413, not a parse error.
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._too_large())
            return message

        await self.app(scope, counted, send)
