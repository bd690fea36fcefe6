"""A trainable intent classifier over sentence embeddings plus word and character n-grams.

Each message is represented by three blocks that are stacked side by side:

* TF-IDF of word 1-2 grams (sublinear tf, L2-normalised),
* TF-IDF of character 1-6 grams (sublinear tf, L2-normalised, n-grams seen in >= 2 texts),
* the message's sentence embedding (L2-normalised, weighted x2).

A one-vs-rest linear SVM (liblinear, balanced class weights) scores every label, and the
scores are turned into probabilities with a softmax whose temperature is fitted on
out-of-fold scores from a 3-fold cross-validation of the training set (temperature scaling).
The engine computes the embedding once per message, so :meth:`IntentClassifier.predict`
takes precomputed vectors; the n-gram features come from the raw text. On Banking77 this
reaches ~94% test accuracy (see ``benchmarks/intents_banking77.py``).

A trained model is a directory with ``model.npz`` (vocabularies, idf weights, coefficients:
plain arrays, loaded with ``allow_pickle=False``, so no code is ever unpickled) and a
``manifest.json`` that records the format version, labels, embedder model id, the sha256
of every model file and the training size. :meth:`IntentClassifier.load` verifies all of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import minimize_scalar
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from assistant.errors import ConfigurationError, ModelFileError

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
"""The label of a prediction whose confidence is below ``min_confidence``."""

OUT_OF_SCOPE_LABELS = frozenset({"oos", UNKNOWN})
"""Gold labels for which an :data:`UNKNOWN` prediction counts as correct in :func:`evaluate`."""

FORMAT_VERSION = 1
MODEL_FILE = "model.npz"
MANIFEST_FILE = "manifest.json"
KIND = "tfidf-word12-char16+embedding/linear-svm/temperature"

# Hyper-parameters, chosen by cross-validation on Banking77's training set (never its test set).
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (1, 6)
CHAR_MIN_DF = 2
EMBEDDING_WEIGHT = 2.0
SVM_C = 1.0
CALIBRATION_FOLDS = 3
TOP_K = 3

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class IntentPrediction:
    """The classifier's answer for one message."""

    label: str
    """The best label, or :data:`UNKNOWN` when ``confidence < min_confidence``."""
    confidence: float
    """Calibrated probability (0..1) of the best label."""
    top: list[tuple[str, float]]
    """The best labels (up to 3) with their probabilities, best first, even when UNKNOWN."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"label", "confidence", "top": [{"label", "confidence"}]}``."""
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "top": [{"label": label, "confidence": round(p, 4)} for label, p in self.top],
        }


