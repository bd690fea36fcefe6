"""Hybrid retrieval: dense search in Chroma plus lexical BM25, fused by reciprocal rank.

Reciprocal-rank fusion (``1 / (60 + rank)``, Cormack et al. 2009) needs no score
normalisation, so the two retrievers can disagree in scale. The fused ranking decides
*what* is shown; a separate, calibrated :func:`confidence` says *how sure* we are that the
best passage answers the question, which is what the escalation policy thresholds.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import bm25s
import numpy as np
import numpy.typing as npt

from assistant.embeddings import Embedder, Vector
from assistant.kb.audience import Audience
from assistant.kb.chunking import Chunk
from assistant.kb.vectors import ChromaIndex

RRF_K = 60
CANDIDATES = 30

# Logistic calibration of "the best passage is from an article that answers the question",
# fitted by benchmarks/calibrate_confidence.py on StackFAQ (positives: every question with
# its article indexed; negatives: the same question with its article held out). Held-out
# ROC AUC 0.94, Brier 0.10; rerun the script after changing the embedder or chunking.
CALIBRATION = {"intercept": -10.28, "top_similarity": 14.32, "margin": 9.32, "agreement": 0.19}

_STOPWORDS = "en"


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its scores."""

    chunk: Chunk
    score: float
    dense_similarity: float | None
    lexical_score: float | None
    dense_rank: int | None
    lexical_rank: int | None

    @property
    def article_id(self) -> str:
        """Id of the article the passage comes from."""
        return self.chunk.article_id

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``assistant kb search --json``."""
        return {
            "article_id": self.chunk.article_id,
            "title": self.chunk.title,
            "url": self.chunk.url,
            "section": self.chunk.section,
            "score": round(self.score, 6),
            "dense_similarity": None
            if self.dense_similarity is None
            else round(self.dense_similarity, 4),
            "text": self.chunk.text,
            "flagged": self.chunk.flagged,
        }


@dataclass(frozen=True)
class RetrievalResult:
    """Passages for one query, best first, and the confidence that the best one answers it."""

    query: str
    passages: list[Passage]
    confidence: float
    mode: str

    @property
    def article_ids(self) -> list[str]:
        """Distinct article ids in rank order."""
        return list(dict.fromkeys(p.article_id for p in self.passages))


def confidence(top_similarity: float, margin: float, agreement: bool) -> float:
    """Calibrated probability that the top passage comes from an answering article.

    ``margin`` is the top similarity minus the best similarity of another article.
    """
    c = CALIBRATION
    z = (
        c["intercept"]
        + c["top_similarity"] * top_similarity
        + c["margin"] * margin
        + c["agreement"] * float(agreement)
    )
    return 1.0 / (1.0 + math.exp(-z))


class LexicalIndex:
    """BM25 over chunk texts (bm25s)."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self._bm25: bm25s.BM25 | None = None
        if chunks:
            tokens = bm25s.tokenize(
                [c.embedding_text for c in chunks], stopwords=_STOPWORDS, show_progress=False
            )
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokens, show_progress=False)

    def search(
        self, query: str, *, n: int, mask: npt.NDArray[np.bool_] | None
    ) -> list[tuple[int, float]]:
        """Top ``n`` (chunk position, score) pairs with a positive score, within ``mask``."""
        if self._bm25 is None or not _has_terms(query):
            return []
        tokens = bm25s.tokenize([query], stopwords=_STOPWORDS, show_progress=False)
        if not tokens.ids or not tokens.ids[0]:
            return []
        weights = None if mask is None else mask.astype(np.float32)
        k = min(n, len(self.chunks))
        docs, scores = self._bm25.retrieve(
            tokens, k=k, show_progress=False, weight_mask=weights, n_threads=1
        )
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def _has_terms(query: str) -> bool:
    return bool(re.search(r"\w\w", query))


