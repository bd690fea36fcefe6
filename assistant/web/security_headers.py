"""A pure-ASGI middleware that gives every response baseline security headers.

Routes that know better set their own (the console and the widget frame send a full
Content-Security-Policy with their ``frame-ancestors``); this
only fills in what a response lacks, so it never weakens or overrides a route's choice:

- ``X-Content-Type-Options: nosniff`` everywhere: a JSON body that quotes a customer's
  ``<script>`` must never be sniffed into HTML.
- ``Referrer-Policy: no-referrer`` where none is set.
- For everything that is not an HTML page (JSON, errors, SSE, plain text):
  ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``. A browser that
  is tricked into rendering an API response as a document may run nothing and may not
  frame it.
- HTML pages without a policy of their own (FastAPI's ``/docs`` and ``/redoc``, which load
  Swagger UI and ReDoc from a CDN with inline scripts) only get ``frame-ancestors 'none'``:
  anything stricter would break them, and framing is the one thing they never need.

It only looks at ``http.response.start``; body chunks pass through untouched, so streamed
responses (Server-Sent Events) are neither buffered nor delayed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
PAGE_POLICY = "frame-ancestors 'none'"
REFERRER_POLICY = "no-referrer"


class SecurityHeaders:
    """ASGI middleware: add the baseline security headers a response does not carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_defaults(message.get("headers") or [])}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_defaults(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` (raw ASGI pairs) plus the defaults it lacks; existing values are kept."""
    present = {name.lower(): value for name, value in headers}
    added: list[tuple[bytes, bytes]] = []
    if b"x-content-type-options" not in present:
        added.append((b"x-content-type-options", b"nosniff"))
    if b"referrer-policy" not in present:
        added.append((b"referrer-policy", REFERRER_POLICY.encode()))
    if b"content-security-policy" not in present:
        media_type = present.get(b"content-type", b"").split(b";")[0].strip().lower()
        policy = PAGE_POLICY if media_type == b"text/html" else API_POLICY
        added.append((b"content-security-policy", policy.encode()))
    return [*headers, *added] if added else list(headers)
