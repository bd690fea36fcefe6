"""Churn signals: each kind with the words that triggered it, and no false alarms."""

from __future__ import annotations

import pytest

from assistant.understanding.churn import ChurnDetector


@pytest.fixture(scope="module")
def detector() -> ChurnDetector:
    return ChurnDetector(["Asana", "Monday.com"])


@pytest.mark.parametrize(
    ("text", "kind", "words"),
    [
        ("Please cancel my subscription today", "cancellation", "cancel my subscription"),
        ("We will not renew next year", "cancellation", "will not renew"),
        ("Please close our account", "cancellation", "close our account"),
        ("We need to downgrade to Starter", "downgrade", "downgrade"),
        ("move us to the free plan", "downgrade", "move us to the free plan"),
        ("we're switching to Asana next month", "competitor", "Asana"),
        ("Monday.com does this out of the box", "competitor", "Monday.com"),
        ("thinking of moving to another tool", "competitor", "moving to another"),
        ("I want a full refund for this year", "refund_demand", "I want a full refund"),
        ("Give me my money back", "refund_demand", "Give me my money back"),
        ("I'll file a chargeback", "chargeback", "chargeback"),
        ("I will dispute this charge with my bank", "chargeback", "dispute this charge"),
        ("Honestly it's not worth the money", "not_worth_it", "not worth the money"),
        ("what a waste of money", "not_worth_it", "waste of money"),
        ("My lawyer will hear about this", "legal_threat", "My lawyer"),
        ("We are considering legal action", "legal_threat", "legal action"),
    ],
)
def test_each_signal_with_its_words(detector, text, kind, words) -> None:
    found = {signal.kind: signal.text for signal in detector.detect(text)}
    assert found.get(kind) == words, found


@pytest.mark.parametrize(
    "text",
    [
        "How do I cancel a task?",
        "How do I renew my API key?",
        "Can I get a receipt for my payment?",
        "Where is the export button?",
        "Is the Pro plan worth it for a team of five?",
        "",
    ],
)
def test_routine_questions_are_not_churn(detector, text) -> None:
    assert detector.detect(text) == []


def test_several_kinds_in_one_message(detector) -> None:
    kinds = {s.kind for s in detector.detect(
        "Too expensive. Cancel my plan, refund me, or my attorney gets involved.")}
    assert kinds == {"not_worth_it", "cancellation", "refund_demand", "legal_threat"}


def test_competitor_list_is_configuration() -> None:
    assert ChurnDetector([]).detect("we like Asana better") == []
    assert ChurnDetector(["Linear"]).detect("Linear is faster")[0].text == "Linear"


def test_long_input_is_safe(detector) -> None:
    text = "cancel " * 20000 + "my subscription"
    assert detector.detect(text)[0].kind == "cancellation"


@pytest.mark.parametrize(("text", "kind", "words"), [
    ("Tallyboard just isn't worth the money", "not_worth_it", "n't worth the money"),
    ("Honestly it wasn’t worth it", "not_worth_it", "n’t worth it"),
    ("We're moving our dashboards to Power BI", "competitor", "Power BI"),
    ("Looker does this out of the box", "competitor", "Looker"),
])
def test_contractions_and_bi_competitors_are_caught(text: str, kind: str, words: str) -> None:
    found = [(s.kind, s.text) for s in ChurnDetector().detect(text)]
    assert (kind, words) in found
