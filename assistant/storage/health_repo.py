"""The health projector's storage: it folds the event log into health and metrics tables.

:meth:`HealthStore.fold_pending` reads the events after its cursor, in id order, and in
the same transaction updates customer health (through the pure
:mod:`assistant.health.model`), the per-day score history, one fact row per conversation,
per-day intent and sentiment counts, knowledge gaps, and the webhook outbox, then moves
the cursor. One transaction per batch means every event is folded exactly once, even
with several server processes (the cursor row is locked).

On PostgreSQL an event id can commit after a larger one; the projector only reads
events older than ``settle_seconds`` so a late commit is never skipped. SQLite commits in
id order, so there it reads everything.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from assistant.health.model import HealthConfig, fold, new_state, note_evidence, score
from assistant.storage.db import EngineStore
from assistant.storage.tables import (
    ConversationFact,
    Customer,
    CustomerHealth,
    DailyCount,
    Event,
    HealthHistory,
    KnowledgeGap,
    Message,
    ProjectionCursor,
    WebhookDelivery,
    utcnow,
)

CURSOR = "health"
RECONTACT_WINDOW = timedelta(days=7)
# Intents that say nothing about what the conversation is about.
# Events that change health; the rest only touch facts, counts or gaps.
MOVES_HEALTH = frozenset({"conversation.started", "message.classified", "handoff.enqueued",
                          "handoff.resolved", "handoff.returned", "csat.submitted"})
# Events the projector reads at all (retrievals, decisions, model calls... are skipped).
FOLDED = MOVES_HEALTH | frozenset({"handoff.claimed", "agent.message", "answer.feedback",
                                   "answer.composed"})
GENERIC_INTENTS = frozenset(
    {"unknown", "greeting", "thanks_goodbye", "human_request", "out_of_scope", "complaint"}
)


@dataclass(frozen=True)
class Signal:
    """An outbound signal to deliver to every webhook URL."""

    event: str
    data: dict[str, Any]


class HealthStore(EngineStore):
    """Folds new events into health and metrics tables; reads them back."""

    def __init__(self, engine: Engine, *, settle_seconds: float | None = None) -> None:
        super().__init__(engine)
        if settle_seconds is None:
            settle_seconds = 0.0 if engine.dialect.name == "sqlite" else 2.0
        self._settle = timedelta(seconds=settle_seconds)

    def cursor(self) -> int:
        """The id of the last folded event."""
        with self._read() as session:
            row = session.get(ProjectionCursor, CURSOR)
            return int(row.last_event_id) if row else 0

    def fold_pending(
        self, *, config: HealthConfig, webhook_urls: Sequence[str] = (), limit: int = 2000
    ) -> int:
        """Fold up to ``limit`` events after the cursor; returns how many were folded."""
        with self._write.begin() as session:
            cursor = session.scalars(
                select(ProjectionCursor).where(ProjectionCursor.name == CURSOR).with_for_update()
            ).one_or_none()
            if cursor is None:
                cursor = ProjectionCursor(name=CURSOR, last_event_id=0, updated_at=utcnow())
                session.add(cursor)
                session.flush()
            query = select(Event).where(Event.id > cursor.last_event_id)
            if self._settle:
                query = query.where(Event.created_at <= utcnow() - self._settle)
            events = list(session.scalars(query.order_by(Event.id).limit(limit)))
            if not events:
                return 0
            _Batch(session, config, webhook_urls).fold(events)
            cursor.last_event_id = events[-1].id
            cursor.updated_at = utcnow()
            return len(events)

    def catch_up(self, *, config: HealthConfig, webhook_urls: Sequence[str] = ()) -> int:
        """Fold every pending event; returns how many."""
        total = 0
        while folded := self.fold_pending(config=config, webhook_urls=webhook_urls):
            total += folded
        return total


    # -- reads ---------------------------------------------------------------------------

    def health_of(self, customer_id: str) -> HealthRow | None:
        """The customer's folded health, or ``None`` when nothing was folded for them."""
        with self._read() as session:
            row = session.get(CustomerHealth, customer_id)
            if row is None:
                return None
            return _health_row(row, session.get(Customer, customer_id))

    def history(self, customer_id: str, *, since: str) -> list[tuple[str, int, str]]:
        """``(day, score, band)`` for the days since ``since`` (ISO date) the score moved."""
        with self._read() as session:
            rows = session.execute(
                select(HealthHistory.day, HealthHistory.score, HealthHistory.band)
                .where(HealthHistory.customer_id == customer_id, HealthHistory.day >= since)
                .order_by(HealthHistory.day)
            )
            return [(day, score_, band) for day, score_, band in rows]

    def lowest(self, *, bands: Sequence[str], limit: int) -> list[HealthRow]:
        """Customers in ``bands``, lowest score first."""
        with self._read() as session:
            rows = session.execute(
                select(CustomerHealth, Customer)
                .join(Customer, Customer.id == CustomerHealth.customer_id)
                .where(CustomerHealth.band.in_(list(bands)))
                .order_by(CustomerHealth.score, CustomerHealth.updated_at.desc())
                .limit(limit)
            )
            return [_health_row(health, customer) for health, customer in rows]

    def band_counts(self) -> dict[str, int]:
        """How many customers are in each band."""
        with self._read() as session:
            rows = session.execute(
                select(CustomerHealth.band, func.count()).group_by(CustomerHealth.band)
            )
            return {band: int(n) for band, n in rows}

    def facts(self, *, since: datetime, until: datetime) -> list[FactRow]:
        """The conversation facts of conversations started in ``[since, until)``."""
        # Plain rows, not ORM objects: a 90-day summary reads tens of thousands of them.
        table = ConversationFact.__table__
        with self._read() as session:
            rows = session.execute(
                select(table).where(table.c.started_at >= since, table.c.started_at < until)
            )
            return [FactRow(**row._mapping) for row in rows]

    def counts(self, *, since: str, until: str, prefix: str) -> list[tuple[str, str, int]]:
        """``(day, key, count)`` of daily counters whose key starts with ``prefix``."""
        with self._read() as session:
            rows = session.execute(
                select(DailyCount.day, DailyCount.key, DailyCount.count)
                .where(DailyCount.day >= since, DailyCount.day < until,
                       DailyCount.key.startswith(prefix))
                .order_by(DailyCount.day)
            )
            return [(day, key, int(n)) for day, key, n in rows]

    def gaps(self, *, since: datetime, until: datetime, limit: int) -> list[GapRow]:
        """Knowledge gaps in ``[since, until)``, newest first, at most ``limit``."""
        with self._read() as session:
            rows = session.scalars(
                select(KnowledgeGap)
                .where(KnowledgeGap.created_at >= since, KnowledgeGap.created_at < until)
                .order_by(KnowledgeGap.id.desc())
                .limit(limit)
            )
            return [GapRow(id=r.id, conversation_id=r.conversation_id, created_at=r.created_at,
                           reason=r.reason, question=r.question, intent=r.intent,
                           agent_reply=r.agent_reply) for r in rows]


    def totals(self) -> dict[str, Any]:
        """All-time counters for /metrics: conversations, messages by sentiment, webhook
        deliveries by status, and how many logged events are not folded yet."""
        with self._read() as session:
            counts = dict(session.execute(
                select(DailyCount.key, func.sum(DailyCount.count))
                .where((DailyCount.key == "conversations")
                       | DailyCount.key.startswith("sentiment:"))
                .group_by(DailyCount.key)
            ).tuples().all())
            webhooks = dict(session.execute(
                select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
            ).tuples().all())
            newest = session.scalar(select(func.max(Event.id))) or 0
            cursor = session.get(ProjectionCursor, CURSOR)
        return {
            "conversations": int(counts.pop("conversations", 0) or 0),
            "sentiment": {k.removeprefix("sentiment:"): int(v) for k, v in counts.items()},
            "webhooks": {k: int(v) for k, v in webhooks.items()},
            "lag": int(newest) - (int(cursor.last_event_id) if cursor else 0),
        }


