"""Message sentiment (negative / neutral / positive) from the message's MiniLM vector.

The shipped model (``data/sentiment/sentiment_linear.json``, ~20 KB) is a multinomial
logistic regression over two inputs the engine already has or gets almost for free:

* the message's all-MiniLM-L6-v2 sentence vector (384 floats, computed once per turn by
  the engine and passed in as ``vector``), and
* four VADER lexicon scores (``neg``, ``neu``, ``pos``, ``compound``) from the
  ``vaderSentiment`` package, whose lexicon files are verified by sha256.

It was trained by ``benchmarks/train_sentiment.py`` on the 2,000-tweet TweetEval sentiment
*validation* split plus the intent taxonomy's support utterances labelled by intent
(class-balanced, seeded, deterministic); the TweetEval test split is used only by
``benchmarks/sentiment_tweeteval.py`` to report figures.

When no vector is passed, :meth:`SentimentAnalyzer.analyze` embeds the text with the
embedder given to the constructor; without one it falls back to a second, lexicon-only
head shipped in the same file (less accurate: roughly 61 vs 66 macro-recall in
cross-validation). :attr:`SentimentAnalyzer.needs_vector` tells which case applies.

Everything here is numpy arithmetic plus one VADER call: well under a millisecond per
message.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from assistant.embeddings import Embedder, verify_sha256
from assistant.errors import ConfigurationError, InvalidInput, ModelFileError

LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")
MODEL_FILE = Path(__file__).resolve().parent / "data" / "sentiment" / "sentiment_linear.json"
MODEL_SHA256 = "04ced17a318153dc2ae77e94110c777db77f94f3fb6ad3626ef455b573fef91d"
MODEL_FORMAT = "assistant-sentiment-linear/1"
EMBEDDER_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
VECTOR_DIMENSION = 384

# vaderSentiment==3.3.2 (MIT): the lexicon files its analyzer reads at start-up.
VADER_PACKAGE = "vaderSentiment"
VADER_FILES: dict[str, str] = {
    "vader_lexicon.txt": "1ec9c6e9ee19aade328f8beb393a6afa71a5bb3acf7d3cc22d4ef568df374bf5",
    "emoji_utf8_lexicon.txt": "b8d54223ae1ce22a3e12c1f745316b71678c328eb5f5d3063a842f37cfbe2823",
}
LEXICON_FEATURES = ("neg", "neu", "pos", "compound")
# VADER's cost grows with the text; MiniLM only reads the first 256 word pieces anyway.
MAX_LEXICON_CHARS = 2000

FloatArray = npt.NDArray[np.float64]
_NEUTRAL = {"negative": 0.0, "neutral": 1.0, "positive": 0.0}


@dataclass(frozen=True)
class SentimentResult:
    """The sentiment of one message: the most likely label and a probability per label."""

    label: str
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: ``{"label": ..., "scores": {label: probability}}``."""
        return {"label": self.label, "scores": {k: round(v, 4) for k, v in self.scores.items()}}


@dataclass(frozen=True)
class LinearHead:
    """Softmax over ``features @ weights.T + bias`` for the three labels."""

    weights: FloatArray  # (3, n_features)
    bias: FloatArray  # (3,)

    def probabilities(self, features: FloatArray) -> FloatArray:
        """Row-wise label probabilities for a (n, n_features) matrix."""
        logits = features @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"package {package!r} is not installed; run `make install` "
            "(or `pip install vaderSentiment==3.3.2`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class LexiconScorer:
    """VADER's four scores for a text, after checking the lexicon files' digests."""

    def __init__(self) -> None:
        directory = _package_dir(VADER_PACKAGE)
        for name, digest in VADER_FILES.items():
            verify_sha256(directory / name, digest)
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()

    def features(self, text: str) -> FloatArray:
        """``[neg, neu, pos, compound]`` for the first ``MAX_LEXICON_CHARS`` characters."""
        if not text.strip():
            return np.zeros(len(LEXICON_FEATURES), dtype=np.float64)
        scores = self._vader.polarity_scores(text[:MAX_LEXICON_CHARS])
        return np.array([float(scores[k]) for k in LEXICON_FEATURES], dtype=np.float64)

    def matrix(self, texts: Sequence[str]) -> FloatArray:
        """One row of :meth:`features` per text."""
        if not texts:
            return np.zeros((0, len(LEXICON_FEATURES)), dtype=np.float64)
        return np.vstack([self.features(t) for t in texts])


