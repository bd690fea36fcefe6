"""Health scale: ingest, projector and metric queries over a million-event log.

Writes a realistic synthetic interaction log straight into the tables of a fresh database
(SQLite file in a temporary directory, and/or a fresh PostgreSQL schema) with bulk
``INSERT`` executemany in chunks: customers, conversations, customer / bot / agent
messages and the events the product logs for them, with realistic payloads
(``conversation.started``, then per turn ``message.received``, ``message.classified``,
``retrieval.performed``, ``answer.composed``, ``decision.made``, ``answer.sent``; for ~15%
of conversations ``handoff.enqueued``, ``handoff.claimed``, ``agent.message``,
``handoff.resolved``; ``csat.submitted`` for ~20%, ``answer.feedback`` for ~10%). 1-5 turns
per conversation (about 3), so about 19 events per conversation; ~10% anonymous;
customers are picked with a skewed (Zipf-like) weight so some contact support often.
Conversation starts are spread uniformly over 90 days; the events of all conversations
are merged into one time-ordered stream, so ids follow ``created_at``.

Then, on each backend, it times:

1. ingest: writing the rows (events, and all rows; the bulk path is a lower bound on
   what the server's one-transaction-per-turn writes cost);
2. the projector folding the whole log (``HealthStore.catch_up``'s loop of
   ``fold_pending``, batches of 2000), in events/s, also per tenth of the log to show
   whether folding slows down as the tables grow; then 1,000 new events are appended
   (new conversations of existing customers) and the fold of that increment is timed,
   which is what a running server does every ``health_poll_seconds``; and a no-op
   ``catch_up`` (nothing pending), which every health and analytics read runs first;
3. ``AnalyticsService.summary`` for the last 30 and 90 days, with the offline
   ``HashingEmbedder`` for knowledge-gap clustering and with ``embed=None`` (no
   clustering) so the clustering cost is visible; at most 2000 gaps are clustered;
4. ``HealthService.customer`` for a random sample of customers (p50/p95) and
   ``HealthService.at_risk(limit=50)``;
5. the size of the database on disk (SQLite file + WAL after a checkpoint; on PostgreSQL
   the total size of the run's schema, and ``pg_database_size`` of the whole database).

Read timings are the median of ``--repeat`` runs (the first run is reported too). On
PostgreSQL the run creates its own schema (``CREATE SCHEMA bench_<random>``, selected
with ``?options=-csearch_path=...``) and drops it afterwards, so a shared database is left
clean; ``ANALYZE`` runs after the bulk load, as autovacuum would. On SQLite no ``ANALYZE``
runs (the product never runs it).

    python benchmarks/health_scale.py [--events 1000000] [--customers 20000]
        [--backend sqlite|postgresql|both] [--pg-url URL] [--seed 7] [--repeat 3]
        [--sample 200] [--profile] [--tmp-dir DIR] [--json results/health_scale.json]

The PostgreSQL URL comes from ``--pg-url`` or ``ASSISTANT_TEST_DATABASE_URL``, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``. ``--events 50000`` is a quick
smoke check. ``--profile`` runs the full fold, and one 90-day summary, under cProfile
(slower: the fold time then includes the profiler's overhead) and prints where the time
goes. Timings on a shared machine move with its load: the load average at the start and
end of each backend's run is in the JSON.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import heapq
import io
import itertools
import os
import pstats
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, console, fresh_pg_schema, percentile, show_table, write_json
from sqlalchemy import Engine, func, insert, select, text

from assistant.embeddings import HashingEmbedder
from assistant.health.analytics import GAPS_CLUSTERED, AnalyticsService, Window
from assistant.health.model import HealthConfig, load_health_config
from assistant.health.service import HealthService
from assistant.storage.db import make_engine, migrate
from assistant.storage.health_repo import HealthStore
from assistant.storage.repos import Store
from assistant.storage.tables import (
    Conversation,
    ConversationFact,
    Customer,
    CustomerHealth,
    DailyCount,
    Event,
    HealthHistory,
    KnowledgeGap,
    Message,
)

CHUNK = 10_000
DAYS = 90
INCREMENT_EVENTS = 1_000
LOG_END_BEFORE_NOW = timedelta(hours=6)  # the bulk log's last conversation starts then

HANDOFF_SHARE = 0.125  # x per-intent bias: about 15% of conversations are handed off
CSAT_SHARE = 0.20
FEEDBACK_SHARE = 0.10
ANONYMOUS_SHARE = 0.10
TURN_WEIGHTS = {1: 0.15, 2: 0.20, 3: 0.30, 4: 0.20, 5: 0.15}  # mean 2.95 turns

INTENT_WEIGHTS = {
    "how_to": 20, "login_access": 12, "billing_question": 10, "refund_request": 4,
    "cancellation": 4, "plan_pricing": 6, "bug_report": 10, "feature_request": 5,
    "account_change": 6, "data_export_deletion": 4, "security_privacy": 3, "complaint": 4,
    "human_request": 3, "greeting": 3, "thanks_goodbye": 3, "out_of_scope": 3,
}
NEGATIVE_INTENTS = {"complaint", "cancellation", "refund_request", "bug_report"}
CHURN_BY_INTENT = {  # intent: (probability, signal kinds to pick from)
    "cancellation": (0.5, ["cancellation", "downgrade", "competitor"]),
    "refund_request": (0.4, ["refund_demand", "chargeback"]),
    "complaint": (0.15, ["not_worth_it", "competitor", "legal_threat"]),
}
FRUSTRATION_CUES = ["repeated_contact", "waiting", "shouting", "punctuation", "profanity",
                    "sarcasm", "threat_to_leave", "escalation"]
HANDOFF_REASONS = {  # reason: (team, priority)
    "human_requested": ("support", 2), "churn_risk": ("retention", 3),
    "cancellation_intent": ("retention", 2), "refund_request": ("billing", 2),
    "very_frustrated": ("support", 3), "low_confidence": ("support", 1),
    "bot_failed_twice": ("support", 2), "security_incident": ("support", 4),
}
PREFIXES = ["", "", "", "Hi, ", "Hello! ", "hey ", "Quick question: ", "Good morning. "]
SUFFIXES = ["", "", "", " Thanks.", " Thanks in advance!", " This is urgent.",
            " We are on the business plan.", " I tried twice already."]
# Questions the help center does not cover: they end as knowledge gaps.
UNCOVERED = [
    "Do you have an on-premise version we can host ourselves?",
    "Can Tallyboard connect to our SAP HANA warehouse?",
    "Is there a mobile app for Android tablets?",
    "Can I embed a dashboard in Notion?",
    "Does the API support GraphQL?",
    "Can we get a SOC 2 Type II report before we sign?",
    "Why is my Redshift sync showing a certificate error?",
    "Can dashboards refresh every 30 seconds?",
    "Do you offer a reseller or partner program?",
    "Can I set a different time zone per dashboard?",
    "How do I connect to a MongoDB Atlas cluster?",
    "Is there a dark mode?",
    "Can I pay by bank transfer in Brazilian reais?",
    "Why does the CSV import drop leading zeros from zip codes?",
    "Can alerts be sent to Microsoft Teams?",
]
PLANS = ["free", "starter", "team", "business", "enterprise"]
FIRST_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas",
               "Kofi", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Yuki"]
LAST_NAMES = ["Alvarez", "Brown", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad",
              "Ivanova", "Jensen", "Kim", "Lopez", "Müller", "Nakamura", "Okafor", "Patel"]
ANSWER_TEMPLATE = (
    "Here is how to do that: open Settings, then {section}, and follow the steps in the "
    "article below. If the option is greyed out, ask a workspace admin: only admins can "
    "change it. Sources: {sources}."
)
AGENT_REPLIES = [
    "Thanks for waiting, I have looked into your account and fixed it on our side.",
    "I have raised this with our engineers; I will update you here as soon as I hear back.",
    "I have issued the refund; you will see it on your statement in 5-10 business days.",
    "That is not something we support today, but I have added your vote to the request.",
    "I reset the two-factor authentication on your account; you can sign in again now.",
    "Your plan is changed, effective from the next billing cycle. Anything else?",
]


def _articles() -> list[str]:
    """Knowledge-base article ids (``section/slug``), as retrieval logs them."""
    kb = ROOT / "knowledge_base"
    found = sorted(str(p.relative_to(kb).with_suffix("")) for p in kb.rglob("*.md"))
    return found or [f"article-{n}" for n in range(50)]


def _utterances() -> dict[str, list[str]]:
    """The example utterances of every intent in the shipped taxonomy."""
    path = ROOT / "assistant" / "understanding" / "data" / "intents.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))["intents"]
    return {name: list(spec.get("examples") or [name.replace("_", " ")])
            for name, spec in data.items()}


# -- the synthetic log -----------------------------------------------------------------------


@dataclass
class Draft:
    """A message to insert; it gets its id (and time) when the event that creates it is
    written, so message ids follow time like event ids do."""

    conversation_id: str
    role: str
    text: str
    annotations: dict[str, Any]
    id: int | None = None


@dataclass
class Plan:
    """One conversation to generate."""

    id: str
    customer_id: str | None
    start: datetime
    turns: int
    handoff: bool
    csat: bool
    feedback: bool
    intent: str
    uncovered: bool
    status: str = "bot"
    updated_at: datetime | None = None


@dataclass(order=True)
class PendingEvent:
    """An event waiting in the time-ordered merge of all conversations."""

    at: datetime
    seq: int
    type: str = field(compare=False)
    conversation_id: str = field(compare=False)
    customer_id: str | None = field(compare=False)
    payload: dict[str, Any] = field(compare=False)
    message: Draft | None = field(compare=False, default=None)  # created by this event
    refs: dict[str, Draft] = field(compare=False, default_factory=dict)  # payload ids


class LogGenerator:
    """Deterministic (per seed) customers, conversations, messages and events."""

    def __init__(self, rng: random.Random, *, customers: int) -> None:
        self.rng = rng
        self.articles = _articles()
        self.utterances = _utterances()
        self.intents = [i for i in INTENT_WEIGHTS if i in self.utterances]
        self.intent_cum = list(itertools.accumulate(INTENT_WEIGHTS[i] for i in self.intents))
        self.customer_ids = [self._hex(32) for _ in range(customers)]
        weights = [1.0 / (rank + 10) ** 0.9 for rank in range(customers)]
        self.customer_cum = list(itertools.accumulate(weights))
        self.turn_values = list(TURN_WEIGHTS)
        self.turn_cum = list(itertools.accumulate(TURN_WEIGHTS.values()))
        self.seq = itertools.count()

    def _hex(self, chars: int) -> str:
        return f"{self.rng.getrandbits(chars * 4):0{chars}x}"

    def customer_rows(self, before: datetime) -> list[dict[str, Any]]:
        rows = []
        for n, cid in enumerate(self.customer_ids):
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            rows.append({
                "id": cid, "external_id": f"acct-{n:07d}",
                "email": f"{first.lower()}.{last.lower()}{n}@example.com",
                "name": f"{first} {last}", "plan": self.rng.choice(PLANS), "verified": True,
                "created_at": before - timedelta(days=self.rng.uniform(1, 700)),
            })
        return rows

    def plans(self, target_events: int, *, since: datetime, until: datetime) -> list[Plan]:
        """Conversations (sorted by start) whose events add up to ``target_events``."""
        rng, plans, total = self.rng, [], 0.0
        span = (until - since).total_seconds()
        while total < target_events:
            anonymous = rng.random() < ANONYMOUS_SHARE
            customer = None if anonymous else self.customer_ids[
                bisect.bisect(self.customer_cum, rng.random() * self.customer_cum[-1])]
            intent = self.intents[bisect.bisect(self.intent_cum,
                                                rng.random() * self.intent_cum[-1])]
            handoff_bias = 2.5 if intent in NEGATIVE_INTENTS | {"human_request"} else 0.8
            plan = Plan(
                id=self._hex(32), customer_id=customer,
                start=since + timedelta(seconds=rng.random() * span),
                turns=self.turn_values[bisect.bisect(self.turn_cum,
                                                     rng.random() * self.turn_cum[-1])],
                handoff=rng.random() < HANDOFF_SHARE * handoff_bias,
                csat=rng.random() < CSAT_SHARE, feedback=rng.random() < FEEDBACK_SHARE,
                intent=intent, uncovered=rng.random() < 0.08,
            )
            plans.append(plan)
            # Expected events (a hand-off adds about 4); a little under, so the log reaches
            # the target rather than stopping short of it.
            total += 1 + 6 * plan.turns + (4.0 if plan.handoff else 0) + 0.95 * plan.csat \
                + 0.9 * plan.feedback
        plans.sort(key=lambda p: p.start)
        return plans

    def conversation_rows(self, plans: list[Plan]) -> list[dict[str, Any]]:
        return [{"id": p.id, "customer_id": p.customer_id, "token_hash": self._hex(64),
                 "status": p.status, "created_at": p.start,
                 "updated_at": p.updated_at or p.start} for p in plans]

    def _question(self, intent: str, uncovered: bool) -> str:
        rng = self.rng
        base = rng.choice(UNCOVERED) if uncovered else rng.choice(self.utterances[intent])
        return f"{rng.choice(PREFIXES)}{base}{rng.choice(SUFFIXES)}"

    def events(self, plan: Plan, *, pace: float = 1.0) -> list[PendingEvent]:
        """Every event of one conversation, in time order; also sets its final status.

        ``pace`` scales the human delays (queue wait, handle time), to fit an increment
        into the last minutes.
        """
        rng = self.rng
        cid, cust = plan.id, plan.customer_id
        out: list[PendingEvent] = []
        t = plan.start

        def emit(kind: str, payload: dict[str, Any], *, message: Draft | None = None,
                 refs: dict[str, Draft] | None = None, gap: float = 0.005) -> None:
            nonlocal t
            t = t + timedelta(seconds=gap)
            out.append(PendingEvent(t, next(self.seq), kind, cid, cust, payload, message,
                                    refs or {}))

        emit("conversation.started", {"verified": cust is not None}, gap=0)
        answers: list[Draft] = []
        handoff_turn = plan.turns if plan.handoff else 0
        intent = plan.intent
        for turn in range(1, plan.turns + 1):
            if turn > 1 and rng.random() < 0.4:
                intent = self.intents[bisect.bisect(self.intent_cum,
                                                    rng.random() * self.intent_cum[-1])]
            t += timedelta(seconds=rng.uniform(15, 180) if turn > 1 else rng.uniform(2, 20))
            question = self._question(intent, plan.uncovered and turn == 1)
            negative = intent in NEGATIVE_INTENTS or turn == handoff_turn
            sentiment = rng.choices(["negative", "neutral", "positive"],
                                    [0.6, 0.3, 0.1] if negative else [0.12, 0.6, 0.28])[0]
            frustration = round(rng.uniform(0.35, 0.95) if sentiment == "negative"
                                else rng.uniform(0.0, 0.3), 4)
            cues = rng.sample(FRUSTRATION_CUES, rng.randint(1, 2)) if frustration > 0.5 else []
            churn: list[str] = []
            prob, kinds = CHURN_BY_INTENT.get(intent, (0.01, ["competitor", "downgrade"]))
            if rng.random() < prob:
                churn = [rng.choice(kinds)]
            confidence = round(rng.uniform(0.35, 0.97), 4)
            asked = Draft(cid, "customer", question, {
                "intent": {"label": intent, "confidence": confidence, "top": []},
                "sentiment": {"label": sentiment},
                "frustration": {"score": frustration,
                                "cues": [{"name": c, "text": ""} for c in cues]},
                "churn_signals": [{"kind": k, "text": ""} for k in churn],
            })
            emit("message.received", {"message_id": None, "chars": len(question)},
                 message=asked, refs={"message_id": asked}, gap=0)
            emit("message.classified", {
                "intent": intent, "intent_confidence": confidence, "sentiment": sentiment,
                "frustration": frustration, "frustration_cues": cues, "churn_signals": churn,
            }, gap=rng.uniform(0.005, 0.03))
            abstained = (plan.uncovered and turn == 1) or rng.random() < (
                0.6 if intent == "out_of_scope" else 0.1)
            found = rng.sample(self.articles, 3)
            retrieval_conf = round(rng.uniform(0.1, 0.3) if abstained
                                   else rng.uniform(0.4, 0.9), 4)
            emit("retrieval.performed", {
                "query_chars": len(question), "article_ids": found,
                "confidence": retrieval_conf, "below_threshold": abstained,
                "threshold": 0.35, "mode": "hybrid",
            }, gap=rng.uniform(0.005, 0.02))
            cited = [] if abstained else found[: rng.randint(1, 2)]
            latency = round(rng.uniform(6, 45), 2)
            emit("answer.composed", {
                "answerer": "extractive", "abstained": abstained, "cited_article_ids": cited,
                "latency_ms": latency, "fallback": "no_answer" if abstained else None,
            }, gap=latency / 1000)
            handing_off = turn == handoff_turn
            if handing_off:
                reason = rng.choice(list(HANDOFF_REASONS))
                team, priority = HANDOFF_REASONS[reason]
                reasons = [reason] + (["frustrated"] if rng.random() < 0.3 else [])
                emit("decision.made", {"action": "handoff", "reasons": reasons,
                                       "priority": priority, "evidence": {reason: question[:80]},
                                       "team": team})
                emit("handoff.enqueued", {
                    "handoff_id": self._hex(32), "team": team, "priority": priority,
                    "reasons": reasons, "merged": False,
                    "due_at": (t + timedelta(minutes=30)).isoformat(),
                })
                reply_text = ("I'm bringing in a person from our support team. They will see "
                              "everything we have talked about here.")
            else:
                emit("decision.made", {"action": "answer", "reasons": [], "priority": 0,
                                       "evidence": {}, "team": None})
                reply_text = ("I could not find this in our help center. Could you rephrase, "
                              "or ask for a person?") if abstained else ANSWER_TEMPLATE.format(
                    section=intent.replace("_", " "), sources=", ".join(cited))
            reply = Draft(cid, "assistant", reply_text, {
                "answerer": "extractive", "abstained": abstained,
                "citations": [{"article_id": a, "score": retrieval_conf} for a in cited],
                "fallback": None, "checks": {}, "model_calls": [], "injection": [],
            })
            emit("answer.sent", {"message_id": None, "reply_to": None,
                                 "conversation_status": "waiting" if handing_off else "bot"},
                 message=reply, refs={"message_id": reply, "reply_to": asked})
            if not handing_off:
                answers.append(reply)
        status = "bot"
        if answers and plan.feedback:
            target = rng.choice(answers)
            emit("answer.feedback", {"message_id": None, "helpful": rng.random() < 0.7},
                 refs={"message_id": target}, gap=rng.uniform(3, 30))
        claimed = False
        if plan.handoff:
            status = "waiting"
            fate = rng.random()
            if fate > 0.05:  # 5% still waiting in the queue
                claimed, status = True, "agent"
                emit("handoff.claimed", {"agent_id": "agent-1", "agent_name": "Support",
                                         "wait_seconds": 0, "overdue": False},
                     gap=rng.uniform(60, 3600) * pace)
                for n in range(1 if rng.random() < 0.7 else 2):
                    said = Draft(cid, "agent", rng.choice(AGENT_REPLIES),
                                 {"agent_id": "agent-1", "agent_name": "Support"})
                    emit("agent.message", {"message_id": None, "agent_id": "agent-1"},
                         message=said, refs={"message_id": said},
                         gap=rng.uniform(30, 600 if n == 0 else 900) * pace)
                if fate > 0.10:  # 5% claimed but not resolved yet
                    status = "resolved"
                    emit("handoff.resolved", {"resolution_code": "solved"},
                         gap=rng.uniform(300, 7200) * pace)
        if plan.csat and status in ("bot", "resolved"):
            score_ = rng.choices([5, 4, 3, 2, 1], [0.40, 0.30, 0.14, 0.08, 0.08])[0]
            emit("csat.submitted", {"score": score_, "comment": None,
                                    "handled_by": "person" if claimed else "bot"},
                 gap=rng.uniform(5, 120))
        plan.status, plan.updated_at = status, t
        return out

    def stream(self, plans: list[Plan], *, pace: float = 1.0) -> Iterator[PendingEvent]:
        """The events of all ``plans`` merged into one time-ordered stream."""
        heap: list[PendingEvent] = []
        for plan in plans:
            while heap and heap[0].at < plan.start:
                yield heapq.heappop(heap)
            for event in self.events(plan, pace=pace):
                heapq.heappush(heap, event)
        while heap:
            yield heapq.heappop(heap)


# -- writing ---------------------------------------------------------------------------------


@dataclass
class Ingest:
    """What writing the log took."""

    events: int = 0
    messages: int = 0
    events_seconds: float = 0.0
    messages_seconds: float = 0.0
    other_seconds: float = 0.0  # customers and conversations
    wall_seconds: float = 0.0  # everything, including generating the rows in Python


def _insert(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), CHUNK):
        with engine.begin() as conn:
            conn.execute(insert(table), rows[start:start + CHUNK])
    return time.perf_counter() - started


def write_log(engine: Engine, gen: LogGenerator, plans: list[Plan], *, next_message_id: int,
              pace: float = 1.0, customers: list[dict[str, Any]] | None = None,
              ) -> tuple[Ingest, int]:
    """Insert the customers, then the time-ordered stream of conversations, messages and
    events (in that order per chunk, for the foreign keys)."""
    stats = Ingest()
    started = time.perf_counter()
    by_id = {plan.id: plan for plan in plans}
    conversations: list[Plan] = []
    events: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    message_id = next_message_id

    def flush() -> None:
        if conversations:
            stats.other_seconds += _insert(engine, Conversation,
                                           gen.conversation_rows(conversations))
            conversations.clear()
        if messages:
            stats.messages_seconds += _insert(engine, Message, messages)
            stats.messages += len(messages)
            messages.clear()
        if events:
            stats.events_seconds += _insert(engine, Event, events)
            stats.events += len(events)
            events.clear()

    if customers:
        stats.other_seconds += _insert(engine, Customer, customers)
    for event in gen.stream(plans, pace=pace):
        if event.type == "conversation.started":
            # All of its events exist by now (the stream generates a conversation's events
            # before yielding any), so its final status is known.
            conversations.append(by_id[event.conversation_id])
        if event.message is not None and event.message.id is None:
            event.message.id = message_id
            message_id += 1
            m = event.message
            messages.append({"id": m.id, "conversation_id": m.conversation_id, "role": m.role,
                             "text": m.text, "annotations": m.annotations,
                             "created_at": event.at})
        payload = event.payload
        for key, draft in event.refs.items():
            payload[key] = draft.id
        events.append({"type": event.type, "conversation_id": event.conversation_id,
                       "customer_id": event.customer_id, "payload": payload,
                       "created_at": event.at})
        if len(events) >= CHUNK:
            flush()
    flush()
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('messages', 'id'), "
                              "(SELECT max(id) FROM messages))"))
    stats.wall_seconds = time.perf_counter() - started
    return stats, message_id


# -- measuring -------------------------------------------------------------------------------


def _timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first ms, median ms, last result) of ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return times[0], statistics.median(times), result


def _sizes(engine: Engine, schema: str | None) -> dict[str, Any]:
    """Bytes on disk: the whole database and per table (its indexes included)."""
    if engine.dialect.name == "sqlite":
        # Through the sqlite3 module: a checkpoint cannot run inside the transaction that
        # the engine's begin hook opens.
        engine.dispose()
        path = Path(engine.url.database or "")
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            rows = db.execute(
                "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1").fetchall()
        finally:
            db.close()
        wal = path.with_name(path.name + "-wal")
        return {"database": path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
                "tables": {str(name): int(size) for name, size in rows}}
    with engine.connect() as conn:
        relations = conn.execute(text(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND c.relkind = 'r'"), {"schema": schema}).all()
        whole = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    tables = {str(name): int(size) for name, size in relations}
    return {"database": sum(tables.values()), "pg_database_size": int(whole or 0),
            "tables": tables}


def _count_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table.__tablename__: int(conn.scalar(select(func.count()).select_from(table))
                                         or 0)
                for table in (Customer, Conversation, Message, Event, CustomerHealth,
                              HealthHistory, ConversationFact, DailyCount, KnowledgeGap)}


def fold_all(health: HealthStore, config: HealthConfig, *, every: int,
             ) -> tuple[int, list[dict[str, Any]]]:
    """``HealthStore.catch_up`` (the same ``fold_pending`` loop), timed in slices of about
    ``every`` events, to show whether folding slows down as the tables grow."""
    total, mark, mark_total = 0, time.perf_counter(), 0
    segments: list[dict[str, Any]] = []
    while folded := health.fold_pending(config=config, webhook_urls=[]):
        total += folded
        if total - mark_total >= every:
            now = time.perf_counter()
            segments.append({"upto": total,
                             "events_per_s": round((total - mark_total) / (now - mark))})
            mark, mark_total = now, total
    if total > mark_total:
        segments.append({"upto": total, "events_per_s": round(
            (total - mark_total) / max(time.perf_counter() - mark, 1e-9))})
    return total, segments


def _profile_text(profiler: cProfile.Profile, lines: int = 30) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def run(url: str, label: str, args: argparse.Namespace, config: HealthConfig,
        schema: str | None = None) -> dict[str, Any]:
    rng = random.Random(args.seed)
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    log_until = now - LOG_END_BEFORE_NOW
    gen = LogGenerator(rng, customers=args.customers)
    result: dict[str, Any] = {"backend": label, "target_events": args.events,
                              "customers": args.customers,
                              "load_average_at_start": list(os.getloadavg())}
    try:
        # 1. ingest
        console.print(f"[{label}] generating and writing ~{args.events:,} events ...")
        plans = gen.plans(args.events, since=log_until - timedelta(days=DAYS), until=log_until)
        ingest, next_id = write_log(engine, gen, plans, next_message_id=1,
                                    customers=gen.customer_rows(log_until - timedelta(days=DAYS)))
        analyze = 0.0
        if engine.dialect.name == "postgresql":
            started = time.perf_counter()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                # Only this run's tables (search_path): others' schemas are left alone.
                conn.exec_driver_sql("ANALYZE customers, conversations, messages, events")
            analyze = time.perf_counter() - started
        result["ingest"] = {
            "events": ingest.events, "messages": ingest.messages, "conversations": len(plans),
            "events_seconds": round(ingest.events_seconds, 2),
            "events_per_s": round(ingest.events / ingest.events_seconds),
            "messages_seconds": round(ingest.messages_seconds, 2),
            "customers_conversations_seconds": round(ingest.other_seconds, 2),
            "wall_seconds": round(ingest.wall_seconds, 2), "analyze_seconds": round(analyze, 2),
        }
        console.print(f"[{label}] ingest: {result['ingest']}")

        # 2. the projector: everything, then an increment, then nothing pending
        health = HealthStore(engine)
        console.print(f"[{label}] folding {ingest.events:,} events ...")
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        folded, segments = fold_all(health, config, every=max(ingest.events // 10, 10_000))
        if profiler:
            profiler.disable()
        fold_seconds = time.perf_counter() - started
        if profiler:
            result["profile"] = _profile_text(profiler)
            console.print(result["profile"])

        inc_plans = gen.plans(INCREMENT_EVENTS, since=now - timedelta(minutes=30),
                              until=now - timedelta(minutes=25))
        inc, _ = write_log(engine, gen, inc_plans, next_message_id=next_id, pace=0.05)
        started = time.perf_counter()
        inc_folded = health.catch_up(config=config, webhook_urls=[])
        inc_seconds = time.perf_counter() - started
        _, noop_median, _ = _timed(
            lambda: health.catch_up(config=config, webhook_urls=[]), max(args.repeat, 5))
        result["fold"] = {
            "events": folded, "seconds": round(fold_seconds, 2),
            "events_per_s": round(folded / fold_seconds) if fold_seconds else None,
            "profiled": bool(profiler), "segments": segments,
            "increment_events": inc_folded, "increment_written": inc.events,
            "increment_ms": round(inc_seconds * 1000, 1),
            "increment_events_per_s": round(inc_folded / inc_seconds) if inc_seconds else None,
            "noop_catch_up_ms": round(noop_median, 2),
        }
        console.print(f"[{label}] fold: "
                      f"{ {k: v for k, v in result['fold'].items() if k != 'segments'} }")
        console.print(f"[{label}] fold events/s by position in the log: "
                      + ", ".join(f"{s['upto']:,}: {s['events_per_s']:,}" for s in segments))

        # 3. the summary, 4. customer health
        store = Store(engine)
        service = HealthService(store=store, health=health, config=config, webhook_urls=[])
        embedder = HashingEmbedder()
        summaries: dict[str, Any] = {}
        for embed_label, embed in (("hashing", embedder.embed), ("none", None)):
            analytics = AnalyticsService(health=health, service=service, embed=embed)
            for days in (30, 90):
                window = Window(since=now - timedelta(days=days), until=now)

                def summary(a: AnalyticsService = analytics, w: Window = window) -> Any:
                    return a.summary(w, now=now)

                first, median, out = _timed(summary, args.repeat)
                summaries[f"{days}d_{embed_label}"] = {
                    "first_ms": round(first, 1), "median_ms": round(median, 1),
                    "conversations": out["conversations"],
                    "gap_questions": out["knowledge_gaps"]["questions"],
                    "gap_topics": len(out["knowledge_gaps"]["topics"]),
                    "escalation_rate": out["escalation"]["rate"],
                    "no_handoff_rate": out["bot_resolution"]["no_handoff"]["rate"],
                    "customers": out["customers"],
                }
        result["summary"] = summaries
        if args.profile:
            analytics = AnalyticsService(health=health, service=service, embed=embedder.embed)
            profiler = cProfile.Profile()
            profiler.enable()
            analytics.summary(Window(since=now - timedelta(days=90), until=now), now=now)
            profiler.disable()
            result["summary_profile"] = _profile_text(profiler, lines=25)
            console.print(result["summary_profile"])
        console.print(f"[{label}] summary: "
                      f"{ {k: v['median_ms'] for k, v in summaries.items()} }")

        sample = rng.sample(gen.customer_ids, min(args.sample, len(gen.customer_ids)))
        service.customer(sample[0], now=now)  # warm up
        latencies = []
        for customer_id in sample:
            started = time.perf_counter()
            service.customer(customer_id, now=now)
            latencies.append((time.perf_counter() - started) * 1000)
        risk_first, risk_median, risky = _timed(lambda: service.at_risk(limit=50), args.repeat)
        result["customer_health"] = {
            "sample": len(sample), "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "max_ms": round(max(latencies), 2),
        }
        result["at_risk"] = {"first_ms": round(risk_first, 2), "median_ms": round(risk_median, 2),
                             "returned": len(risky)}

        # 5. size
        result["rows"] = _count_rows(engine)
        result["size"] = _sizes(engine, schema)
        # The machine may be shared: other work running alongside skews the timings.
        result["load_average_at_end"] = list(os.getloadavg())
    finally:
        engine.dispose()
    return result


# -- output ----------------------------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1_048_576:,.1f} MB"


def measures(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(measure, value) rows for one backend."""
    ing, fold, s = r["ingest"], r["fold"], r["summary"]
    tables = r["size"]["tables"]
    projection = sum(tables.get(t, 0) for t in (
        "customer_health", "health_history", "conversation_facts", "daily_counts",
        "knowledge_gaps", "projection_cursors", "webhook_deliveries"))
    rows = [
        ("events written", f"{ing['events']:,}"),
        ("ingest: events (s)", f"{ing['events_seconds']:.1f}"),
        ("ingest: events/s", f"{ing['events_per_s']:,}"),
        ("ingest: all rows, wall incl. generation (s)", f"{ing['wall_seconds']:.1f}"),
        ("fold all: s" + (" (under cProfile)" if fold["profiled"] else ""),
         f"{fold['seconds']:.1f}"),
        ("fold all: events/s", f"{fold['events_per_s']:,}"),
        (f"fold increment of ~{INCREMENT_EVENTS:,} events (ms)",
         f"{fold['increment_ms']:,.0f}"),
        ("catch_up, nothing pending (ms)", f"{fold['noop_catch_up_ms']:.2f}"),
    ]
    for key, name in (("30d_hashing", "summary 30 d, clustering (ms)"),
                      ("90d_hashing", "summary 90 d, clustering (ms)"),
                      ("30d_none", "summary 30 d, embed=None (ms)"),
                      ("90d_none", "summary 90 d, embed=None (ms)")):
        rows.append((name, f"{s[key]['median_ms']:,.0f}"))
    rows += [
        (f"customer health p50 / p95 (ms, n={r['customer_health']['sample']})",
         f"{r['customer_health']['p50_ms']:.1f} / {r['customer_health']['p95_ms']:.1f}"),
        ("at_risk(limit=50) (ms)", f"{r['at_risk']['median_ms']:.1f}"),
        ("database size", _mb(r["size"]["database"])),
        ("  of which events", _mb(tables.get("events", 0))),
        ("  of which messages", _mb(tables.get("messages", 0))),
        ("  of which projection tables", _mb(projection)),
    ]
    return rows


