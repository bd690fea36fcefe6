"""Sentiment: the shipped model's checksums, API shape, and behaviour on clear messages."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.embeddings import HashingEmbedder
from assistant.errors import ConfigurationError, InvalidInput, ModelFileError
from assistant.understanding import sentiment as sentiment_module
from assistant.understanding.sentiment import (
    LABELS,
    MODEL_FILE,
    MODEL_SHA256,
    VECTOR_DIMENSION,
    SentimentAnalyzer,
    SentimentResult,
    evaluate,
)

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VAL_CSV = SHARED_DATA / "tweeteval" / "tweeteval_sentiment_val.csv"

POSITIVE = [
    "Thank you so much, the new dashboard is fantastic and your team was super helpful!",
    "Great support today, the issue is fixed and I'm really happy with the service.",
    "I love the new export feature, it saves me hours every week. Thanks!",
]
NEGATIVE = [
    "This is terrible. The app keeps crashing and I lost all my work. Awful service.",
    "I'm furious, you charged my card twice and nobody is helping me. Worst support ever.",
    "Your update broke everything and I hate the new layout, it's useless.",
]
NEUTRAL = [
    "What time does the billing cycle reset each month?",
    "Where can I find the export settings?",
    "My invoice number is 4411. Which address should I send the form to?",
]


@pytest.fixture(scope="module")
def analyzer() -> SentimentAnalyzer:
    return SentimentAnalyzer.default()


@pytest.fixture(scope="module")
def minilm():
    from assistant.embeddings import OnnxMiniLMEmbedder

    try:
        return OnnxMiniLMEmbedder()
    except ModelFileError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"MiniLM model not installed: {exc}")


def _tampered_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "sentiment_linear.json"
    shutil.copyfile(MODEL_FILE, copy)
    data = bytearray(copy.read_bytes())
    index = data.index(b'"bias":[') + len(b'"bias":[')
    data[index : index + 1] = b"9" if data[index : index + 1] != b"9" else b"8"
    copy.write_bytes(bytes(data))
    return copy


def _write_model(tmp_path: Path, payload: dict) -> tuple[Path, str]:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(payload))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# --- the shipped file --------------------------------------------------------------------


def test_shipped_model_matches_its_pinned_checksum_and_is_small():
    assert hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest() == MODEL_SHA256
    assert MODEL_FILE.stat().st_size < 200_000


def test_default_loads_and_records_training_provenance(analyzer):
    assert analyzer.metadata["labels"] == list(LABELS)
    assert "validation" in analyzer.metadata["training"]["data"]
    assert analyzer.needs_vector is True


def test_tampered_model_file_is_refused_with_a_clear_error(tmp_path):
    tampered = _tampered_copy(tmp_path)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        SentimentAnalyzer.load(tampered, sha256=MODEL_SHA256)


def test_missing_model_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="missing"):
        SentimentAnalyzer.load(tmp_path / "nope.json", sha256=MODEL_SHA256)
    with pytest.raises(ModelFileError, match="missing"):
        SentimentAnalyzer.load(tmp_path / "nope.json")


def test_malformed_model_files_are_refused(tmp_path):
    good = json.loads(MODEL_FILE.read_text())
    not_json = tmp_path / "broken.json"
    not_json.write_text("{not json")
    with pytest.raises(ModelFileError, match="not a readable"):
        SentimentAnalyzer.load(not_json)

    wrong_shape = json.loads(json.dumps(good))
    wrong_shape["heads"]["vector"]["weights"] = [[0.0] * 10] * 3
    path, digest = _write_model(tmp_path, wrong_shape)
    with pytest.raises(ModelFileError, match="expected"):
        SentimentAnalyzer.load(path, sha256=digest)

    wrong_labels = json.loads(json.dumps(good))
    wrong_labels["labels"] = ["positive", "neutral", "negative"]
    path, digest = _write_model(tmp_path, wrong_labels)
    with pytest.raises(ModelFileError, match="labels"):
        SentimentAnalyzer.load(path, sha256=digest)

    not_finite = json.loads(json.dumps(good))
    not_finite["heads"]["lexicon"]["bias"] = [0.0, float("nan"), 0.0]
    path, digest = _write_model(tmp_path, not_finite)
    with pytest.raises(ModelFileError, match="non-finite"):
        SentimentAnalyzer.load(path, sha256=digest)


def test_tampered_vader_lexicon_is_refused(monkeypatch):
    wrong = dict.fromkeys(sentiment_module.VADER_FILES, "0" * 64)
    monkeypatch.setattr(sentiment_module, "VADER_FILES", wrong)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        sentiment_module.LexiconScorer()


def test_missing_vader_package_names_the_install(monkeypatch):
    monkeypatch.setattr(sentiment_module, "VADER_PACKAGE", "no_such_vader_package")
    with pytest.raises(ModelFileError, match="vaderSentiment"):
        sentiment_module.LexiconScorer()


def test_an_embedder_of_another_model_is_refused():
    with pytest.raises(ConfigurationError, match="all-MiniLM-L6-v2"):
        SentimentAnalyzer.default(embedder=HashingEmbedder())


# --- API shape (lexicon-only head: no vector, no ONNX) -------------------------------------


def test_result_shape_and_probabilities(analyzer):
    result = analyzer.analyze("The refund arrived, thanks a lot!")
    assert isinstance(result, SentimentResult)
    assert set(result.scores) == set(LABELS)
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.label == max(result.scores, key=result.scores.__getitem__)
    as_dict = result.as_dict()
    assert as_dict["label"] == result.label
    assert json.loads(json.dumps(as_dict)) == as_dict


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_neutral(analyzer, text):
    result = analyzer.analyze(text)
    assert result.label == "neutral"
    assert result.scores["neutral"] == 1.0
    assert analyzer.analyze(text, np.zeros(VECTOR_DIMENSION, dtype=np.float32)).label == "neutral"


def test_very_long_and_non_english_text_is_handled(analyzer):
    long = "the export fails with an error and I am very unhappy. " * 20_000
    assert analyzer.analyze(long).label == "negative"
    for text in ("Das ist großartig, danke!", "这个应用程序又崩溃了", "¿Dónde está mi factura?"):
        assert analyzer.analyze(text).label in LABELS


@pytest.mark.parametrize(
    ("texts", "expected"), [(POSITIVE, "positive"), (NEGATIVE, "negative"), (NEUTRAL, "neutral")]
)
def test_lexicon_head_gets_clear_messages_right(analyzer, texts, expected):
    assert [r.label for r in analyzer.analyze_batch(texts)] == [expected] * len(texts)


def test_vector_shape_is_checked(analyzer):
    with pytest.raises(InvalidInput, match="384"):
        analyzer.analyze("hello", np.zeros(256, dtype=np.float32))
    with pytest.raises(InvalidInput, match="384"):
        analyzer.analyze_batch(["a", "b"], np.zeros((3, VECTOR_DIMENSION)))
    with pytest.raises(InvalidInput, match="NaN"):
        analyzer.analyze("hello", np.full(VECTOR_DIMENSION, np.nan))


def test_batch_matches_single_calls(analyzer):
    texts = POSITIVE + NEGATIVE + NEUTRAL
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(texts), VECTOR_DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    batch = analyzer.analyze_batch(texts, vectors)
    for text, vector, result in zip(texts, vectors, batch, strict=True):
        single = analyzer.analyze(text, vector)
        assert single.label == result.label
        for label in LABELS:
            assert single.scores[label] == pytest.approx(result.scores[label], abs=1e-9)
    assert analyzer.analyze_batch([]) == []


def test_the_vector_changes_the_prediction(analyzer):
    """The vector head really reads the vector (a wiring bug would ignore it)."""
    text = "ok"
    weights = analyzer.vector_head.weights[:, :VECTOR_DIMENSION]
    towards = {}
    for index, label in enumerate(LABELS):
        direction = weights[index] - weights.mean(axis=0)
        towards[label] = analyzer.analyze(text, direction / np.linalg.norm(direction)).label
    assert towards == {label: label for label in LABELS}


# --- evaluate ------------------------------------------------------------------------------


class _Fixed:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def analyze_batch(self, texts, vectors=None):
        return [SentimentResult(label, {}) for label in self.labels]


def test_evaluate_computes_the_metrics():
    gold = ["negative", "negative", "neutral", "neutral", "positive", "positive"]
    predicted = ["negative", "neutral", "neutral", "neutral", "positive", "negative"]
    report = evaluate(_Fixed(predicted), ["x"] * 6, gold)  # type: ignore[arg-type]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro_recall"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    neutral = report["per_label"]["neutral"]
    assert neutral["precision"] == pytest.approx(2 / 3)
    assert neutral["recall"] == 1.0
    assert neutral["f1"] == pytest.approx(0.8)
    assert neutral["support"] == 2
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report["confusion"]["positive"]["negative"] == 1


def test_evaluate_rejects_unknown_labels_and_length_mismatch(analyzer):
    with pytest.raises(InvalidInput, match="unknown"):
        evaluate(analyzer, ["a"], ["angry"])
    with pytest.raises(InvalidInput, match="labels"):
        evaluate(analyzer, ["a", "b"], ["neutral"])


# --- the real model with real MiniLM vectors -----------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize(
    ("texts", "expected"), [(POSITIVE, "positive"), (NEGATIVE, "negative"), (NEUTRAL, "neutral")]
)
def test_model_gets_clear_support_messages_right(analyzer, minilm, texts, expected):
    results = analyzer.analyze_batch(texts, minilm.embed(texts))
    assert [r.label for r in results] == [expected] * len(texts)
    assert all(r.scores[expected] > 0.5 for r in results)


@pytest.mark.model
def test_embedder_in_the_constructor_gives_the_same_result(minilm):
    with_embedder = SentimentAnalyzer.default(embedder=minilm)
    assert with_embedder.needs_vector is False
    text = NEGATIVE[0]
    lazy = with_embedder.analyze(text)
    given = with_embedder.analyze(text, minilm.embed([text])[0])
    assert lazy.label == given.label
    for label in LABELS:
        assert lazy.scores[label] == pytest.approx(given.scores[label], abs=1e-6)


@pytest.mark.model
@pytest.mark.skipif(not VAL_CSV.exists(), reason="../shared/data/tweeteval not present")
def test_model_fits_its_training_tweets(analyzer, minilm):
    """A wiring regression (feature order, wrong head, stale file) drops this sharply."""
    with VAL_CSV.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:300]
    texts = [row["text"] for row in rows]
    labels = [row["label"] for row in rows]
    report = evaluate(analyzer, texts, labels, minilm.embed(texts))
    assert report["macro_recall"] >= 0.68
    assert evaluate(analyzer, texts, labels)["macro_recall"] >= 0.55


@pytest.mark.model
@pytest.mark.skipif(not VAL_CSV.exists(), reason="../shared/data/tweeteval not present")
def test_shipped_model_is_what_the_training_script_builds_today(tmp_path, monkeypatch):
    """The taxonomy's utterances are training data: editing intents.yaml needs a retrain."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["train_sentiment.py", "--out", str(tmp_path / "m.json")])
    import train_sentiment

    train_sentiment.main()
    rebuilt = hashlib.sha256((tmp_path / "m.json").read_bytes()).hexdigest()
    assert rebuilt == sentiment_module.MODEL_SHA256, (
        "run `python benchmarks/train_sentiment.py` and update MODEL_SHA256")
