"""Build the knowledge-base components from settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from chromadb.api import ClientAPI

from assistant.config import Settings
from assistant.embeddings import Embedder, build_embedder
from assistant.kb.chunking import ArticleChunker
from assistant.kb.ingest import Ingestor
from assistant.kb.retrieval import HybridRetriever
from assistant.kb.vectors import ChromaIndex, make_chroma_client


@dataclass
class KnowledgeBase:
    """Everything needed to ingest into and search the knowledge base."""

    embedder: Embedder
    client: ClientAPI
    index: ChromaIndex
    ingestor: Ingestor
    retriever: HybridRetriever


def build_knowledge_base(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    client: ClientAPI | None = None,
    mode: str = "hybrid",
) -> KnowledgeBase:
    """Wire embedder, Chroma, ingestor and retriever as the settings say.

    ``embedder`` and ``client`` may be injected (tests use a hashing embedder and a
    temporary Chroma).
    """
    embedder = embedder or build_embedder(settings)
    client = client or make_chroma_client(settings)
    index = ChromaIndex(client=client, collection=settings.chroma_collection, embedder=embedder)
    chunker = ArticleChunker(chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
    return KnowledgeBase(
        embedder=embedder,
        client=client,
        index=index,
        ingestor=Ingestor(index=index, embedder=embedder, chunker=chunker),
        retriever=HybridRetriever(
            index=index,
            embedder=embedder,
            mode=mode,
            exact_search_max_chunks=settings.exact_search_max_chunks,
            refresh_seconds=settings.kb_refresh_seconds,
        ),
    )
