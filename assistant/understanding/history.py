"""What the conversation so far says: negative streaks, failed answers, repeated questions.

The engine gets the earlier turns as plain data (:class:`PriorTurn`, built by the
conversation service from stored annotations) and derives the multi-turn signals here.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# Intents whose repetition is not a repeated *question* ("thanks", "hi").
_NOT_QUESTIONS = frozenset({"greeting", "thanks_goodbye"})
_MIN_CONTENT_WORDS = 3
_STOP = frozenset(
    {
        "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "it", "its", "is",
        "are", "was", "were", "be", "been", "am", "do", "does", "did", "to", "of", "in",
        "on", "for", "and", "or", "but", "with", "at", "by", "from", "this", "that", "can",
        "could", "would", "should", "will", "how", "what", "why", "when", "where", "which",
        "who", "please", "hi", "hello", "hey", "thanks", "thank", "just", "still", "again",
        "already", "any", "some", "there", "have", "has", "had", "not", "no", "yes", "ok",
        "okay", "so", "get"
    }
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


@dataclass(frozen=True)
class PriorTurn:
    """One earlier customer message and how the bot fared with it."""

    text: str
    intent: str | None = None
    sentiment: str | None = None
    bot_failed: bool = False


def negative_streak(prior: Sequence[PriorTurn], current_sentiment: str | None) -> int:
    """How many customer messages in a row, ending with this one, were negative."""
    if current_sentiment != "negative":
        return 0
    streak = 1
    for turn in reversed(prior):
        if turn.sentiment != "negative":
            break
        streak += 1
    return streak


def failed_answers(prior: Sequence[PriorTurn], current_failed: bool) -> int:
    """How many customer turns in a row, ending with this one, the bot could not answer."""
    if not current_failed:
        return 0
    streak = 1
    for turn in reversed(prior):
        if not turn.bot_failed:
            break
        streak += 1
    return streak


def repeated_question(
    prior: Sequence[PriorTurn], text: str, intent: str | None, *, threshold: float
) -> str | None:
    """The earlier message ``text`` repeats (word-overlap cosine >= threshold), if any."""
    if intent in _NOT_QUESTIONS:
        return None
    current = _content_words(text)
    if sum(current.values()) < _MIN_CONTENT_WORDS:
        return None
    for turn in reversed(prior):
        if turn.intent in _NOT_QUESTIONS:
            continue
        if _cosine(current, _content_words(turn.text)) >= threshold:
            return turn.text
    return None


def _content_words(text: str) -> Counter[str]:
    words = (stem(w) for w in _WORD.findall(text.lower()))
    return Counter(w for w in words if w not in _STOP and len(w) > 1)


def stem(word: str) -> str:
    """A crude English stem (-ing, -ed, -es, -s), enough to match repeated questions."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[word] for word, count in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm
