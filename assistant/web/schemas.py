"""Request and response bodies of the public API (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from assistant.storage.records import AgentRecord, HandoffRecord, MessageRecord

# PostgreSQL text cannot hold NUL; refusing it here keeps SQLite and PostgreSQL alike.
NO_NUL = r"^[^\x00]*$"
MAX_MESSAGE_ID = 2**31 - 1  # messages.id is INTEGER on PostgreSQL
MAX_EVENT_ID = 2**63 - 1  # events.id and audit_log.id are BIGINT


class CustomerIn(BaseModel):
    """What the host page knows about the customer."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = Field(None, min_length=1, max_length=255, pattern=NO_NUL,
                           description="Host app's customer id")
    email: EmailStr | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=255, pattern=NO_NUL)
    plan: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


class ConversationCreate(BaseModel):
    """Body of ``POST /v1/conversations`` (may be empty)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer: CustomerIn | None = None
    user_hash: str | None = Field(
        None,
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="hex HMAC-SHA256 of customer.id with the widget secret",
    )


class ConversationPublic(BaseModel):
    """A new conversation. ``token`` is shown once: keep it, it opens this conversation."""

    id: str
    token: str
    status: str
    verified: bool


class MessageCreate(BaseModel):
    """Body of ``POST /v1/conversations/{id}/messages``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(..., min_length=1, max_length=100_000, description="The customer's message")


class CitationPublic(BaseModel):
    """A source article of an answer."""

    n: int
    article_id: str
    title: str
    url: str


class MessagePublic(BaseModel):
    """A message as the customer sees it (no internal annotations)."""

    id: int
    role: str
    text: str
    created_at: datetime
    citations: list[CitationPublic] = []
    offer_human: bool = False
    author: str | None = Field(None, description="The agent's name on an agent's message.")
    rateable: bool = Field(
        False, description="A bot answer the customer can mark 'That helped' (feedback)."
    )

    @classmethod
    def of(cls, record: MessageRecord) -> MessagePublic:
        """Project a stored message to its customer-visible form."""
        notes: dict[str, Any] = record.annotations or {}
        decision = notes.get("decision") or {}
        return cls(
            id=record.id,
            role=record.role,
            text=record.text,
            created_at=record.created_at,
            author=notes.get("agent_name") if record.role == "agent" else None,
            citations=[
                CitationPublic(**{k: c[k] for k in ("n", "article_id", "title", "url")})
                for c in notes.get("citations", [])
            ],
            offer_human=decision.get("action") in {"answer_and_offer_human", "handoff"},
            # A hand-off notice or an "I couldn't find it" is not an answer to rate.
            rateable=record.role == "assistant" and decision.get("action") != "handoff"
            and not notes.get("abstained", False),
        )


class HandoffPublic(BaseModel):
    """What the customer may know about a hand-off: that a person is coming, and when."""

    status: str
    due_at: datetime
    notice: str | None = Field(None, description="What the customer was told.")
    expected_wait_minutes: int | None = None
    can_leave_email: bool = False

    @classmethod
    def of(cls, record: HandoffRecord, availability: dict[str, Any] | None = None) -> HandoffPublic:
        """Project a hand-off to its customer-visible form (no reasons, no agent ids)."""
        available = availability or {}
        return cls(
            status=record.status,
            due_at=record.due_at,
            notice=available.get("notice"),
            expected_wait_minutes=available.get("expected_wait_minutes"),
            can_leave_email=bool(available.get("can_leave_email")),
        )


class ConversationState(BaseModel):
    """Where a conversation stands: who owns it, the open hand-off, whether it was rated."""

    id: str
    status: str = Field(description="bot, waiting, agent or resolved")
    verified: bool
    handoff: HandoffPublic | None
    rated: bool


class CsatCreate(BaseModel):
    """Body of ``POST /v1/conversations/{id}/csat``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    score: int = Field(..., ge=1, le=5, description="1 (very unhappy) to 5 (very happy)")
    comment: str | None = Field(None, max_length=2000, pattern=NO_NUL)


class FeedbackCreate(BaseModel):
    """Body of ``POST /v1/conversations/{id}/feedback``: did this answer help?"""

    model_config = ConfigDict(extra="forbid", strict=True)

    message_id: int = Field(..., ge=1, le=MAX_MESSAGE_ID,
                            description="The bot's answer the customer rates.")
    helpful: bool = Field(..., description="true: 'That helped'; false: 'Didn't help'.")


class CsatPublic(BaseModel):
    """A stored rating; ``handled_by`` is "bot" or "person"."""

    score: int
    comment: str | None
    handled_by: str


class FollowupCreate(BaseModel):
    """Body of ``POST /v1/conversations/{id}/followup``: where to follow up."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: EmailStr = Field(..., max_length=320)


