"""The escalation policy: signals in, a decision with reasons out. Pure, no I/O at decide time.

Rules are data (``data/escalation_policy.yaml`` or ``ASSISTANT_POLICY_FILE``) that a
support lead edits; see the comments at the top of that file for every condition. A rule
fires when all its conditions hold; the decision takes the strongest action and the
highest priority of the rules that fired, and lists every one of them with its evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from assistant.understanding.churn import DEFAULT_COMPETITORS
from assistant.yaml_files import load_yaml_model

DEFAULT_POLICY = Path(__file__).resolve().parent / "data" / "escalation_policy.yaml"

CHURN_KINDS = (
    "cancellation",
    "downgrade",
    "competitor",
    "refund_demand",
    "chargeback",
    "not_worth_it",
    "legal_threat",
)
SENTIMENTS = ("negative", "neutral", "positive")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
# A customer's explicit request for a person is new each time, so the loop guard never
# holds it back; every other reason must differ from the ones the agent handed back.
ALWAYS_NEW_REASONS = frozenset({"human_requested"})


class Action(StrEnum):
    """What the assistant does with a turn."""

    ANSWER = "answer"
    ANSWER_AND_OFFER_HUMAN = "answer_and_offer_human"
    HANDOFF = "handoff"


_RANK = {Action.ANSWER: 0, Action.ANSWER_AND_OFFER_HUMAN: 1, Action.HANDOFF: 2}


@dataclass(frozen=True)
class Decision:
    """The policy's verdict; reasons are for agents and logs, never shown raw to customers.

    ``evidence`` maps each reason to what made it fire; ``team`` is where a hand-off goes.
    """

    action: Action
    reasons: list[str] = field(default_factory=list)
    priority: int = 0
    evidence: dict[str, str] = field(default_factory=dict)
    team: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form stored in annotations and events."""
        return {
            "action": str(self.action),
            "reasons": list(self.reasons),
            "priority": self.priority,
            "evidence": dict(self.evidence),
            "team": self.team,
        }


@dataclass(frozen=True)
class TurnSignals:
    """Everything the policy looks at for one turn (this message and the conversation so far)."""

    text: str = ""
    intent: str | None = None
    sentiment: str | None = None
    frustration: float = 0.0
    frustration_cues: tuple[str, ...] = ()
    churn: tuple[tuple[str, str], ...] = ()  # (kind, triggering words)
    retrieval_confidence: float | None = None
    abstained: bool = False
    negative_streak: int = 0
    failed_answers: int = 0
    repeated_of: str | None = None  # the earlier message this one repeats
    plan: str | None = None  # only set for verified customers
    # Reasons of the hand-off an agent handed back to the bot (the hand-off loop guard).
    returned_reasons: frozenset[str] = frozenset()


# -- the file format ----------------------------------------------------------------------


