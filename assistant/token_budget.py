"""A daily chat-model token budget per identity (SECURITY.md #18).

Without it, one customer, or one script posting as visitors, can spend the team's whole
model budget and slow everyone else's answers. Each identity gets
``ASSISTANT_LLM_TOKENS_PER_IDENTITY_PER_DAY`` tokens per UTC day; once they are spent, its
turns are answered offline (the extractive answer, with its citations) until the day ends.
Nothing is refused: the customer still gets an answer and can still ask for a person.

Who is one identity: a verified customer (the widget's ``user_hash`` checked) is their
customer id, across all their conversations; anyone else is the address they post from
(hashed, never stored raw), so opening new conversations does not buy a new budget. Turns
with neither (the CLI) count per conversation.

The check comes before the model call and the charge after it, so an identity can pass
its budget by at most the calls it has in flight at the moment it crosses the line.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.storage.budget_repo import TokenSpendStore

logger = logging.getLogger(__name__)


def identity_for(
    *,
    conversation_id: str,
    customer_id: str | None,
    verified: bool,
    client_address: str | None,
) -> str:
    """The identity a turn's model tokens are charged to (see the module docstring)."""
    if customer_id and verified:
        return f"customer:{customer_id}"
    if client_address:
        digest = hashlib.sha256(client_address.encode("utf-8")).hexdigest()[:40]
        return f"ip:{digest}"
    return f"conversation:{conversation_id}"


def tokens_of(calls: Iterable[Mapping[str, Any]], *, unreported: int) -> int:
    """Tokens the model calls of one turn cost; each attempt of a call whose usage the
    endpoint did not report (a timeout, or a server without usage) counts as ``unreported``."""
    total = 0
    for call in calls:
        prompt = call.get("prompt_tokens")
        completion = call.get("completion_tokens")
        if prompt is None and completion is None:
            # Every attempt sent the prompt; a call the circuit breaker skipped sent nothing.
            attempts = 0 if call.get("outcome") == "circuit_open" else call.get("attempts", 1)
            total += unreported * max(0, int(attempts or 0))
            continue
        total += int(prompt or 0) + int(completion or 0)
    return total


class TokenBudget:
    """Per-identity daily budgets, kept in the database so every process spends one."""

    def __init__(
        self,
        store: TokenSpendStore,
        *,
        per_day: int,
        unreported_call_tokens: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self.per_day = per_day
        self._unreported = unreported_call_tokens
        self._clock = clock
        self._pruned_before: str | None = None
        self._prune_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether budgets are enforced (``0`` turns them off)."""
        return self.per_day > 0

    def _today(self) -> str:
        return self._clock().astimezone(UTC).date().isoformat()

    def remaining(self, identity: str) -> int:
        """Tokens ``identity`` may still spend today."""
        return max(0, self.per_day - self._store.spent(identity, self._today()))

    def allows(self, identity: str) -> bool:
        """Whether ``identity`` may call the model now; always true when disabled."""
        if not self.enabled:
            return True
        allowed = self.remaining(identity) > 0
        if not allowed:
            logger.info("token budget spent for %s today: answering offline", identity)
        return allowed

    def charge(self, identity: str, calls: Iterable[Mapping[str, Any]]) -> int:
        """Add what ``calls`` cost to ``identity``'s spend today; returns the tokens."""
        tokens = tokens_of(calls, unreported=self._unreported)
        if not self.enabled or tokens <= 0:
            return tokens
        today = self._today()
        self._store.add(identity, today, tokens)
        self._prune(today)
        return tokens

    def _prune(self, today: str) -> None:
        """Once per day per process, drop ledger days before yesterday (they limit nothing)."""
        keep_from = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
        with self._prune_lock:
            if self._pruned_before == keep_from:
                return
            self._pruned_before = keep_from
        self._store.forget_before(keep_from)
