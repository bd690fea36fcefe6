"""Request and response bodies of the public API (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from assistant.storage.records import HandoffRecord, MessageRecord


class CustomerIn(BaseModel):
    """What the host page knows about the customer."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=255, description="Host app's customer id")
    email: EmailStr | None = Field(None, max_length=320)
    name: str | None = Field(None, max_length=255)
    plan: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


class ConversationCreate(BaseModel):
    """Body of ``POST /v1/conversations`` (may be empty)."""

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

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
            citations=[
                CitationPublic(**{k: c[k] for k in ("n", "article_id", "title", "url")})
                for c in notes.get("citations", [])
            ],
            offer_human=decision.get("action") in {"answer_and_offer_human", "handoff"},
        )


class HandoffPublic(BaseModel):
    """What the customer may know about a hand-off: that a person is coming, and when."""

    status: str
    due_at: datetime

    @classmethod
    def of(cls, record: HandoffRecord) -> HandoffPublic:
        """Project a hand-off to its customer-visible form (no reasons, no agent ids)."""
        return cls(status=record.status, due_at=record.due_at)


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
