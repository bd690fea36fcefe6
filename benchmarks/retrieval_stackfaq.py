"""Retrieval quality on StackFAQ: recall@1, recall@5 and MRR@10 for BM25, dense and hybrid.

Ingests ``../shared/data/stackfaq/docs`` as a knowledge base (real ONNX embeddings, real
embedded Chroma in a temporary directory) and asks every question in ``questions.jsonl``.

    python benchmarks/retrieval_stackfaq.py [--json results/retrieval.json] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, console, require, show_table, write_json

from assistant.config import Settings
from assistant.kb.audience import Audience
from assistant.kb.components import build_knowledge_base
from assistant.kb.retrieval import HybridRetriever


def evaluate(retriever: HybridRetriever, questions: list[dict[str, str]]) -> dict[str, float]:
    """recall@1, recall@5, MRR@10 over article ids."""
    r1 = r5 = mrr = 0.0
    started = time.perf_counter()
    for q in questions:
        ids = retriever.search(q["question"], k=30, audience=Audience.operator()).article_ids[:10]
        rank = ids.index(q["gold_doc"]) + 1 if q["gold_doc"] in ids else None
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        mrr += 1.0 / rank if rank else 0.0
    n = len(questions)
    return {
        "recall@1": r1 / n,
        "recall@5": r5 / n,
        "mrr@10": mrr / n,
        "ms_per_query": (time.perf_counter() - started) * 1000 / n,
    }


def main() -> None:
    """Run the benchmark and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = parser.parse_args()
    data = require(SHARED_DATA / "stackfaq")
    questions = [
        json.loads(line)
        for line in (data / "questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    if args.limit:
        questions = questions[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kb_dir=data / "docs")
        kb = build_knowledge_base(settings)
        report = kb.ingestor.ingest(settings.kb_dir)
        console.print(
            f"ingested {report.added} articles, {report.chunks_written} chunks "
            f"in {report.seconds:.1f}s"
        )
        results = {}
        for mode in ("lexical", "dense", "hybrid"):
            retriever = HybridRetriever(index=kb.index, embedder=kb.embedder, mode=mode)
            results[mode] = evaluate(retriever, questions)
    names = {"lexical": "BM25 alone", "dense": "dense alone", "hybrid": "hybrid (RRF)"}
    show_table(
        f"StackFAQ retrieval ({len(questions)} questions, {report.added} articles)",
        ["retriever", "recall@1", "recall@5", "MRR@10", "ms/query"],
        [
            [names[m], r["recall@1"], r["recall@5"], r["mrr@10"], r["ms_per_query"]]
            for m, r in results.items()
        ],
    )
    write_json(
        args.json,
        {"benchmark": "retrieval_stackfaq", "questions": len(questions), "results": results},
    )


if __name__ == "__main__":
    main()
