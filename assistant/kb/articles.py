"""Load knowledge-base files (Markdown, plain text, HTML) with their front matter.

An article id is the file path relative to the KB directory, with forward slashes
(``billing/refunds.md``). Every problem with one file is an :class:`IngestError` naming
that file, so one bad article never stops the rest.

Text a reader of the help centre cannot see is removed at load time, because a model
would read it all the same: HTML comments, elements hidden by their inline style or the
``hidden`` attribute, and zero-width characters (SECURITY.md #13). Code blocks are kept as
written. What remains and still reads like instructions to an AI is named in
:attr:`Article.findings`, so its chunks can be kept out of generated answers.
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
from assistant.understanding.injection import InjectionFinding, find_injection

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm"}
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
MAX_FILE_BYTES = 2_000_000
# Bump when what load time strips or flags changes (see the content hash in parse_article).
CLEANING_VERSION = "hidden-text-2"
PUBLIC = "public"
VERIFIED = "verified"

# Characters that hide text from a human reader but not from a model: zero-width and
# direction marks, invisible operators, the soft hyphen, and Unicode tag characters
# (U+E0000-U+E007F), which models read as the ASCII they shadow ("ASCII smuggling").
_INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\U000e0000-\U000e007f]")

# An HTML comment, or an unclosed one, which hides the rest of the text from a browser.
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_START_TAG = re.compile(r"<([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*?)?(/?)>")
_ATTRIBUTE = re.compile(
    r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"""
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)
_WHITE = re.compile(
    r"white|#fff|#ffffff|#ffff|#ffffffff|rgba?\(255,255,255(?:,[\d.]+%?)?\)|"
    r"hsla?\(\d+(?:deg)?,0*%?,100%(?:,[\d.]+%?)?\)"
)
_ZERO = re.compile(r"[+-]?(?:0+(?:\.0*)?|\.0+)(?:[a-z]+|%)?")
# A fenced code block opens with three or more backticks or tildes (CommonMark); an
# info string after backticks cannot contain a backtick.
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*$")
# Single-line code spans only: a stray backtick must not shelter a paragraph from cleaning.
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)[^\n]+?(?<!`)\1(?!`)")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


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
    findings: tuple[InjectionFinding, ...] = field(default=())


@dataclass(frozen=True)
class HiddenText:
    """How much hidden text was removed from one article."""

    comments: int = 0
    elements: int = 0
    characters: int = 0

    def __add__(self, other: HiddenText) -> HiddenText:
        return HiddenText(
            self.comments + other.comments,
            self.elements + other.elements,
            self.characters + other.characters,
        )

    def warning(self) -> str | None:
        """The ingest report's line, e.g. "removed hidden text: 2 HTML comments, ..."."""
        parts = [
            _count(self.comments, "HTML comment"),
            _count(self.elements, "invisible element"),
            _count(self.characters, "invisible character"),
        ]
        kept = [p for p in parts if p]
        return f"removed hidden text: {', '.join(kept)}" if kept else None