class _Snapshot:
    """One consistent view of the KB: chunks, BM25, and (for small KBs) the vector matrix."""

    def __init__(self, chunks: list[Chunk], matrix: Vector | None) -> None:
        self.chunks = chunks
        self.matrix = matrix
        self.lexical = LexicalIndex(chunks)
        self.by_id = {c.chunk_id: i for i, c in enumerate(chunks)}
        # Audiences are few (public, verified, a handful of plans); building a mask per
        # query was a measurable share of a turn.
        self._masks: dict[frozenset[str], npt.NDArray[np.bool_]] = {}
        self._masks_lock = threading.Lock()

    def mask(self, audience: Audience) -> npt.NDArray[np.bool_] | None:
        """Which chunks ``audience`` may read (``None``: all of them)."""
        if audience.everything:
            return None
        key = audience.allowed()
        mask = self._masks.get(key)
        if mask is None:
            mask = np.array([audience.admits(c.audience) for c in self.chunks], dtype=np.bool_)
            with self._masks_lock:
                self._masks[key] = mask
        return mask

    def exact_dense(
        self, vector: Vector, *, n: int, mask: npt.NDArray[np.bool_] | None
    ) -> list[tuple[int, float]]:
        """Exact cosine top ``n`` (vectors are unit length, so a dot product is the cosine)."""
        assert self.matrix is not None
        sims = self.matrix @ np.asarray(vector, dtype=np.float32)
        allowed = np.flatnonzero(mask) if mask is not None else np.arange(len(sims))
        if allowed.size == 0:
            return []
        n = min(n, allowed.size)
        picked = allowed[np.argpartition(-sims[allowed], n - 1)[:n]]
        ordered = picked[np.lexsort((picked, -sims[picked]))]
        return [(int(i), float(sims[i])) for i in ordered]


class HybridRetriever:
    """Dense + BM25 retrieval over the chunks in a :class:`ChromaIndex`.

    Dense search is exact, over the vectors held in memory, while the KB has at most
    ``exact_search_max_chunks`` chunks: for support KBs (hundreds to tens of thousands of
    chunks) a matrix product is both faster than an approximate-index round trip and never
    misses a neighbour. Above that, the query goes to Chroma's HNSW index.
    """

    def __init__(
        self,
        *,
        index: ChromaIndex,
        embedder: Embedder,
        mode: str = "hybrid",
        exact_search_max_chunks: int = 50_000,
        refresh_seconds: float = 5.0,
    ) -> None:
        if mode not in {"hybrid", "dense", "lexical"}:
            raise ValueError(f"unknown retrieval mode {mode!r}")
        self._index = index
        self._embedder = embedder
        self.mode = mode
        self._exact_max = exact_search_max_chunks
        self._lock = threading.Lock()
        self._snapshot = _Snapshot([], None)
        self._refresh_seconds = refresh_seconds
        self._generation = -1
        self._checked_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Reload chunks (and vectors) from the vector store, after an ingest anywhere."""
        generation = self._index.generation()
        exact = self._exact_max > 0 and self._index.count() <= self._exact_max
        chunks, matrix = self._index.snapshot(with_vectors=exact)
        snapshot = _Snapshot(chunks, matrix)
        with self._lock:
            self._snapshot = snapshot
            self._generation = generation
            self._checked_at = time.monotonic()

    def refresh_if_changed(self) -> bool:
        """Reload when another process ingested since; checked at most every few seconds.

        Returns whether it reloaded.
        """
        now = time.monotonic()
        if now - self._checked_at < self._refresh_seconds:
            return False
        self._checked_at = now
        if self._index.generation() == self._generation:
            return False
        self.refresh()
        return True

    @property
    def size(self) -> int:
        """Number of chunks searchable."""
        return len(self._snapshot.chunks)

    @property
    def exact(self) -> bool:
        """Whether dense search is exact and in memory (else Chroma's approximate index)."""
        return self._snapshot.matrix is not None

    def embed_query(self, query: str) -> Vector:
        """The query vector (computed once per turn and shared with the classifiers)."""
        return self._embedder.embed([query])[0]

    def candidates(
        self,
        query: str,
        *,
        audience: Audience,
        query_vector: Vector | None = None,
    ) -> Candidates:
        """Raw dense and lexical candidate lists (positions into ``chunks``) before fusion."""
        self.refresh_if_changed()
        with self._lock:
            snapshot = self._snapshot
        mask = snapshot.mask(audience)
        dense_hits: list[tuple[int, float]] = []
        if self.mode in {"hybrid", "dense"} and snapshot.chunks:
            vector = query_vector if query_vector is not None else self.embed_query(query)
            if snapshot.matrix is not None:
                dense_hits = snapshot.exact_dense(vector, n=CANDIDATES, mask=mask)
            else:
                for hit in self._index.search(vector, n=CANDIDATES, audience=audience):
                    if hit.chunk_id in snapshot.by_id:
                        dense_hits.append((snapshot.by_id[hit.chunk_id], hit.similarity))
        lexical_hits = (
            snapshot.lexical.search(query, n=CANDIDATES, mask=mask)
            if self.mode in {"hybrid", "lexical"}
            else []
        )
        return Candidates(chunks=snapshot.chunks, dense=dense_hits, lexical=lexical_hits)

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        audience: Audience | None = None,
        query_vector: Vector | None = None,
    ) -> RetrievalResult:
        """The ``k`` best passages for ``query`` that ``audience`` may read."""
        found = self.candidates(
            query, audience=audience or Audience.anonymous(), query_vector=query_vector
        )
        return RetrievalResult(
            query=query,
            passages=_fuse(found.chunks, found.dense, found.lexical)[:k],
            confidence=found.confidence(),
            mode=self.mode,
        )


