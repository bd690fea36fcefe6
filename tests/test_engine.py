"""The turn pipeline, driven directly: no HTTP, no SQL."""

from __future__ import annotations

from assistant.answer.extractive import ExtractiveAnswerer
from assistant.engine import Engine
from assistant.events import Event, EventBus
from assistant.kb.audience import Audience
from assistant.policy import Action, EscalationPolicy


def make_engine(runtime, *, min_confidence: float) -> tuple[Engine, list[Event]]:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    engine = Engine(retriever=runtime.kb.retriever, answerer=ExtractiveAnswerer(),
                    policy=EscalationPolicy(), bus=bus, min_confidence=min_confidence)
    return engine, seen


def test_answers_with_citations_and_events(runtime) -> None:
    engine, seen = make_engine(runtime, min_confidence=0.0)
    turn = engine.handle_turn(text="How do I connect Slack?", audience=Audience.anonymous(),
                              conversation_id="c1", customer_id="u1")
    assert turn.answer.citations[0].article_id == "integrations/slack.md"
    assert turn.decision.action == Action.ANSWER
    assert [e.type for e in seen] == ["retrieval.performed", "answer.composed", "decision.made"]
    assert all(e.conversation_id == "c1" and e.customer_id == "u1" for e in seen)
    assert set(turn.timings_ms) == {"embed", "retrieve", "answer", "total"}
    notes = turn.annotations()
    assert notes["citations"][0]["url"].startswith("https://")
    assert notes["decision"]["action"] == "answer"


def test_low_confidence_offers_a_person_and_is_logged(runtime) -> None:
    engine, seen = make_engine(runtime, min_confidence=1.0)
    turn = engine.handle_turn(text="How do I connect Slack?", audience=Audience.anonymous())
    assert turn.answer.abstained
    assert turn.decision.action == Action.ANSWER_AND_OFFER_HUMAN
    assert turn.decision.reasons == ["low_confidence"]
    retrieval = next(e for e in seen if e.type == "retrieval.performed")
    assert retrieval.payload()["below_threshold"] is True


def test_a_failing_subscriber_does_not_break_the_turn(runtime) -> None:
    engine, _ = make_engine(runtime, min_confidence=0.0)

    def broken(event: Event) -> None:
        raise RuntimeError("sink down")

    engine.bus.subscribe(broken)
    assert engine.handle_turn(text="refund", audience=Audience.anonymous()).answer.text
