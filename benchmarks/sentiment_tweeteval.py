"""Sentiment quality on TweetEval (test split): accuracy, macro-F1, macro-recall, ms/message.

Runs the shipped :class:`~assistant.understanding.sentiment.SentimentAnalyzer` (MiniLM
vector + VADER scores, logistic regression trained on the TweetEval *validation* split by
``benchmarks/train_sentiment.py``) on ``../shared/data/tweeteval/tweeteval_sentiment_test.csv``
(12,284 tweets), and for comparison its lexicon-only fallback head and plain VADER
(compound >= 0.05 positive, <= -0.05 negative). Nothing was trained or tuned on the test
split. Latency is per message with the MiniLM vector precomputed (the engine embeds once
per turn), alone and together with the frustration score; the embedding itself is timed
separately.

Target: macro-recall >= 0.70 (TweetEval's official metric; best leaderboard entry 73.7,
fine-tuned transformers).

    python benchmarks/sentiment_tweeteval.py [--json results/sentiment.json] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from _common import SHARED_DATA, console, percentile, require, show_table, write_json

from assistant.embeddings import OnnxMiniLMEmbedder
from assistant.understanding.frustration import frustration
from assistant.understanding.sentiment import LABELS, SentimentAnalyzer, evaluate

TARGET_MACRO_RECALL = 0.70
TIMED_MESSAGES = 1000


def read_split(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a TweetEval sentiment CSV (``text,label``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def vader_rule(analyzer: SentimentAnalyzer, texts: list[str], labels: list[str]) -> dict:
    """Plain VADER with its documented thresholds, scored like the model."""
    compound = analyzer.lexicon.matrix(texts)[:, 3]
    predicted = np.where(compound >= 0.05, 2, np.where(compound <= -0.05, 0, 1))
    gold = np.array([LABELS.index(label) for label in labels])
    recalls = [float((predicted[gold == k] == k).mean()) for k in range(3) if (gold == k).any()]
    f1s = []
    for k in range(3):
        tp = float(((predicted == k) & (gold == k)).sum())
        precision = tp / max(int((predicted == k).sum()), 1)
        recall = tp / max(int((gold == k).sum()), 1)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {
        "accuracy": float((predicted == gold).mean()),
        "macro_f1": float(np.mean(f1s)),
        "macro_recall": float(np.mean(recalls)),
    }


def latency(analyzer: SentimentAnalyzer, texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    """p50/p95 ms per message: analyze alone, analyze + frustration (vector precomputed)."""
    sample = list(range(min(TIMED_MESSAGES, len(texts))))
    for i in sample[:50]:  # warm-up
        frustration(texts[i], analyzer.analyze(texts[i], vectors[i]))
    alone, both = [], []
    for i in sample:
        started = time.perf_counter()
        result = analyzer.analyze(texts[i], vectors[i])
        middle = time.perf_counter()
        frustration(texts[i], result)
        ended = time.perf_counter()
        alone.append((middle - started) * 1000)
        both.append((ended - started) * 1000)
    return {
        "analyze_p50_ms": percentile(alone, 50),
        "analyze_p95_ms": percentile(alone, 95),
        "analyze_frustration_p50_ms": percentile(both, 50),
        "analyze_frustration_p95_ms": percentile(both, 95),
    }


def main() -> None:
    """Run the benchmark and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test tweets")
    args = parser.parse_args()
    data = require(SHARED_DATA / "tweeteval" / "tweeteval_sentiment_test.csv")
    texts, labels = read_split(data)
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]

    analyzer = SentimentAnalyzer.default()
    embedder = OnnxMiniLMEmbedder()
    console.print(f"embedding {len(texts)} test tweets ...")
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)

    results = {
        "model (MiniLM + VADER, LR)": evaluate(analyzer, texts, labels, vectors),
        "lexicon-only head (no vector)": evaluate(analyzer, texts, labels),
        "plain VADER thresholds": vader_rule(analyzer, texts, labels),
    }
    timing = latency(analyzer, texts, vectors)
    timing["embedding_batched_ms_per_message"] = embed_ms

    show_table(
        f"TweetEval sentiment test ({len(texts)} tweets; model trained on val + support "
        "utterances, never on test)",
        ["approach", "accuracy", "macro-F1", "macro-recall"],
        [[name, r["accuracy"], r["macro_f1"], r["macro_recall"]] for name, r in results.items()],
    )
    main_result = results["model (MiniLM + VADER, LR)"]
    show_table(
        "per label (model)",
        ["label", "precision", "recall", "F1", "support"],
        [
            [label, row["precision"], row["recall"], row["f1"], row["support"]]
            for label, row in main_result["per_label"].items()
        ],
    )
    console.print(
        f"latency per message, vector precomputed: analyze p50 "
        f"{timing['analyze_p50_ms']:.3f} ms (p95 {timing['analyze_p95_ms']:.3f}); "
        f"analyze + frustration p50 {timing['analyze_frustration_p50_ms']:.3f} ms "
        f"(p95 {timing['analyze_frustration_p95_ms']:.3f}); "
        f"MiniLM embedding (batched) {embed_ms:.2f} ms"
    )
    ok = main_result["macro_recall"] >= TARGET_MACRO_RECALL
    console.print(
        f"target macro-recall >= {TARGET_MACRO_RECALL:.2f}: {main_result['macro_recall']:.4f}, "
        + ("[green]met[/green]" if ok else "[red]MISSED[/red]")
    )
    write_json(
        args.json,
        {
            "benchmark": "sentiment_tweeteval",
            "tweets": len(texts),
            "results": results,
            "latency": timing,
            "target": {"macro_recall": TARGET_MACRO_RECALL, "met": ok},
        },
    )


if __name__ == "__main__":
    main()