def _count(n: int, noun: str) -> str:
    return "" if not n else f"{n} {noun}" + ("" if n == 1 else "s")


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
    # A symlink must not pull in a file from outside the KB (an article id is a path
    # under the KB dir, and only that).
    if not path.resolve().is_relative_to(kb_dir.resolve()):
        raise IngestError(article_id, "file links outside the knowledge-base directory")
    # Check the size before reading: a huge file must not be read into memory first.
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise IngestError(article_id, f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
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
    hidden = HiddenText()
    if suffix in HTML_SUFFIXES:
        html_title, body, hidden = _convert_html(body)
    elif suffix in MARKDOWN_SUFFIXES:
        body, hidden = strip_hidden_markup(body)
    characters = len(_INVISIBLE.findall(body))
    body, _ = strip_hidden_text(body)
    hidden = hidden + HiddenText(characters=characters)
    removed = hidden.warning()
    warnings: list[str] = [removed] if removed else []
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
    # Visible text that still reads like instructions to an AI is kept, but named: its
    # chunks are flagged so the answerer can leave them out of the model's prompt.
    findings = tuple(find_injection(f"{title}\n{body}"))
    if findings:
        warnings.append(
            "text reads like instructions to an AI assistant ("
            + "; ".join(f"{f.kind}: {f.evidence}" for f in findings)
            + "); it is kept out of generated answers"
        )
    # The cleaning rules are part of the hash: when they change, an incremental ingest
    # re-indexes every article once instead of keeping chunks cleaned by the old rules.
    digest = hashlib.sha256(f"{CLEANING_VERSION}\n{text}".encode()).hexdigest()
    return Article(
        article_id=article_id,
        title=title,
        url=url,
        body=body.strip() + "\n",
        tags=tags,
        updated=updated,
        audience=audience,
        content_hash=digest,
        warnings=tuple(warnings),
        findings=findings,
    )


def strip_hidden_text(body: str) -> tuple[str, bool]:
    """Remove zero-width, soft-hyphen and tag characters; report whether any were present."""
    cleaned = _INVISIBLE.sub("", body)
    return cleaned, cleaned != body


def strip_hidden_markup(markdown: str) -> tuple[str, HiddenText]:
    """Remove HTML comments and hidden HTML elements from Markdown, outside code.

    An element is hidden by the ``hidden`` attribute or an inline style: ``display:none``,
    ``visibility:hidden``, ``font-size:0``, ``opacity:0``, or white (or transparent) text
    without a background of its own. Fenced code blocks and inline code spans are left as
    written: they show markup to the reader rather than hiding it.
    """
    pieces: list[str] = []
    total = HiddenText()
    for text, is_code in _code_segments(markdown):
        if is_code:
            pieces.append(text)
            continue
        cleaned, hidden = _strip_outside_code(text)
        pieces.append(cleaned)
        total = total + hidden
    return "".join(pieces), total


def _strip_outside_code(text: str) -> tuple[str, HiddenText]:
    # Inline code spans are swapped for placeholders so a `<!-- -->` shown in one survives.
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"\ue000{len(spans) - 1}\ue001"

    def restore(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return spans[index] if index < len(spans) else match.group(0)

    masked = _INLINE_CODE.sub(keep, text)
    masked, comments = _HTML_COMMENT.subn("", masked)
    masked, elements = _remove_hidden_elements(masked)
    return _PLACEHOLDER.sub(restore, masked), HiddenText(comments=comments, elements=elements)


def _remove_hidden_elements(text: str) -> tuple[str, int]:
    """Cut every hidden element (start tag to its matching end tag) out of ``text``."""
    removed = 0
    pos = 0
    out: list[str] = []
    while True:
        match = _START_TAG.search(text, pos)
        if match is None:
            break
        tag = match.group(1).lower()
        attrs = _parse_attributes(match.group(2) or "")
        if not _hides(attrs) or tag in _VOID_TAGS or match.group(3):
            out.append(text[pos : match.end()])
            pos = match.end()
            continue
        out.append(text[pos : match.start()])
        pos = _end_of_element(text, tag, match.end())
        removed += 1
    out.append(text[pos:])
    return "".join(out), removed


def _end_of_element(text: str, tag: str, start: int) -> int:
    """Index just past the end tag matching an element opened before ``start``.

    Without one, a browser hides everything that follows, so everything goes.
    """
    depth = 1
    pattern = re.compile(rf"<(/?){re.escape(tag)}(?:\s[^<>]*)?>", re.IGNORECASE)
    for match in pattern.finditer(text, start):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return match.end()
    return len(text)


def _parse_attributes(raw: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(raw):
        value = next((v for v in match.group(2, 3, 4) if v is not None), "")
        attrs.setdefault(match.group(1).lower(), value)
    return attrs


def _hides(attrs: dict[str, str]) -> bool:
    """Whether an element with these attributes is invisible to a reader."""
    if "hidden" in attrs:
        return True
    declarations: dict[str, str] = {}
    for declaration in (attrs.get("style") or "").split(";"):
        name, _, value = declaration.partition(":")
        value = re.sub(r"\s+", "", value.lower().replace("!important", ""))
        declarations[name.strip().lower()] = value
    if declarations.get("display") == "none":
        return True
    if declarations.get("visibility") in {"hidden", "collapse"}:
        return True
    if _ZERO.fullmatch(declarations.get("font-size", "x")):
        return True
    if _ZERO.fullmatch(declarations.get("opacity", "x")):
        return True
    # White or transparent text on the page's (white) background. With a background of
    # its own, white text is readable, so it stays.
    colour = declarations.get("color", "")
    has_background = "background" in declarations or "background-color" in declarations
    return bool(colour) and not has_background and (
        colour == "transparent" or _WHITE.fullmatch(colour) is not None
    )


def _code_segments(markdown: str) -> list[tuple[str, bool]]:
    """``markdown`` as (text, is fenced code) pieces, in order; joined they are the input."""
    segments: list[tuple[str, bool]] = []
    buffer: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        if fence is None:
            opening = _FENCE_OPEN.match(line.rstrip("\r\n"))
            if opening:
                if buffer:
                    segments.append(("".join(buffer), False))
                buffer = [line]
                fence = opening.group(1)
            else:
                buffer.append(line)
            continue
        buffer.append(line)
        closing = _FENCE_CLOSE.match(line.rstrip("\r\n"))
        if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
            segments.append(("".join(buffer), True))
            buffer = []
            fence = None
    if buffer:
        # An unclosed fence runs to the end of the document (CommonMark).
        segments.append(("".join(buffer), fence is not None))
    return segments


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
    """Just enough HTML to Markdown: headings, paragraphs, list items.

    Scripts, comments and hidden elements (see :func:`strip_hidden_markup`) are dropped;
    comments and hidden elements are counted for the ingest report.
    """

    _BLOCK: ClassVar[set[str]] = {"p", "div", "section", "article", "br", "tr", "table", "ul", "ol"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "template", "noscript", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._in_title = False
        self._ordered: list[int] = []
        # Open elements inside a hidden one; empty when not inside one.
        self._hidden: list[str] = []
        self.comments = 0
        self.hidden_elements = 0

    def handle_comment(self, data: str) -> None:
        self.comments += 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden:
            if tag not in _VOID_TAGS:
                self._hidden.append(tag)
            return
        if tag not in _VOID_TAGS and _hides({k.lower(): v or "" for k, v in attrs}):
            self._hidden.append(tag)
            self.hidden_elements += 1
            return
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
        if self._hidden:
            # Close up to the matching element; unclosed <p> or <li> inside end with it.
            if tag in self._hidden:
                while self._hidden and self._hidden.pop() != tag:
                    pass
            return
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
        if self._hidden:
            return
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """Convert an HTML page to (title, Markdown-ish text) without scripts or hidden text."""
    title, text, _ = _convert_html(html)
    return title, text


def _convert_html(html: str) -> tuple[str | None, str, HiddenText]:
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return parser.title, text, HiddenText(parser.comments, parser.hidden_elements)
