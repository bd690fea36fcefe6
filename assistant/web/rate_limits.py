"""Per-conversation and per-IP request budgets for the customer API (429 when spent).

Fixed one-minute windows counted in memory: cheap, and enough to stop one client from
flooding a worker. Each server process counts its own requests, so with N workers the
effective budget is up to N times the setting (documented in the README).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from fastapi import Request

from assistant.errors import RateLimited

WINDOW_SECONDS = 60.0
_MAX_KEYS = 100_000  # beyond this, the oldest windows are dropped (bounded memory)


class RateLimiter:
    """Counts hits per key in fixed windows; refuses once a key exceeds its limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, what: str) -> None:
        """Count one request for ``key``.

        Raises:
            RateLimited: The key already used ``limit`` requests in this window.
        """
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= WINDOW_SECONDS:
                start, count = now, 0
            if count >= limit:
                wait = max(1, math.ceil(WINDOW_SECONDS - (now - start)))
                raise RateLimited(
                    f"too many {what}: at most {limit} per minute; try again in {wait} seconds",
                    retry_after=wait,
                )
            self._windows.pop(key, None)  # re-insert: the dict stays ordered by last use
            self._windows[key] = (start, count + 1)
            if len(self._windows) > _MAX_KEYS:
                del self._windows[next(iter(self._windows))]


def client_ip(request: Request) -> str:
    """The peer address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"
