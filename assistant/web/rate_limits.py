"""Per-conversation and per-IP request budgets for the customer API (429 when spent).

Fixed one-minute windows. :class:`RateLimiter` counts in memory: cheap, and enough to
stop one client from flooding a worker, but each server process counts its own requests,
so with N workers the budget is up to N times the setting. With ``ASSISTANT_REDIS_URL``
set, :class:`SharedRateLimiter` counts in Redis and every process spends one budget.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis
from fastapi import Request

from assistant.errors import RateLimited

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_MAX_KEYS = 100_000  # beyond this, the oldest windows are dropped (bounded memory)


class Limiter(Protocol):
    """Spends one request of a key's budget, or raises :class:`RateLimited`."""

    def hit(self, key: str, limit: int, what: str) -> None: ...


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


class SharedRateLimiter:
    """The same budgets counted in Redis (``INCR`` on a key per one-minute window), so
    every server process spends one budget.

    If Redis cannot be reached, each process falls back to counting its own requests (and
    logs it): a limit that is briefly per-process is better than refusing all traffic.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "assistant:rl:",
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._fallback = RateLimiter()

    def hit(self, key: str, limit: int, what: str) -> None:
        """Count one request for ``key`` in Redis (see :meth:`RateLimiter.hit`)."""
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        name = f"{self._prefix}{key}:{window}"
        try:
            pipe = self._client.pipeline()
            pipe.incr(name)
            pipe.expire(name, int(WINDOW_SECONDS) * 2)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            logger.warning("rate limits counted per process: Redis failed (%s)", exc)
            self._fallback.hit(key, limit, what)
            return
        if count > limit:
            wait = max(1, math.ceil(WINDOW_SECONDS - now % WINDOW_SECONDS))
            raise RateLimited(
                f"too many {what}: at most {limit} per minute; try again in {wait} seconds",
                retry_after=wait,
            )


def build_limiter(redis_url: str | None) -> Limiter:
    """The shared limiter when a Redis URL is configured, else the in-process one."""
    if redis_url:
        return SharedRateLimiter(redis.Redis.from_url(redis_url, socket_timeout=1.0,
                                                      socket_connect_timeout=1.0))
    return RateLimiter()


def client_ip(request: Request) -> str:
    """The peer address (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client else "unknown"
