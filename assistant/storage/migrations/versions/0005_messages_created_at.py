"""Index messages by time: retention, exports by date and the start-up repair of
promised hand-offs select by ``created_at`` and would otherwise scan every message.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_created_at"), table_name="messages")
