"""Live conversation events: what a customer's or an agent's open stream receives.

Streams are a projection of the interaction log (the ``events`` table), read by id. That
makes them work across server processes with nothing but the shared database, and lets a
reconnecting client resume exactly after the last id it saw (SSE ``Last-Event-ID`` or
``?after=``). Customers see messages and ownership changes, never internal annotations,
reasons or notes; staff see everything.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from assistant.storage.records import EventRecord, MessageRecord
from assistant.storage.repos import Store

MESSAGE_EVENTS = ("message.received", "answer.sent", "agent.message", "system.message")
STATUS_OF = {
    "handoff.enqueued": "waiting",
    "handoff.claimed": "agent",
    "handoff.reassigned": "agent",
    "handoff.released": "waiting",
    "handoff.resolved": "resolved",
    "handoff.returned": "bot",
}
CUSTOMER_EVENTS = (*MESSAGE_EVENTS, *STATUS_OF)
STAFF_EVENTS = (
    *CUSTOMER_EVENTS,
    "agent.note",
    "answer.suppressed",
    "handoff.first_reply",
    "handoff.followup_requested",
)
# Any change to what is queued or who holds what: the queue stream re-sends the queue.
QUEUE_EVENTS = (*STATUS_OF, "handoff.first_reply")

Audience = Literal["customer", "staff"]


@dataclass(frozen=True)
class LiveEvent:
    """One event on a stream: ``id`` is the log id to resume after."""

    id: int
    type: str
    data: dict[str, Any]


def customer_message(record: MessageRecord) -> dict[str, Any]:
    """A message as a customer may see it: text, sources and who wrote it."""
    notes = record.annotations or {}
    decision = notes.get("decision") or {}
    return {
        "id": record.id,
        "role": record.role,
        "text": record.text,
        "created_at": record.created_at.isoformat(),
        "author": notes.get("agent_name") if record.role == "agent" else None,
        "citations": [
            {k: c.get(k) for k in ("n", "article_id", "title", "url")}
            for c in notes.get("citations", []) or []
        ],
        "offer_human": decision.get("action") in {"answer_and_offer_human", "handoff"},
    }


def staff_message(record: MessageRecord) -> dict[str, Any]:
    """A message with its internal annotations, for agents."""
    return {**customer_message(record), "annotations": record.annotations or {}}


class LiveFeed:
    """Reads a conversation's events after a given id and projects them for an audience."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.watch = ActivityWatch(store)

    def conversation(
        self, conversation_id: str, *, after: int, audience: Audience, limit: int = 200
    ) -> list[LiveEvent]:
        """The conversation's events after log id ``after``, projected, oldest first."""
        types = CUSTOMER_EVENTS if audience == "customer" else STAFF_EVENTS
        events = self._store.events_after(
            after=after, types=types, conversation_id=conversation_id, limit=limit
        )
        return project(events, self._messages(events), audience)

    def queue_version(self) -> int:
        """Grows whenever the queue or an assignment changes."""
        return self._store.latest_event_id(QUEUE_EVENTS)

    def _messages(self, events: Sequence[EventRecord]) -> dict[int, MessageRecord]:
        ids = [
            int(e.payload["message_id"])
            for e in events
            if e.type in MESSAGE_EVENTS and "message_id" in e.payload
        ]
        return self._store.messages_by_ids(ids)


def project(
    events: Sequence[EventRecord], messages: dict[int, MessageRecord], audience: Audience
) -> list[LiveEvent]:
    """Turn log entries into stream events for ``audience`` (pure)."""
    out: list[LiveEvent] = []
    for event in events:
        if event.type in MESSAGE_EVENTS:
            record = messages.get(int(event.payload.get("message_id", -1)))
            if record is None:  # erased since; nothing to show
                continue
            shape = customer_message if audience == "customer" else staff_message
            out.append(LiveEvent(event.id, "message", {"message": shape(record)}))
        elif event.type in STATUS_OF:
            data: dict[str, Any] = {"status": STATUS_OF[event.type]}
            if audience == "staff":
                data["event"] = event.type
                data["payload"] = event.payload
            else:
                for key in ("team", "agent_name"):
                    if event.payload.get(key):
                        data[key] = event.payload[key]
            out.append(LiveEvent(event.id, "status", data))
        elif audience == "staff":
            out.append(
                LiveEvent(
                    event.id,
                    "note" if event.type == "agent.note" else "log",
                    {"event": event.type, "payload": event.payload,
                     "created_at": event.created_at.isoformat()},
                )
            )
    return out


class ActivityWatch:
    """Which conversations had new events lately, for every open stream of a process.

    Without it each open stream would query its conversation every poll interval; with
    hundreds of idle streams that is most of a server's database work. One query per
    interval per process (events written in the last ``window_seconds``, grouped by
    conversation) tells each stream whether it has anything to read.

    The window, not an id watermark, decides what a poll reads: on PostgreSQL a smaller
    event id can commit after a larger one, and a watermark would skip it for good. An
    event whose transaction commits more than the window after it was written is only
    noticed with the conversation's next event.
    """

    def __init__(self, store: Store, *, window_seconds: float = 10.0,
                 max_tracked: int = 100_000) -> None:
        self._store = store
        self._window = timedelta(seconds=window_seconds)
        self._max = max_tracked
        self._latest: OrderedDict[str, int] = OrderedDict()
        # Every conversation evicted from ``_latest`` had no event above this id.
        self._floor = 0
        self._lock = threading.Lock()
        self._polled_at = float("-inf")

    def due(self, interval: float) -> bool:
        """Whether the last poll is older than ``interval`` seconds."""
        return time.monotonic() - self._polled_at >= interval

    def poll(self, interval: float = 0.0) -> None:
        """Read recent activity, unless another caller did within ``interval`` seconds."""
        # Streams that find a poll under way go on with what is known; they look again
        # next interval. None of them waits (they would hold request threads).
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self.due(interval):
                return
            self._polled_at = time.monotonic()
            rows = self._store.recent_activity(since=datetime.now(UTC) - self._window)
            for conversation_id, latest in rows:
                if latest > self._latest.get(conversation_id, 0):
                    self._latest[conversation_id] = latest
                    self._latest.move_to_end(conversation_id)
            while len(self._latest) > self._max:
                _, evicted = self._latest.popitem(last=False)
                self._floor = max(self._floor, evicted)
        finally:
            self._lock.release()

    def latest(self, conversation_id: str) -> int:
        """An upper bound on the newest event id of the conversation seen so far."""
        return self._latest.get(conversation_id, self._floor)
