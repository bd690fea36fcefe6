"""Agent sign-in for the console: password check, lockout, sessions and CSRF tokens.

Sessions are random 256-bit tokens kept in an HttpOnly cookie and stored hashed, like
every other credential. The CSRF token is derived from the session token, so the console
can put it in a page while a cross-site attacker, who cannot read the cookie, cannot
compute it. No HTTP here: the web layer sets and reads the cookie.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from assistant.errors import RateLimited, Unauthorized
from assistant.identity import hash_token
from assistant.passwords import hash_password, verify_password
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.records import AgentRecord

logger = logging.getLogger(__name__)

MAX_FAILURES = 5  # wrong passwords per email before a lockout
LOCKOUT_SECONDS = 300.0



@functools.cache
def _dummy_hash() -> str:
    # Verified against when the email is unknown, so a wrong email costs as long as a
    # wrong password and response times do not reveal which accounts exist.
    return hash_password(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class SignedIn:
    """A new console session: the token goes into the cookie, never into a URL."""

    agent: AgentRecord
    session_token: str
    expires_at: datetime


def csrf_token(session_token: str) -> str:
    """The CSRF token that belongs to a session (sent back in ``X-CSRF-Token``)."""
    return hmac.new(session_token.encode(), b"csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, candidate: str | None) -> bool:
    """Whether ``candidate`` is the session's CSRF token (constant time)."""
    return candidate is not None and hmac.compare_digest(csrf_token(session_token), candidate)


class _Lockout:
    """Failed sign-ins per email within a window; in-process (each worker counts its own)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        with self._lock:
            recent = self._recent(key)
            if len(recent) >= MAX_FAILURES:
                wait = int(LOCKOUT_SECONDS - (self._clock() - recent[0])) + 1
                raise RateLimited(f"too many failed sign-ins; try again in {wait} seconds")

    def fail(self, key: str) -> None:
        with self._lock:
            self._failures[key] = [*self._recent(key), self._clock()]

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> list[float]:
        cutoff = self._clock() - LOCKOUT_SECONDS
        return [t for t in self._failures.get(key, []) if t > cutoff]


class SharedLockout:
    """Failed sign-ins counted in Redis, so a guesser cannot spread attempts over server
    processes. The email is kept only as a sha256. Without Redis (an error), the process
    falls back to counting its own failures."""

    def __init__(self, client: redis.Redis, *, prefix: str = "assistant:signin:") -> None:
        self._client = client
        self._prefix = prefix
        self._fallback = _Lockout(time.monotonic)

    def _name(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode()).hexdigest()

    def check(self, key: str) -> None:
        try:
            failures = int(self._client.get(self._name(key)) or 0)
            wait = int(self._client.ttl(self._name(key)))
        except redis.RedisError as exc:
            logger.warning("sign-in lockout counted per process: Redis failed (%s)", exc)
            self._fallback.check(key)
            return
        if failures >= MAX_FAILURES:
            raise RateLimited(f"too many failed sign-ins; try again in {max(wait, 1)} seconds")

    def fail(self, key: str) -> None:
        name = self._name(key)
        try:
            pipe = self._client.pipeline()
            pipe.incr(name)
            # The window starts at the first failure (NX: later failures do not extend it).
            pipe.expire(name, int(LOCKOUT_SECONDS), nx=True)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("sign-in lockout counted per process: Redis failed (%s)", exc)
            self._fallback.fail(key)

    def clear(self, key: str) -> None:
        try:
            self._client.delete(self._name(key))
        except redis.RedisError:
            self._fallback.clear(key)


class AgentAuth:
    """Signs agents in and out of the console and finds the agent behind a session."""

    def __init__(
        self,
        handoffs: HandoffStore,
        *,
        session_hours: float = 12.0,
        clock: Callable[[], float] = time.monotonic,
        redis_url: str | None = None,
    ) -> None:
        self._handoffs = handoffs
        self._session_length = timedelta(hours=session_hours)
        self._lockout: _Lockout | SharedLockout = (
            SharedLockout(redis.Redis.from_url(redis_url, socket_timeout=1.0,
                                               socket_connect_timeout=1.0))
            if redis_url else _Lockout(clock)
        )

    def sign_in(self, email: str, password: str) -> SignedIn:
        """Check the password and open a session; the agent is marked online.

        Raises:
            RateLimited: Too many recent failures for this email.
            Unauthorized: Wrong email or password, or a deactivated account (one message
                for all, so accounts cannot be probed).
        """
        key = email.strip().lower()
        self._lockout.check(key)
        agent = self._handoffs.agent_by_email(key)
        stored = agent.password_hash if agent is not None else _dummy_hash()
        if not verify_password(password, stored) or agent is None or not agent.active:
            self._lockout.fail(key)
            raise Unauthorized("wrong email or password")
        self._lockout.clear(key)
        token = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC) + self._session_length
        self._handoffs.create_session(agent.id, hash_token(token), expires_at)
        agent = self._handoffs.set_online(agent.id, True)
        return SignedIn(agent=agent, session_token=token, expires_at=expires_at)

    def agent_for(self, session_token: str) -> AgentRecord | None:
        """The active agent whose session this is, or ``None`` (unknown or expired)."""
        agent = self._handoffs.agent_for_session(hash_token(session_token), datetime.now(UTC))
        return agent if agent is not None and agent.active else None

    def sign_out(self, session_token: str) -> None:
        """End the session; the agent goes offline unless signed in elsewhere too."""
        agent = self.agent_for(session_token)
        self._handoffs.delete_session(hash_token(session_token))
        if agent is not None and not self._handoffs.live_sessions(agent.id, datetime.now(UTC)):
            self._handoffs.set_online(agent.id, False)
