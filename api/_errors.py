"""HTTP-only errors and the one handler that turns every error into a JSON body.

Bodies are ``{"error": code, "message": ..., "details": {...}}`` whatever went wrong:
a :class:`provml.errors.ProvmlError` (its ``code`` and ``http_status``), a request that
does not match the OpenAPI schema (``invalid_request``, 422), an unknown route, or an
unexpected exception (``internal_error``, 500, logged with its traceback).

Imports: FastAPI/Starlette and ``provml.errors``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from provml.errors import ProvmlError, StoreUnavailable

#: Seconds a client is asked to wait before retrying a 503 of an unavailable store.
RETRY_AFTER_SECONDS = 2

logger = logging.getLogger("provml.api")


class Unauthorized(ProvmlError):
    """No bearer token where one is needed."""

    code = "unauthorized"
    http_status = 401


class Forbidden(ProvmlError):
    """A bearer token that does not grant this request."""

    code = "forbidden"
    http_status = 403


class PayloadTooLarge(ProvmlError):
    code = "payload_too_large"
    http_status = 413


class NotAcceptable(ProvmlError):
    """No representation matches the request's Accept header."""

    code = "not_acceptable"
    http_status = 406


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details or {}}


def _encodable(value: Any) -> Any:
    """``value`` with lone surrogates replaced, so the body can be written as UTF-8.

    An error about a record often quotes the record's id, and the id that was refused
    for holding a lone surrogate must not make the error answer itself fail.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def _provml_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvmlError)
    headers: dict[str, str] = {}
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="provml"'
    if isinstance(exc, StoreUnavailable):
        # The store is down or busy: clients (the capture exporter, load balancers)
        # should come back, not give up.
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if exc.http_status >= 500:
        logger.warning("provml: %s %s: %s", request.method, request.url.path, exc.message)
    return JSONResponse(
        _encodable(exc.to_dict()), status_code=exc.http_status, headers=headers or None
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": ".".join(str(p) for p in error.get("loc", ())),
            "problem": error.get("msg", ""),
        }
        for error in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems) or "invalid request"
    return JSONResponse(
        _encodable(error_body("invalid_request", message, {"errors": problems})), status_code=422
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail), {"path": request.url.path}),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("provml: %s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", f"the server failed: {type(exc).__name__}"),
        status_code=500,
    )


def install_handlers(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""
    app.add_exception_handler(ProvmlError, _provml_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class RowLimitExceeded(ProvmlError):
    """A SPARQL answer has more rows than the endpoint's limit."""

    code = "row_limit_exceeded"
    http_status = 400
