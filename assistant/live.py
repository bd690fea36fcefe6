"""Live conversation events: what a customer's or an agent's open stream receives.

Streams are a projection of the interaction log (the ``events`` table), read by id. That
makes them work across server processes with nothing but the shared database, and lets a
reconnecting client resume exactly after the last id it saw (SSE ``Last-Event-ID`` or
``?after=``). Customers see messages and ownership changes, never internal annotations,
reasons or notes; staff see everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
