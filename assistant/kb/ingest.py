"""Incremental ingestion: only new or changed articles are embedded again.

Each article's content hash is stored with its chunks in the vector index. A run compares
the files on disk with that manifest: unchanged articles are skipped, changed ones are
replaced, deleted ones are removed. A file that fails to load is reported and skipped; if
an earlier version of it is indexed, that version stays (a broken edit must not take an
article offline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.embeddings import Embedder
from assistant.errors import IngestError
from assistant.kb.articles import article_id_for, iter_kb_files, load_article
from assistant.kb.chunking import ArticleChunker
from assistant.kb.vectors import ChromaIndex

ProgressCallback = Callable[[str], None]


@dataclass
class FileError:
    """Why one file was not ingested."""

    article_id: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks_written: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    errors: list[FileError] = field(default_factory=list)
    warnings: list[FileError] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the index content changed."""
        return bool(self.added or self.updated or self.removed)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the ``--json`` output of ``assistant ingest``)."""
        return asdict(self)


class Ingestor:
    """Brings the vector index in line with a KB directory."""

    def __init__(self, *, index: ChromaIndex, embedder: Embedder, chunker: ArticleChunker) -> None:
        self._index = index
        self._embedder = embedder
        self._chunker = chunker

    def plan_size(self, kb_dir: Path) -> int:
        """How many files a run will look at (for progress bars)."""
        return sum(1 for _ in iter_kb_files(kb_dir))

    def ingest(
        self, kb_dir: Path, *, rebuild: bool = False, on_file: ProgressCallback | None = None
    ) -> IngestReport:
        """Ingest ``kb_dir``; ``on_file`` is called once per file with its article id."""
        if not kb_dir.is_dir():
            raise IngestError(str(kb_dir), "knowledge-base directory does not exist")
        started = time.perf_counter()
        report = IngestReport()
        if rebuild:
            self._index.clear()
        manifest = self._index.manifest()
        seen: set[str] = set()
        for path in iter_kb_files(kb_dir):
            article_id = article_id_for(path, kb_dir)
            seen.add(article_id)
            try:
                self._ingest_file(path, kb_dir, manifest, report)
            except IngestError as exc:
                report.failed += 1
                report.errors.append(FileError(article_id, exc.reason))
            except OSError as exc:
                report.failed += 1
                report.errors.append(FileError(article_id, f"cannot read file: {exc.strerror}"))
            if on_file:
                on_file(article_id)
        for article_id in sorted(set(manifest) - seen):
            self._index.delete_article(article_id)
            report.removed += 1
        if rebuild or report.changed:
            self._index.bump_generation()
        report.seconds = time.perf_counter() - started
        return report

    def _ingest_file(
        self, path: Path, kb_dir: Path, manifest: dict[str, str], report: IngestReport
    ) -> None:
        article = load_article(path, kb_dir)
        report.warnings.extend(FileError(article.article_id, w) for w in article.warnings)
        previous = manifest.get(article.article_id)
        if previous == article.content_hash:
            report.unchanged += 1
            return
        chunks = self._chunker.split(article)
        if not chunks:
            raise IngestError(article.article_id, "article produced no text to index")
        embed_started = time.perf_counter()
        vectors = self._embedder.embed([c.embedding_text for c in chunks])
        report.embed_seconds += time.perf_counter() - embed_started
        if previous is not None:
            self._index.delete_article(article.article_id)
            report.updated += 1
        else:
            report.added += 1
        self._index.upsert(chunks, list(vectors))
        report.chunks_written += len(chunks)
