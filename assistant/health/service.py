"""Customer health for the API and the console: fold what is new, then read.

:class:`HealthService` owns the projector's catch-up (the server runs it every few
seconds, and every read runs it first, so a read is never stale) and shapes a customer's
health for ``GET /v1/customers/{id}/health``: the score *now* (decaying signals age
between events), its components, the daily trend and the conversations that moved it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from assistant.errors import NotFound
from assistant.health.model import HealthConfig, new_state, score
from assistant.storage.health_repo import HealthRow, HealthStore
from assistant.storage.repos import Store

logger = logging.getLogger(__name__)

TREND_DAYS = 90


@dataclass(frozen=True)
class CustomerHealthView:
    """What ``GET /v1/customers/{id}/health`` returns."""

    customer: dict[str, Any]
    score: int
    band: str
    components: dict[str, dict[str, Any]]
    trend: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    updated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "customer": self.customer, "score": self.score, "band": self.band,
            "components": self.components, "trend": self.trend, "evidence": self.evidence,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


class HealthService:
    """Keeps health current and answers questions about it."""

    def __init__(
        self,
        *,
        store: Store,
        health: HealthStore,
        config: HealthConfig,
        webhook_urls: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._health = health
        self.config = config
        self._urls = list(webhook_urls)
        self._lock = threading.Lock()

    def catch_up(self) -> int:
        """Fold every event logged since the last call; returns how many."""
        # One folder per process at a time; across processes the cursor row's lock decides.
        with self._lock:
            return self._health.catch_up(config=self.config, webhook_urls=self._urls)

    def customer(self, customer_ref: str, *, now: datetime | None = None) -> CustomerHealthView:
        """A customer's health by internal id or by the host application's id.

        Raises:
            NotFound: No such customer.
        """
        self.catch_up()
        record = self._store.get_customer(customer_ref) or self._store.customer_by_external_id(
            customer_ref)
        if record is None:
            raise NotFound(f"no customer {customer_ref!r}")
        now = now or datetime.now(UTC)
        row = self._health.health_of(record.id)
        state = row.state if row else new_state()
        current = score(state, now, self.config)
        since = (now - timedelta(days=TREND_DAYS)).date().isoformat()
        trend = [{"day": day, "score": value, "band": band}
                 for day, value, band in self._health.history(record.id, since=since)]
        return CustomerHealthView(
            customer={"id": record.id, "external_id": record.external_id, "name": record.name,
                      "email": record.email, "plan": record.plan},
            score=current.score,
            band=current.band,
            components={name: c.as_dict() for name, c in current.components.items()},
            trend=trend,
            evidence=list(reversed(state.get("evidence", []))),
            updated_at=row.updated_at if row else None,
        )

    def at_risk(self, *, limit: int = 50, bands: Sequence[str] = ("at_risk",),
                now: datetime | None = None) -> list[HealthRow]:
        """Customers in ``bands`` when last folded, with their score *now* (signals age
        between events, as on the customer's page), lowest first."""
        self.catch_up()
        now = now or datetime.now(UTC)
        rows = []
        for row in self._health.lowest(bands=bands, limit=limit):
            current = score(row.state, now, self.config)
            rows.append(replace(row, score=current.score, band=current.band))
        return sorted(rows, key=lambda r: (r.score, r.customer_id))

    def totals(self) -> dict[str, Any]:
        """All-time counters (see :meth:`HealthStore.totals`)."""
        return self._health.totals()

    def band_counts(self) -> dict[str, int]:
        """Customers per band."""
        self.catch_up()
        return self._health.band_counts()


class HealthWorker:
    """Folds new events every few seconds in the background (a daemon thread)."""

    def __init__(self, service: HealthService, *, interval_seconds: float) -> None:
        self._service = service
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        """Start folding."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the current pass."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._service.catch_up()
            except Exception:  # a failed pass is retried on the next tick, never fatal
                logger.exception("health: folding new events failed")
