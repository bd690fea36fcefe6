"""Outbound webhooks: signed POSTs of health signals, retried with backoff.

The health projector writes one ``webhook_deliveries`` row per configured URL per signal
(``customer.at_risk``, ``churn.signal``, ``conversation.handed_off``);
:class:`WebhookSender` claims the due rows (:mod:`assistant.storage.webhook_repo`), POSTs
each one and records the outcome; :class:`WebhookWorker` runs the sender in a background
thread of the server.

Every body is signed Stripe-style: ``X-Assistant-Signature: sha256=<hex>`` where the hex is
HMAC-SHA256, keyed with the webhook secret, of ``"<timestamp>." + body`` and the timestamp
travels in ``X-Assistant-Timestamp``. Signing the timestamp lets receivers refuse replays
of an old, captured request (:func:`verify` does both checks). Signals carry customer
data, so without a secret nothing is sent: deliveries wait in the outbox until one is
configured.

A 2xx answer delivers; anything else (another status, a timeout, a connection error) is
retried after ``30 s × 2^(attempt-1)`` (capped at 6 h, ±20% jitter), or after the
``Retry-After`` of a 429 or 503; after ``max_attempts`` attempts the delivery is failed.
Redirects are not followed (a 3xx is a failure): a receiver's URL should be its final one.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from assistant.config import Settings
from assistant.errors import ConfigurationError, InvalidInput
from assistant.storage.webhook_repo import DEFAULT_LEASE_SECONDS, DeliveryRecord, WebhookStore

logger = logging.getLogger(__name__)

USER_AGENT = "assistant-webhooks/1"
EVENT_HEADER = "X-Assistant-Event"
DELIVERY_HEADER = "X-Assistant-Delivery"
TIMESTAMP_HEADER = "X-Assistant-Timestamp"
SIGNATURE_HEADER = "X-Assistant-Signature"
SIGNATURE_PREFIX = "sha256="

BASE_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 6 * 3600.0
JITTER = 0.2
#: Statuses whose ``Retry-After`` header sets the next attempt instead of the backoff.
RETRY_AFTER_STATUSES = frozenset({429, 503})
DEFAULT_TOLERANCE_SECONDS = 300

#: Deliveries claimed per transaction; their lease covers sending all of them.
CLAIM_BATCH = 5
#: Safety margin of a lease over the time its batch may take.
LEASE_MARGIN_SECONDS = 15.0
#: Worst case of one POST in multiples of the timeout (connect, write and read each
#: have ``timeout`` of their own).
_TIMEOUTS_PER_POST = 3


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature of one delivery: hex HMAC-SHA256 of ``f"{timestamp}."`` + body.

    Args:
        secret: The webhook secret (``ASSISTANT_WEBHOOK_SECRET``).
        timestamp: Unix seconds, as sent in ``X-Assistant-Timestamp``.
        body: The exact request body bytes.

    Returns:
        64 lowercase hex characters (sent as ``X-Assistant-Signature: sha256=<hex>``).
    """
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Check a delivery as a receiver should: signature and freshness.

    Args:
        secret: The shared webhook secret.
        timestamp: The ``X-Assistant-Timestamp`` header (unix seconds).
        body: The raw request body, before any JSON parsing.
        signature: The ``X-Assistant-Signature`` header, with or without ``sha256=``.
        tolerance_seconds: How far the timestamp may be from ``now`` (either way).
        now: The current unix time; defaults to the system clock.

    Returns:
        Whether the signature matches (compared in constant time) and the timestamp is
        within the tolerance.
    """
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance_seconds:
        return False
    given = signature.strip()
    if given.startswith(SIGNATURE_PREFIX):
        given = given[len(SIGNATURE_PREFIX):]
    expected = sign(secret, stamp, body)
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1 for the first).

    ``30 s × 2^(attempt-1)``, capped at 6 h, then ±20% jitter so deliveries that failed
    together (a receiver's outage) do not all come back in the same second.
    """
    base = min(BASE_BACKOFF_SECONDS * 2 ** max(attempt - 1, 0), MAX_BACKOFF_SECONDS)
    return base * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date).

    Returns:
        The wait, between 0 and 6 h; ``None`` when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(int(value))
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_BACKOFF_SECONDS)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :meth:`WebhookSender.deliver_due` pass did.

    Attributes:
        sent: Deliveries a receiver accepted (2xx).
        failed: Deliveries that failed for good (out of attempts).
        retried: Deliveries that failed this time and are scheduled again.
    """

    sent: int = 0
    failed: int = 0
    retried: int = 0

    @property
    def attempted(self) -> int:
        """Deliveries tried in the pass."""
        return self.sent + self.failed + self.retried


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one POST.

    Attributes:
        delivery_id: The delivery.
        ok: The receiver answered 2xx.
        status_code: The HTTP status, or ``None`` when no answer came.
        error: Why it failed; ``None`` when ``ok``.
        next_attempt_at: When it is tried again; ``None`` when delivered or failed.
        delivery: The delivery as stored after the attempt (``None`` when an operator
            changed it meanwhile and the outcome was dropped).
    """

    delivery_id: str
    ok: bool
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None
    delivery: DeliveryRecord | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookSender:
    """Sends due deliveries from the outbox and records every attempt.

    Safe to run in several processes at once: each delivery is claimed by one sender
    (see :mod:`assistant.storage.webhook_repo`). Not meant to be shared between threads;
    give each thread its own sender.

    Args:
        store: The outbox.
        secret: The signing key; with ``None`` (or empty) nothing is sent.
        max_attempts: Attempts before a delivery is failed for good.
        timeout: Seconds for each of connecting, sending and waiting for the answer.
        client: An ``httpx.Client`` to send with (the caller closes it); by default the
            sender makes and owns one.
        clock: The current time (timezone-aware); tests pass a fake.
        rng: Source of the backoff jitter; tests pass a seeded one.
        lease_seconds: The least time a claim holds its deliveries.
    """

    def __init__(
        self,
        store: WebhookStore,
        *,
        secret: str | None,
        max_attempts: int,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        if timeout <= 0:
            raise InvalidInput("timeout must be positive")
        self._store = store
        self._secret = secret or None
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._owns_client = client is None
        # Redirects are not followed: the signature covers the body, not the host it ends
        # up at, and a receiver's configured URL should be final.
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        # Long enough for every delivery of one claim to be tried, even if each one hits
        # every timeout.
        self._post_budget = _TIMEOUTS_PER_POST * timeout
        self._lease = max(lease_seconds, CLAIM_BATCH * self._post_budget + LEASE_MARGIN_SECONDS)
        self._warned_unsigned = False

    @classmethod
    def from_settings(
        cls, store: WebhookStore, settings: Settings, **kwargs: Any
    ) -> WebhookSender:
        """A sender configured by ``ASSISTANT_WEBHOOK_SECRET`` and ``..._MAX_ATTEMPTS``.

        Args:
            store: The outbox.
            settings: The settings.
            **kwargs: Other :class:`WebhookSender` arguments (``timeout``, ``client``...).
        """
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        return cls(store, secret=secret, max_attempts=settings.webhook_max_attempts, **kwargs)

    @property
    def can_send(self) -> bool:
        """Whether a secret is configured (without one nothing is sent)."""
        return self._secret is not None

    @property
    def lease_seconds(self) -> float:
        """How long each claim holds its deliveries."""
        return self._lease

    def deliver_due(
        self,
        limit: int = 50,
        *,
        now: datetime | None = None,
        stop: threading.Event | None = None,
    ) -> DeliveryReport:
        """Try up to ``limit`` due deliveries, oldest first.

        Without a secret nothing is sent: an error is logged (once per sender) and the
        deliveries stay pending.

        Args:
            limit: At most this many attempts in this pass.
            now: The current time for scheduling and for the signed timestamp; defaults to
                the clock, read again for every claim.
            stop: When set, the pass ends after the delivery in flight; the rest of its
                claim is tried again when the lease ends.

        Returns:
            How many were delivered, failed for good, and scheduled again.
        """
        if self._secret is None:
            if not self._warned_unsigned:
                logger.error(
                    "webhook deliveries are not sent: set ASSISTANT_WEBHOOK_SECRET (signals "
                    "carry customer data and are only sent signed); they wait in the outbox"
                )
                self._warned_unsigned = True
            return DeliveryReport()
        sent = failed = retried = 0
        remaining = limit
        while remaining > 0 and not (stop and stop.is_set()):
            at = now or self._clock()
            claimed_at = time.monotonic()
            batch = self._store.claim_due(
                at, min(remaining, CLAIM_BATCH), lease_seconds=self._lease
            )
            if not batch:
                break
            remaining -= len(batch)
            for record in batch:
                if stop and stop.is_set():
                    break
                # Never start a POST that could outlive the claim: another sender could
                # take the delivery when the lease ends and send it twice.
                elapsed = time.monotonic() - claimed_at
                if elapsed + self._post_budget + LEASE_MARGIN_SECONDS > self._lease:
                    break
                attempt = self._attempt(record, now or self._clock(), final=False)
                if attempt.ok:
                    sent += 1
                elif attempt.next_attempt_at is None:
                    failed += 1
                else:
                    retried += 1
        return DeliveryReport(sent=sent, failed=failed, retried=retried)

    def deliver(
        self, delivery_id: str, *, now: datetime | None = None, final: bool = False
    ) -> Attempt:
        """Try one pending, due delivery now (``assistant webhooks test``).

        Args:
            delivery_id: The delivery.
            now: The current time; defaults to the clock.
            final: Do not retry it if this attempt fails (mark it failed).

        Returns:
            The outcome.

        Raises:
            ConfigurationError: No secret is configured.
            NotFound: No such delivery.
            Conflict: It is not pending, not due, or another sender has it.
        """
        if self._secret is None:
            raise ConfigurationError(
                "set ASSISTANT_WEBHOOK_SECRET: webhooks are only sent signed"
            )
        at = now or self._clock()
        record = self._store.claim(delivery_id, at, lease_seconds=self._lease)
        return self._attempt(record, at, final=final)

    def close(self) -> None:
        """Close the HTTP client if the sender made it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- one attempt -----------------------------------------------------------------------

    def _request(
        self, record: DeliveryRecord, secret: str, now: datetime
    ) -> tuple[bytes, dict[str, str]]:
        payload = {key: value for key, value in record.payload.items() if key != "id"}
        body = json.dumps(
            {"id": record.id, **payload}, separators=(",", ":"), ensure_ascii=False
        ).encode()
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: record.event,
            DELIVERY_HEADER: record.id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: SIGNATURE_PREFIX + sign(secret, timestamp, body),
        }
        return body, headers

    def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None, str | None]:
        """POST once: (status, Retry-After header, error); the answer's body is not read."""
        try:
            # Streamed so the body is never downloaded: only the status matters, and a
            # receiver could answer with a huge or endless one.
            with self._client.stream("POST", url, content=body, headers=headers) as response:
                return response.status_code, response.headers.get("Retry-After"), None
        except httpx.TimeoutException as exc:
            return None, None, f"timeout after {self._timeout:g}s ({type(exc).__name__})"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"

    def _attempt(self, record: DeliveryRecord, now: datetime, *, final: bool) -> Attempt:
        if self._secret is None:  # the public methods check first; this is for mypy
            raise ConfigurationError("no webhook secret")
        body, headers = self._request(record, self._secret, now)
        status, retry_after, error = self._post(record.url, body, headers)
        ok = status is not None and 200 <= status < 300
        next_at: datetime | None = None
        if not ok:
            if status is not None:
                error = f"HTTP {status} {_phrase(status)}".rstrip()
            number = record.attempts + 1
            if not final and number < self._max_attempts:
                wait = None
                if status in RETRY_AFTER_STATUSES:
                    wait = retry_after_seconds(retry_after, now)
                if wait is None:
                    wait = backoff_seconds(number, self._rng)
                next_at = now + timedelta(seconds=wait)
            logger.warning(
                "webhook %s (%s) to %s: %s; %s", record.id, record.event,
                httpx.URL(record.url).host, error,
                f"next attempt at {next_at.isoformat()}" if next_at else "failed for good",
            )
        stored = self._store.record_attempt(
            record.id, ok=ok, status_code=status, error=error, next_attempt_at=next_at,
            now=now,
        )
        return Attempt(
            delivery_id=record.id, ok=ok, status_code=status, error=None if ok else error,
            next_attempt_at=next_at, delivery=stored,
        )


def _phrase(status: int) -> str:
    # The standard phrase, not the receiver's: its text would go into the log unchecked.
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class WebhookWorker:
    """A daemon thread that runs :meth:`WebhookSender.deliver_due` every interval.

    Args:
        sender: The sender (used from the worker's thread only).
        interval_seconds: Pause between passes; a pass that used its whole ``batch`` is
            followed at once by another (a backlog drains without waiting).
        batch: Attempts per pass.
    """

    def __init__(self, sender: WebhookSender, interval_seconds: float, *, batch: int = 50) -> None:
        if interval_seconds <= 0:
            raise InvalidInput("interval_seconds must be positive")
        self._sender = sender
        self._interval = interval_seconds
        self._batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the webhook worker was started already")
        self._thread = threading.Thread(target=self._run, name="webhook-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the thread to end after the delivery in flight, and wait for it.

        Args:
            timeout: Longest wait for the thread, in seconds (``None``: no limit).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            report = DeliveryReport()
            try:
                report = self._sender.deliver_due(self._batch, stop=self._stop)
            except Exception:
                # A database hiccup must not end deliveries for the life of the server.
                logger.exception("webhook delivery pass failed")
            if report.attempted < self._batch and self._stop.wait(self._interval):
                break
