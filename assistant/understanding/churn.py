"""Churn signals in a customer message, each with the words that triggered it.

Patterns are deliberately phrase-level ("cancel my subscription", not "cancel"): "how do I
cancel a task" is a how-to question, not a churn risk. Competitor names are configuration
(the policy file's ``churn.competitors``) because every product has its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

# Bounded, alternation-only patterns (no nested quantifiers): safe on any input length.
_PATTERNS: dict[str, list[str]] = {
    "cancellation": [
        r"\bcancel+(?:ing|ed|ling|led)?\s+(?:my|our|the)\s+(?:subscription|account|plan|membership|contract|renewal)",
        r"\b(?:close|delete|terminate)\s+(?:my|our)\s+(?:account|subscription|workspace)",
        r"\bnot\s+(?:going\s+to\s+)?renew(?:ing)?\b",
        r"\b(?:won'?t|will\s+not|don'?t\s+want\s+to)\s+renew\b",
        r"\bstop\s+(?:using|paying\s+for)\s+(?:tallyboard|your\s+(?:product|service|app|tool))",
        r"\bwant\s+to\s+cancel\b",
        r"\b(?:i'?m|we'?re|i\s+am|we\s+are)\s+(?:cancel+ing|leaving|done\s+with\s+you)\b",
        r"\bunsubscribe\s+(?:me|us)\b",
    ],
    "downgrade": [
        r"\bdowngrad(?:e|ing)\b",
        r"\b(?:move|switch|go)\s+(?:us\s+|me\s+)?(?:back\s+)?(?:down\s+)?to\s+(?:the\s+)?(?:free|starter|basic|cheaper)\s+plan",
        r"\b(?:reduce|remove|cut)\s+(?:our|the|some|\d+)\s+(?:seats|licen[cs]es|users)",
    ],
    "refund_demand": [
        r"\b(?:i|we)\s+(?:want|demand|need|expect)\s+(?:a\s+|my\s+|our\s+)?(?:full\s+)?refund",
        r"\brefund\s+(?:me|us|my|our|the)\b",
        r"\b(?:want|demand)\s+(?:my|our)\s+money\s+back\b",
        r"\bgive\s+(?:me|us)\s+(?:my|our)\s+money\s+back\b",
    ],
    "chargeback": [
        r"\bcharge\s*-?\s*back\b",
        r"\bdispute\s+(?:the|this|that|these)\s+(?:charge|payment|transaction)s?",
        r"\b(?:call|contact|tell)\s+(?:my|our)\s+(?:bank|credit\s+card\s+company)",
    ],
    "not_worth_it": [
        # "not worth", and contractions: "isn't worth", "wasn’t worth".
        r"(?:\bnot|n['’]?t)\s+worth\s+(?:it|the\s+(?:money|price|cost))",
        r"\b(?:too|way\s+too|so)\s+expensive\b",
        r"\bwaste\s+of\s+(?:money|time)\b",
        r"\b(?:overpriced|rip\s*-?\s*off)\b",
        r"\bpaying\s+(?:for\s+)?(?:nothing|something\s+that\s+doesn'?t\s+work)",
    ],
    "legal_threat": [
        r"\b(?:my|our)\s+(?:lawyer|attorney|solicitor|legal\s+team|legal\s+department)s?\b",
        r"\b(?:sue|suing|lawsuit|legal\s+action|take\s+you\s+to\s+court|small\s+claims)\b",
        r"\b(?:report|reporting)\s+you\s+to\b",
        r"\b(?:consumer\s+protection|ombudsman|trading\s+standards|data\s+protection\s+authority)\b",
        r"\bbreach\s+of\s+contract\b",
    ],
}

_COMPETITOR_SWITCH = (
    r"\b(?:switch(?:ing)?|mov(?:e|ing)|go(?:ing)?|migrat(?:e|ing))\s+(?:over\s+)?to\s+"
    r"(?:another|a\s+different|a\s+competing|your\s+competitor)"
)

DEFAULT_COMPETITORS = (
    # Dashboards and BI, what the demo product competes with ...
    "Tableau",
    "Looker",
    "Power BI",
    "Metabase",
    "Sisense",
    "Domo",
    # ... and the work-management tools customers also move their reporting to.
    "Asana",
    "Trello",
    "Monday.com",
    "ClickUp",
    "Notion",
    "Basecamp",
    "Wrike",
    "Smartsheet",
    "Airtable",
)


@dataclass(frozen=True)
class ChurnSignal:
    """One churn signal: its kind and the words that triggered it."""

    kind: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as stored in annotations."""
        return asdict(self)


class ChurnDetector:
    """Finds churn signals: cancellation or downgrade, competitors, refunds, legal threats."""

    KINDS = (*_PATTERNS, "competitor")

    def __init__(self, competitors: Iterable[str] = DEFAULT_COMPETITORS) -> None:
        self._patterns = {
            kind: re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
            for kind, patterns in _PATTERNS.items()
        }
        names = sorted({c.strip() for c in competitors if c.strip()}, key=len, reverse=True)
        alternatives = [_COMPETITOR_SWITCH]
        if names:
            alternatives.append(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b")
        self._competitor = re.compile("|".join(alternatives), re.IGNORECASE)

    def detect(self, text: str) -> list[ChurnSignal]:
        """Every churn signal in ``text``, at most one per kind (its first match)."""
        signals = []
        for kind, pattern in self._patterns.items():
            match = pattern.search(text)
            if match:
                signals.append(ChurnSignal(kind=kind, text=match.group(0)))
        match = self._competitor.search(text)
        if match:
            signals.append(ChurnSignal(kind="competitor", text=match.group(0)))
        return signals
