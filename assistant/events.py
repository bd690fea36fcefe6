"""Typed interaction events and a small synchronous bus.

Domain code (the engine, later hand-off and health) publishes events; subscribers write
them to the interaction log, count metrics and update health scores. Nothing in the domain
knows who listens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of every interaction event."""

    type: ClassVar[str] = "event"
    conversation_id: str | None = None
    customer_id: str | None = None

    def payload(self) -> dict[str, Any]:
        """The event's own fields, without the ids that every event carries."""
        data = asdict(self)
        data.pop("conversation_id", None)
        data.pop("customer_id", None)
        return data


@dataclass(frozen=True)
class MessageClassified(Event):
    """A customer message was classified."""

    type: ClassVar[str] = "message.classified"
    intent: str = "unknown"
    intent_confidence: float = 0.0
    sentiment: str = "neutral"
    frustration: float = 0.0
    frustration_cues: list[str] = field(default_factory=list)
    churn_signals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RetrievalPerformed(Event):
    """The knowledge base was searched for a customer message."""

    type: ClassVar[str] = "retrieval.performed"
    query_chars: int = 0
    article_ids: list[str] = field(default_factory=list)
    confidence: float = 0.0
    below_threshold: bool = False
    threshold: float = 0.0
    mode: str = "hybrid"


@dataclass(frozen=True)
class AnswerComposed(Event):
    """The bot composed a reply (or abstained)."""

    type: ClassVar[str] = "answer.composed"
    answerer: str = "extractive"
    abstained: bool = False
    cited_article_ids: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    fallback: str | None = None


@dataclass(frozen=True)
class ModelCalled(Event):
    """The chat model was called (or refused by the circuit breaker): cost and outcome."""

    type: ClassVar[str] = "llm.called"
    prompt: str = ""
    model: str = ""
    outcome: str = "ok"
    attempts: int = 0
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    streamed: bool = False


@dataclass(frozen=True)
class InjectionSuspected(Event):
    """A customer message reads like instructions to the model; it was not sent to one."""

    type: ClassVar[str] = "injection.suspected"
    kinds: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DecisionMade(Event):
    """The escalation policy decided what to do with a turn."""

    type: ClassVar[str] = "decision.made"
    action: str = "answer"
    reasons: list[str] = field(default_factory=list)
    priority: int = 0
    evidence: dict[str, str] = field(default_factory=dict)
    team: str | None = None


Subscriber = Callable[[Event], None]


class EventBus:
    """Fans each published event out to every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every event published from now on."""
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        """Deliver ``event``; a failing subscriber is logged and never stops the turn."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a metrics or log sink must not break a customer's turn
                logger.exception("event subscriber failed for %s", event.type)
