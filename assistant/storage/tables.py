"""SQLAlchemy models. Only the repositories (:mod:`assistant.storage.repos`,
:mod:`assistant.storage.handoff_repo`) and the migrations use them.

Any change here needs a new Alembic revision in ``migrations/versions``; the test suite
fails when the migrated schema and these models differ.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Explicit constraint names, so migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-assigns INTEGER PRIMARY KEY columns, not BIGINT ones.
BigIntegerPK = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> str:
    """A fresh random identifier (uuid4 as 32 hex characters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC on the Python side.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC and get their ``tzinfo`` back when loaded.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Reject naive datetimes and convert aware ones to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC timestamp column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend gave back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base holding the metadata the migrations are compared against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Customer(Base):
    """A customer; ``external_id`` is the host application's own id, when known."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(100))
    verified: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Conversation(Base):
    """A conversation. Only the sha256 of its access token is kept."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="bot", server_default=text("'bot'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    """A message; ``id`` orders all messages and backs the ``?after=`` cursor."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # AUTOINCREMENT: SQLite would otherwise reuse the id of a deleted last row,
        # and a cursor that already moved past it would miss the new message.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Indexed: retention, exports by date and the start-up repair of promised hand-offs
    # select messages by time.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Event(Base):
    """One entry of the append-only interaction log.

    ``conversation_id`` and ``customer_id`` are plain columns, not foreign keys: the log
    may mention ids that never existed (a failed lookup) or no longer exist.
    """

    __tablename__ = "events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class IdempotencyKey(Base):
    """Remembers a client's ``Idempotency-Key`` per conversation and what it produced."""

    __tablename__ = "idempotency_keys"

    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    customer_message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    reply_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


#: Handoff statuses that still need (or have) a human: at most one per conversation.
OPEN_HANDOFF_STATUSES = ("queued", "assigned")


class Agent(Base):
    """A human support agent or admin. ``password_hash`` is computed by the caller."""

    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint("role IN ('agent', 'admin')", name="role"),
        CheckConstraint("capacity >= 0", name="capacity"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    teams: Mapped[list[str]] = mapped_column(JSONType, default=list)
    capacity: Mapped[int] = mapped_column(Integer, default=3, server_default=text("3"))
    online: Mapped[bool] = mapped_column(default=False, server_default=false())
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AgentToken(Base):
    """An agent's API token (for automation); only its sha256 is kept."""

    __tablename__ = "agent_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked: Mapped[bool] = mapped_column(default=False, server_default=false())


class AgentSession(Base):
    """A console login session (cookie); only the sha256 of the cookie value is kept."""

    __tablename__ = "agent_sessions"

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Handoff(Base):
    """A request for a human to take over a conversation.

    ``status`` goes queued -> assigned -> resolved | returned (and assigned -> queued on
    release). ``version`` grows by one on every change (optimistic concurrency).
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'assigned', 'resolved', 'returned')", name="status"),
        CheckConstraint("priority BETWEEN 0 AND 4", name="priority"),
        # At most one open handoff per conversation, whatever the application does.
        Index(
            "uq_handoffs_open_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'assigned')"),
            postgresql_where=text("status IN ('queued', 'assigned')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued")
    team: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    agent_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("agents.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_reply_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_code: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)


# The queue's order (see HandoffStore.queue); defined here to use a column expression.
Index("ix_handoffs_queue", Handoff.status, Handoff.priority.desc(), Handoff.created_at)


# -- health signals (issue 8): state the projector folds the event log into -----------------


class ProjectionCursor(Base):
    """How far a projector has read the event log (its last folded event id)."""

    __tablename__ = "projection_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CustomerHealth(Base):
    """A customer's health: the folded state, and its score when last folded."""

    __tablename__ = "customer_health"

    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HealthHistory(Base):
    """A customer's score at the end of each day it changed: the trend."""

    __tablename__ = "health_history"

    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO date, UTC
    score: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(16))


class ConversationFact(Base):
    """One row per conversation with what support metrics count (folded from events)."""

    __tablename__ = "conversation_facts"

    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str | None] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str | None] = mapped_column(String(100))  # the first known intent
    customer_messages: Mapped[int] = mapped_column(Integer, default=0)
    handed_off: Mapped[bool] = mapped_column(default=False)
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    helpful: Mapped[bool | None] = mapped_column()  # the customer's "that helped" / "didn't"
    recontacted: Mapped[bool] = mapped_column(default=False)  # same topic again within 7 days
    csat: Mapped[int | None] = mapped_column(Integer)
    csat_by: Mapped[str | None] = mapped_column(String(16))  # "bot" | "person"
    handoff_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_human_reply_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DailyCount(Base):
    """Per-day counters (intents, sentiments) so trends never rescan the log."""

    __tablename__ = "daily_counts"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class KnowledgeGap(Base):
    """A question the KB could not answer, or that ended with a person."""

    __tablename__ = "knowledge_gaps"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    reason: Mapped[str] = mapped_column(String(32))  # "no_answer" | "handoff"
    question: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(100))
    agent_reply: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """An outbound signal and its delivery attempts (the outbox and the delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    event: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


Index("ix_webhook_deliveries_due", WebhookDelivery.status, WebhookDelivery.next_attempt_at)


# -- privacy (issue 9) ---------------------------------------------------------------------


class AuditEntry(Base):
    """One staff or operator action: who did what to which target, and how it ended.

    It never holds personal data: targets are opaque ids (an erased customer's id only as
    a sha256), details are counts and codes, never message text.
    """

    __tablename__ = "audit_log"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # "agent:<id>", "admin-token" or "cli:<user>"
    actor: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(200), index=True)
    target: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # "ok" | "denied" | "failed"
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class TokenSpend(Base):
    """Chat-model tokens spent per identity per UTC day: the per-identity budget's ledger.

    ``identity`` is ``customer:<id>`` for a verified customer, else ``ip:<sha256>`` of the
    visitor's address or ``conversation:<id>``: never a raw address.
    """

    __tablename__ = "token_spend"

    identity: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True, index=True)  # YYYY-MM-DD
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