class _When(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: list[str] | None = Field(None, min_length=1)
    churn_signal: list[str] | Literal["any"] | None = None
    sentiment: list[Literal["negative", "neutral", "positive"]] | None = Field(None, min_length=1)
    frustration_at_least: float | None = Field(None, ge=0.0, le=1.0)
    negative_streak_at_least: int | None = Field(None, ge=1, le=100)
    bot_abstained: bool | None = None
    retrieval_confidence_below: float | None = Field(None, ge=0.0, le=1.0)
    failed_answers_at_least: int | None = Field(None, ge=1, le=100)
    repeated_question: bool | None = None
    mentions: list[str] | None = Field(None, min_length=1)
    plan: list[str] | None = Field(None, min_length=1)
    escalating: bool | None = None

    @field_validator("intent")
    @classmethod
    def _known_intents(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        known = (info.context or {}).get("intents")
        if value is not None and known is not None:
            unknown = [label for label in value if label not in known]
            if unknown:
                raise ValueError(
                    f"unknown intent(s) {', '.join(unknown)}; the taxonomy has: "
                    f"{', '.join(sorted(known))}"
                )
        return value

    @field_validator("churn_signal")
    @classmethod
    def _known_churn_kinds(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, list):
            unknown = [kind for kind in value if kind not in CHURN_KINDS]
            if unknown:
                raise ValueError(
                    f"unknown churn signal(s) {', '.join(unknown)}; known: {', '.join(CHURN_KINDS)}"
                )
        return value

    @model_validator(mode="after")
    def _has_a_condition(self) -> _When:
        conditions = self.model_dump(exclude_none=True, exclude={"escalating"})
        if not conditions:
            raise ValueError("a rule needs at least one condition besides 'escalating'")
        return self


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    when: _When
    action: Action
    priority: int = Field(0, ge=0, le=4)
    team: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]{0,63}$")


class _Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent_min_confidence: float = Field(0.35, ge=0.0, le=1.0)
    repeat_similarity: float = Field(0.7, gt=0.0, le=1.0)


class _Churn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    competitors: list[str] = Field(default_factory=lambda: list(DEFAULT_COMPETITORS))


class _Messages(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handoff: str = Field(
        "I'm bringing in a person from our support team. They will see this conversation.",
        min_length=1,
    )
    offer_human: str = Field("You can also ask to talk to a person.", min_length=1)
    expected_wait: str = Field(
        "A person from our {team} team will be with you in about {minutes} minutes.",
        min_length=1,
    )
    offline: str = Field(
        "Our team is not available right now ({hours}). Leave your email address and we "
        "will follow up, or keep chatting with me in the meantime.",
        min_length=1,
    )
    returned: str = Field("You're back with the assistant. Ask me anything.", min_length=1)
    resolved: str = Field("This conversation was marked as resolved.", min_length=1)
    joined: str = Field("{agent} joined the conversation.", min_length=1)


class _BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    days: list[Weekday] = Field(
        default_factory=lambda: list(_WORKDAYS), min_length=1
    )
    open: time = time(9, 0)
    close: time = time(17, 0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @model_validator(mode="after")
    def _opens_before_closing(self) -> _BusinessHours:
        if self.open >= self.close:
            raise ValueError("business_hours.open must be before close")
        return self

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return (
            WEEKDAYS[local.weekday()] in self.days and self.open <= local.time() < self.close
        )

    def describe(self) -> str:
        days = ", ".join(day.capitalize() for day in self.days)
        return f"{days} {self.open:%H:%M}-{self.close:%H:%M} {self.timezone}"


class PolicyFile(BaseModel):
    """The validated content of a policy file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    thresholds: _Thresholds = Field(default_factory=_Thresholds)
    churn: _Churn = Field(default_factory=_Churn)
    messages: _Messages = Field(default_factory=_Messages)
    replies: dict[str, str] = Field(default_factory=dict)
    sla_minutes: dict[int, int] = Field(
        default_factory=lambda: {0: 24 * 60, 1: 4 * 60, 2: 60, 3: 15, 4: 5}
    )
    business_hours: _BusinessHours | None = None
    rules: list[_Rule] = Field(min_length=1)

    @field_validator("sla_minutes")
    @classmethod
    def _sla_for_every_priority(cls, value: dict[int, int]) -> dict[int, int]:
        extra = sorted(set(value) - set(range(5)))
        if extra:
            raise ValueError(f"sla_minutes priorities are 0 to 4, not {extra}")
        missing = sorted(set(range(5)) - set(value))
        if missing:
            raise ValueError(f"sla_minutes needs a value for priorities {missing}")
        if any(minutes < 1 for minutes in value.values()):
            raise ValueError("sla_minutes values must be at least 1")
        return value

    @field_validator("replies")
    @classmethod
    def _replies_name_intents(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        known = (info.context or {}).get("intents")
        if known is not None:
            unknown = [label for label in value if label not in known]
            if unknown:
                raise ValueError(f"replies name unknown intent(s) {', '.join(unknown)}")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[_Rule]) -> list[_Rule]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return value


# Not a rule in the file: the decision lists it when the hand-off loop guard held a
# hand-off back, so agents and logs see why.
_LOOP_GUARD = _Rule.model_construct(
    name="loop_guard",
    description="an agent handed this conversation back; no new reason to hand off again",
    when=_When.model_construct(),
    action=Action.ANSWER_AND_OFFER_HUMAN,
    priority=0,
    team=None,
)


def load_policy(path: Path | None = None, *, intents: list[str] | None = None) -> EscalationPolicy:
    """Load and validate a policy file (default: the one shipped with the package).

    Args:
        path: The YAML file.
        intents: The taxonomy's labels; intents a rule names must be among them.

    Raises:
        YamlFileError: The file is missing or invalid; every problem names its line.
    """
    source = path or DEFAULT_POLICY
    context = {"intents": set(intents)} if intents is not None else None
    return EscalationPolicy(load_yaml_model(source, PolicyFile, context=context), source=source)


# -- deciding -----------------------------------------------------------------------------


class EscalationPolicy:
    """Decides answer / answer-and-offer-a-person / hand off now from declarative rules."""

    def __init__(self, config: PolicyFile, *, source: Path | None = None) -> None:
        """Wrap a validated policy; build one with :func:`load_policy`."""
        self.config = config
        self.source = source
        self._mentions = {
            rule.name: _phrase_pattern(rule.when.mentions)
            for rule in config.rules
            if rule.when.mentions
        }

    @property
    def intent_min_confidence(self) -> float:
        """Below this the intent counts as unknown."""
        return self.config.thresholds.intent_min_confidence

    @property
    def repeat_similarity(self) -> float:
        """Similarity above which a message repeats an earlier one."""
        return self.config.thresholds.repeat_similarity

    @property
    def competitors(self) -> list[str]:
        """Competitor names for churn detection."""
        return list(self.config.churn.competitors)

    def sla_minutes(self, priority: int) -> int:
        """How soon a person should pick up a hand-off of this priority."""
        return self.config.sla_minutes.get(priority, 60)

    @property
    def replies(self) -> dict[str, str]:
        """Intents answered with a fixed reply instead of the knowledge base."""
        return dict(self.config.replies)

    @property
    def messages(self) -> _Messages:
        """Customer-facing texts for hand-offs and offers."""
        return self.config.messages

    def is_open(self, now: datetime) -> bool:
        """Whether ``now`` (timezone-aware) is within business hours (always, if unset)."""
        hours = self.config.business_hours
        return hours is None or hours.is_open(now)

    def hours_text(self) -> str:
        """Business hours as a customer reads them."""
        hours = self.config.business_hours
        return "around the clock" if hours is None else hours.describe()

    def rule_for(self, name: str) -> tuple[int, str | None]:
        """The priority and team of the rule called ``name`` (``(2, None)`` if absent)."""
        for rule in self.config.rules:
            if rule.name == name:
                return rule.priority, rule.team
        return 2, None

    def decide(self, signals: TurnSignals) -> Decision:
        """The decision for one turn."""
        fired: list[tuple[_Rule, str]] = []
        deferred: list[_Rule] = []
        for rule in self.config.rules:
            if rule.when.escalating:
                deferred.append(rule)
                continue
            evidence = self._evidence(rule, signals)
            if evidence is not None:
                fired.append((rule, evidence))
        escalated = any(_RANK[rule.action] > 0 for rule, _ in fired)
        if escalated:
            for rule in deferred:
                evidence = self._evidence(rule, signals)
                if evidence is not None:
                    fired.append((rule, evidence))
        if not fired:
            return Decision(Action.ANSWER)
        action = max((rule.action for rule, _ in fired), key=_RANK.__getitem__)
        if action is Action.HANDOFF and signals.returned_reasons:
            handing_off = {r.name for r, _ in fired if r.action is Action.HANDOFF}
            new = handing_off - signals.returned_reasons
            if not new and not handing_off & ALWAYS_NEW_REASONS:
                # An agent just handed this back for these very reasons; bouncing it
                # straight back would loop. Offer a person instead, and say why.
                action = Action.ANSWER_AND_OFFER_HUMAN
                fired.append((_LOOP_GUARD, "handed back to the bot for "
                              + ", ".join(sorted(handing_off)) + "; no new reason since"))
        priority = max(rule.priority for rule, _ in fired)
        routed = [r for r, _ in fired if r.team and _RANK[r.action] > 0]
        team = max(routed, key=lambda r: r.priority).team if routed else None
        order = {id(rule): i for i, rule in enumerate(self.config.rules)}
        ordered = sorted(fired, key=lambda pair: order.get(id(pair[0]), len(order)))
        return Decision(
            action=action,
            reasons=[rule.name for rule, _ in ordered],
            priority=priority,
            evidence={rule.name: evidence for rule, evidence in ordered},
            team=team,
        )

    def _evidence(self, rule: _Rule, s: TurnSignals) -> str | None:
        """Why ``rule`` fires for ``s``, or ``None`` when one of its conditions fails."""
        w = rule.when
        why: list[str] = []
        if w.intent is not None:
            if s.intent not in w.intent:
                return None
            why.append(f"intent {s.intent}")
        if w.churn_signal is not None:
            kinds = CHURN_KINDS if w.churn_signal == "any" else w.churn_signal
            hits = [(kind, words) for kind, words in s.churn if kind in kinds]
            if not hits:
                return None
            why.extend(f'{kind}: "{words}"' for kind, words in hits)
        if w.sentiment is not None:
            if s.sentiment not in w.sentiment:
                return None
            why.append(f"sentiment {s.sentiment}")
        if w.frustration_at_least is not None:
            if s.frustration < w.frustration_at_least:
                return None
            cues = f" ({', '.join(s.frustration_cues)})" if s.frustration_cues else ""
            why.append(f"frustration {s.frustration:.2f}{cues}")
        if w.negative_streak_at_least is not None:
            if s.negative_streak < w.negative_streak_at_least:
                return None
            why.append(f"{s.negative_streak} negative messages in a row")
        if w.bot_abstained is not None:
            if s.abstained != w.bot_abstained:
                return None
            why.append("no good answer in the knowledge base" if s.abstained else "answered")
        if w.retrieval_confidence_below is not None:
            if s.retrieval_confidence is None or (
                s.retrieval_confidence >= w.retrieval_confidence_below
            ):
                return None
            why.append(f"retrieval confidence {s.retrieval_confidence:.2f}")
        if w.failed_answers_at_least is not None:
            if s.failed_answers < w.failed_answers_at_least:
                return None
            why.append(f"bot failed {s.failed_answers} turns in a row")
        if w.repeated_question is not None:
            if (s.repeated_of is not None) != w.repeated_question:
                return None
            if s.repeated_of is not None:
                why.append(f'repeats "{_shorten(s.repeated_of)}"')
        if w.mentions is not None:
            match = self._mentions[rule.name].search(s.text)
            if match is None:
                return None
            why.append(f'mentions "{match.group(0)}"')
        if w.plan is not None:
            if s.plan is None or s.plan.lower() not in {p.lower() for p in w.plan}:
                return None
            why.append(f"plan {s.plan}")
        return "; ".join(why)


def _phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    # Whole words, any whitespace between words, plurals too: "data  breach", "Data
    # breaches" and "lawyers" match.
    parts = [r"\s+".join(re.escape(w) for w in p.split()) for p in phrases if p.strip()]
    ordered = sorted(parts, key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(ordered) + r")(?:s|es)?\b", re.IGNORECASE)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
