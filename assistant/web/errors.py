"""The one place where errors become HTTP responses.

Every error body has the same shape, ``{"error": {"code": ..., "message": ...}}``, with a
message a developer can act on. Unexpected exceptions become a 500 without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from assistant.errors import (
    AssistantError,
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from assistant.web.security_headers import API_POLICY, REFERRER_POLICY

logger = logging.getLogger(__name__)

_STATUS: list[tuple[type[AssistantError], int, str]] = [
    (IdempotencyMismatch, 422, "idempotency_key_reused"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (RateLimited, 429, "rate_limited"),
]


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error response in the project's shape."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, BaseRoute) and route.matches(scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(AssistantError)
    async def _domain(_: Request, exc: AssistantError) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                response = error_response(status, code, str(exc))
                if isinstance(exc, RateLimited) and exc.retry_after is not None:
                    response.headers["Retry-After"] = str(exc.retry_after)
                return response
        logger.error("unmapped domain error: %r", exc)
        return error_response(500, "internal_error", "the server failed to handle the request")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        return error_response(
            422, "validation_error", f"invalid request: {summary}", details=details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's words for invalid UTF-8 and JSON nested past the parser's limit.
            return error_response(
                422, "malformed_body",
                "request body is not valid JSON: send UTF-8 encoded JSON without deep nesting",
            )
        code = {
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only.
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        response = error_response(500, "internal_error", "the server failed to handle the request")
        # Starlette sends this response from its outermost middleware, outside
        # SecurityHeaders: set the API's headers here.
        response.headers.update({
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": REFERRER_POLICY,
            "Content-Security-Policy": API_POLICY,
        })
        return response
