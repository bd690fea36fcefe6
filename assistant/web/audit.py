"""Writes every state-changing staff request to the audit log, whatever its outcome.

A pure ASGI middleware: the ``staff`` dependency names the caller on the request state;
after the response has been sent, a POST/PUT/PATCH/DELETE with a named caller becomes an
audit entry: actor, method and route template, the path's ids, and the outcome. Request
bodies (reply text, notes) are never recorded. Routes that write a fuller entry of their
own (erasure) set ``audited`` on the request state and are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.runtime import Runtime

logger = logging.getLogger(__name__)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def outcome_of(status: int) -> str:
    """``ok`` for 1xx-3xx, ``denied`` for 401/403, ``failed`` otherwise."""
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


class AuditMiddleware:
    """Records staff mutations in the audit log (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            state: dict[str, Any] = scope.get("state") or {}
            actor = state.get("audit_actor")
            if actor and not state.get("audited"):
                runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
                if runtime is not None:
                    await to_thread.run_sync(_write, runtime, scope, actor, status)


def _write(runtime: Runtime, scope: Scope, actor: str, status: int) -> None:
    try:
        _append(runtime, scope, actor, status)
    except Exception:  # the response is out; a failed audit write must not hide it
        logger.exception("could not write the audit entry for %s %s", scope["method"],
                         scope["path"])


def _append(runtime: Runtime, scope: Scope, actor: str, status: int) -> None:
    route = scope.get("route")
    template = getattr(route, "path", None) or scope["path"]
    params = scope.get("path_params") or {}
    target = ",".join(f"{k}={_printable(str(v))}" for k, v in sorted(params.items())) or None
    runtime.privacy.audit(actor, f"{scope['method']} {template}", target=target,
                          outcome=outcome_of(status), details={"status": status})


def _printable(value: str) -> str:
    # PostgreSQL text cannot hold NUL: control characters are escaped, not dropped.
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value)