@dataclass(frozen=True)
class HealthRow:
    """A customer's stored health."""

    customer_id: str
    external_id: str | None
    name: str | None
    email: str | None
    plan: str | None
    score: int
    band: str
    state: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class FactRow:
    """One conversation's facts (see :class:`ConversationFact`)."""

    conversation_id: str
    customer_id: str | None
    started_at: datetime
    topic: str | None
    customer_messages: int
    handed_off: bool
    reasons: list[str]
    helpful: bool | None
    recontacted: bool
    csat: int | None
    csat_by: str | None
    handoff_at: datetime | None
    claimed_at: datetime | None
    first_human_reply_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class GapRow:
    """A question the KB could not answer (``no_answer``) or that ended with a person."""

    id: int
    conversation_id: str
    created_at: datetime
    reason: str
    question: str
    intent: str | None
    agent_reply: str | None


def _health_row(health: CustomerHealth, customer: Customer | None) -> HealthRow:
    return HealthRow(
        customer_id=health.customer_id,
        external_id=customer.external_id if customer else None,
        name=customer.name if customer else None,
        email=customer.email if customer else None,
        plan=customer.plan if customer else None,
        score=health.score, band=health.band, state=dict(health.state),
        updated_at=health.updated_at,
    )


class _Batch:
    """The rows one batch of events touches, loaded once and written at commit."""

    def __init__(self, session: Session, config: HealthConfig, urls: Sequence[str]) -> None:
        self.session = session
        self.config = config
        self.urls = list(urls)
        self.health: dict[str, CustomerHealth | None] = {}
        # Each customer's state is copied once per batch and written back at the end: a
        # deep copy per event was most of the projector's time.
        self.states: dict[str, dict[str, Any]] = {}
        self.history: dict[tuple[str, str], HealthHistory] = {}
        self.facts: dict[str, ConversationFact | None] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def fold(self, events: list[Event]) -> None:
        # Lookups must not flush every pending change first; the few queries that need
        # this batch's rows flush explicitly.
        with self.session.no_autoflush:
            for event in events:
                if event.type in FOLDED:
                    self._fold_one(event)
        for customer_id, state in self.states.items():
            row = self.health[customer_id]
            if row is not None:
                row.state = state  # a new object, so the JSON column is written
        self._write_counts()

    def _fold_one(self, event: Event) -> None:
        self._fact(event)
        self._count(event)
        self._gap(event)
        self._health(event)
        if event.type == "handoff.enqueued" and not event.payload.get("merged"):
            self._signal(Signal("conversation.handed_off", {
                "conversation_id": event.conversation_id,
                "customer_id": event.customer_id,
                "team": event.payload.get("team"),
                "priority": event.payload.get("priority"),
                "reasons": event.payload.get("reasons") or [],
            }), event.created_at)
        if event.type == "message.classified" and event.payload.get("churn_signals"):
            self._signal(Signal("churn.signal", {
                "conversation_id": event.conversation_id,
                "customer_id": event.customer_id,
                "signals": event.payload["churn_signals"],
            }), event.created_at)

    # -- customer health ---------------------------------------------------------------

    def _health(self, event: Event) -> None:
        customer_id = event.customer_id
        if customer_id is None:
            return
        if customer_id not in self.health:
            row = self.session.get(CustomerHealth, customer_id)
            if row is None and self.session.get(Customer, customer_id) is not None:
                row = CustomerHealth(customer_id=customer_id, score=100, band="healthy",
                                     state=new_state(), updated_at=event.created_at)
                self.session.add(row)
            self.health[customer_id] = row
        row = self.health[customer_id]
        if row is None or event.type not in MOVES_HEALTH:  # erased customers are history
            return
        if customer_id not in self.states:
            self.states[customer_id] = copy.deepcopy(row.state)
        state = self.states[customer_id]
        before = score(state, event.created_at, self.config)
        moved = fold(state, type=event.type, payload=event.payload,
                     conversation_id=event.conversation_id, at=event.created_at,
                     config=self.config)
        if not moved:
            return
        after = score(state, event.created_at, self.config)
        note_evidence(state, before=before.score, after=after.score, moved=moved,
                      event_type=event.type, conversation_id=event.conversation_id,
                      at=event.created_at)
        row.score, row.band, row.updated_at = after.score, after.band, event.created_at
        day = event.created_at.date().isoformat()
        history = self.history.get((customer_id, day)) or self.session.get(
            HealthHistory, (customer_id, day))
        if history is None:
            history = HealthHistory(customer_id=customer_id, day=day, score=after.score,
                                    band=after.band)
            self.session.add(history)
        history.score, history.band = after.score, after.band
        self.history[(customer_id, day)] = history
        if after.band == "at_risk" and before.band != "at_risk":
            self._signal(Signal("customer.at_risk", {
                "customer_id": customer_id,
                "conversation_id": event.conversation_id,
                "score": after.score,
                "previous_score": before.score,
                "previous_band": before.band,
                "components": {n: c.as_dict() for n, c in after.components.items()},
            }), event.created_at)

    # -- conversation facts ------------------------------------------------------------

    def _fact_row(self, event: Event) -> ConversationFact | None:
        conversation_id = event.conversation_id
        if conversation_id is None:
            return None
        if conversation_id not in self.facts:
            row = self.session.get(ConversationFact, conversation_id)
            if row is None:
                row = ConversationFact(
                    conversation_id=conversation_id, customer_id=event.customer_id,
                    started_at=event.created_at, customer_messages=0, handed_off=False,
                    reasons=[], recontacted=False,
                )
                self.session.add(row)
            self.facts[conversation_id] = row
        return self.facts[conversation_id]

    def _fact(self, event: Event) -> None:
        kind, payload = event.type, event.payload
        if kind not in {"conversation.started", "message.classified", "handoff.enqueued",
                        "handoff.claimed", "agent.message", "handoff.resolved",
                        "csat.submitted", "answer.feedback"}:
            return
        fact = self._fact_row(event)
        if fact is None:
            return
        if kind == "message.classified":
            fact.customer_messages = (fact.customer_messages or 0) + 1
            if fact.resolved_at is not None:
                fact.recontacted = True  # written to again after it was resolved: reopened
            intent = payload.get("intent")
            if fact.topic is None and intent and intent not in GENERIC_INTENTS:
                fact.topic = str(intent)
                self._mark_recontacts(fact)
        elif kind == "handoff.enqueued" and not payload.get("merged"):
            fact.handed_off = True
            fact.handoff_at = fact.handoff_at or event.created_at
            fact.reasons = sorted({*(fact.reasons or []), *(payload.get("reasons") or [])})
        elif kind == "handoff.claimed":
            fact.claimed_at = fact.claimed_at or event.created_at
        elif kind == "agent.message":
            fact.first_human_reply_at = fact.first_human_reply_at or event.created_at
        elif kind == "handoff.resolved":
            fact.resolved_at = event.created_at
        elif kind == "csat.submitted":
            fact.csat = int(payload.get("score") or 0) or None
            fact.csat_by = payload.get("handled_by")
        elif kind == "answer.feedback":
            fact.helpful = bool(payload.get("helpful"))

    def _mark_recontacts(self, fact: ConversationFact) -> None:
        """The same customer came back about the same topic: the earlier conversations
        of the last 7 days were not durably resolved."""
        if fact.customer_id is None:
            return
        self.session.flush()  # this batch's conversations count too
        earlier = self.session.scalars(
            select(ConversationFact).where(
                ConversationFact.customer_id == fact.customer_id,
                ConversationFact.topic == fact.topic,
                ConversationFact.conversation_id != fact.conversation_id,
                ConversationFact.started_at >= fact.started_at - RECONTACT_WINDOW,
                ConversationFact.started_at <= fact.started_at,
            )
        )
        for row in earlier:
            row.recontacted = True

    # -- counts and gaps ---------------------------------------------------------------

    def _count(self, event: Event) -> None:
        day = event.created_at.date().isoformat()
        keys: list[str] = []
        if event.type == "conversation.started":
            keys.append("conversations")
        elif event.type == "message.classified":
            keys += [f"intent:{event.payload.get('intent') or 'unknown'}",
                     f"sentiment:{event.payload.get('sentiment') or 'neutral'}"]
        for key in keys:
            self.counts[(day, key)] = self.counts.get((day, key), 0) + 1

    def _write_counts(self) -> None:
        for (day, key), add in self.counts.items():
            row = self.session.get(DailyCount, (day, key))
            if row is None:
                self.session.add(DailyCount(day=day, key=key, count=add))
            else:
                row.count += add

    def _gap(self, event: Event) -> None:
        if event.conversation_id is None:
            return
        if event.type == "answer.composed" and event.payload.get("abstained"):
            self._add_gap(event, "no_answer")
        elif event.type == "handoff.enqueued" and not event.payload.get("merged"):
            self._add_gap(event, "handoff")
        elif event.type == "agent.message":
            reply = self.session.get(Message, event.payload.get("message_id"))
            if reply is None:
                return
            self.session.flush()
            for gap in self.session.scalars(select(KnowledgeGap).where(
                KnowledgeGap.conversation_id == event.conversation_id,
                KnowledgeGap.agent_reply.is_(None),
            )):
                gap.agent_reply = reply.text

    def _add_gap(self, event: Event, reason: str) -> None:
        question = self.session.scalars(
            select(Message)
            .where(Message.conversation_id == event.conversation_id,
                   Message.role == "customer", Message.created_at <= event.created_at)
            .order_by(Message.id.desc())
            .limit(1)
        ).one_or_none()
        if question is None:
            return
        self.session.flush()
        known = self.session.scalars(
            select(KnowledgeGap.id).where(KnowledgeGap.message_id == question.id).limit(1)
        ).one_or_none()
        if known is not None:
            return
        fact = self.facts.get(event.conversation_id or "")
        self.session.add(KnowledgeGap(
            conversation_id=event.conversation_id, message_id=question.id,
            created_at=event.created_at, reason=reason, question=question.text,
            intent=(question.annotations or {}).get("intent", {}).get("label")
            or (fact.topic if fact else None),
        ))

    # -- outbound signals --------------------------------------------------------------

    def _signal(self, signal: Signal, at: datetime) -> None:
        for url in self.urls:
            self.session.add(WebhookDelivery(
                event=signal.event, url=url, status="pending", attempts=0,
                payload={"type": signal.event, "created_at": at.isoformat(),
                         "data": signal.data},
                next_attempt_at=utcnow(), created_at=utcnow(),
            ))