_LEXICON: LexiconScorer | None = None
_LEXICON_LOCK = threading.Lock()


def lexicon_scorer() -> LexiconScorer:
    """The process-wide :class:`LexiconScorer` (built once: reading the lexicon takes ~50 ms)."""
    global _LEXICON
    with _LEXICON_LOCK:
        if _LEXICON is None:
            _LEXICON = LexiconScorer()
        return _LEXICON


def _head(raw: Any, n_features: int, name: str, path: Path) -> LinearHead:
    try:
        weights = np.asarray(raw["weights"], dtype=np.float64)
        bias = np.asarray(raw["bias"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: head {name!r} is malformed: {exc}") from exc
    if weights.shape != (len(LABELS), n_features) or bias.shape != (len(LABELS),):
        raise ModelFileError(
            f"{path}: head {name!r} has weights {weights.shape} and bias {bias.shape}, "
            f"expected ({len(LABELS)}, {n_features}) and ({len(LABELS)},)"
        )
    if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        raise ModelFileError(f"{path}: head {name!r} has non-finite numbers")
    return LinearHead(weights=weights, bias=bias)


class SentimentAnalyzer:
    """Negative / neutral / positive for customer messages.

    ``vector_head`` reads the MiniLM vector followed by the lexicon scores;
    ``lexicon_head`` reads the lexicon scores alone and is used when no vector is
    available. ``embedder`` (optional) is used to embed texts passed without a vector.
    """

    def __init__(
        self,
        *,
        vector_head: LinearHead,
        lexicon_head: LinearHead,
        lexicon: LexiconScorer | None = None,
        embedder: Embedder | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.vector_head = vector_head
        self.lexicon_head = lexicon_head
        self.lexicon = lexicon or lexicon_scorer()
        self.embedder = embedder
        self.metadata = metadata or {}
        if embedder is not None and getattr(embedder, "model_id", None) != EMBEDDER_MODEL_ID:
            raise ConfigurationError(
                f"the sentiment model reads {EMBEDDER_MODEL_ID} vectors, not "
                f"{getattr(embedder, 'model_id', '?')}; pass no embedder to use the "
                "lexicon-only head"
            )

    @classmethod
    def default(cls, embedder: Embedder | None = None) -> SentimentAnalyzer:
        """The shipped model, checked against its pinned sha256."""
        return cls.load(MODEL_FILE, sha256=MODEL_SHA256, embedder=embedder)

    @classmethod
    def load(
        cls, path: Path, *, sha256: str | None = None, embedder: Embedder | None = None
    ) -> SentimentAnalyzer:
        """Load a model file; with ``sha256``, refuse it unless its digest matches.

        Raises :class:`ModelFileError` (a ``ConfigurationError``) when the file is missing,
        fails its checksum or is not a well-formed model.
        """
        path = Path(path)
        if sha256 is not None:
            verify_sha256(path, sha256)
        elif not path.is_file():
            raise ModelFileError(f"sentiment model missing: {path}")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path}: not a readable sentiment model: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise ModelFileError(f"{path}: not a {MODEL_FORMAT} file")
        if tuple(payload.get("labels") or ()) != LABELS:
            raise ModelFileError(f"{path}: labels must be {list(LABELS)}")
        if tuple(payload.get("lexicon_features") or ()) != LEXICON_FEATURES:
            raise ModelFileError(f"{path}: lexicon features must be {list(LEXICON_FEATURES)}")
        heads = payload.get("heads")
        if not isinstance(heads, dict):
            raise ModelFileError(f"{path}: no heads")
        n_lex = len(LEXICON_FEATURES)
        vector_head = _head(heads.get("vector"), VECTOR_DIMENSION + n_lex, "vector", path)
        lexicon_head = _head(heads.get("lexicon"), n_lex, "lexicon", path)
        metadata = {k: v for k, v in payload.items() if k != "heads"}
        return cls(
            vector_head=vector_head,
            lexicon_head=lexicon_head,
            embedder=embedder,
            metadata=metadata,
        )

    @property
    def needs_vector(self) -> bool:
        """True when a call without a vector would use the weaker lexicon-only head."""
        return self.embedder is None

    def analyze(self, text: str, vector: npt.ArrayLike | None = None) -> SentimentResult:
        """The sentiment of one message.

        ``vector`` is the message's MiniLM embedding (shape ``(384,)`` or ``(1, 384)``).
        Without it, the constructor's embedder is used, else the lexicon-only head.
        Empty or whitespace-only text is neutral.
        """
        matrix = None if vector is None else self._as_matrix(vector, 1)
        return self.analyze_batch([text], matrix)[0]

    def analyze_batch(
        self, texts: list[str], vectors: npt.ArrayLike | None = None
    ) -> list[SentimentResult]:
        """:meth:`analyze` for many messages; ``vectors`` has one row per text."""
        if not texts:
            return []
        lex = self.lexicon.matrix(texts)
        if vectors is not None:
            matrix: FloatArray | None = self._as_matrix(vectors, len(texts))
        elif self.embedder is not None:
            matrix = self._as_matrix(self.embedder.embed(list(texts)), len(texts))
        else:
            matrix = None
        if matrix is None:
            probs = self.lexicon_head.probabilities(lex)
        else:
            probs = self.vector_head.probabilities(np.hstack([matrix, lex]))
        results = []
        for text, row in zip(texts, probs, strict=True):
            if not text.strip():
                results.append(SentimentResult("neutral", dict(_NEUTRAL)))
                continue
            scores = {label: float(p) for label, p in zip(LABELS, row, strict=True)}
            results.append(SentimentResult(LABELS[int(np.argmax(row))], scores))
        return results

    @staticmethod
    def _as_matrix(vectors: npt.ArrayLike, rows: int) -> FloatArray:
        matrix = np.asarray(vectors, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.shape != (rows, VECTOR_DIMENSION):
            raise InvalidInput(
                f"sentiment needs {EMBEDDER_MODEL_ID} vectors of shape ({rows}, "
                f"{VECTOR_DIMENSION}), got {matrix.shape}"
            )
        if not np.isfinite(matrix).all():
            raise InvalidInput("sentiment vectors contain NaN or infinity")
        return matrix


def evaluate(
    analyzer: SentimentAnalyzer,
    texts: list[str],
    labels: list[str],
    vectors: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, macro-recall and per-label precision/recall/F1/support."""
    if len(texts) != len(labels):
        raise InvalidInput(f"{len(texts)} texts but {len(labels)} labels")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise InvalidInput(f"unknown sentiment labels {unknown}; expected {list(LABELS)}")
    predicted = [r.label for r in analyzer.analyze_batch(texts, vectors)]
    pairs = Counter(zip(labels, predicted, strict=True))
    per_label: dict[str, dict[str, float | int]] = {}
    for label in LABELS:
        tp = pairs[(label, label)]
        support = sum(pairs[(label, p)] for p in LABELS)
        guessed = sum(pairs[(g, label)] for g in LABELS)
        precision = tp / guessed if guessed else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    # Macro averages over the labels that occur in the gold data.
    present = [label for label in LABELS if per_label[label]["support"]]
    n = len(labels)
    return {
        "n": n,
        "accuracy": sum(pairs[(k, k)] for k in LABELS) / n if n else math.nan,
        "macro_f1": _mean([per_label[k]["f1"] for k in present]),
        "macro_recall": _mean([per_label[k]["recall"] for k in present]),
        "per_label": per_label,
        "confusion": {g: {p: pairs[(g, p)] for p in LABELS} for g in LABELS},
    }


def _mean(values: list[float | int]) -> float:
    return float(sum(values) / len(values)) if values else math.nan
