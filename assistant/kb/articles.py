"""Load knowledge-base files (Markdown, plain text, HTML) with their front matter.

An article id is the file path relative to the KB directory, with forward slashes
(``billing/refunds.md``). Every problem with one file is an :class:`IngestError` naming
that file, so one bad article never stops the rest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import frontmatter
import yaml

from assistant.errors import IngestError

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
MAX_FILE_BYTES = 2_000_000
PUBLIC = "public"
VERIFIED = "verified"

# Characters that hide text from a human reader but not from a model.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


@dataclass(frozen=True)
class Article:
    """One knowledge-base article, its body normalised to Markdown."""

    article_id: str
    title: str
    url: str
    body: str
    tags: tuple[str, ...] = ()
    updated: str | None = None
    audience: tuple[str, ...] = (PUBLIC,)
    content_hash: str = ""
    warnings: tuple[str, ...] = field(default=())


def iter_kb_files(kb_dir: Path) -> Iterator[Path]:
    """Every file under ``kb_dir`` with a supported suffix, in a stable order."""
    for path in sorted(kb_dir.rglob("*")):
        if (
            path.is_file()
            and path.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(kb_dir).parts)
        ):
            yield path


def article_id_for(path: Path, kb_dir: Path) -> str:
    """The stable id of a KB file: its path relative to the KB dir, with forward slashes."""
    return path.relative_to(kb_dir).as_posix()


def load_article(path: Path, kb_dir: Path) -> Article:
    """Read and validate one file. Raises :class:`IngestError` with a reason on any problem."""
    article_id = article_id_for(path, kb_dir)
    raw = path.read_bytes()
    if len(raw) > MAX_FILE_BYTES:
        raise IngestError(article_id, f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES}")
    if not raw.strip():
        raise IngestError(article_id, "file is empty")
    if b"\x00" in raw:
        raise IngestError(article_id, "file looks binary (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(article_id, f"not valid UTF-8 at byte {exc.start}") from exc
    return parse_article(text, article_id=article_id, suffix=path.suffix.lower())


def parse_article(text: str, *, article_id: str, suffix: str = ".md") -> Article:
    """Parse file content into an :class:`Article` (see :func:`load_article`)."""
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise IngestError(article_id, f"malformed front matter{where}: {problem}") from exc
    except ValueError as exc:
        raise IngestError(article_id, f"malformed front matter: {exc}") from exc
    meta = dict(post.metadata)
    body = post.content
    html_title = None
    if suffix in {".html", ".htm"}:
        html_title, body = html_to_markdown(body)
    body, hidden = strip_hidden_text(body)
    warnings = ("removed invisible characters",) if hidden else ()
    if not body.strip():
        raise IngestError(article_id, "article has no body text")

    title = _as_text(meta.get("title"), article_id, "title") or html_title or _first_heading(body)
    if not title:
        title = Path(article_id).stem.replace("-", " ").replace("_", " ").capitalize()
    url = _as_text(meta.get("url"), article_id, "url") or ""
    if url and not url.startswith(("https://", "http://", "/")):
        raise IngestError(article_id, f"front matter 'url' must be http(s) or a path, got {url!r}")
    tags = _as_tags(meta.get("tags"), article_id)
    updated = meta.get("updated")
    if isinstance(updated, dt.date):
        updated = updated.isoformat()
    elif updated is not None:
        updated = str(updated)
    audience = _as_audience(meta.get("audience"), article_id)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Article(
        article_id=article_id,
        title=title,
        url=url,
        body=body.strip() + "\n",
        tags=tags,
        updated=updated,
        audience=audience,
        content_hash=digest,
        warnings=warnings,
    )


def strip_hidden_text(body: str) -> tuple[str, bool]:
    """Remove zero-width and soft-hyphen characters; report whether any were present."""
    cleaned = _INVISIBLE.sub("", body)
    return cleaned, cleaned != body


def _as_text(value: object, article_id: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise IngestError(
            article_id, f"front matter {key!r} must be text, got {type(value).__name__}"
        )
    return str(value).strip() or None


def _as_tags(value: object, article_id: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str | int) for t in value):
        return tuple(str(t).strip() for t in value if str(t).strip())
    raise IngestError(article_id, "front matter 'tags' must be a list of words")


def _as_audience(value: object, article_id: str) -> tuple[str, ...]:
    if value is None:
        return (PUBLIC,)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise IngestError(
            article_id, "front matter 'audience' must be 'public', 'verified' or a list of plans"
        )
    cleaned = tuple(sorted({i.strip().lower() for i in items if i.strip()}))
    bad = [a for a in cleaned if not re.fullmatch(r"[a-z0-9_-]+", a)]
    if bad:
        raise IngestError(article_id, f"front matter 'audience' has invalid names: {bad}")
    return cleaned or (PUBLIC,)


def _first_heading(body: str) -> str | None:
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*$", body, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


class _HtmlToMarkdown(HTMLParser):
    """Just enough HTML to Markdown: headings, paragraphs, list items; scripts dropped."""

    _BLOCK: ClassVar[set[str]] = {"p", "div", "section", "article", "br", "tr", "table", "ul", "ol"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "template", "noscript", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._in_title = False
        self._ordered: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "ol":
            self._ordered.append(0)
        elif tag == "ul":
            self._ordered.append(-1)
        elif tag == "li":
            if self._ordered and self._ordered[-1] >= 0:
                self._ordered[-1] += 1
                self.parts.append(f"\n{self._ordered[-1]}. ")
            else:
                self.parts.append("\n- ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in {"ol", "ul"} and self._ordered:
            self._ordered.pop()
            self.parts.append("\n\n")
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """Convert an HTML page to (title, Markdown-ish text); scripts and styles are dropped."""
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return parser.title, text
