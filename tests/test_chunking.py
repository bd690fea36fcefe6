"""Chunking: headings first, then size; every chunk knows its section."""

from __future__ import annotations

from assistant.kb.articles import parse_article
from assistant.kb.chunking import ArticleChunker

DOC = """---
title: Guide
url: https://x.test/guide
---
# Guide

Intro.

## Install

Step text.

```
# a comment in code, not a heading
```

### Linux

Use the package.
"""


def test_sections_carry_heading_path() -> None:
    chunks = ArticleChunker().split(parse_article(DOC, article_id="g.md"))
    sections = [c.section for c in chunks]
    assert sections == ["", "Install", "Install > Linux"]
    assert "# a comment in code" in chunks[1].text
    assert chunks[2].chunk_id == "g.md#2"
    assert chunks[2].embedding_text.startswith("Guide — Install > Linux\n")


def test_long_sections_are_split_by_size() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(20))
    body = "---\ntitle: Big doc\n---\n## Big\n\n" + paragraphs
    article = parse_article(body, article_id="big.md")
    chunks = ArticleChunker(chunk_size=500, chunk_overlap=50).split(article)
    assert len(chunks) > 5
    assert all(len(c.text) <= 500 for c in chunks)
    assert {c.section for c in chunks} == {"Big"}
    assert [c.position for c in chunks] == list(range(len(chunks)))
