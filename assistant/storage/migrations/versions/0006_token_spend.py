"""Per-identity chat-model token ledger (SECURITY.md #18: one identity cannot spend the
whole model budget).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_spend",
        sa.Column("identity", sa.String(length=100), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identity", "day", name=op.f("pk_token_spend")),
    )
    op.create_index(op.f("ix_token_spend_day"), "token_spend", ["day"])


def downgrade() -> None:
    op.drop_index(op.f("ix_token_spend_day"), table_name="token_spend")
    op.drop_table("token_spend")
