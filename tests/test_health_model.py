"""Customer health scores worked out by hand (default weights, see assistant/data/health.yaml:
sentiment .20, frustration .15, churn .25, escalations .10, unresolved .10, contact .10,
csat .10; they sum to 1, so a component's points lost are 100 x weight x risk)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.config import PACKAGE_ROOT
from assistant.errors import ConfigurationError
from assistant.health.model import (
    HealthConfig,
    fold,
    load_health_config,
    new_state,
    note_evidence,
    score,
)

CONFIG = load_health_config(PACKAGE_ROOT / "assistant" / "data" / "health.yaml")
MONDAY = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)  # ISO week 2026-W47


def apply(state: dict, type: str, at: datetime, conversation: str = "c1", **payload) -> int:
    before = score(state, at, CONFIG).score
    moved = fold(state, type=type, payload=payload, conversation_id=conversation, at=at,
                 config=CONFIG)
    after = score(state, at, CONFIG).score
    note_evidence(state, before=before, after=after, moved=moved, event_type=type,
                  conversation_id=conversation, at=at)
    return after


def test_a_customer_with_no_signals_is_healthy() -> None:
    state = new_state()
    assert apply(state, "conversation.started", MONDAY) == 100
    assert score(state, MONDAY, CONFIG).band == "healthy"


def test_a_churning_frustrated_customer_walks_down_the_bands() -> None:
    state = new_state()
    apply(state, "conversation.started", MONDAY)
    # sentiment 1.0 -> 20, frustration 0.4 -> 6, two churn signals -> risk 1 -> 25: 100-51
    assert apply(state, "message.classified", MONDAY, sentiment="negative", frustration=0.4,
                 churn_signals=["cancellation", "competitor"]) == 49
    assert score(state, MONDAY, CONFIG).band == "watch"
    # + escalations 1/3 -> 3.33, unresolved 1/2 -> 5: 100 - 59.33 = 40.67
    assert apply(state, "handoff.enqueued", MONDAY, reasons=["churn_risk"]) == 41
    # + csat 1 -> risk (5-1)/4 = 1 -> 10: 100 - 69.33 = 30.67
    assert apply(state, "csat.submitted", MONDAY, score=1) == 31
    assert score(state, MONDAY, CONFIG).band == "at_risk"
    # the hand-off closes: - 5 points of unresolved
    assert apply(state, "handoff.resolved", MONDAY) == 36
    components = score(state, MONDAY, CONFIG).components
    assert components["churn_signals"].points_lost == pytest.approx(25.0)
    assert components["unresolved"].risk == 0.0
    assert [e["delta"] for e in state["evidence"]] == [-51, -8, -10, 5]
    assert state["evidence"][0]["conversation_id"] == "c1"


def test_signals_fade_with_their_half_life() -> None:
    state = new_state()
    apply(state, "conversation.started", MONDAY)
    apply(state, "message.classified", MONDAY, sentiment="negative", frustration=0.4,
          churn_signals=["cancellation", "competitor"])
    apply(state, "handoff.enqueued", MONDAY)
    apply(state, "csat.submitted", MONDAY, score=1)
    apply(state, "handoff.resolved", MONDAY)
    later = MONDAY + timedelta(days=30)  # one half-life
    # churn 2 -> 1 (12.5), escalations 1 -> 0.5 (1.67); sentiment 20, frustration 6,
    # csat 10; contact: 0 this week against a baseline of 0.25 -> 0: 100 - 50.17
    assert score(state, later, CONFIG).score == 50


def test_contact_frequency_is_measured_against_the_customers_own_baseline() -> None:
    state = new_state()
    for weeks_ago in (4, 3, 2, 1):  # one conversation a week: the baseline is 1
        apply(state, "conversation.started", MONDAY - timedelta(weeks=weeks_ago))
    assert apply(state, "conversation.started", MONDAY) == 100
    apply(state, "conversation.started", MONDAY, conversation="c2")
    # 2 this week against 1: risk (2-1)/2 = 0.5 -> 5 points
    assert apply(state, "conversation.started", MONDAY, conversation="c3") == 90
    assert score(state, MONDAY, CONFIG).components["contact_frequency"].risk == 1.0


def test_positive_messages_and_good_ratings_recover_the_score() -> None:
    state = new_state()
    apply(state, "message.classified", MONDAY, sentiment="negative", frustration=0.0)
    assert score(state, MONDAY, CONFIG).score == 80
    # moving average: 1.0 + 0.3 x (0 - 1.0) = 0.7 -> 14 points
    assert apply(state, "message.classified", MONDAY, sentiment="positive",
                 frustration=0.0) == 86


def test_weights_are_configurable(tmp_path: Path) -> None:
    only_csat = HealthConfig(weights={"csat": 1.0})
    state = new_state()
    fold(state, type="csat.submitted", payload={"score": 3}, conversation_id="c",
         at=MONDAY, config=only_csat)
    assert score(state, MONDAY, only_csat).score == 50  # risk (5-3)/4 = 0.5


@pytest.mark.parametrize(("text", "problem"), [
    ("weights: {happiness: 1}", "unknown components in weights: happiness"),
    ("bands: {healthy: 30, watch: 60}", "bands.watch must be below bands.healthy"),
    ("half_life_days: -1", "half_life_days"),
    ("weights: [", "not valid YAML"),
])
def test_bad_health_files_fail_with_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "health.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=problem):
        load_health_config(path)
