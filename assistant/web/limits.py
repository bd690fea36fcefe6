"""Pure-ASGI guards that refuse a request before any route sees it.

:class:`BodySizeLimit` refuses bodies over a size limit with 413: it checks
``Content-Length`` up front and counts streamed bytes too, so a chunked upload cannot get
around it; the body never reaches JSON parsing. :class:`RejectNul` refuses a NUL
character anywhere in the path or query with 422: PostgreSQL text cannot hold one, so an
id or filter carrying it could only fail deeper down, differently per database.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when the streamed body passes the limit. An HTTPException,
    so FastAPI's body parser passes it on (a 413) instead of calling the body malformed."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than {max_bytes} bytes")


class BodySizeLimit:
    """ASGI middleware: 413 for bodies larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_error(send, 413, "payload_too_large",
                         f"request body is larger than {self.max_bytes} bytes")


class RejectNul:
    """ASGI middleware: 422 for a NUL character in the path or the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope["query_string"].lower()
            or b"\x00" in scope["query_string"]
        ):
            await send_error(send, 422, "invalid_input",
                             "NUL characters are not allowed in paths or query strings")
            return
        await self.app(scope, receive, send)


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Send a JSON error in the project's shape (see ``errors.error_response``)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