class _NgramTfidf:
    """Sublinear TF-IDF over a fixed vocabulary, identical to scikit-learn's transform.

    Kept as plain arrays (terms and idf) so a model can be saved without pickle; the
    analyzer (tokenisation and n-gram extraction) is scikit-learn's, rebuilt from the
    parameters alone.
    """

    def __init__(self, analyzer: str, ngram_range: tuple[int, int], terms: Sequence[str],
                 idf: npt.NDArray[np.float64]) -> None:
        self.analyzer_name = analyzer
        self.ngram_range = ngram_range
        self.terms = list(terms)
        self.vocabulary = {term: i for i, term in enumerate(self.terms)}
        self.idf = np.asarray(idf, dtype=np.float64)
        analyze: Callable[[str], list[str]] = _vectorizer(analyzer, ngram_range).build_analyzer()
        self._analyze = analyze

    @classmethod
    def fit(cls, texts: list[str], analyzer: str, ngram_range: tuple[int, int],
            min_df: int) -> _NgramTfidf:
        """Learn the vocabulary and idf weights from ``texts``."""
        vectorizer = _vectorizer(analyzer, ngram_range, min_df=min_df)
        vectorizer.fit(texts)
        vocabulary: dict[str, int] = vectorizer.vocabulary_
        terms = sorted(vocabulary, key=vocabulary.__getitem__)
        return cls(analyzer, ngram_range, terms, vectorizer.idf_)

    @property
    def size(self) -> int:
        """Number of features."""
        return len(self.terms)

    def row(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Feature indices and L2-normalised TF-IDF values of one text."""
        counts = Counter(
            j for j in map(self.vocabulary.get, self._analyze(text)) if j is not None
        )
        indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (np.log(tf) + 1.0) * self.idf[indices]
        norm = math.sqrt(float(values @ values))
        if norm > 0:
            values /= norm
        return indices, values

    def transform(self, texts: list[str], dtype: type = np.float64) -> sp.csr_matrix:
        """One L2-normalised row per text, as a sparse matrix."""
        rows = [self.row(text) for text in texts]
        indptr = np.cumsum([0] + [len(indices) for indices, _ in rows])
        indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
        values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0)
        return sp.csr_matrix(
            (values.astype(dtype), indices, indptr), shape=(len(texts), self.size)
        )


def _vectorizer(analyzer: str, ngram_range: tuple[int, int], min_df: int = 1) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngram_range, min_df=min_df, sublinear_tf=True,
        lowercase=True, dtype=np.float64,
    )


def _normalise(vectors: npt.ArrayLike) -> FloatArray:
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def _softmax(scores: npt.NDArray[np.float64], temperature: float) -> npt.NDArray[np.float64]:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return result


def _fit_svm(features: sp.csr_matrix, targets: npt.NDArray[np.int64], n_labels: int,
             seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weights (n_features, n_labels) and biases (n_labels,) of a one-vs-rest linear SVM."""
    svm = LinearSVC(C=SVM_C, class_weight="balanced", dual=True, max_iter=10_000,
                    random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(features, targets)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            logger.warning("intent SVM did not fully converge: %s", warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
    coef = np.asarray(svm.coef_, dtype=np.float64)
    bias = np.asarray(svm.intercept_, dtype=np.float64)
    weights = np.zeros((features.shape[1], n_labels))
    biases = np.zeros(n_labels)
    seen = np.asarray(svm.classes_, dtype=np.int64)
    if len(seen) == 2:  # binary: one score, positive means the second class
        weights[:, seen[0]], biases[seen[0]] = -coef[0] / 2, -bias[0] / 2
        weights[:, seen[1]], biases[seen[1]] = coef[0] / 2, bias[0] / 2
    else:
        weights[:, seen] = coef.T
        biases[seen] = bias
        # a label missing from a cross-validation fold must never win
        biases[np.setdiff1d(np.arange(n_labels), seen)] = -1e3
    return weights, biases


def _fit_temperature(scores: npt.NDArray[np.float64], targets: npt.NDArray[np.int64]) -> float:
    """The softmax temperature that minimises the negative log-likelihood of ``targets``."""

    def nll(log_t: float) -> float:
        z = scores / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(targets)), targets].mean())

    result = minimize_scalar(nll, bounds=(math.log(1e-3), math.log(1e2)), method="bounded")
    return float(math.exp(result.x))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class IntentClassifier:
    """Intent classifier: linear SVM over n-gram TF-IDF and the message embedding.

    Build one with :meth:`train` or :meth:`load`. ``min_confidence`` may be changed at any
    time: predictions below it get the label :data:`UNKNOWN`.
    """

    def __init__(
        self,
        *,
        labels: list[str],
        word: _NgramTfidf,
        char: _NgramTfidf,
        weights: npt.NDArray[np.float32],
        biases: npt.NDArray[np.float32],
        temperature: float,
        dimension: int,
        min_confidence: float = 0.0,
        embedder_model_id: str | None = None,
        training_size: int = 0,
    ) -> None:
        """Assemble a classifier from its parts (use :meth:`train` or :meth:`load`)."""
        self.labels = labels
        self.min_confidence = min_confidence
        self._word = word
        self._char = char
        self._weights = np.ascontiguousarray(weights, dtype=np.float32)
        self._biases = np.asarray(biases, dtype=np.float32)
        self._temperature = temperature
        self._dimension = dimension
        self._embedder_model_id = embedder_model_id
        self._training_size = training_size
        n_word, n_char = word.size, char.size
        self._w_word = self._weights[:n_word]
        self._w_char = self._weights[n_word : n_word + n_char]
        self._w_emb = self._weights[n_word + n_char :]

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        texts: list[str],
        labels: list[str],
        vectors: npt.ArrayLike,
        *,
        seed: int = 0,
        min_confidence: float = 0.0,
        embedder_model_id: str | None = None,
    ) -> IntentClassifier:
        """Train on labelled texts and their embeddings (one row of ``vectors`` per text).

        Deterministic for a given ``seed``. Needs at least two distinct labels. Record the
        embedder's ``model_id`` so :meth:`load` can refuse vectors from another model.
        """
        matrix = _normalise(vectors)
        if matrix.ndim != 2 or len(texts) != len(labels) or len(texts) != matrix.shape[0]:
            raise ValueError(
                f"need one label and one vector per text: {len(texts)} texts, "
                f"{len(labels)} labels, vectors of shape {np.shape(vectors)}"
            )
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError("intent training needs at least two distinct labels")
        index = {label: i for i, label in enumerate(classes)}
        targets = np.array([index[label] for label in labels], dtype=np.int64)

        word = _NgramTfidf.fit(texts, "word", WORD_NGRAMS, min_df=1)
        char = _NgramTfidf.fit(texts, "char", CHAR_NGRAMS, min_df=CHAR_MIN_DF)
        features = sp.hstack(
            [word.transform(texts), char.transform(texts),
             sp.csr_matrix(matrix.astype(np.float64) * EMBEDDING_WEIGHT)],
            format="csr",
        )
        weights, biases = _fit_svm(features, targets, len(classes), seed)
        temperature = cls._calibrate(features, targets, len(classes), seed)
        return cls(
            labels=classes, word=word, char=char,
            weights=weights.astype(np.float32), biases=biases.astype(np.float32),
            temperature=temperature, dimension=int(matrix.shape[1]),
            min_confidence=min_confidence, embedder_model_id=embedder_model_id,
            training_size=len(texts),
        )

    @staticmethod
    def _calibrate(features: sp.csr_matrix, targets: npt.NDArray[np.int64], n_labels: int,
                   seed: int) -> float:
        """Softmax temperature fitted on out-of-fold SVM scores (1.0 if too few examples)."""
        folds = min(CALIBRATION_FOLDS, int(np.bincount(targets).min()))
        if folds < 2:
            return 1.0
        scores = np.zeros((len(targets), n_labels))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for fit_rows, held_rows in splitter.split(np.zeros(len(targets)), targets):
            weights, biases = _fit_svm(features[fit_rows], targets[fit_rows], n_labels, seed)
            scores[held_rows] = features[held_rows] @ weights + biases
        return _fit_temperature(scores, targets)

    # ---------------------------------------------------------------- prediction

    @property
    def embedder_model_id(self) -> str | None:
        """The ``model_id`` of the embedder the training vectors came from, if recorded."""
        return self._embedder_model_id

    @property
    def dimension(self) -> int:
        """Length of the embedding vectors this classifier expects."""
        return self._dimension

    @property
    def training_size(self) -> int:
        """Number of training examples."""
        return self._training_size

    def probabilities(self, texts: list[str], vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated probabilities, shape ``(len(texts), len(labels))``, columns = ``labels``."""
        if not texts:
            return np.zeros((0, len(self.labels)))
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.shape != (len(texts), self._dimension):
            raise ValueError(
                f"expected {len(texts)} vectors of dimension {self._dimension}, "
                f"got shape {matrix.shape}"
            )
        matrix = _normalise(matrix)
        if len(texts) == 1:  # the engine's case: gather the few weight rows directly
            word_idx, word_val = self._word.row(texts[0])
            char_idx, char_val = self._char.row(texts[0])
            scores = (
                word_val.astype(np.float32) @ self._w_word[word_idx]
                + char_val.astype(np.float32) @ self._w_char[char_idx]
                + (matrix[0] * EMBEDDING_WEIGHT) @ self._w_emb
                + self._biases
            )[None, :]
        else:  # float32 features against float32 weights: no up-cast copy of the weights
            scores = (
                self._word.transform(texts, np.float32) @ self._w_word
                + self._char.transform(texts, np.float32) @ self._w_char
                + (matrix * EMBEDDING_WEIGHT) @ self._w_emb
                + self._biases
            )
        return _softmax(np.asarray(scores, dtype=np.float64), self._temperature)

    def predict(self, texts: list[str], vectors: npt.ArrayLike) -> list[IntentPrediction]:
        """Predict the intent of each text, given its embedding (one row per text)."""
        probabilities = self.probabilities(texts, vectors)
        k = min(TOP_K, len(self.labels))
        predictions = []
        for row in probabilities:
            best = np.argsort(-row, kind="stable")[:k]
            top = [(self.labels[i], float(row[i])) for i in best]
            label, confidence = top[0]
            if confidence < self.min_confidence:
                label = UNKNOWN
            predictions.append(IntentPrediction(label=label, confidence=confidence, top=top))
        return predictions

    def predict_one(self, text: str, vector: npt.ArrayLike) -> IntentPrediction:
        """Predict the intent of one message from its text and embedding vector."""
        return self.predict([text], np.reshape(np.asarray(vector, dtype=np.float32), (1, -1)))[0]

    # ------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """Write ``model.npz`` and ``manifest.json`` (with sha256 of the model) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "labels": np.array(self.labels, dtype=str),
            "word_terms": np.array(self._word.terms, dtype=str),
            "word_idf": self._word.idf,
            "char_terms": np.array(self._char.terms, dtype=str),
            "char_idf": self._char.idf,
            "weights": self._weights,
            "biases": self._biases,
            "temperature": np.array(self._temperature),
            "dimension": np.array(self._dimension),
        }
        model_path = directory / MODEL_FILE
        _atomic_write(model_path, lambda handle: np.savez_compressed(handle, **arrays))
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "labels": self.labels,
            "embedder_model_id": self._embedder_model_id,
            "embedding_dimension": self._dimension,
            "training_size": self._training_size,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": {MODEL_FILE: _sha256(model_path)},
        }
        text = json.dumps(manifest, indent=2) + "\n"
        _atomic_write(directory / MANIFEST_FILE, lambda handle: handle.write(text.encode()))

    @classmethod
    def load(cls, directory: Path, *, embedder_model_id: str | None = None) -> IntentClassifier:
        """Load a saved model, verifying the manifest and every file's sha256 first.

        Raises :class:`~assistant.errors.ModelFileError` for a missing or corrupt file and
        :class:`~assistant.errors.ConfigurationError` for an unreadable manifest, another
        format version, or (when ``embedder_model_id`` is given) a model whose recorded
        embedder differs from it, including one that recorded none. ``min_confidence``
        starts at 0.0. The model file holds plain arrays only (``allow_pickle=False``).
        """
        directory = Path(directory)
        manifest = _read_manifest(directory)
        if embedder_model_id is not None and manifest.get("embedder_model_id") != embedder_model_id:
            raise ConfigurationError(
                f"intent model in {directory} was trained on vectors from embedder "
                f"{manifest.get('embedder_model_id')!r}, but the configured embedder is "
                f"{embedder_model_id!r}; retrain the intent model"
            )
        files = manifest["files"]
        for name, expected in files.items():
            path = directory / name
            if not path.is_file():
                raise ModelFileError(f"intent model file missing: {path}")
            actual = _sha256(path)
            if actual != expected:
                raise ModelFileError(
                    f"checksum mismatch for intent model file {path}: manifest says "
                    f"{expected}, file has {actual}"
                )
        try:
            with np.load(directory / MODEL_FILE, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            labels = [str(label) for label in arrays["labels"]]
            word = _NgramTfidf("word", WORD_NGRAMS, arrays["word_terms"].tolist(),
                               arrays["word_idf"])
            char = _NgramTfidf("char", CHAR_NGRAMS, arrays["char_terms"].tolist(),
                               arrays["char_idf"])
            weights, biases = arrays["weights"], arrays["biases"]
            dimension = int(arrays["dimension"])
            temperature = float(arrays["temperature"])
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"intent model file {directory / MODEL_FILE} is unreadable: "
                                 f"{exc}") from exc
        expected_shape = (word.size + char.size + dimension, len(labels))
        if weights.shape != expected_shape or biases.shape != (len(labels),):
            raise ModelFileError(
                f"intent model file {directory / MODEL_FILE} is inconsistent: weights "
                f"{weights.shape}, expected {expected_shape}"
            )
        if labels != manifest["labels"] or dimension != manifest["embedding_dimension"]:
            raise ConfigurationError(
                f"intent model manifest {directory / MANIFEST_FILE} does not match "
                f"{MODEL_FILE} (labels or embedding dimension differ)"
            )
        return cls(
            labels=labels, word=word, char=char, weights=weights, biases=biases,
            temperature=temperature, dimension=dimension,
            embedder_model_id=manifest.get("embedder_model_id"),
            training_size=int(manifest.get("training_size", 0)),
        )


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    """Write via a temporary file in the same directory, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelFileError(f"intent model manifest missing: {path}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"intent model manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ConfigurationError(f"intent model manifest {path} is not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ConfigurationError(
            f"intent model in {directory} has format version {version!r}; this version of "
            f"the assistant reads version {FORMAT_VERSION}: retrain the intent model"
        )
    files = manifest.get("files")
    if (
        not isinstance(files, dict)
        or MODEL_FILE not in files
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        or any(Path(name).name != name for name in files)
        or not isinstance(manifest.get("labels"), list)
        or not isinstance(manifest.get("embedding_dimension"), int)
    ):
        raise ConfigurationError(
            f"intent model manifest {path} is incomplete: it needs 'files' (with the sha256 "
            f"of {MODEL_FILE}), 'labels' and 'embedding_dimension'"
        )
    return manifest


def evaluate(
    classifier: IntentClassifier,
    texts: list[str],
    labels: list[str],
    vectors: npt.ArrayLike,
) -> dict[str, Any]:
    """Score ``classifier`` on labelled texts.

    A prediction counts as correct when it equals the gold label, or when it is
    :data:`UNKNOWN` (confidence below ``min_confidence``) and the gold label is ``"oos"`` or
    ``"unknown"`` (out of scope); any other UNKNOWN prediction is wrong.

    Returns ``accuracy``; ``macro_f1``, the unweighted mean F1 over the gold labels;
    ``oos_recall``, the share of out-of-scope gold items ("oos"/"unknown") predicted as
    "oos" or UNKNOWN (``None`` when there are none); ``unknown_rate``, the share of
    predictions that are UNKNOWN; ``per_label``: gold label -> precision, recall, f1,
    support; and ``n``.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    predicted = [p.label for p in classifier.predict(texts, vectors)]
    unknown = sum(p == UNKNOWN for p in predicted)
    # An UNKNOWN answer to an out-of-scope message is that message's gold label.
    resolved = [
        gold if (pred == UNKNOWN and gold in OUT_OF_SCOPE_LABELS) else pred
        for gold, pred in zip(labels, predicted, strict=True)
    ]
    n = len(labels)
    correct = sum(g == p for g, p in zip(labels, resolved, strict=True))
    per_label: dict[str, dict[str, float | int]] = {}
    for label in sorted(set(labels)):
        tp = sum(g == label and p == label for g, p in zip(labels, resolved, strict=True))
        support = sum(g == label for g in labels)
        predicted_n = sum(p == label for p in resolved)
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1,
                            "support": support}
    oos = [i for i, g in enumerate(labels) if g in OUT_OF_SCOPE_LABELS]
    oos_recall = (
        sum(resolved[i] == labels[i] or resolved[i] in OUT_OF_SCOPE_LABELS for i in oos)
        / len(oos) if oos else None
    )
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": (sum(v["f1"] for v in per_label.values()) / len(per_label)
                     if per_label else 0.0),
        "oos_recall": oos_recall,
        "unknown_rate": unknown / n if n else 0.0,
        "per_label": per_label,
    }
