"""Intent classifier: learning, confidence, determinism, persistence and its checks, metrics."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from sklearn.feature_extraction.text import TfidfVectorizer

from assistant.embeddings import HashingEmbedder
from assistant.errors import ConfigurationError, ModelFileError
from assistant.understanding.intent import (
    MANIFEST_FILE,
    MODEL_FILE,
    UNKNOWN,
    IntentClassifier,
    IntentPrediction,
    _NgramTfidf,
    evaluate,
)

TRAIN = {
    "reset_password": [
        "I forgot my password",
        "how do I reset my password",
        "password reset link not working",
        "can't remember my password, help",
        "I need a new password for my login",
        "change my forgotten password please",
        "reset password for my account",
        "my password doesn't work anymore",
    ],
    "refund": [
        "I want a refund",
        "can I get my money back",
        "please refund my last payment",
        "how do refunds work for annual plans",
        "refund the charge on my invoice",
        "I was charged twice, I want my money back",
        "request a refund for my subscription",
        "when will my refund arrive",
    ],
    "cancel_subscription": [
        "cancel my subscription",
        "how do I cancel my plan",
        "I want to stop my subscription",
        "end my membership now",
        "please cancel the monthly plan",
        "stop renewing my subscription",
        "how to cancel the account plan",
        "unsubscribe me from the paid plan",
    ],
    "connect_slack": [
        "connect slack to my dashboard",
        "how do I set up the slack integration",
        "send alerts to a slack channel",
        "slack integration is not posting",
        "link my slack workspace",
        "add slack notifications",
        "integrate with slack please",
        "slack channel alerts setup",
    ],
}
HELD_OUT = [
    ("I can't remember the password to log in", "reset_password"),
    ("give me my money back for the invoice", "refund"),
    ("stop my monthly subscription plan", "cancel_subscription"),
    ("alerts should go to our slack workspace", "connect_slack"),
    ("reset link for my password", "reset_password"),
    ("how long until the refund arrives", "refund"),
]


def _training_set() -> tuple[list[str], list[str]]:
    texts = [t for examples in TRAIN.values() for t in examples]
    labels = [label for label, examples in TRAIN.items() for _ in examples]
    return texts, labels


@pytest.fixture(scope="module")
def hashing() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="module")
def trained(hashing: HashingEmbedder) -> IntentClassifier:
    texts, labels = _training_set()
    return IntentClassifier.train(
        texts, labels, hashing.embed(texts), seed=0, embedder_model_id=hashing.model_id
    )


def _held_out(hashing: HashingEmbedder) -> tuple[list[str], list[str], np.ndarray]:
    texts = [t for t, _ in HELD_OUT]
    return texts, [label for _, label in HELD_OUT], hashing.embed(texts)


def test_predicts_held_out_paraphrases(trained: IntentClassifier, hashing: HashingEmbedder):
    texts, gold, vectors = _held_out(hashing)
    assert trained.labels == sorted(TRAIN)
    assert [p.label for p in trained.predict(texts, vectors)] == gold
    one = trained.predict_one(texts[0], vectors[0])
    assert one.label == gold[0]
    assert trained.embedder_model_id == "hashing-test"
    assert trained.training_size == sum(len(v) for v in TRAIN.values())


def test_uses_the_embedding_vectors():
    # identical texts: only the precomputed vectors tell the two intents apart
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 32))
    vectors = np.vstack([c + 0.1 * rng.normal(size=(10, 32)) for c in centres])
    classifier = IntentClassifier.train(["hello there"] * 20, ["a"] * 10 + ["b"] * 10, vectors)
    probe = np.vstack([centres[0], centres[1]]).astype(np.float32)
    assert [p.label for p in classifier.predict(["hello there"] * 2, probe)] == ["a", "b"]
    assert classifier.embedder_model_id is None


def test_confidence_is_a_probability_and_top_is_sorted(
    trained: IntentClassifier, hashing: HashingEmbedder
):
    texts, _, vectors = _held_out(hashing)
    probabilities = trained.probabilities(texts, vectors)
    assert probabilities.shape == (len(texts), len(TRAIN))
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    for prediction, row in zip(trained.predict(texts, vectors), probabilities, strict=True):
        assert 0.0 <= prediction.confidence <= 1.0
        assert len(prediction.top) == 3
        assert prediction.top[0] == (prediction.label, prediction.confidence)
        confidences = [p for _, p in prediction.top]
        assert confidences == sorted(confidences, reverse=True)
        assert prediction.confidence == pytest.approx(row.max())
        # the winner is clearly ahead on these easy paraphrases
        assert prediction.confidence > 0.5


def test_below_min_confidence_is_unknown_but_keeps_top(
    trained: IntentClassifier, hashing: HashingEmbedder
):
    texts, gold, vectors = _held_out(hashing)
    confident = trained.predict(texts, vectors)
    threshold = sorted(p.confidence for p in confident)[2] + 1e-9  # 3 below, 3 at or above
    trained.min_confidence = threshold
    try:
        guarded = trained.predict(texts, vectors)
    finally:
        trained.min_confidence = 0.0
    for before, after, label in zip(confident, guarded, gold, strict=True):
        assert after.confidence == before.confidence
        assert after.top == before.top
        assert after.label == (UNKNOWN if before.confidence < threshold else label)
    assert sum(p.label == UNKNOWN for p in guarded) == 3

    texts_train, labels_train = _training_set()
    strict = IntentClassifier.train(
        texts_train, labels_train, hashing.embed(texts_train), min_confidence=1.01
    )
    assert strict.min_confidence == 1.01
    assert all(p.label == UNKNOWN for p in strict.predict(texts, vectors))


def test_as_dict_rounds_and_names_fields():
    prediction = IntentPrediction(
        label="refund", confidence=0.123456, top=[("refund", 0.123456), ("other", 0.1)]
    )
    assert prediction.as_dict() == {
        "label": "refund",
        "confidence": 0.1235,
        "top": [{"label": "refund", "confidence": 0.1235},
                {"label": "other", "confidence": 0.1}],
    }
    assert json.loads(json.dumps(prediction.as_dict())) == prediction.as_dict()


def test_training_is_deterministic_for_a_seed(hashing: HashingEmbedder):
    texts, labels = _training_set()
    vectors = hashing.embed(texts)
    held_texts, _, held_vectors = _held_out(hashing)
    first = IntentClassifier.train(texts, labels, vectors, seed=7)
    second = IntentClassifier.train(texts, labels, vectors, seed=7)
    assert np.array_equal(
        first.probabilities(held_texts, held_vectors),
        second.probabilities(held_texts, held_vectors),
    )


def test_single_and_batch_predictions_agree(trained: IntentClassifier, hashing: HashingEmbedder):
    texts, _, vectors = _held_out(hashing)
    batch = trained.probabilities(texts, vectors)
    single = np.vstack(
        [trained.probabilities([t], v[None, :]) for t, v in zip(texts, vectors, strict=True)]
    )
    assert np.allclose(batch, single, atol=1e-6)
    assert trained.predict([], np.zeros((0, hashing.dimension))) == []


def test_rejects_bad_input(trained: IntentClassifier, hashing: HashingEmbedder):
    texts, labels = _training_set()
    with pytest.raises(ValueError, match="two distinct labels"):
        IntentClassifier.train(texts[:3], ["a"] * 3, hashing.embed(texts[:3]))
    with pytest.raises(ValueError, match="one label and one vector per text"):
        IntentClassifier.train(texts, labels[:-1], hashing.embed(texts))
    with pytest.raises(ValueError, match="dimension"):
        trained.predict(["hello"], np.zeros((1, hashing.dimension + 1), dtype=np.float32))


def test_ngram_features_match_scikit_learn():
    texts, _ = _training_set()
    for analyzer, ngrams, min_df in (("word", (1, 2), 1), ("char", (1, 6), 2)):
        reference = TfidfVectorizer(
            analyzer=analyzer, ngram_range=ngrams, min_df=min_df, sublinear_tf=True
        ).fit(texts)
        ours = _NgramTfidf.fit(texts, analyzer, ngrams, min_df)
        unseen = [t for t, _ in HELD_OUT] + ["zzz", ""]
        assert np.allclose(reference.transform(unseen).toarray(),
                           ours.transform(unseen).toarray())


def test_save_load_round_trip(tmp_path: Path, trained: IntentClassifier,
                              hashing: HashingEmbedder):
    trained.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 1
    assert manifest["labels"] == trained.labels
    assert manifest["embedder_model_id"] == "hashing-test"
    assert manifest["training_size"] == trained.training_size
    assert set(manifest["files"]) == {MODEL_FILE}
    assert len(manifest["files"][MODEL_FILE]) == 64
    assert manifest["created"]

    loaded = IntentClassifier.load(tmp_path / "model", embedder_model_id="hashing-test")
    texts, _, vectors = _held_out(hashing)
    assert loaded.labels == trained.labels
    assert loaded.embedder_model_id == "hashing-test"
    assert loaded.min_confidence == 0.0
    assert loaded.predict(texts, vectors) == trained.predict(texts, vectors)
    assert IntentClassifier.load(tmp_path / "model").labels == trained.labels


@pytest.fixture
def saved(tmp_path: Path, trained: IntentClassifier) -> Path:
    directory = tmp_path / "model"
    trained.save(directory)
    return directory


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_corrupted_model_file_is_refused(saved: Path):
    data = bytearray((saved / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        IntentClassifier.load(saved)


def test_missing_files_are_refused(saved: Path, tmp_path: Path):
    (saved / MODEL_FILE).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        IntentClassifier.load(saved)
    with pytest.raises(ModelFileError, match="manifest missing"):
        IntentClassifier.load(tmp_path / "nowhere")


def test_tampered_manifest_is_refused(saved: Path):
    original = (saved / MANIFEST_FILE).read_text()

    _edit_manifest(saved, files={MODEL_FILE: "0" * 64})
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        IntentClassifier.load(saved)

    (saved / MANIFEST_FILE).write_text(original)
    _edit_manifest(saved, labels=["refund", "something_else", "x", "y"])
    with pytest.raises(ConfigurationError, match="does not match"):
        IntentClassifier.load(saved)

    (saved / MANIFEST_FILE).write_text(original)
    _edit_manifest(saved, format_version=99)
    with pytest.raises(ConfigurationError, match="format version 99"):
        IntentClassifier.load(saved)

    (saved / MANIFEST_FILE).write_text(original)
    _edit_manifest(saved, files={"../elsewhere.npz": "0" * 64, MODEL_FILE: "0" * 64})
    with pytest.raises(ConfigurationError, match="incomplete"):
        IntentClassifier.load(saved)

    (saved / MANIFEST_FILE).write_text(original[: len(original) // 2])
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        IntentClassifier.load(saved)

    (saved / MANIFEST_FILE).write_text(original)
    assert IntentClassifier.load(saved).labels == sorted(TRAIN)


def test_wrong_embedder_is_refused(saved: Path):
    with pytest.raises(ConfigurationError, match="all-MiniLM-L6-v2-onnx-int8"):
        IntentClassifier.load(saved, embedder_model_id="all-MiniLM-L6-v2-onnx-int8")


class _Fixed:
    """Stands in for a classifier with known answers, so the metrics are hand-computable."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def predict(self, texts: list[str], vectors: np.ndarray) -> list[IntentPrediction]:
        return [IntentPrediction(label=label, confidence=0.5, top=[(label, 0.5)])
                for label in self.labels]


