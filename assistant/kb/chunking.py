"""Split an article into retrievable chunks: by Markdown headings first, then by size.

Each chunk keeps where it came from (article id, title, url, section path) so an answer
can cite it and a reader can find it, and whether its text reads like instructions to an
AI (``flagged``), so a generated answer can leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from assistant.kb.articles import Article
from assistant.understanding.injection import find_injection

_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]


@dataclass(frozen=True)
class Chunk:
    """A passage of one article, the unit of retrieval."""

    chunk_id: str
    article_id: str
    title: str
    url: str
    section: str
    text: str
    position: int
    audience: tuple[str, ...]
    content_hash: str
    # Injection finding kinds in the chunk's text, joined by ","; empty when clean.
    flagged: str = ""

    @property
    def embedding_text(self) -> str:
        """What is embedded and indexed: title and section give a passage its context."""
        heading = self.title if not self.section else f"{self.title} — {self.section}"
        return f"{heading}\n{self.text}"


class ArticleChunker:
    """Heading-aware splitter with a size cap (LangChain text splitters underneath)."""

    def __init__(self, *, chunk_size: int = 1200, chunk_overlap: int = 150) -> None:
        self._by_heading = MarkdownHeaderTextSplitter(
            headers_to_split_on=_HEADERS, strip_headers=True
        )
        self._by_size = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size,
            chunk_overlap=min(chunk_overlap, chunk_size // 2),
            separators=["\n\n", "\n", ". ", " ", ""],
        )

    def split(self, article: Article) -> list[Chunk]:
        """The chunks of ``article``, in reading order."""
        chunks: list[Chunk] = []
        for section_doc in self._by_heading.split_text(article.body):
            headings = [
                section_doc.metadata[key] for _, key in _HEADERS if key in section_doc.metadata
            ]
            # The article's own H1 usually repeats its title; keep the path readable.
            if headings and headings[0].strip().lower() == article.title.strip().lower():
                headings = headings[1:]
            section = " > ".join(headings)
            for piece in self._by_size.split_text(section_doc.page_content):
                if not piece.strip():
                    continue
                position = len(chunks)
                chunk = Chunk(
                    chunk_id=f"{article.article_id}#{position}",
                    article_id=article.article_id,
                    title=article.title,
                    url=article.url,
                    section=section,
                    text=piece.strip(),
                    position=position,
                    audience=article.audience,
                    content_hash=article.content_hash,
                )
                # Title and section go into the prompt with the text, so they are checked too.
                kinds = ",".join(f.kind for f in find_injection(chunk.embedding_text))
                chunks.append(replace(chunk, flagged=kinds) if kinds else chunk)
        if article.findings and not any(c.flagged for c in chunks):
            # The article's instructions were cut across chunks, so no single chunk reads
            # like them: keep the whole article out rather than parts of the instruction.
            kinds = ",".join(f.kind for f in article.findings)
            chunks = [replace(c, flagged=kinds) for c in chunks]
        return chunks
