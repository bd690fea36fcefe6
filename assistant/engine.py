"""The turn pipeline: one customer message in, one reply with its reasons out.

``Engine.handle_turn`` embeds the message once, retrieves, composes an answer and asks the
policy what to do. It takes plain data and returns plain data: no HTTP, no SQL. Storage
happens around it (``assistant.conversations``), so every message is stored before the
engine sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.answer.types import Answer
from assistant.events import AnswerComposed, DecisionMade, EventBus, RetrievalPerformed
from assistant.kb.audience import Audience
from assistant.kb.retrieval import HybridRetriever, RetrievalResult
from assistant.policy import Decision, EscalationPolicy, TurnSignals


class Answerer(Protocol):
    """Composes a reply from retrieved passages."""

    name: str

    def answer(self, *, question: str, retrieval: RetrievalResult, min_confidence: float) -> Answer:
        """The reply to ``question``."""
        ...


@dataclass(frozen=True)
class TurnResult:
    """Everything the engine decided for one message."""

    answer: Answer
    retrieval: RetrievalResult
    decision: Decision
    timings_ms: dict[str, float] = field(default_factory=dict)

    def annotations(self) -> dict[str, Any]:
        """What is stored on the reply and shown to agents (not to customers)."""
        return {
            "answerer": self.answer.answerer,
            "abstained": self.answer.abstained,
            "citations": [c.as_dict() for c in self.answer.citations],
            "retrieval": {
                "confidence": round(self.retrieval.confidence, 4),
                "article_ids": self.retrieval.article_ids,
                "mode": self.retrieval.mode,
            },
            "decision": {
                "action": str(self.decision.action),
                "reasons": self.decision.reasons,
                "priority": self.decision.priority,
            },
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


class Engine:
    """Runs the turn pipeline over injected components."""

    def __init__(
        self,
        *,
        retriever: HybridRetriever,
        answerer: Answerer,
        policy: EscalationPolicy,
        bus: EventBus,
        retrieval_k: int = 5,
        min_confidence: float = 0.5,
    ) -> None:
        self.retriever = retriever
        self.answerer = answerer
        self.policy = policy
        self.bus = bus
        self.retrieval_k = retrieval_k
        self.min_confidence = min_confidence

    def handle_turn(
        self,
        *,
        text: str,
        audience: Audience,
        conversation_id: str | None = None,
        customer_id: str | None = None,
    ) -> TurnResult:
        """Answer one customer message."""
        ids = {"conversation_id": conversation_id, "customer_id": customer_id}
        started = time.perf_counter()
        vector = self.retriever.embed_query(text)
        embedded = time.perf_counter()
        retrieval = self.retriever.search(
            text, k=self.retrieval_k, audience=audience, query_vector=vector
        )
        retrieved = time.perf_counter()
        self.bus.publish(
            RetrievalPerformed(
                **ids,
                query_chars=len(text),
                article_ids=retrieval.article_ids,
                confidence=round(retrieval.confidence, 4),
                below_threshold=retrieval.confidence < self.min_confidence,
                threshold=self.min_confidence,
                mode=retrieval.mode,
            )
        )
        answer = self.answerer.answer(
            question=text, retrieval=retrieval, min_confidence=self.min_confidence
        )
        answered = time.perf_counter()
        self.bus.publish(
            AnswerComposed(
                **ids,
                answerer=answer.answerer,
                abstained=answer.abstained,
                cited_article_ids=[c.article_id for c in answer.citations],
                latency_ms=round((answered - retrieved) * 1000, 2),
            )
        )
        decision = self.policy.decide(
            TurnSignals(
                retrieval_confidence=retrieval.confidence,
                abstained=answer.abstained,
                min_confidence=self.min_confidence,
            )
        )
        self.bus.publish(
            DecisionMade(
                **ids,
                action=str(decision.action),
                reasons=decision.reasons,
                priority=decision.priority,
            )
        )
        done = time.perf_counter()
        timings = {
            "embed": (embedded - started) * 1000,
            "retrieve": (retrieved - embedded) * 1000,
            "answer": (answered - retrieved) * 1000,
            "total": (done - started) * 1000,
        }
        return TurnResult(answer=answer, retrieval=retrieval, decision=decision, timings_ms=timings)
