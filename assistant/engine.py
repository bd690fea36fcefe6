"""The turn pipeline: one customer message in, one reply with its reasons out.

``Engine.handle_turn`` embeds the message once, classifies it (intent, sentiment,
frustration, churn), retrieves, composes an answer and asks the policy what to do, given
the conversation's earlier turns. It takes plain data and returns plain data: no HTTP, no
SQL. Storage happens around it (``assistant.conversations``), so every message is stored before the
engine sees it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from assistant.answer.llm import GenerativeAnswerer, ReplyStream
from assistant.answer.types import Answer
from assistant.events import (
    AnswerComposed,
    DecisionMade,
    Event,
    InjectionSuspected,
    MessageClassified,
    ModelCalled,
    RetrievalPerformed,
)
from assistant.kb.audience import Audience
from assistant.kb.retrieval import HybridRetriever, RetrievalResult
from assistant.policy import Action, Decision, EscalationPolicy, TurnSignals
from assistant.understanding.classify import Classification, MessageClassifier
from assistant.understanding.history import (
    PriorTurn,
    failed_answers,
    negative_streak,
    repeated_question,
)
from assistant.understanding.injection import InjectionFinding, find_injection


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
    retrieval: RetrievalResult | None
    decision: Decision
    classification: Classification
    timings_ms: dict[str, float] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    injection: tuple[InjectionFinding, ...] = ()

    @property
    def reply_text(self) -> str:
        """What the customer reads (the answer, or the hand-off message)."""
        return self.answer.text

    def message_annotations(self) -> dict[str, Any]:
        """What is stored on the customer's message: how it was understood."""
        return self.classification.as_dict()

    def annotations(self) -> dict[str, Any]:
        """What is stored on the reply and shown to agents (not to customers)."""
        notes: dict[str, Any] = {
            "answerer": self.answer.answerer,
            "abstained": self.answer.abstained,
            "citations": [c.as_dict() for c in self.answer.citations],
            "fallback": self.answer.fallback,
            "checks": self.answer.checks,
            "model_calls": list(self.answer.model_calls),
            "injection": [{"kind": f.kind, "evidence": f.evidence} for f in self.injection],
            "retrieval": None,
            **self.classification.as_dict(),
            "decision": self.decision.as_dict(),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if self.retrieval is not None:
            notes["retrieval"] = {
                "confidence": round(self.retrieval.confidence, 4),
                "article_ids": self.retrieval.article_ids,
                "mode": self.retrieval.mode,
            }
        return notes


class Engine:
    """Runs the turn pipeline over injected components."""

    def __init__(
        self,
        *,
        retriever: HybridRetriever,
        answerer: Answerer,
        classifier: MessageClassifier,
        policy: EscalationPolicy,
        retrieval_k: int = 5,
        min_confidence: float = 0.5,
        generator: GenerativeAnswerer | None = None,
    ) -> None:
        self.retriever = retriever
        self.answerer = answerer
        self.generator = generator
        self.classifier = classifier
        self.policy = policy
        self.retrieval_k = retrieval_k
        self.min_confidence = min_confidence

    def understand(
        self, text: str, *, conversation_id: str | None = None, customer_id: str | None = None
    ) -> tuple[Classification, MessageClassified]:
        """Classify a message without answering it (a person owns the conversation), so
        intent, sentiment and churn signals keep flowing to agents and health scores."""
        understood = self.classifier.classify(text, self.retriever.embed_query(text))
        ids = {"conversation_id": conversation_id, "customer_id": customer_id}
        return understood, _classified(understood, ids)

    def handle_turn(
        self,
        *,
        text: str,
        audience: Audience,
        conversation_id: str | None = None,
        customer_id: str | None = None,
        history: Sequence[PriorTurn] = (),
        returned_reasons: frozenset[str] = frozenset(),
        stream: ReplyStream | None = None,
        allow_model: bool = True,
    ) -> TurnResult:
        """Answer one customer message, given the conversation's earlier turns.

        ``returned_reasons`` are the reasons of a hand-off an agent handed back to the
        bot; the policy will not hand off again for those alone (the loop guard).
        With a generator (a chat model) configured, the extractive answer is the draft:
        the policy decides on it first, so no model call is spent on a hand-off, and the
        model's checked text streams into ``stream`` as it is written. With
        ``allow_model`` false (the customer's token budget is spent) the draft is the
        answer, marked with the fallback ``token_budget``.
        """
        ids = {"conversation_id": conversation_id, "customer_id": customer_id}
        clock = _Clock()
        vector = self.retriever.embed_query(text)
        clock.lap("embed")
        understood = self.classifier.classify(text, vector)
        clock.lap("classify")
        intent = understood.intent_label
        events: list[Event] = [_classified(understood, ids)]
        fixed_reply = self.policy.replies.get(intent) if intent else None
        retrieval: RetrievalResult | None = None
        if fixed_reply is None:
            retrieval = self.retriever.search(
                text, k=self.retrieval_k, audience=audience, query_vector=vector
            )
            clock.lap("retrieve")
            events.append(
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
        else:
            answer = Answer(text=fixed_reply, answerer="fixed_reply")
        clock.lap("answer")
        injection = tuple(find_injection(text))
        if injection:
            events.append(InjectionSuspected(
                **ids, kinds=sorted({f.kind for f in injection}),
                evidence=[f.evidence for f in injection],
            ))

        def signals(abstained: bool) -> TurnSignals:
            return TurnSignals(
                text=text,
                intent=intent,
                sentiment=understood.sentiment.label,
                frustration=understood.frustration.score,
                frustration_cues=tuple(understood.frustration.cue_names),
                churn=tuple((signal.kind, signal.text) for signal in understood.churn),
                retrieval_confidence=retrieval.confidence if retrieval else None,
                abstained=abstained,
                negative_streak=negative_streak(history, understood.sentiment.label),
                failed_answers=failed_answers(history, abstained),
                repeated_of=repeated_question(
                    history, text, intent, threshold=self.policy.repeat_similarity
                ),
                plan=audience.plan if audience.verified else None,
                returned_reasons=returned_reasons,
            )

        decision = self.policy.decide(signals(answer.abstained))
        if (
            self.generator is not None
            and retrieval is not None
            and decision.action != Action.HANDOFF
            and not answer.abstained
        ):
            if injection:
                # The model never sees a message that tries to instruct it.
                answer = replace(answer, fallback="injection_suspected")
            elif not allow_model:
                answer = replace(answer, fallback="token_budget")
            else:
                answer = self.generator.answer(
                    question=text, retrieval=retrieval, min_confidence=self.min_confidence,
                    history=[turn.text for turn in history], stream=stream, draft=answer,
                )
                if answer.abstained:  # the model found no answer in the passages
                    decision = self.policy.decide(signals(True))
            clock.lap("generate")
            events.extend(
                ModelCalled(conversation_id=conversation_id, customer_id=customer_id, **call)
                for call in answer.model_calls
            )
        answer = self._finish(answer, decision)
        clock.lap("decide")
        events.append(
            AnswerComposed(
                **ids,
                answerer=answer.answerer,
                abstained=answer.abstained,
                cited_article_ids=[c.article_id for c in answer.citations],
                latency_ms=round(
                    clock.laps.get("answer", 0.0) + clock.laps.get("generate", 0.0), 2
                ),
                fallback=answer.fallback,
            )
        )
        events.append(
            DecisionMade(
                **ids,
                action=str(decision.action),
                reasons=list(decision.reasons),
                priority=decision.priority,
                evidence=dict(decision.evidence),
                team=decision.team,
            )
        )
        return TurnResult(
            answer=answer,
            retrieval=retrieval,
            decision=decision,
            classification=understood,
            timings_ms=clock.totals(),
            events=tuple(events),
            injection=injection,
        )

    def _finish(self, answer: Answer, decision: Decision) -> Answer:
        """The customer-facing text for the decision (never the raw reasons)."""
        messages = self.policy.messages
        if decision.action == Action.HANDOFF:
            # A person takes over; the bot does not keep answering beside them.
            return replace(answer, text=messages.handoff, citations=[])
        if decision.action == Action.ANSWER_AND_OFFER_HUMAN and not answer.abstained:
            offer = messages.offer_human
            return replace(answer, text=f"{answer.text}\n\n{offer}" if answer.text else offer)
        if not answer.text:
            return replace(answer, text=messages.offer_human)
        return answer


class _Clock:
    """Named laps of a turn, in milliseconds."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self._last) * 1000
        self._last = now

    def totals(self) -> dict[str, float]:
        return {**self.laps, "total": (self._last - self._start) * 1000}


def _classified(understood: Classification, ids: dict[str, str | None]) -> MessageClassified:
    return MessageClassified(
        conversation_id=ids["conversation_id"],
        customer_id=ids["customer_id"],
        intent=understood.intent.label,
        intent_confidence=round(understood.intent.confidence, 4),
        sentiment=understood.sentiment.label,
        frustration=round(understood.frustration.score, 4),
        frustration_cues=understood.frustration.cue_names,
        churn_signals=[signal.kind for signal in understood.churn],
    )
