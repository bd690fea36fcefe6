"""One call that understands a customer message: intent, sentiment, frustration, churn.

The engine embeds the message once; the same vector feeds retrieval, the intent
classifier and (when its model uses one) the sentiment model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assistant.embeddings import Vector
from assistant.understanding.churn import ChurnDetector, ChurnSignal
from assistant.understanding.frustration import FrustrationResult, frustration
from assistant.understanding.intent import UNKNOWN, IntentClassifier, IntentPrediction
from assistant.understanding.sentiment import SentimentAnalyzer, SentimentResult


@dataclass(frozen=True)
class Classification:
    """What one customer message is about and how the customer feels."""

    intent: IntentPrediction
    sentiment: SentimentResult
    frustration: FrustrationResult
    churn: list[ChurnSignal]

    @property
    def intent_label(self) -> str | None:
        """The intent, or ``None`` when the classifier was not confident enough."""
        return None if self.intent.label == UNKNOWN else self.intent.label

    def as_dict(self) -> dict[str, Any]:
        """The annotations stored on the customer's message."""
        return {
            "intent": self.intent.as_dict(),
            "sentiment": self.sentiment.as_dict(),
            "frustration": self.frustration.as_dict(),
            "churn_signals": [signal.as_dict() for signal in self.churn],
        }


class MessageClassifier:
    """Runs the intent, sentiment, frustration and churn detectors on one message."""

    def __init__(
        self,
        *,
        intents: IntentClassifier,
        sentiment: SentimentAnalyzer,
        churn: ChurnDetector,
        sentiment_uses_vector: bool = True,
    ) -> None:
        self.intents = intents
        self.sentiment = sentiment
        self.churn = churn
        # The sentiment model was trained on MiniLM vectors; with another embedder it
        # uses its lexicon-only head rather than vectors from a different space.
        self.sentiment_uses_vector = sentiment_uses_vector

    def classify(self, text: str, vector: Vector) -> Classification:
        """Classify ``text`` whose sentence embedding is ``vector``."""
        feeling = self.sentiment.analyze(text, vector if self.sentiment_uses_vector else None)
        return Classification(
            intent=self.intents.predict_one(text, vector),
            sentiment=feeling,
            frustration=frustration(text, feeling),
            churn=self.churn.detect(text),
        )
