"""Errors in the OpenAI API's own shape: `{"error": {"message", "type", "param", "code"}}`.

Handlers raise `ApiError` (or FastAPI's own validation errors happen); one set of exception
handlers turns every failure into that body with the right status, so no handler builds one.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from qfleet.tasks.errors import BrokerUnavailableError, InvalidJobError

log = logging.getLogger("qfleet.gateway")

# The `type` OpenAI gives each status class; clients switch on status, people read `type`.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class ErrorDetail(BaseModel):
    """The inner object of an OpenAI error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """An OpenAI error body."""

    error: ErrorDetail


class ApiError(Exception):
    """A failure answered with an OpenAI-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON response for one error."""
    detail = ErrorDetail(
        message=message, type=ERROR_TYPES.get(status, "api_error"), param=param, code=code
    )
    return JSONResponse(
        ErrorResponse(error=detail).model_dump(mode="json"), status_code=status, headers=headers
    )


def _param(loc: tuple[Any, ...]) -> str | None:
    # FastAPI locations start with where the value came from ("body", "query", ...).
    parts = [str(p) for p in loc[1:] if not isinstance(p, int)] or [str(p) for p in loc]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure of `app` in the OpenAI error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON", code="invalid_json")
        loc = tuple(first.get("loc", ()))
        message = f"{'.'.join(map(str, loc[1:])) or 'body'}: {first.get('msg', 'invalid value')}"
        return error_response(400, message, param=_param(loc), code="invalid_value")

    @app.exception_handler(InvalidJobError)
    async def _invalid_job(_: Request, exc: InvalidJobError) -> JSONResponse:
        return error_response(400, str(exc), code="invalid_job")

    @app.exception_handler(BrokerUnavailableError)
    async def _broker(_: Request, exc: BrokerUnavailableError) -> JSONResponse:
        log.warning("broker unavailable: %s", exc)
        return error_response(503, "the job queue is unavailable; try again", code="unavailable")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        if exc.status_code == 405:
            return error_response(405, "method not allowed", code="method_not_allowed")
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the gateway")
        return error_response(500, "internal error", code="internal_error")
