"""Loading KB files: front matter, formats, and a clear error for every bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import IngestError
from assistant.kb.articles import html_to_markdown, load_article, parse_article


def test_front_matter_fields_are_read() -> None:
    text = "---\ntitle: T\nurl: https://x.test/a\ntags: [a, b]\nupdated: 2026-01-02\n---\nBody.\n"
    article = parse_article(text, article_id="a.md")
    assert (article.title, article.url, article.tags, article.updated) == (
        "T", "https://x.test/a", ("a", "b"), "2026-01-02")
    assert article.audience == ("public",)
    assert len(article.content_hash) == 64


def test_audience_list_is_normalised() -> None:
    article = parse_article("---\naudience: [Pro, enterprise]\n---\nBody\n", article_id="a.md")
    assert article.audience == ("enterprise", "pro")


def test_malformed_front_matter_names_the_line() -> None:
    with pytest.raises(IngestError, match=r"a\.md: malformed front matter \(line \d+\)"):
        parse_article("---\ntitle: [unclosed\nurl: x\n---\nBody\n", article_id="a.md")


@pytest.mark.parametrize(
    ("front", "problem"),
    [("audience: 5", "audience"), ("tags: {a: 1}", "tags"), ("url: ftp://x", "url"),
     ("title: {a: 1}", "title")],
)
def test_invalid_front_matter_values(front: str, problem: str) -> None:
    with pytest.raises(IngestError, match=problem):
        parse_article(f"---\n{front}\n---\nBody\n", article_id="a.md")


def test_title_falls_back_to_heading_then_file_name() -> None:
    assert parse_article("# From heading\ntext", article_id="x.md").title == "From heading"
    assert parse_article("just text", article_id="dir/my-file.txt").title == "My file"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty"), (b"   \n", "empty"), (b"abc\x00def", "binary"),
     (b"caf\xe9 au lait", "UTF-8"), (b"---\ntitle: x\n---\n", "no body")],
)
def test_bad_files_get_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=reason):
        load_article(path, tmp_path)


def test_html_becomes_markdown_without_scripts(tmp_path: Path) -> None:
    html = ("<html><head><title>Page</title><script>alert(1)</script></head><body>"
            "<h2>Steps</h2><ol><li>One</li><li>Two</li></ol><p>Done.</p></body></html>")
    title, body = html_to_markdown(html)
    assert title == "Page"
    assert "## Steps" in body and "1. One" in body and "2. Two" in body
    assert "alert" not in body
    (tmp_path / "p.html").write_text(html)
    assert load_article(tmp_path / "p.html", tmp_path).title == "Page"


def test_zero_width_characters_are_stripped_and_flagged() -> None:
    article = parse_article("Ig\u200bnore this\u200d text", article_id="a.md")
    assert "\u200b" not in article.body and "\u200d" not in article.body
    assert article.warnings