@dataclass(frozen=True)
class Candidates:
    """Dense and lexical hits as (chunk position, score), best first."""

    chunks: list[Chunk]
    dense: list[tuple[int, float]]
    lexical: list[tuple[int, float]]

    def features(self) -> tuple[float, float, bool]:
        """(top similarity, its margin over the best *other* article, BM25 agrees on article).

        The margin is taken between articles, not chunks: several chunks of one article
        are naturally close, while two different articles close together mean ambiguity.
        """
        top_pos, top = self.dense[0]
        top_article = self.chunks[top_pos].article_id
        runner_up = next(
            (sim for pos, sim in self.dense if self.chunks[pos].article_id != top_article), 0.0
        )
        agreement = bool(self.lexical) and (
            self.chunks[self.lexical[0][0]].article_id == top_article
        )
        return top, top - runner_up, agreement

    def confidence(self) -> float:
        """Calibrated confidence that the best passage answers the query."""
        if not self.dense:
            # Lexical-only mode has no similarity scale; a match is all it can say.
            return 0.5 if self.lexical else 0.0
        top, margin, agreement = self.features()
        return confidence(top, margin, agreement)

    def without_article(self, article_id: str) -> Candidates:
        """The same candidates as if ``article_id`` were not in the KB (for calibration)."""
        keep = [i for i, c in enumerate(self.chunks) if c.article_id != article_id]
        allowed = set(keep)
        return Candidates(
            chunks=self.chunks,
            dense=[h for h in self.dense if h[0] in allowed],
            lexical=[h for h in self.lexical if h[0] in allowed],
        )


def _fuse(
    chunks: list[Chunk], dense: list[tuple[int, float]], lexical: list[tuple[int, float]]
) -> list[Passage]:
    scores: dict[int, float] = {}
    dense_rank: dict[int, tuple[int, float]] = {}
    lexical_rank: dict[int, tuple[int, float]] = {}
    for rank, (pos, sim) in enumerate(dense, start=1):
        scores[pos] = scores.get(pos, 0.0) + 1.0 / (RRF_K + rank)
        dense_rank[pos] = (rank, sim)
    for rank, (pos, score) in enumerate(lexical, start=1):
        scores[pos] = scores.get(pos, 0.0) + 1.0 / (RRF_K + rank)
        lexical_rank[pos] = (rank, score)
    ordered = sorted(scores, key=lambda pos: (-scores[pos], pos))
    return [
        Passage(
            chunk=chunks[pos],
            score=scores[pos],
            dense_similarity=dense_rank[pos][1] if pos in dense_rank else None,
            lexical_score=lexical_rank[pos][1] if pos in lexical_rank else None,
            dense_rank=dense_rank[pos][0] if pos in dense_rank else None,
            lexical_rank=lexical_rank[pos][0] if pos in lexical_rank else None,
        )
        for pos in ordered
    ]
