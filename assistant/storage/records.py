"""Plain, immutable records returned by :class:`assistant.storage.repos.Store` and
:class:`assistant.storage.handoff_repo.HandoffStore`.

Deliberately free of SQLAlchemy so that the service and web layers can import them
without touching the database machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
            the same key went stale before answering: answer the stored message again),
            "replay" (already handled: return ``reply_message`` as is, possibly ``None``)
            or "held" (stored while a person owns the conversation: the bot must not
            answer).
        customer_message: The customer's message.
        reply_message: The stored answer; set only when ``kind`` is "replay".
    """

    kind: Literal["new", "resume", "replay", "held"]
    customer_message: MessageRecord
    reply_message: MessageRecord | None = None


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A human agent or admin of the support console.

    Attributes:
        id: 32-hex id.
        email: Login email, lowercased.
        name: Display name.
        role: "agent" or "admin".
        password_hash: The caller's password hash (left out of ``repr``).
        teams: Team names the agent works for, e.g. ``("support", "billing")``.
        capacity: How many conversations the agent may handle at once.
        online: Whether the agent is taking conversations now.
        active: ``False`` once the account is deactivated.
        created_at: When the account was created.
    """

    id: str
    email: str
    name: str
    role: str
    password_hash: str = field(repr=False)
    teams: tuple[str, ...]
    capacity: int
    online: bool
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """A request for a human to take over a conversation.

    Attributes:
        id: 32-hex id.
        conversation_id: The conversation handed off.
        status: "queued", "assigned", "resolved" or "returned".
        team: The team whose queue it is in.
        priority: 0 (lowest) to 4 (most urgent).
        reasons: Why the conversation was handed off, e.g. ``("customer_asked",)``.
        evidence: JSON details supporting the reasons.
        agent_id: The agent handling it (when assigned or closed by one).
        created_at: When it was queued.
        due_at: When a human should have picked it up (SLA).
        claimed_at: When the current agent took it.
        first_reply_at: When a human first answered.
        resolved_at: When it was resolved.
        returned_at: When it was handed back to the bot.
        resolution_code: How it was resolved.
        version: Grows by one on every change.
    """

    id: str
    conversation_id: str
    status: str
    team: str
    priority: int
    reasons: tuple[str, ...]
    evidence: dict[str, Any]
    agent_id: str | None
    created_at: datetime
    due_at: datetime
    claimed_at: datetime | None
    first_reply_at: datetime | None
    resolved_at: datetime | None
    returned_at: datetime | None
    resolution_code: str | None
    version: int
