"""The dense index: chunks and their vectors in Chroma (embedded or server).

Chroma is also the source of truth for what is ingested: every chunk carries its
article's content hash, so incremental ingest and the BM25 index are rebuilt from here
and every worker sharing a Chroma server sees the same knowledge base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.config import Settings as ChromaSettings

from assistant.config import Settings
from assistant.embeddings import Embedder, Vector
from assistant.errors import ConfigurationError
from assistant.kb.audience import Audience, audience_flag
from assistant.kb.chunking import Chunk


class ProjectEmbeddingFunction(EmbeddingFunction[Documents]):
    """Our embedder, given to Chroma so it never falls back to its downloading default."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self._embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "assistant-project"

    def get_config(self) -> dict[str, Any]:
        return {"model_id": self._embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ProjectEmbeddingFunction:
        raise ConfigurationError("the assistant always passes its own embedding function")


def make_chroma_client(settings: Settings) -> ClientAPI:
    """A Chroma client: HTTP when ``ASSISTANT_CHROMA_URL`` is set, else persistent on disk."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_url:
        parsed = urlparse(settings.chroma_url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ConfigurationError(
                f"ASSISTANT_CHROMA_URL must look like http://host:port, got {settings.chroma_url!r}"
            )
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=chroma_settings,
        )
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


@dataclass(frozen=True)
class DenseHit:
    """A chunk id and its cosine similarity to the query."""

    chunk_id: str
    similarity: float


_GENERATION = "generation"


class ChromaIndex:
    """Chunk storage and nearest-neighbour search in one Chroma collection."""

    def __init__(self, *, client: ClientAPI, collection: str, embedder: Embedder) -> None:
        self._embedder = embedder
        self._collection = client.get_or_create_collection(
            name=collection,
            embedding_function=ProjectEmbeddingFunction(embedder),  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine", "embedding_model": embedder.model_id},
        )
        stored_model = (self._collection.metadata or {}).get("embedding_model")
        if stored_model and stored_model != embedder.model_id:
            raise ConfigurationError(
                f"collection {collection!r} was built with {stored_model!r} but the embedder is "
                f"{embedder.model_id!r}; run `assistant ingest --rebuild`"
            )

        # One record beside the chunks: a counter every ingest that changed something
        # bumps, so other processes (workers sharing a Chroma server) notice and reload.
        self._state = client.get_or_create_collection(
            name=f"{collection}__state", metadata={"purpose": "generation counter"}
        )

    def count(self) -> int:
        """Number of chunks stored."""
        return self._collection.count()

    def generation(self) -> int:
        """The KB's version: grows by one with every ingest that changed the index."""
        found = self._state.get(ids=[_GENERATION], include=["metadatas"])
        metadatas = found["metadatas"] or []
        return int(str(metadatas[0].get("generation") or 0)) if metadatas else 0

    def bump_generation(self) -> int:
        """Mark the index as changed for every process that searches it; the new value."""
        value = self.generation() + 1
        # The state collection holds no searchable vectors; Chroma still wants one.
        vector: list[Sequence[float]] = [[1.0]]
        self._state.upsert(ids=[_GENERATION], embeddings=vector,
                           metadatas=[{"generation": value}])
        return value

    def manifest(self) -> dict[str, str]:
        """article id -> content hash of every ingested article."""
        result = self._collection.get(include=["metadatas"])
        return {str(m["article_id"]): str(m["content_hash"]) for m in result["metadatas"] or []}

    def all_chunks(self) -> list[Chunk]:
        """Every stored chunk, in a stable order (used to build the lexical index)."""
        return self.snapshot(with_vectors=False)[0]

    def snapshot(self, *, with_vectors: bool) -> tuple[list[Chunk], Vector | None]:
        """Every chunk in a stable order and, if asked, their vectors as matrix rows."""
        include: list[Any] = ["metadatas", "documents"]
        if with_vectors:
            include.append("embeddings")
        result = self._collection.get(include=include)
        chunks = [
            _chunk_from(cid, doc, meta)
            for cid, doc, meta in zip(
                result["ids"], result["documents"] or [], result["metadatas"] or [], strict=True
            )
        ]
        order = sorted(range(len(chunks)), key=lambda i: (chunks[i].article_id, chunks[i].position))
        chunks = [chunks[i] for i in order]
        if not with_vectors:
            return chunks, None
        stored = result["embeddings"]
        if stored is None or len(stored) == 0:
            return chunks, np.zeros((0, self._embedder.dimension), dtype=np.float32)
        matrix = np.asarray(stored, dtype=np.float32)[order]
        return chunks, matrix

    def article_chunks(self, article_id: str) -> list[Chunk]:
        """The chunks of one article, in order (empty when it is not indexed)."""
        where: Any = {"article_id": article_id}
        result = self._collection.get(where=where, include=["metadatas", "documents"])
        chunks = [
            _chunk_from(cid, doc, meta)
            for cid, doc, meta in zip(
                result["ids"], result["documents"] or [], result["metadatas"] or [], strict=True
            )
        ]
        return sorted(chunks, key=lambda c: c.position)

    def upsert(self, chunks: list[Chunk], vectors: Embeddings) -> None:
        """Store chunks with their precomputed vectors."""
        if not chunks:
            return
        self._collection.upsert(
            ids=[c.chunk_id for c in chunks],
            embeddings=vectors,
            documents=[c.text for c in chunks],
            metadatas=[_metadata_of(c) for c in chunks],
        )

    def clear(self) -> None:
        """Delete every chunk (``assistant ingest --rebuild``)."""
        ids = self._collection.get(include=[])["ids"]
        for start in range(0, len(ids), 5000):
            self._collection.delete(ids=ids[start : start + 5000])

    def delete_customer(self, customer_id: str) -> int:
        """Remove every vector that names ``customer_id`` in its metadata; how many.

        KB chunks never do today; this keeps erasure complete if customer content (for
        example resolved conversations) is ever indexed beside them.
        """
        where: Any = {"customer_id": customer_id}
        found = self._collection.get(where=where, include=[])
        if found["ids"]:
            self._collection.delete(ids=found["ids"])
        return len(found["ids"])

    def delete_article(self, article_id: str) -> None:
        """Remove every chunk of one article."""
        self._collection.delete(where={"article_id": article_id})

    def search(self, vector: Any, *, n: int, audience: Audience) -> list[DenseHit]:
        """The ``n`` nearest chunks the audience may read, most similar first."""
        # Chroma clamps n_results to what matches, so no count() round trip per query.
        result = self._collection.query(
            query_embeddings=[vector],
            n_results=n,
            where=_where_for(audience),
            include=["distances"],
        )
        ids = result["ids"][0]
        distances = (result["distances"] or [[]])[0]
        return [DenseHit(cid, 1.0 - float(d)) for cid, d in zip(ids, distances, strict=True)]


def _where_for(audience: Audience) -> dict[str, Any] | None:
    if audience.everything:
        return None
    flags = [{audience_flag(label): True} for label in sorted(audience.allowed())]
    return flags[0] if len(flags) == 1 else {"$or": flags}


def _metadata_of(chunk: Chunk) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "article_id": chunk.article_id,
        "title": chunk.title,
        "url": chunk.url,
        "section": chunk.section,
        "position": chunk.position,
        "content_hash": chunk.content_hash,
        "audience": ",".join(chunk.audience),
        "flagged": chunk.flagged,
    }
    for label in chunk.audience:
        meta[audience_flag(label)] = True
    return meta


def _chunk_from(chunk_id: str, text: str | None, meta: Any) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        article_id=str(meta["article_id"]),
        title=str(meta["title"]),
        url=str(meta["url"]),
        section=str(meta["section"]),
        text=text or "",
        position=int(meta["position"]),
        audience=tuple(str(meta["audience"]).split(",")),
        content_hash=str(meta["content_hash"]),
        # Chunks written before injection flags existed have none (their articles are
        # re-indexed on the next ingest: the cleaning version is part of the hash).
        flagged=str(meta.get("flagged") or ""),
    )
