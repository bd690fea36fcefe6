"""Support metrics, each with its definition, from the folded conversation facts.

Everything here reads the projector's tables (one row per conversation, per-day counters,
knowledge gaps), never the raw log, so a summary costs the same with a million events as
with a thousand. The definitions travel with the numbers (``definition`` fields) because
"bot resolution" means three different things and a support lead should see which.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from assistant.answer.extractive import content_terms
from assistant.health.service import HealthService
from assistant.storage.health_repo import FactRow, GapRow, HealthStore

DURABLE_WINDOW = timedelta(days=7)
GAPS_CLUSTERED = 2000  # the newest gaps grouped into topics; older ones are counted only
GAP_TOPIC_DISTANCE = 0.45  # cosine distance under which two questions share a topic
TOP_INTENTS = 10

DEFINITIONS = {
    "customer_confirmed": "Conversations where the customer marked an answer 'That helped' "
    "and no person was needed, out of conversations with at least one customer message.",
    "no_handoff": "Conversations that never went to a person, out of conversations with at "
    "least one customer message.",
    "durable": "Conversations that never went to a person and after which the customer did "
    "not come back about the same topic (or reopen it) within 7 days, out of conversations "
    "whose 7 days are over.",
    "escalation_rate": "Conversations handed to a person, out of conversations with at least "
    "one customer message; by reason, each hand-off counts once for each of its reasons.",
    "first_human_response": "From the hand-off to the first message of a person.",
    "handle_time": "From the moment a person claimed the conversation to its resolution.",
    "resolution_time": "From the first message of the conversation to its resolution by a "
    "person.",
    "csat": "Average rating 1-5, split by whether a person took part in the conversation.",
    "knowledge_gaps": "Questions the bot could not answer from the KB, or that ended with a "
    "person, grouped by similar wording; with what agents replied.",
}

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Window:
    """The date range of a summary: ``[since, until)``."""

    since: datetime
    until: datetime


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _seconds(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "median": None, "p90": None, "mean": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"count": len(values), "median": round(statistics.median(values), 1),
            "p90": round(p90, 1), "mean": round(statistics.fmean(values), 1)}


def conversation_metrics(facts: Sequence[FactRow], *, now: datetime) -> dict[str, Any]:
    """Resolution, escalation, CSAT and time metrics over conversation facts."""
    engaged = [f for f in facts if f.customer_messages > 0]
    handed = [f for f in engaged if f.handed_off]
    closed_window = [f for f in engaged if f.started_at <= now - DURABLE_WINDOW]
    confirmed = sum(1 for f in engaged if f.helpful and not f.handed_off)
    durable = sum(1 for f in closed_window if not f.handed_off and not f.recontacted)
    reasons: Counter[str] = Counter(r for f in handed for r in f.reasons)
    csat: dict[str, list[int]] = defaultdict(list)
    for f in facts:
        if f.csat is not None:
            csat[f.csat_by or "bot"].append(f.csat)
    return {
        "conversations": len(facts),
        "engaged": len(engaged),
        "bot_resolution": {
            "customer_confirmed": {"rate": _rate(confirmed, len(engaged)), "count": confirmed,
                                   "definition": DEFINITIONS["customer_confirmed"]},
            "no_handoff": {"rate": _rate(len(engaged) - len(handed), len(engaged)),
                           "count": len(engaged) - len(handed),
                           "definition": DEFINITIONS["no_handoff"]},
            "durable": {"rate": _rate(durable, len(closed_window)), "count": durable,
                        "eligible": len(closed_window), "definition": DEFINITIONS["durable"]},
        },
        "escalation": {
            "rate": _rate(len(handed), len(engaged)),
            "count": len(handed),
            "by_reason": {reason: {"count": n, "rate": _rate(n, len(engaged))}
                          for reason, n in reasons.most_common()},
            "definition": DEFINITIONS["escalation_rate"],
        },
        "csat": {
            who: {"average": round(statistics.fmean(scores), 2) if scores else None,
                  "count": len(scores)}
            for who, scores in (("bot", csat.get("bot", [])),
                                ("person", csat.get("person", [])))
        } | {"definition": DEFINITIONS["csat"]},
        "times": {
            "first_human_response_seconds": _seconds([
                (f.first_human_reply_at - f.handoff_at).total_seconds() for f in handed
                if f.first_human_reply_at and f.handoff_at]),
            "handle_seconds": _seconds([
                (f.resolved_at - f.claimed_at).total_seconds() for f in handed
                if f.resolved_at and f.claimed_at]),
            "resolution_seconds": _seconds([
                (f.resolved_at - f.started_at).total_seconds() for f in handed
                if f.resolved_at]),
            "definitions": {k: DEFINITIONS[k] for k in
                            ("first_human_response", "handle_time", "resolution_time")},
        },
    }


def trends(rows: Sequence[tuple[str, str, int]], *, prefix: str) -> dict[str, dict[str, int]]:
    """``{label: {day: count}}`` from daily counters ``prefix:label``."""
    series: dict[str, dict[str, int]] = defaultdict(dict)
    for day, key, count in rows:
        series[key.removeprefix(prefix)][day] = count
    return dict(series)


def group_gaps(gaps: Sequence[GapRow], embed: Embed | None) -> list[dict[str, Any]]:
    """Group gap questions into topics by meaning (agglomerative clustering on cosine
    distance of their embeddings), most frequent first."""
    if not gaps:
        return []
    labels: list[int]
    if embed is None or len(gaps) == 1:
        labels = [0] * len(gaps) if len(gaps) == 1 else list(range(len(gaps)))
    else:
        from sklearn.cluster import AgglomerativeClustering

        vectors = np.asarray(embed([g.question for g in gaps]), dtype=np.float32)
        clustering = AgglomerativeClustering(
            n_clusters=None, distance_threshold=GAP_TOPIC_DISTANCE, metric="cosine",
            linkage="average",
        )
        labels = [int(label) for label in clustering.fit_predict(vectors)]
    groups: dict[int, list[GapRow]] = defaultdict(list)
    for gap, label in zip(gaps, labels, strict=True):
        groups[label].append(gap)
    topics: list[dict[str, Any]] = []
    for members in groups.values():
        words: Counter[str] = Counter()
        for gap in members:
            # Sorted: ties in the label resolve the same way in every process.
            words.update(sorted(content_terms(gap.question)))
        intents = Counter(g.intent for g in members if g.intent)
        topics.append({
            "topic": ", ".join(w for w, _ in words.most_common(3)) or "(no words)",
            "count": len(members),
            "intent": intents.most_common(1)[0][0] if intents else None,
            "reasons": dict(Counter(g.reason for g in members)),
            "examples": [g.question for g in members[:3]],
            "agent_replies": [g.agent_reply for g in members if g.agent_reply][:2],
            "conversation_ids": [g.conversation_id for g in members[:5]],
        })
    topics.sort(key=lambda t: (-t["count"], t["topic"]))
    return topics


class AnalyticsService:
    """The support lead's summary: ``GET /v1/analytics/summary`` and the console page."""

    def __init__(self, *, health: HealthStore, service: HealthService,
                 embed: Embed | None) -> None:
        self._health = health
        self._service = service
        self._embed = embed

    def summary(self, window: Window, *, now: datetime) -> dict[str, Any]:
        """Every metric over conversations started in ``window``."""
        self._service.catch_up()
        facts = self._health.facts(since=window.since, until=window.until)
        since_day = window.since.date().isoformat()
        # Daily counters cover whole days: every day the window touches.
        last = (window.until - timedelta(microseconds=1)).date()
        until_day = (last + timedelta(days=1)).isoformat()
        intents = trends(self._health.counts(since=since_day, until=until_day,
                                             prefix="intent:"), prefix="intent:")
        totals = Counter({label: sum(days.values()) for label, days in intents.items()})
        sentiment = trends(self._health.counts(since=since_day, until=until_day,
                                               prefix="sentiment:"), prefix="sentiment:")
        days = sorted({d for series in sentiment.values() for d in series})
        gaps = self._health.gaps(since=window.since, until=window.until, limit=GAPS_CLUSTERED)
        return {
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            **conversation_metrics(facts, now=now),
            "top_intents": [{"intent": label, "count": n, "trend": intents[label]}
                            for label, n in totals.most_common(TOP_INTENTS)],
            "sentiment_trend": [
                {"day": day, **{label: sentiment.get(label, {}).get(day, 0)
                                for label in ("negative", "neutral", "positive")}}
                for day in days
            ],
            "knowledge_gaps": {"definition": DEFINITIONS["knowledge_gaps"],
                               "questions": len(gaps),
                               "topics": group_gaps(gaps, self._embed)},
            "customers": self._service.band_counts(),
        }