class TurnPublic(BaseModel):
    """The stored customer message, the assistant's reply, and the hand-off if any.

    ``reply`` is null while a person owns the conversation or is on the way: the bot
    stays quiet and the person answers.
    """

    message: MessagePublic
    reply: MessagePublic | None
    handoff: HandoffPublic | None = None
    replayed: bool = False


class MessageList(BaseModel):
    """Messages in order; pass the last id as ``after`` to get only newer ones."""

    messages: list[MessagePublic]


class StaffMessage(BaseModel):
    """A message with its internal annotations (staff only)."""

    id: int
    role: str
    text: str
    created_at: datetime
    annotations: dict[str, Any]

    @classmethod
    def of(cls, record: MessageRecord) -> StaffMessage:
        """Project a stored message for staff."""
        return cls(
            id=record.id,
            role=record.role,
            text=record.text,
            created_at=record.created_at,
            annotations=record.annotations or {},
        )


class StaffMessageList(BaseModel):
    """A conversation's messages for staff."""

    conversation_id: str
    status: str
    messages: list[StaffMessage]


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code": ..., "message": ...}}``."""

    error: dict[str, Any]


class AgentPublic(BaseModel):
    """An agent as other staff see it."""

    id: str
    name: str
    email: str
    role: str
    teams: list[str]
    capacity: int
    online: bool

    @classmethod
    def of(cls, record: AgentRecord) -> AgentPublic:
        """Project an agent record (never its password hash)."""
        return cls(
            id=record.id,
            name=record.name,
            email=record.email,
            role=record.role,
            teams=list(record.teams),
            capacity=record.capacity,
            online=record.online,
        )


class HandoffStaff(BaseModel):
    """A hand-off with everything staff need to triage it."""

    id: str
    conversation_id: str
    status: str
    team: str
    priority: int
    reasons: list[str]
    evidence: dict[str, Any]
    agent_id: str | None
    created_at: datetime
    due_at: datetime
    claimed_at: datetime | None
    first_reply_at: datetime | None
    resolved_at: datetime | None
    returned_at: datetime | None
    resolution_code: str | None
    waiting_seconds: float = Field(description="Queued until claimed, or until now.")
    overdue: bool

    @classmethod
    def of(cls, record: HandoffRecord, now: datetime) -> HandoffStaff:
        """Project a hand-off for staff, with its wait so far."""
        until = record.claimed_at or record.resolved_at or record.returned_at or now
        return cls(
            id=record.id,
            conversation_id=record.conversation_id,
            status=record.status,
            team=record.team,
            priority=record.priority,
            reasons=list(record.reasons),
            evidence=dict(record.evidence),
            agent_id=record.agent_id,
            created_at=record.created_at,
            due_at=record.due_at,
            claimed_at=record.claimed_at,
            first_reply_at=record.first_reply_at,
            resolved_at=record.resolved_at,
            returned_at=record.returned_at,
            resolution_code=record.resolution_code,
            waiting_seconds=round(max((until - record.created_at).total_seconds(), 0.0), 1),
            overdue=record.status == "queued" and now > record.due_at,
        )


class QueueItem(BaseModel):
    """A waiting hand-off and its context packet."""

    handoff: HandoffStaff
    context: dict[str, Any]


class QueuePublic(BaseModel):
    """Waiting hand-offs, most urgent first, then longest waiting."""

    items: list[QueueItem]


class HandoffDetail(BaseModel):
    """A conversation's hand-off, context packet and internal notes."""

    conversation_id: str
    status: str
    handoff: HandoffStaff | None
    context: dict[str, Any]
    notes: list[dict[str, Any]]


class AgentText(BaseModel):
    """Body of an agent's reply or note."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(..., min_length=1, max_length=100_000)


class ResolveCreate(BaseModel):
    """Body of ``.../resolve``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    resolution_code: str = Field(
        ..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
        description="How it was resolved, e.g. refund_issued, answered, duplicate.",
    )


class ReassignCreate(BaseModel):
    """Body of ``.../reassign``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    agent_id: str = Field(..., min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")


class PresenceUpdate(BaseModel):
    """Body of ``POST /v1/agent/presence``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    online: bool
