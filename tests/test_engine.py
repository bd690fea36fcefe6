"""The turn pipeline, driven directly: no HTTP, no SQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from assistant.engine import Engine
from assistant.kb.audience import Audience
from assistant.policy import Action
from assistant.understanding.history import PriorTurn


@pytest.fixture
def engine(runtime) -> Engine:
    built = runtime.engine
    built.min_confidence = 0.0
    return built


def turn(engine: Engine, text: str, **kwargs):
    return engine.handle_turn(text=text, audience=kwargs.pop("audience", Audience.anonymous()),
                              **kwargs)


def test_answers_with_citations_and_events(engine) -> None:
    result = turn(engine, "How do I connect Slack?", conversation_id="c1", customer_id="u1")
    assert result.answer.citations[0].article_id == "integrations/slack.md"
    assert result.decision.action == Action.ANSWER
    assert [e.type for e in result.events] == [
        "message.classified", "retrieval.performed", "answer.composed", "decision.made"]
    assert all(e.conversation_id == "c1" and e.customer_id == "u1" for e in result.events)
    assert {"embed", "classify", "retrieve", "answer", "decide", "total"} <= set(
        result.timings_ms)
    notes = result.annotations()
    assert notes["citations"][0]["url"].startswith("https://")
    assert notes["decision"]["action"] == "answer"
    assert {"intent", "sentiment", "frustration", "churn_signals"} <= set(notes)
    assert set(result.message_annotations()) == {"intent", "sentiment", "frustration",
                                                 "churn_signals"}


def test_low_confidence_offers_a_person_and_is_logged(engine) -> None:
    engine.min_confidence = 1.0
    result = turn(engine, "How do I connect Slack?")
    assert result.answer.abstained
    assert result.decision.action == Action.ANSWER_AND_OFFER_HUMAN
    assert "low_confidence" in result.decision.reasons
    retrieval = next(e for e in result.events if e.type == "retrieval.performed")
    assert retrieval.payload()["below_threshold"] is True


def test_churn_hands_off_to_retention_with_the_words(engine) -> None:
    result = turn(engine, "This is not worth the money, we are switching to Asana.")
    assert result.decision.action == Action.HANDOFF
    assert result.decision.team == "retention"
    assert "switching to Asana" not in result.reply_text  # customers never see reasons
    assert result.reply_text == engine.policy.messages.handoff
    evidence = result.decision.evidence["churn_risk"]
    assert 'not_worth_it: "not worth the money"' in evidence and "Asana" in evidence
    assert {s.kind for s in result.classification.churn} == {"not_worth_it", "competitor"}


def test_sensitive_topic_hands_off(engine) -> None:
    result = turn(engine, "I think someone hacked my account and changed the password")
    assert result.decision.action == Action.HANDOFF
    assert "security_incident" in result.decision.reasons


def test_fixed_replies_skip_retrieval(engine) -> None:
    engine.classifier.intents.min_confidence = 0.0  # trust the tiny test model's best guess
    result = turn(engine, "hello there")
    assert result.classification.intent.label == "greeting"
    assert result.retrieval is None
    assert result.reply_text == engine.policy.replies["greeting"]
    assert "retrieval.performed" not in [e.type for e in result.events]


def test_history_feeds_multi_turn_rules(engine) -> None:
    engine.min_confidence = 1.0  # every answer abstains: the bot is failing
    failed_before = [PriorTurn("Where are the frobnicator settings?", bot_failed=True)]
    assert turn(engine, "How do I connect Slack?", history=failed_before).decision.reasons[-1] == (
        "bot_failed_twice")
    engine.min_confidence = 0.0
    repeated = turn(engine, "how do i connect slack to my workspace",
                    history=[PriorTurn("How do I connect Slack to my workspace?")])
    assert "repeated_question" in repeated.decision.reasons
    assert repeated.decision.action == Action.HANDOFF


def test_negative_streak_uses_the_current_sentiment(engine, monkeypatch) -> None:
    sad = [PriorTurn("this is bad", sentiment="negative")] * 2
    original = engine.classifier.classify

    def negative(text, vector):
        understood = original(text, vector)
        return replace(understood, sentiment=replace(understood.sentiment, label="negative"))

    monkeypatch.setattr(engine.classifier, "classify", negative)
    result = turn(engine, "How do I connect Slack?", history=sad)
    assert "negative_streak" in result.decision.reasons


def test_vip_plan_only_counts_for_verified_customers(engine) -> None:
    text = "Can I talk to a person about Slack?"
    verified = turn(engine, text, audience=Audience(verified=True, plan="enterprise"))
    claimed = turn(engine, text, audience=Audience(verified=False, plan="enterprise"))
    assert verified.classification.intent.label == "human_request"
    assert "vip_plan" in verified.decision.reasons
    assert "vip_plan" not in claimed.decision.reasons
