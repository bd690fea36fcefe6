"""Erasure, retention and the audit log: the queries behind :mod:`assistant.privacy`.

Erasure and retention lock the health projector's cursor row first, so they never run
alongside a fold that could write a customer's health back after it was erased, or fold
an event after it was deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from assistant.storage.db import EngineStore
from assistant.storage.tables import (
    AuditEntry,
    Conversation,
    ConversationFact,
    Customer,
    CustomerHealth,
    Event,
    Handoff,
    HealthHistory,
    IdempotencyKey,
    KnowledgeGap,
    Message,
    ProjectionCursor,
    TokenSpend,
    WebhookDelivery,
    utcnow,
)

HEALTH_CURSOR = "health"
# Bound the size of IN (...) lists: SQLite allows 32,766 parameters, but long lists
# are slow to plan on both engines.
_CHUNK = 500


@dataclass(frozen=True)
class AuditRecord:
    """One audit-log entry, as read back."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id, "at": self.at.isoformat(), "actor": self.actor,
            "action": self.action, "target": self.target, "outcome": self.outcome,
            "details": self.details,
        }


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


class PrivacyStore(EngineStore):
    """Deletes personal data (one customer, or everything past a window) and keeps the audit log."""

    # -- erasure -------------------------------------------------------------------------

    def find_customer(self, ref: str) -> str | None:
        """The internal id of the customer ``ref`` names (internal id, else external id)."""
        with self._read() as session:
            found = session.get(Customer, ref)
            if found is not None:
                return found.id
            return session.scalars(
                select(Customer.id).where(Customer.external_id == ref)
            ).one_or_none()

    def erase_customer(self, customer_id: str) -> dict[str, int]:
        """Delete the customer and everything that holds their data; returns row counts.

        One transaction: either all of it is gone or none of it is. Aggregates that carry
        no personal data (daily counts) are kept.
        """
        with self._write.begin() as session:
            _lock_projector(session)
            conversations = list(session.scalars(
                select(Conversation.id).where(Conversation.customer_id == customer_id)
            ))
            counts = {
                "events": _delete_events(session, customer_id, conversations),
                "webhook_deliveries": _delete_deliveries(
                    session, [customer_id, *conversations]),
                "knowledge_gaps": 0, "conversation_facts": 0, "handoffs": 0,
                "idempotency_keys": 0, "messages": 0, "conversations": 0,
            }
            for chunk in _chunks(conversations):
                for name, table in (
                    ("knowledge_gaps", KnowledgeGap), ("conversation_facts", ConversationFact),
                    ("handoffs", Handoff), ("idempotency_keys", IdempotencyKey),
                    ("messages", Message),
                ):
                    column = table.conversation_id
                    counts[name] += _rowcount(
                        session.execute(delete(table).where(column.in_(chunk))))
                counts["conversations"] += _rowcount(
                    session.execute(delete(Conversation).where(Conversation.id.in_(chunk))))
            # Facts of conversations started before the customer row was linked.
            counts["conversation_facts"] += _rowcount(session.execute(
                delete(ConversationFact).where(ConversationFact.customer_id == customer_id)))
            counts["health"] = _rowcount(session.execute(
                delete(CustomerHealth).where(CustomerHealth.customer_id == customer_id)))
            counts["health_history"] = _rowcount(session.execute(
                delete(HealthHistory).where(HealthHistory.customer_id == customer_id)))
            # The model-token ledger names verified customers and CLI conversations.
            counts["token_spend"] = 0
            for chunk in _chunks([f"customer:{customer_id}",
                                  *(f"conversation:{c}" for c in conversations)]):
                counts["token_spend"] += _rowcount(session.execute(
                    delete(TokenSpend).where(TokenSpend.identity.in_(chunk))))
            counts["customers"] = _rowcount(
                session.execute(delete(Customer).where(Customer.id == customer_id)))
            return counts

    def compact(self) -> bool:
        """On SQLite, move the WAL into the file and truncate it (no old page copies left).

        Returns whether the checkpoint completed (a long-running reader can hold it up).
        """
        if self._engine.dialect.name != "sqlite":
            return True
        # Outside any transaction (a checkpoint cannot run inside one): the raw driver
        # connection, whose implicit BEGIN is switched off (see db.py).
        for _attempt in range(3):
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                busy, _log, _moved = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                cursor.close()
                if int(busy) == 0:
                    return True
            except sqlite3.OperationalError:
                # Another connection of this process is mid-statement; try again, then
                # report it (SQLite's next automatic checkpoint moves the pages anyway).
                pass
            finally:
                raw.close()
        return False

    # -- retention -----------------------------------------------------------------------

    def apply_retention(
        self,
        *,
        messages_before: datetime | None,
        events_before: datetime | None,
        audit_before: datetime | None,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """Delete what is older than each cutoff (``None``: keep forever); returns counts.

        Message text goes with its window: messages, idempotency keys, knowledge-gap
        questions and hand-off evidence. Events go only once the health projector has
        folded them, so scores and metrics (the aggregates) are kept.
        """
        counts: dict[str, int] = {}
        with self._write.begin() as session:
            cursor = _lock_projector(session)
            if messages_before is not None:
                counts["messages"] = _purge(session, Message, Message.created_at < messages_before,
                                            dry_run)
                counts["idempotency_keys"] = _purge(
                    session, IdempotencyKey, IdempotencyKey.created_at < messages_before, dry_run)
                counts["knowledge_gaps"] = _purge(
                    session, KnowledgeGap, KnowledgeGap.created_at < messages_before, dry_run)
                old_evidence = (Handoff.created_at < messages_before) & (
                    cast(Handoff.evidence, String) != "{}")
                counts["handoff_evidence"] = _count(session, Handoff, old_evidence) if dry_run \
                    else _rowcount(session.execute(
                        update(Handoff).where(old_evidence).values(evidence={})))
            if events_before is not None:
                folded = (Event.created_at < events_before) & (Event.id <= cursor)
                counts["events"] = _purge(session, Event, folded, dry_run)
                done = (WebhookDelivery.created_at < events_before) & (
                    WebhookDelivery.status != "pending")
                counts["webhook_deliveries"] = _purge(session, WebhookDelivery, done, dry_run)
            if audit_before is not None:
                counts["audit_log"] = _purge(session, AuditEntry, AuditEntry.at < audit_before,
                                             dry_run)
            if dry_run:
                session.rollback()
        return counts

    def inactive_customers(self, before: datetime) -> list[str]:
        """Customers whose last conversation activity (or creation, without any) is older
        than ``before``, oldest first."""
        last = func.max(Conversation.updated_at)
        query = (
            select(Customer.id)
            .outerjoin(Conversation, Conversation.customer_id == Customer.id)
            .group_by(Customer.id, Customer.created_at)
            .having(func.coalesce(last, Customer.created_at) < before)
            .order_by(func.coalesce(last, Customer.created_at))
        )
        with self._read() as session:
            return list(session.scalars(query))

    def oldest_message_at(self) -> datetime | None:
        """When the oldest stored message was written (``None`` when there is none)."""
        with self._read() as session:
            return session.scalar(select(func.min(Message.created_at)))

    # -- audit log -----------------------------------------------------------------------

    def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry to the audit log; returns its id."""
        with self._write.begin() as session:
            entry = AuditEntry(at=utcnow(), actor=actor[:100], action=action[:200],
                               target=target[:200] if target else None, outcome=outcome,
                               details=details or {})
            session.add(entry)
            session.flush()
            return int(entry.id)

    def audit_log(
        self, *, after: int = 0, limit: int = 100, action: str | None = None,
        actor: str | None = None,
    ) -> list[AuditRecord]:
        """Audit entries after id ``after``, oldest first."""
        query = select(AuditEntry).where(AuditEntry.id > after)
        if action:
            query = query.where(AuditEntry.action == action)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        with self._read() as session:
            return [
                AuditRecord(id=e.id, at=e.at, actor=e.actor, action=e.action, target=e.target,
                            outcome=e.outcome, details=dict(e.details or {}))
                for e in session.scalars(query.order_by(AuditEntry.id).limit(limit))
            ]


def _lock_projector(session: Session) -> int:
    """Lock the health projector's cursor row (waits for a running fold); its position."""
    row = session.scalars(
        select(ProjectionCursor).where(ProjectionCursor.name == HEALTH_CURSOR).with_for_update()
    ).one_or_none()
    return int(row.last_event_id) if row else 0


def _delete_events(session: Session, customer_id: str, conversations: list[str]) -> int:
    total = _rowcount(session.execute(delete(Event).where(Event.customer_id == customer_id)))
    for chunk in _chunks(conversations):
        total += _rowcount(session.execute(delete(Event).where(Event.conversation_id.in_(chunk))))
    return total


def _delete_deliveries(session: Session, ids: list[str]) -> int:
    # Webhook payloads name customers and conversations inside JSON; ids are 32 random
    # hex characters, so a substring match cannot hit anyone else's row.
    total = 0
    text = cast(WebhookDelivery.payload, String)
    for chunk in _chunks(ids):
        total += _rowcount(session.execute(
            delete(WebhookDelivery).where(or_(*(text.contains(i) for i in chunk)))
        ))
    return total


def _count(session: Session, table: Any, condition: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(condition)) or 0)


def _purge(session: Session, table: Any, condition: Any, dry_run: bool) -> int:
    if dry_run:
        return _count(session, table, condition)
    return _rowcount(session.execute(delete(table).where(condition)))


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)
