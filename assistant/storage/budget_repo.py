"""The chat-model token ledger behind :mod:`assistant.token_budget`.

One row per identity per UTC day. Adding is one upsert, so concurrent turns of one
identity (in any process sharing the database) add up instead of overwriting each other.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from assistant.storage.db import EngineStore
from assistant.storage.tables import TokenSpend, utcnow


class TokenSpendStore(EngineStore):
    """Reads and adds to the per-identity, per-day token ledger."""

    def spent(self, identity: str, day: str) -> int:
        """Tokens ``identity`` has spent on ``day`` (``YYYY-MM-DD``, UTC)."""
        with self._read() as session:
            found = session.scalar(
                select(TokenSpend.tokens).where(
                    TokenSpend.identity == identity, TokenSpend.day == day
                )
            )
            return int(found or 0)

    def add(self, identity: str, day: str, tokens: int) -> None:
        """Add ``tokens`` to ``identity``'s spend on ``day``."""
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        now = utcnow()
        statement = insert(TokenSpend).values(
            identity=identity, day=day, tokens=tokens, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[TokenSpend.identity, TokenSpend.day],
            set_={"tokens": TokenSpend.tokens + tokens, "updated_at": now},
        )
        with self._write.begin() as session:
            session.execute(statement)

    def forget_before(self, day: str) -> int:
        """Delete every day before ``day``; how many rows went."""
        with self._write.begin() as session:
            result = session.execute(delete(TokenSpend).where(TokenSpend.day < day))
            return int(getattr(result, "rowcount", 0) or 0)
