"""The escalation policy: every shipped rule, how decisions combine, and bad policy files."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.policy import Action, EscalationPolicy, TurnSignals, load_policy
from assistant.understanding.taxonomy import load_taxonomy
from assistant.yaml_files import YamlFileError


@pytest.fixture(scope="module")
def policy() -> EscalationPolicy:
    return load_policy(intents=load_taxonomy().labels)


def decide(policy: EscalationPolicy, **signals):
    return policy.decide(TurnSignals(**signals))


def test_a_routine_answer_stays_with_the_bot(policy) -> None:
    decision = decide(policy, text="How do I connect Slack?", intent="how_to",
                      sentiment="neutral", retrieval_confidence=0.9)
    assert decision.action == Action.ANSWER
    assert decision.reasons == [] and decision.team is None


@pytest.mark.parametrize(
    ("signals", "action", "reason", "team", "evidence"),
    [
        ({"intent": "human_request"}, Action.HANDOFF, "human_requested", "support",
         "intent human_request"),
        ({"churn": (("competitor", "switching to Asana"),)}, Action.HANDOFF, "churn_risk",
         "retention", 'competitor: "switching to Asana"'),
        ({"churn": (("legal_threat", "my lawyer"),)}, Action.HANDOFF, "legal_threat", "support",
         'legal_threat: "my lawyer"'),
        ({"intent": "cancellation"}, Action.ANSWER_AND_OFFER_HUMAN, "cancellation_intent",
         "retention", "intent cancellation"),
        ({"intent": "refund_request"}, Action.ANSWER_AND_OFFER_HUMAN, "refund_request",
         "billing", "intent refund_request"),
        ({"frustration": 0.8, "frustration_cues": ("shouting",)}, Action.HANDOFF,
         "very_frustrated", "support", "frustration 0.80 (shouting)"),
        ({"frustration": 0.5}, Action.ANSWER_AND_OFFER_HUMAN, "frustrated", None,
         "frustration 0.50"),
        ({"negative_streak": 3, "sentiment": "negative"}, Action.HANDOFF, "negative_streak",
         "support", "3 negative messages in a row"),
        ({"abstained": True}, Action.ANSWER_AND_OFFER_HUMAN, "low_confidence", None,
         "no good answer in the knowledge base"),
        ({"abstained": True, "failed_answers": 2}, Action.HANDOFF, "bot_failed_twice", "support",
         "bot failed 2 turns in a row"),
        ({"repeated_of": "how do I export my data"}, Action.HANDOFF, "repeated_question",
         "support", 'repeats "how do I export my data"'),
        ({"text": "I think my account was HACKED"}, Action.HANDOFF, "security_incident",
         "support", 'mentions "HACKED"'),
        ({"text": "Please delete   my data under GDPR"}, Action.HANDOFF, "data_deletion", "support",
         'mentions "delete   my data"'),
        ({"text": "We received a subpoena about this account"}, Action.HANDOFF, "legal_topic",
         "support", 'mentions "subpoena"'),
    ],
)
def test_each_shipped_rule(policy, signals, action, reason, team, evidence) -> None:
    decision = decide(policy, **signals)
    assert decision.action == action
    assert reason in decision.reasons
    assert decision.evidence[reason] == evidence
    assert decision.team == team


def test_vip_plan_raises_priority_only_when_escalating(policy) -> None:
    calm = decide(policy, intent="how_to", plan="enterprise")
    assert calm.action == Action.ANSWER and "vip_plan" not in calm.reasons
    escalated = decide(policy, intent="human_request", plan="Enterprise")
    assert escalated.reasons == ["human_requested", "vip_plan"]
    assert escalated.priority == 4
    assert decide(policy, intent="human_request", plan="pro").priority == 2


def test_decisions_combine_strongest_action_highest_priority(policy) -> None:
    decision = decide(policy, intent="refund_request", abstained=True,
                      churn=(("chargeback", "dispute this charge"),))
    assert decision.action == Action.HANDOFF
    assert decision.reasons == ["churn_risk", "refund_request", "low_confidence"]
    assert decision.priority == 3
    assert decision.team == "retention"  # the highest-priority escalating rule with a team


def test_unknown_intent_fires_no_intent_rule(policy) -> None:
    assert decide(policy, intent=None, text="hmm").action == Action.ANSWER


def test_mentions_match_whole_words_only(policy) -> None:
    assert decide(policy, text="My subreached goal").action == Action.ANSWER
    assert decide(policy, text="was there a breach?").reasons == ["security_incident"]


# -- bad files ----------------------------------------------------------------------------

GOOD_RULE = """\
version: 1
rules:
  - name: human
    when: {intent: [human_request]}
    action: handoff
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_minimal_file_loads(tmp_path) -> None:
    loaded = load_policy(write(tmp_path, GOOD_RULE), intents=["human_request"])
    assert loaded.decide(TurnSignals(intent="human_request")).action == Action.HANDOFF
    assert loaded.intent_min_confidence == 0.35


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (GOOD_RULE.replace("handoff", "escalate"), 5, "rules[0].action: Input should be"),
        (GOOD_RULE.replace("[human_request]", "[human_requets]"), 4,
         "unknown intent(s) human_requets"),
        (GOOD_RULE.replace("{intent: [human_request]}", "{frustration_at_least: 7}"), 4,
         "rules[0].when.frustration_at_least: Input should be less than or equal to 1"),
        (GOOD_RULE.replace("{intent: [human_request]}", "{frustraton_at_least: 0.5}"), 4,
         "rules[0].when.frustraton_at_least: Extra inputs are not permitted"),
        (GOOD_RULE.replace("{intent: [human_request]}", "{escalating: true}"), 4,
         "at least one condition"),
        (GOOD_RULE.replace("{intent: [human_request]}", "{churn_signal: [angry]}"), 4,
         "unknown churn signal(s) angry"),
        (GOOD_RULE + "  - name: human\n    when: {bot_abstained: true}\n    action: answer\n", 2,
         "two rules are named 'human'"),
        (GOOD_RULE.replace("version: 1", "version: 2"), 1, "version: Input should be 1"),
        ("version: 1\nrules: [\n", 3, "not valid YAML"),
        ("", None, "the file is empty"),
        (GOOD_RULE + "thresholds:\n  intent_min_confidence: high\n", 7,
         "thresholds.intent_min_confidence: Input should be a valid number"),
    ],
)
def test_invalid_files_name_the_line_and_the_problem(tmp_path, text, line, needle) -> None:
    path = write(tmp_path, text)
    with pytest.raises(YamlFileError) as caught:
        load_policy(path, intents=["human_request"])
    message = str(caught.value)
    assert needle in message
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert any(row.startswith(prefix) and needle in row for row in message.splitlines()), message


def test_a_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(YamlFileError, match="cannot read the file"):
        load_policy(tmp_path / "nope.yaml")


def test_sla_minutes_per_priority(tmp_path, policy) -> None:
    assert [policy.sla_minutes(p) for p in range(5)] == [1440, 240, 60, 15, 5]
    custom = load_policy(write(tmp_path, GOOD_RULE + "sla_minutes: {0: 600, 1: 120, 2: 30, "
                                                      "3: 10, 4: 2}\n"))
    assert custom.sla_minutes(4) == 2
    with pytest.raises(YamlFileError, match=r"policy.yaml:6: sla_minutes: .*priorities \[4\]"):
        load_policy(write(tmp_path, GOOD_RULE + "sla_minutes: {0: 1, 1: 1, 2: 1, 3: 1}\n"))


def test_mentions_match_plurals_too() -> None:
    from assistant.policy import TurnSignals, load_policy

    policy = load_policy()
    assert "legal_topic" in policy.decide(TurnSignals(text="Our lawyers have questions")).reasons
    assert "legal_topic" not in policy.decide(TurnSignals(text="Our lawn is green")).reasons