def _code_version() -> dict[str, Any]:
    """The commit measured, and whether the files that decide these timings differ from it."""
    watched = ["assistant/storage/health_repo.py", "assistant/health", "assistant/storage/db.py",
               "assistant/storage/tables.py"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", *watched], cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None}
    return {"commit": commit, "uncommitted": [line[3:] for line in changed if line.strip()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("ASSISTANT_TEST_DATABASE_URL"),
                        help="PostgreSQL URL (default: $ASSISTANT_TEST_DATABASE_URL)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each read timing")
    parser.add_argument("--sample", type=int, default=200, help="customers to read")
    parser.add_argument("--profile", action="store_true", help="cProfile the full fold")
    parser.add_argument("--tmp-dir", help="where the SQLite file goes (default: system temp)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.backend in ("postgresql", "both") and not args.pg_url:
        parser.error("PostgreSQL needs --pg-url or ASSISTANT_TEST_DATABASE_URL")
    config = load_health_config(ROOT / "assistant" / "data" / "health.yaml")
    code = _code_version()

    results: list[dict[str, Any]] = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="health-scale-", dir=args.tmp_dir) as tmp:
            results.append(run(f"sqlite:///{Path(tmp) / 'scale.db'}", "sqlite", args, config))
    if args.backend in ("postgresql", "both"):
        with fresh_pg_schema(args.pg_url) as (url, schema):
            results.append(run(url, "postgresql", args, config, schema=schema))

    for r in results:
        show_table(f"health scale: {r['backend']}, {r['ingest']['events']:,} events, "
                   f"{r['customers']:,} customers, {r['ingest']['conversations']:,} "
                   f"conversations", ["measure", "value"], [list(m) for m in measures(r)])
    if len(results) > 1:
        per = [dict(measures(r)) for r in results]
        names = [name for name, _ in measures(results[0])]
        show_table("health scale: comparison", ["measure", *[r["backend"] for r in results]],
                   [[name, *[p.get(name, "-") for p in per]] for name in names])
    console.print(f"knowledge-gap clustering covers the newest {GAPS_CLUSTERED} gaps of a "
                  "window; the rest are not clustered")
    write_json(args.json, {"events": args.events, "customers": args.customers,
                           "seed": args.seed, "code": code, "results": results})


if __name__ == "__main__":
    main()
