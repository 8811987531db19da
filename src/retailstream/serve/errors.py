"""One error shape for every failure: `{"error": "<code>", "detail": ...}`.

Clients (and the dashboard) branch on `error`, a stable snake_case code, and
show `detail` to people. Bad input is always a 4xx with a reason; only a
failure of the server itself is a 5xx (503 when a dependency is away, so a
client knows to retry).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from retailstream.views.stores import STORE_ERRORS

log = logging.getLogger("retailstream.serve")


class ErrorBody(BaseModel):
    """What every error answer holds (documented in OpenAPI)."""

    error: str
    detail: Any = None


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request and rendered as JSON."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _code(status: int) -> str:
    """`404` -> `not_found`: the HTTP reason phrase as an error code."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # loc/msg/type only: `input` may be large and `ctx` may hold exception objects.
    problems = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": error.get("msg"),
         "type": error.get("type")}
        for error in exc.errors()
    ]  # fmt: skip
    return error_response(422, "invalid_request", problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.method} {request.url.path}"
    return error_response(exc.status_code, _code(exc.status_code), detail, exc.headers)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("serving store failed on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "store_unavailable", "the serving store cannot be read right now; retry shortly",
        {"Retry-After": "2"},
    )  # fmt: skip


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected failure on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an unexpected error occurred; it was logged")


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure, expected or not, as the JSON error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in STORE_ERRORS:
        app.add_exception_handler(error, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
