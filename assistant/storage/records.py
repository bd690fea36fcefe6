"""Plain, immutable records returned by :class:`assistant.storage.repos.Store`.

Deliberately free of SQLAlchemy so that the service and web layers can import them
without touching the database machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer, anonymous or identified by the host application."""

    id: str
    external_id: str | None
    email: str | None
    name: str | None
    plan: str | None
    verified: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """A conversation; ``status`` is one of "bot", "waiting", "agent", "resolved"."""

    id: str
    customer_id: str | None
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message; ``id`` is the global, increasing order used for ``?after=``."""

    id: int
    conversation_id: str
    role: str
    text: str
    annotations: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of the append-only interaction log."""

    id: int
    type: str
    conversation_id: str | None
    customer_id: str | None
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BeginOutcome:
    """The outcome of :meth:`~assistant.storage.repos.Store.begin_customer_message`.

    Attributes:
        kind: "new" (message stored now, answer it), "resume" (an earlier attempt with
            the same key went stale before answering: answer the stored message again)
            or "replay" (already answered: return ``reply_message`` as is).
        customer_message: The customer's message.
        reply_message: The stored answer; set only when ``kind`` is "replay".
    """

    kind: Literal["new", "resume", "replay"]
    customer_message: MessageRecord
    reply_message: MessageRecord | None = None
