"""Build the message classifier from settings: taxonomy, intent model, sentiment, churn.

Without ``ASSISTANT_INTENT_MODEL_DIR`` the intent model is trained on the taxonomy's
examples the first time (a second or two) and cached under the data directory, keyed by
the taxonomy's content and the embedder, so editing ``intents.yaml`` retrains it once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from assistant.config import Settings
from assistant.embeddings import Embedder
from assistant.errors import ConfigurationError
from assistant.policy import EscalationPolicy
from assistant.understanding.churn import ChurnDetector
from assistant.understanding.classify import MessageClassifier
from assistant.understanding.intent import IntentClassifier
from assistant.understanding.sentiment import EMBEDDER_MODEL_ID as SENTIMENT_EMBEDDER_ID
from assistant.understanding.sentiment import SentimentAnalyzer
from assistant.understanding.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


def taxonomy_model_dir(settings: Settings, taxonomy: Taxonomy, embedder: Embedder) -> Path:
    """Where the model trained on ``taxonomy`` with ``embedder`` is cached."""
    safe_model = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder.model_id)
    return settings.data_dir / "models" / f"intents-{taxonomy.fingerprint}-{safe_model}"


def train_on_taxonomy(taxonomy: Taxonomy, embedder: Embedder) -> IntentClassifier:
    """A classifier trained on the taxonomy's example utterances."""
    texts, labels = taxonomy.training_data()
    return IntentClassifier.train(
        texts, labels, embedder.embed(texts), seed=0, embedder_model_id=embedder.model_id
    )


def load_intent_classifier(
    settings: Settings, taxonomy: Taxonomy, embedder: Embedder
) -> IntentClassifier:
    """The team's trained model if configured, else the (cached) taxonomy model."""
    if settings.intent_model_dir is not None:
        classifier = IntentClassifier.load(
            settings.intent_model_dir, embedder_model_id=embedder.model_id
        )
        missing = set(taxonomy.labels) - set(classifier.labels) - {"out_of_scope"}
        if missing:
            logger.warning(
                "intent model in %s lacks taxonomy intents %s; rules naming them never fire",
                settings.intent_model_dir,
                ", ".join(sorted(missing)),
            )
        return classifier
    cache = taxonomy_model_dir(settings, taxonomy, embedder)
    if (cache / "manifest.json").is_file():
        try:
            return IntentClassifier.load(cache, embedder_model_id=embedder.model_id)
        except ConfigurationError:
            logger.warning("cached intent model in %s is unusable; retraining", cache)
    classifier = train_on_taxonomy(taxonomy, embedder)
    try:
        classifier.save(cache)
    except OSError:  # a read-only data dir still works, it just retrains next start
        logger.warning("could not cache the intent model in %s", cache)
    return classifier


def build_classifier(
    settings: Settings, *, taxonomy: Taxonomy, policy: EscalationPolicy, embedder: Embedder
) -> MessageClassifier:
    """The message classifier, with the policy's intent threshold and competitor list."""
    intents = load_intent_classifier(settings, taxonomy, embedder)
    intents.min_confidence = policy.intent_min_confidence
    return MessageClassifier(
        intents=intents,
        sentiment=SentimentAnalyzer.default(),
        churn=ChurnDetector(policy.competitors),
        sentiment_uses_vector=embedder.model_id == SENTIMENT_EMBEDDER_ID,
    )
