"""The escalation policy: signals in, a decision with reasons out. Pure, no I/O.

This first version knows the retrieval signals; intent, sentiment, churn and the
declarative rule file come with the understanding layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    """What the assistant does with a turn."""

    ANSWER = "answer"
    ANSWER_AND_OFFER_HUMAN = "answer_and_offer_human"
    HANDOFF = "handoff"


@dataclass(frozen=True)
class Decision:
    """The policy's verdict; reasons are for agents and logs, never shown raw to customers."""

    action: Action
    reasons: list[str] = field(default_factory=list)
    priority: int = 0


@dataclass(frozen=True)
class TurnSignals:
    """What the policy looks at for one turn."""

    retrieval_confidence: float
    abstained: bool
    min_confidence: float


class EscalationPolicy:
    """Decides answer / answer-and-offer-a-person / hand off now."""

    def decide(self, signals: TurnSignals) -> Decision:
        """The decision for one turn."""
        if signals.abstained or signals.retrieval_confidence < signals.min_confidence:
            return Decision(Action.ANSWER_AND_OFFER_HUMAN, ["low_confidence"], priority=1)
        return Decision(Action.ANSWER)
