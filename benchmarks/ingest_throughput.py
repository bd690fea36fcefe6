"""Ingest throughput: articles, chunks per second and the share of time spent embedding.

Ingests a knowledge-base directory (default: the demo KB in ``knowledge_base/``) into a
fresh temporary data directory with the real ONNX embedder and embedded Chroma, exactly as
``assistant ingest`` does (``Runtime.ingest``: chunk, embed, upsert, then rebuild BM25),
then ingests the unchanged directory a second time: that incremental run should skip
every article. ``--repeat N`` does the whole thing N times (a fresh directory each time)
and reports the median.

    python benchmarks/ingest_throughput.py [--kb DIR] [--threads N] [--batch-size N]
        [--repeat N] [--json results/ingest.json]

For example ``--kb ../shared/data/stackfaq/docs`` for the StackFAQ articles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, console, require, show_table, write_json

from assistant.config import Settings
from assistant.embeddings import Vector
from assistant.runtime import build_runtime


def one_run(kb_dir: Path, *, threads: int, batch_size: int) -> dict[str, Any]:
    """Full ingest into a fresh data dir, then the incremental re-run; timings and counts."""
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            kb_dir=kb_dir,
            embed_threads=threads,
            embed_batch_size=batch_size,
        )
        started = time.perf_counter()
        runtime = build_runtime(settings)  # migrations, Chroma, model load and checksum
        setup_seconds = time.perf_counter() - started
        try:
            # Count how the ingestor calls the embedder (it embeds one article at a time).
            embedder = runtime.kb.embedder
            calls: list[int] = []
            original = embedder.embed

            def counting_embed(texts: list[str]) -> Vector:
                calls.append(len(texts))
                return original(texts)

            embedder.embed = counting_embed  # type: ignore[method-assign]

            started = time.perf_counter()
            full = runtime.ingest()
            full_wall = time.perf_counter() - started
            embed_calls = list(calls)

            started = time.perf_counter()
            again = runtime.ingest()
            again_wall = time.perf_counter() - started
        finally:
            runtime.close()
    articles = full.added + full.updated + full.unchanged
    return {
        "setup_seconds": setup_seconds,
        "articles": articles,
        "failed": full.failed,
        "chunks": full.chunks_written,
        "seconds": full.seconds,
        "wall_seconds": full_wall,  # includes rebuilding the BM25 index
        "chunks_per_s": full.chunks_written / full.seconds if full.seconds else float("nan"),
        "articles_per_s": articles / full.seconds if full.seconds else float("nan"),
        "embed_seconds": full.embed_seconds,
        "embed_share": full.embed_seconds / full.seconds if full.seconds else float("nan"),
        "embed_calls": len(embed_calls),
        "largest_embed_call": max(embed_calls, default=0),
        "incremental_seconds": again.seconds,
        "incremental_wall_seconds": again_wall,
        "incremental_unchanged": again.unchanged,
        "incremental_changed": again.added + again.updated + again.removed,
        "incremental_chunks": again.chunks_written,
        "errors": [f"{e.article_id}: {e.reason}" for e in full.errors],
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric field over the runs (other fields from the first run)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def main() -> None:
    """Run the benchmark and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results to this JSON file")
    parser.add_argument(
        "--kb", type=Path, default=ROOT / "knowledge_base", help="knowledge-base directory"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="ONNX intra-op threads (embed_threads; 0 = ORT)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="texts per embedding batch (embed_batch_size)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs to take the median of")
    args = parser.parse_args()
    if args.threads < 0 or not 1 <= args.batch_size <= 512 or not 1 <= args.repeat <= 20:
        parser.error("--threads >= 0, --batch-size 1-512 and --repeat 1-20 please")
    kb_dir = require(args.kb).resolve()

    runs = []
    for i in range(args.repeat):
        runs.append(one_run(kb_dir, threads=args.threads, batch_size=args.batch_size))
        r = runs[-1]
        console.print(
            f"run {i + 1}/{args.repeat}: {r['chunks']} chunks in {r['seconds']:.1f}s "
            f"({r['chunks_per_s']:.1f} chunks/s); incremental {r['incremental_seconds']:.2f}s"
        )
    result = median_of(runs)

    full_row = [
        "full ingest",
        result["articles"],
        result["chunks"],
        f"{result['seconds']:.2f}",
        f"{result['chunks_per_s']:.1f}",
        f"{result['embed_seconds']:.2f}",
        f"{100 * result['embed_share']:.1f}%",
    ]
    incremental_row = [
        "incremental",
        f"{result['incremental_unchanged']} skipped",
        result["incremental_chunks"],
        f"{result['incremental_seconds']:.2f}",
        "-",
        "0.00",
        "-",
    ]
    median = f", median of {args.repeat}" if args.repeat > 1 else ""
    show_table(
        f"Ingest throughput: {os.path.relpath(kb_dir, ROOT)} "
        f"(threads={args.threads or 'ORT default'}, "
        f"batch={args.batch_size}, {os.cpu_count()} cores{median})",
        ["run", "articles", "chunks", "seconds", "chunks/s", "embed s", "embed %"],
        [full_row, incremental_row],
    )
    console.print(
        f"setup (migrations, Chroma, model load) {result['setup_seconds']:.2f}s; rebuilding "
        f"BM25 after the ingest {result['wall_seconds'] - result['seconds']:.2f}s; "
        f"{result['embed_calls']} embedding calls, the largest with "
        f"{result['largest_embed_call']} texts (the ingestor embeds one article at a time, "
        f"so batches never exceed one article's chunks); 'incremental' is the second run "
        f"over the unchanged directory"
    )
    if result["failed"]:
        console.print(f"[red]{result['failed']} files failed:[/red]")
        for error in result["errors"][:10]:
            console.print(f"  {error}")
    if result["incremental_changed"] or result["incremental_chunks"]:
        console.print(
            f"[red]incremental re-run changed {result['incremental_changed']} articles "
            f"and wrote {result['incremental_chunks']} chunks; expected none[/red]"
        )
    write_json(
        args.json,
        {
            "benchmark": "ingest_throughput",
            "kb_dir": str(kb_dir),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "repeat": args.repeat,
            "cpu_cores": os.cpu_count(),
            "result": result,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
