"""Storage of outbound webhooks: the ``webhook_deliveries`` outbox and its delivery log.

Rows are written by the health projector (one per configured URL per signal, status
``pending``) and by :meth:`WebhookStore.enqueue`; :class:`assistant.webhooks.WebhookSender`
claims due rows, POSTs them and records each attempt here.

Concurrency: several server processes each run a sender, so a claim must hand a row to
one of them only. :meth:`WebhookStore.claim_due` selects due rows and, in the same
transaction, pushes their ``next_attempt_at`` forward by a lease; until the lease ends no
other claim sees them as due. On PostgreSQL the select uses ``FOR UPDATE SKIP LOCKED`` so
concurrent claimers take different rows instead of queueing on each other; on SQLite the
write transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`assistant.storage.db`), which
serializes claims outright. A sender that dies mid-batch leaves its rows pending: they
become due again when the lease ends (delivery is at least once; receivers deduplicate
by delivery id).

Like the other stores, every public method is one short transaction and returns frozen
records, never ORM objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update

from assistant.errors import Conflict, InvalidInput, NotFound
from assistant.storage.db import EngineStore
from assistant.storage.tables import WebhookDelivery, new_id, utcnow

DELIVERY_STATUSES = ("pending", "delivered", "failed")
#: How long a claim keeps a delivery from other claimers (see the module docstring).
DEFAULT_LEASE_SECONDS = 60.0
#: ``last_error`` is cut to this many characters: it is for people reading the log.
MAX_ERROR_CHARS = 500
MAX_EVENT_CHARS = 100
MAX_URL_CHARS = 2000
MAX_LIST_LIMIT = 1000

_HTTP_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One outbound webhook and the state of its delivery.

    Attributes:
        id: The delivery id (32 hex characters); sent as ``X-Assistant-Delivery`` and as
            the body's ``id`` so receivers can deduplicate.
        event: "customer.at_risk", "churn.signal", "conversation.handed_off" or
            "webhook.test".
        url: Where it is POSTed.
        payload: ``{"type", "created_at", "data"}``; the body is this plus ``id``.
        status: "pending", "delivered" or "failed" (out of attempts).
        attempts: Attempts made so far.
        next_attempt_at: When a pending delivery is due (or until when it is claimed).
        last_status: HTTP status of the latest attempt; ``None`` when none answered.
        last_error: Why the latest attempt failed; ``None`` when it did not.
        created_at: When the signal was recorded.
        delivered_at: When a 2xx answer arrived.
    """

    id: str
    event: str
    url: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _record(row: WebhookDelivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        event=row.event,
        url=row.url,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None:
        raise InvalidInput(f"{what} must be timezone-aware")


class WebhookStore(EngineStore):
    """The webhook outbox and delivery log over one engine.

    Args:
        engine: An engine from :func:`assistant.storage.db.make_engine`, already migrated.
    """

    def enqueue(
        self, event: str, url: str, payload: dict[str, Any], *, now: datetime | None = None
    ) -> DeliveryRecord:
        """Add a pending delivery, due at once (the projector writes its own rows).

        Args:
            event: The event name, e.g. "webhook.test".
            url: An http(s) URL.
            payload: The JSON object to send (conventionally ``{"type", "created_at",
                "data"}``).
            now: The current time (timezone-aware); defaults to the wall clock.

        Returns:
            The stored delivery.

        Raises:
            InvalidInput: Empty or too long event, a URL that is not http(s), or a naive
                ``now``.
        """
        event = event.strip()
        if not 0 < len(event) <= MAX_EVENT_CHARS:
            raise InvalidInput(f"event must be 1 to {MAX_EVENT_CHARS} characters")
        url = url.strip()
        if len(url) > MAX_URL_CHARS or not _HTTP_URL.match(url):
            raise InvalidInput(f"{url!r} is not an http(s) URL")
        now = now or utcnow()
        _require_aware(now, "now")
        with self._write.begin() as session:
            row = WebhookDelivery(
                id=new_id(), event=event, url=url, payload=dict(payload), status="pending",
                attempts=0, next_attempt_at=now, last_status=None, last_error=None,
                created_at=now, delivered_at=None,
            )
            session.add(row)
            session.flush()
            return _record(row)

    def claim_due(
        self, now: datetime, limit: int, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> list[DeliveryRecord]:
        """Claim up to ``limit`` pending deliveries due at ``now``, oldest first.

        The claimed rows stay pending but are due again only ``lease_seconds`` after
        ``now``, so no other claimer takes them while this one sends; recording an attempt
        replaces the lease with the real schedule.

        Args:
            now: The current time (timezone-aware).
            limit: At most this many deliveries.
            lease_seconds: How long the claim holds; longer than the caller needs to try
                every claimed delivery.

        Returns:
            The claimed deliveries (``next_attempt_at`` is the end of the lease).
        """
        _require_aware(now, "now")
        if limit <= 0:
            return []
        lease_until = now + timedelta(seconds=lease_seconds)
        query = (
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(
                WebhookDelivery.next_attempt_at, WebhookDelivery.created_at, WebhookDelivery.id
            )
            .limit(limit)
        )
        if self._engine.dialect.name == "postgresql":
            # Concurrent claimers skip each other's rows instead of waiting for them; the
            # rows stay locked until the lease below is committed.
            query = query.with_for_update(skip_locked=True)
        with self._write.begin() as session:
            rows = list(session.scalars(query))
            for row in rows:
                row.next_attempt_at = lease_until
            session.flush()
            return [_record(row) for row in rows]

    def claim(
        self, delivery_id: str, now: datetime, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> DeliveryRecord:
        """Claim one pending delivery that is due, to try it now (``assistant webhooks test``).

        Args:
            delivery_id: The delivery.
            now: The current time (timezone-aware).
            lease_seconds: How long the claim holds.

        Returns:
            The claimed delivery.

        Raises:
            NotFound: No delivery has that id.
            Conflict: It is delivered, failed, not due yet or claimed by someone else.
        """
        _require_aware(now, "now")
        lease_until = now + timedelta(seconds=lease_seconds)
        with self._write.begin() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            )
            row = session.get(WebhookDelivery, delivery_id, populate_existing=True)
            if row is None:
                raise NotFound(f"no webhook delivery {delivery_id!r}")
            if cast("CursorResult[Any]", result).rowcount != 1:
                raise Conflict(
                    f"webhook delivery {delivery_id} is {row.status}"
                    + (", not due yet or being sent" if row.status == "pending" else "")
                )
            return _record(row)

    def record_attempt(
        self,
        delivery_id: str,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
        now: datetime | None = None,
    ) -> DeliveryRecord | None:
        """Record the outcome of one attempt of a pending delivery.

        Args:
            delivery_id: The delivery.
            ok: The receiver answered 2xx: the delivery is done.
            status_code: The HTTP status received, or ``None`` (timeout, connection error).
            error: Why it failed (cut to :data:`MAX_ERROR_CHARS`); ignored when ``ok``.
            next_attempt_at: When to try again after a failure; ``None`` marks the delivery
                failed for good (out of attempts). Ignored when ``ok``.
            now: The time of the attempt (timezone-aware); defaults to the wall clock.

        Returns:
            The updated delivery, or ``None`` when it is unknown or no longer pending
            (e.g. retried by an operator meanwhile): the outcome is then dropped.
        """
        now = now or utcnow()
        _require_aware(now, "now")
        values: dict[str, Any] = {
            # An expression, not a read-modify-write: attempts never loses a count.
            "attempts": WebhookDelivery.attempts + 1,
            "last_status": status_code,
        }
        if ok:
            values.update(status="delivered", delivered_at=now, last_error=None)
        else:
            values["last_error"] = (error or "failed")[:MAX_ERROR_CHARS]
            if next_attempt_at is None:
                values["status"] = "failed"
            else:
                _require_aware(next_attempt_at, "next_attempt_at")
                values["next_attempt_at"] = next_attempt_at
        with self._write.begin() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending")
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                return None
            return _record(session.get_one(WebhookDelivery, delivery_id))

    def retry(self, delivery_id: str, *, now: datetime | None = None) -> DeliveryRecord:
        """Put a failed delivery back in the outbox, due now, with a fresh attempt count.

        ``last_status`` and ``last_error`` are kept until the next attempt replaces them.

        Args:
            delivery_id: The delivery.
            now: The current time (timezone-aware); defaults to the wall clock.

        Returns:
            The pending delivery.

        Raises:
            NotFound: No delivery has that id.
            Conflict: It is not failed (pending deliveries are retried already; delivered
                ones are done).
        """
        now = now or utcnow()
        _require_aware(now, "now")
        with self._write.begin() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "failed")
                .values(status="pending", attempts=0, next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
            row = session.get(WebhookDelivery, delivery_id, populate_existing=True)
            if row is None:
                raise NotFound(f"no webhook delivery {delivery_id!r}")
            if cast("CursorResult[Any]", result).rowcount != 1:
                raise Conflict(
                    f"webhook delivery {delivery_id} is {row.status}; only failed deliveries "
                    "can be retried"
                )
            return _record(row)

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """Load a delivery by id.

        Args:
            delivery_id: The delivery's id.

        Returns:
            The delivery, or ``None`` when there is none with that id.
        """
        with self._read() as session:
            row = session.get(WebhookDelivery, delivery_id)
            return _record(row) if row is not None else None

    def list_deliveries(
        self, status: str | None = None, event: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """The delivery log, newest first.

        Args:
            status: Only deliveries in this status.
            event: Only deliveries of this event.
            limit: At most this many (capped at :data:`MAX_LIST_LIMIT`).

        Returns:
            The deliveries.

        Raises:
            InvalidInput: An unknown status.
        """
        query = select(WebhookDelivery)
        if status is not None:
            if status not in DELIVERY_STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
            query = query.where(WebhookDelivery.status == status)
        if event is not None:
            query = query.where(WebhookDelivery.event == event)
        query = query.order_by(
            WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()
        ).limit(min(max(limit, 0), MAX_LIST_LIMIT))
        with self._read() as session:
            return [_record(row) for row in session.scalars(query)]

    def count_by_status(self) -> dict[str, int]:
        """How many deliveries are in each status (every status present, 0 when none)."""
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        with self._read() as session:
            for status, count in session.execute(
                select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
            ):
                counts[status] = int(count)
        return counts

