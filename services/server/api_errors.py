"""One error body for every 4xx/5xx the service sends, documented in the OpenAPI schema.

Clients (and schemathesis) read `detail` as one sentence naming what was wrong; request
validation adds `errors`, one entry per offending field.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    message: str


class ApiError(BaseModel):
    detail: str
    errors: list[FieldError] | None = None


_WHY = {
    400: "The body is not JSON.",
    401: "No bearer key, or one unknown, revoked or expired.",
    403: "The key's scope does not allow this (read-only, or not an admin).",
    404: "No such job (or not yours), experiment, run, artifact or user.",
    409: "The job's state, or another user's run or data, does not allow this.",
    413: "The request body is over the size limit.",
    422: "A field is invalid or over a limit; `detail` names it.",
    429: "You have as many unfinished jobs as the service allows one user.",
    503: "Ray (or another backend) is unreachable; nothing was changed.",
}


_UNPARSED_BODY = "There was an error parsing the body"  # FastAPI's words for a body it can't decode


def error_responses(*codes: int, text_route: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these status codes, all with the `ApiError` body.

    `text_route`: for a route whose success is text/plain. FastAPI files a `model` under the
    route's media type, so there the JSON body is referenced explicitly instead (the other
    routes register the `ApiError` schema)."""
    if text_route:
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
        return {code: {"content": body, "description": _WHY[code]} for code in codes}
    return {code: {"model": ApiError, "description": _WHY[code]} for code in codes}


def _allowed_methods(request: Request) -> str:
    """Every method the path supports, read from the OpenAPI paths. Starlette's own 405
    names only the methods of the first route matching the path, while one path
    (`/v1/jobs/{id}`: GET and DELETE) may be served by several routes."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        pattern, _, _ = compile_path(template)
        if pattern.match(request.url.path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods))


def _field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "body", "message": msg})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(
            jsonable_encoder({"detail": f"{first['field']}: {first['message']}", "errors": errors}),
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        detail = exc.detail
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            headers["Allow"] = _allowed_methods(request)
        elif exc.status_code == status.HTTP_400_BAD_REQUEST and detail == _UNPARSED_BODY:
            detail = "body: not valid JSON; send UTF-8 JSON with Content-Type: application/json"
        return JSONResponse({"detail": detail}, exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see the service log"},
            status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
