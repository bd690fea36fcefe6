"""Conversation-row helpers shared by the stores: the per-conversation lock and its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.errors import NotFound
from assistant.storage.tables import Conversation, Event


def lock_conversation(session: Session, conversation_id: str) -> Conversation:
    """The conversation row, locked for the rest of the transaction.

    FOR UPDATE serializes writers per conversation on PostgreSQL (SQLite ignores it;
    BEGIN IMMEDIATE already serializes all writers there). Every store that changes a
    conversation takes this lock first, so locks are always taken in the same order.

    Raises:
        NotFound: There is no such conversation.
    """
    row = session.scalars(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"no conversation {conversation_id!r}")
    return row


def add_conversation_event(
    session: Session,
    *,
    type: str,
    conversation: Conversation,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """Append an interaction event about ``conversation`` to the session's transaction."""
    session.add(
        Event(
            type=type,
            conversation_id=conversation.id,
            customer_id=conversation.customer_id,
            payload=payload,
            created_at=now,
        )
    )
