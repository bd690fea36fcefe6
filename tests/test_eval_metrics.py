"""Each metric on hand-made cases with known results, and the baseline comparison."""

from __future__ import annotations

import pytest

from assistant.evaluation.metrics import (
    Observed,
    compare,
    escalation_by_reason,
    judge,
    links_in,
    suite_metrics,
)
from assistant.evaluation.suites import Case, Expectation

KB_LINKS = {"https://help.example.test/account/reset-password"}


def case(case_id: str = "c", **expect) -> Case:
    return Case(suite="s", id=case_id, turns=("question",), expect=Expectation(**expect))


def seen(**fields) -> Observed:
    return Observed(**{"answer": "An answer.", "action": "answer", **fields})


def test_a_case_passes_when_every_expectation_holds() -> None:
    result = judge(
        case(retrieved=("a.md",), cited=("a.md",), intent="how_to", escalate=False,
             contains=("Reset",), not_contains=("refund",)),
        seen(answer="Reset it here https://help.example.test/account/reset-password.",
             retrieved=("b.md", "a.md"), cited=("a.md",), intent="how_to"),
        k=5, known_links=KB_LINKS)
    assert result.passed and result.rank == 2


def test_every_failure_says_what_was_expected_and_what_happened() -> None:
    result = judge(
        case(retrieved=("a.md",), cited=("a.md",), intent="how_to", sentiment="neutral",
             escalate=True, reasons=("human_requested",), offer_human=True,
             contains=("Reset",), not_contains=("sorry",)),
        seen(answer="Sorry! See [here](https://evil.example/x)", retrieved=("b.md",),
             intent="complaint", sentiment="negative", action="answer"),
        k=1, known_links=KB_LINKS)
    assert not result.passed and result.rank is None
    assert result.failures == (
        "retrieved: expected a.md in the top 1, got b.md",
        "cited: expected a.md, the answer cited nothing",
        "intent: expected how_to, got complaint",
        "sentiment: expected neutral, got negative",
        "escalate: expected a hand-off, got answer",
        "reasons: expected human_requested, got none",
        "offer_human: expected an offer of a person, got answer",
        "contains: the answer does not contain 'Reset'",
        "not_contains: the answer contains 'sorry'",
        "invented link(s): https://evil.example/x",
    )


def test_links_are_found_in_markdown_and_bare() -> None:
    assert links_in("see [a](https://x.test/a), or https://y.test/b.") == [
        "https://x.test/a", "https://y.test/b"]


def test_metrics_on_known_results() -> None:
    results = [
        judge(case("r1", retrieved=("a.md",)), seen(retrieved=("a.md", "b.md")), k=5,
              known_links=set()),                                       # rank 1
        judge(case("r2", retrieved=("a.md",)), seen(retrieved=("b.md", "a.md")), k=5,
              known_links=set()),                                       # rank 2
        judge(case("r3", retrieved=("a.md",)), seen(retrieved=("b.md",)), k=5,
              known_links=set()),                                       # missed
        judge(case("i1", intent="how_to"), seen(intent="how_to"), k=5, known_links=set()),
        judge(case("i2", intent="how_to"), seen(intent="greeting"), k=5, known_links=set()),
        judge(case("e-tp", escalate=True, reasons=("legal_threat",)),
              seen(action="handoff", reasons=("legal_threat",)), k=5, known_links=set()),
        judge(case("e-fn", escalate=True, reasons=("churn_risk",)),
              seen(action="answer_and_offer_human", reasons=("frustrated",)), k=5,
              known_links=set()),
        judge(case("e-fp", escalate=False), seen(action="handoff", reasons=("frustrated",)),
              k=5, known_links=set()),
        judge(case("e-tn", escalate=False), seen(action="answer"), k=5, known_links=set()),
    ]
    m = suite_metrics(results, k=5)
    assert (m["hit_at_1"], m["hit_at_k"], m["mrr"]) == (pytest.approx(1 / 3, abs=1e-4),
                                                      pytest.approx(2 / 3, abs=1e-4),
                                                      pytest.approx(0.5, abs=1e-4))
    assert m["intent_accuracy"] == 0.5
    assert (m["escalation_precision"], m["escalation_recall"], m["escalation_f1"]) == (
        0.5, 0.5, 0.5)
    # r1, r2 (rank 2 is within k), i1, e-tp and e-tn pass.
    assert m["cases"] == 9 and m["passed"] == 5
    assert m["case_pass_rate"] == pytest.approx(5 / 9, abs=1e-4)
    assert m["sentiment_accuracy"] is None  # no case measures it
    assert escalation_by_reason(results) == {
        "churn_risk": {"expected": 1, "matched": 0, "missed": 1, "false_alarms": 0},
        "frustrated": {"expected": 0, "matched": 0, "missed": 0, "false_alarms": 1},
        "legal_threat": {"expected": 1, "matched": 1, "missed": 0, "false_alarms": 0},
    }


def _report(metric: float, passed: dict[str, bool]) -> dict:
    return {"suites": [{"name": "s", "metrics": {"hit_at_k": metric, "mrr": None},
                        "cases": [{"key": k, "passed": v} for k, v in passed.items()]}]}


def test_compare_reports_deltas_regressions_and_changed_cases() -> None:
    before = _report(0.90, {"s/a": True, "s/b": False, "s/c": True})
    after = _report(0.85, {"s/a": False, "s/b": True, "s/c": True})
    change = compare(after, before, tolerance=0.02)
    assert change.deltas == {"s": {"hit_at_k": -0.05}}
    assert change.regressions == ["s: hit_at_k dropped from 0.900 to 0.850"]
    assert (change.newly_failing, change.newly_passing) == (["s/a"], ["s/b"])
    assert compare(after, before, tolerance=0.1).regressions == []