def test_evaluate_on_a_hand_computed_case():
    gold = ["a", "a", "b", "b", "oos", "oos"]
    predicted = ["a", "b", "b", UNKNOWN, UNKNOWN, "a"]
    result = evaluate(_Fixed(predicted), ["t"] * 6, gold, np.zeros((6, 2)))  # type: ignore[arg-type]
    # correct: a->a, b->b, oos->UNKNOWN (out of scope); wrong: a->b, b->UNKNOWN, oos->a
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert result["per_label"]["a"] == pytest.approx(
        {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert result["per_label"]["b"] == pytest.approx(
        {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert result["per_label"]["oos"] == pytest.approx(
        {"precision": 1.0, "recall": 1 / 2, "f1": 2 / 3, "support": 2})
    assert result["macro_f1"] == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3)
    assert result["oos_recall"] == pytest.approx(1 / 2)
    assert result["unknown_rate"] == pytest.approx(2 / 6)
    assert set(result["per_label"]) == {"a", "b", "oos"}

    perfect = evaluate(_Fixed(["a", "b"]), ["t", "t"], ["a", "b"], np.zeros((2, 2)))  # type: ignore[arg-type]
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    assert perfect["oos_recall"] is None
    assert perfect["unknown_rate"] == 0.0


def test_evaluate_a_trained_classifier(trained: IntentClassifier, hashing: HashingEmbedder):
    texts, gold, vectors = _held_out(hashing)
    result = evaluate(trained, texts, gold, vectors)
    assert result["accuracy"] == 1.0
    assert result["macro_f1"] == 1.0
    assert result["oos_recall"] is None


BANKING77 = SHARED_DATA / "banking77"


@pytest.mark.model
def test_banking77_slice_with_the_real_embedder(tmp_path: Path):
    if not (BANKING77 / "train.csv").is_file():
        pytest.skip(f"Banking77 not found at {BANKING77}")
    from assistant.embeddings import OnnxMiniLMEmbedder

    def rows(split: str, per_label: int) -> tuple[list[str], list[str]]:
        chosen: dict[str, list[str]] = defaultdict(list)
        with (BANKING77 / f"{split}.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["label"] in LABELS and len(chosen[row["label"]]) < per_label:
                    chosen[row["label"]].append(row["text"])
        return ([t for label in LABELS for t in chosen[label]],
                [label for label in LABELS for _ in chosen[label]])

    LABELS = [  # noqa: N806 - a constant of this test
        "card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed",
        "transfer_timing", "cash_withdrawal_charge", "pin_blocked", "refund_not_showing_up",
        "change_pin", "terminate_account",
    ]
    embedder = OnnxMiniLMEmbedder(threads=0, batch_size=32)
    train_texts, train_labels = rows("train", 30)
    test_texts, test_labels = rows("test", 20)
    classifier = IntentClassifier.train(
        train_texts, train_labels, embedder.embed(train_texts),
        embedder_model_id=embedder.model_id,
    )
    classifier.save(tmp_path / "intents")
    loaded = IntentClassifier.load(tmp_path / "intents", embedder_model_id=embedder.model_id)
    result = evaluate(loaded, test_texts, test_labels, embedder.embed(test_texts))
    assert result["accuracy"] >= 0.9, result["accuracy"]
