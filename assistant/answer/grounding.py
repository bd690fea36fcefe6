"""The checks generated text passes before a customer sees any of it.

One path for streaming and for whole answers (:class:`OutputGuard`): the model's text is
fed in as it arrives and released only when it is safe, so a streamed token can never show
what the finished answer would have blocked.

- **Citations.** The model cites passages as ``[S1]``; each marker is checked against the
  passages it was given (an id that was not retrieved is dropped) and against the sentence
  it ends (a passage that shares no content words with it does not support it, and the
  marker is dropped). Kept markers become the ``[1]``, ``[2]`` of the sources list.
- **Links.** Only URLs and email addresses that appear in the passages (their article
  URLs or their text) survive; markdown images are removed: a model told to "include
  this image" must not make the widget fetch ``https://evil.example/?data=...``.
- **Leaks.** A reply carrying the system prompt's canary, or eight words in a row of the
  system prompt, is blocked whole. Text is held back by :data:`LAG_WORDS` words so the
  check runs before any part of such a run is released.
- **Not knowing.** A reply that is ``NO_ANSWER`` is an abstention, never shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from assistant.answer.extractive import content_terms
from assistant.answer.types import Citation
from assistant.kb.retrieval import Passage

NO_ANSWER = "NO_ANSWER"
LAG_WORDS = 8
LINK_REMOVED = "(link removed)"
MAX_HELD_CHARS = 400  # an unclosed "[" longer than this is plain text, not a marker

_ID = r"(?:S|s|source\s*)?\d{1,3}"
_OUTPUT = re.compile(
    r"(?P<image>!\[[^\]\n]*\]\((?:[^()\n]|\([^()\n]*\))*\))"
    r"|(?P<link>\[(?P<label>[^\]\n]+)\]\(\s*(?P<href>(?:[^()\s]|\([^()\s]*\))+)[^)\n]*\))"
    rf"|(?P<marker>\[(?P<ids>{_ID}(?:\s*[,;]\s*{_ID})*)\])"
    r"|(?P<url>(?:https?://|www\.)[^\s<>()\[\]\"']+"
    r"|\b(?:mailto|javascript|data|vbscript|file):[^\s<>()\[\]\"']+)"
    r"|(?P<email>\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[a-z0-9']+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_URL_IN_TEXT = re.compile(
    r"https://[^\s<>()\[\]\"'`]+|mailto:[^\s<>()\[\]\"'`]+|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
)
_TRAILING = ".,;:!?'\""


@dataclass(frozen=True)
class Source:
    """A passage as the model sees it: ``S1``, ``S2``..."""

    key: str
    passage: Passage


@dataclass
class Guarded:
    """The checked answer and what the checks changed."""

    text: str
    citations: list[Citation]
    no_answer: bool = False
    leak: str | None = None
    dropped_ids: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    removed_links: list[str] = field(default_factory=list)

    def checks(self) -> dict[str, list[str]]:
        """What agents see of the checks (stored on the reply)."""
        return {
            "dropped_citations": self.dropped_ids,
            "unsupported_citations": self.unsupported,
            "removed_links": self.removed_links,
        }


def allowed_links(sources: Sequence[Source]) -> set[str]:
    """The URLs a reply may contain: those of the passages it was given."""
    allowed: set[str] = set()
    for source in sources:
        chunk = source.passage.chunk
        if chunk.url:
            allowed.add(_normal(chunk.url))
        allowed.update(_normal(u) for u in _URL_IN_TEXT.findall(chunk.text))
    return allowed


def _normal(url: str) -> str:
    return url.rstrip(_TRAILING + "/").lower()


def _grams(text: str, n: int = LAG_WORDS) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class OutputGuard:
    """Feeds on model text, releases only checked text (see the module docstring)."""

    def __init__(
        self,
        *,
        sources: Sequence[Source],
        canary: str,
        system_prompt: str,
        allowed_text: str = "",
    ) -> None:
        self._sources = {source.key.upper(): source for source in sources}
        # Links may come from the passages, or from ``allowed_text`` (a transcript).
        self._allowed = allowed_links(sources) | {
            _normal(u) for u in _URL_IN_TEXT.findall(allowed_text)
        }
        self._canary = canary.lower()
        self._system_grams = _grams(system_prompt)
        self._raw = ""
        self._cut = 0  # raw[:cut] is released (cleaned)
        self._out: list[str] = []
        self._numbers: dict[str, int] = {}
        self._citations: list[Citation] = []
        self._result = Guarded(text="", citations=self._citations)

    @property
    def leak(self) -> str | None:
        """``canary`` or ``system_prompt`` once the model leaked; nothing is released after."""
        return self._result.leak

    def feed(self, piece: str) -> str:
        """Take the next piece of model text; return the text that may be shown now."""
        self._raw += piece
        if self._check_leaks() or self._maybe_no_answer():
            return ""
        return self._release(self._safe_end())

    def finish(self) -> Guarded:
        """Release the rest and return the checked answer."""
        result = self._result
        if self._check_leaks():
            return result
        if NO_ANSWER.lower() in self._raw.lower():
            result.no_answer = True
            return result
        self._release(len(self._raw))
        text = "".join(self._out)
        # Dropped markers leave "days ." behind; tidy the final text.
        text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
        result.text = re.sub(r"[ \t]{2,}", " ", text).strip()
        return result

    def _check_leaks(self) -> bool:
        if self._result.leak:
            return True
        lowered = self._raw.lower()
        if self._canary and self._canary in lowered:
            self._result.leak = "canary"
        elif self._system_grams and _grams(lowered) & self._system_grams:
            self._result.leak = "system_prompt"
        return self._result.leak is not None

    def _maybe_no_answer(self) -> bool:
        start = self._raw.lstrip().upper()
        return bool(start) and (NO_ANSWER.startswith(start) or start.startswith(NO_ANSWER))

    def _safe_end(self) -> int:
        """How far the raw text may be released: whole words, :data:`LAG_WORDS` behind,
        never inside a marker, link or image that is still arriving."""
        words = list(re.finditer(r"\S+", self._raw[self._cut :]))
        if len(words) <= LAG_WORDS:
            return self._cut
        end = self._cut + words[-LAG_WORDS].start()
        for match in re.finditer(r"!?\[", self._raw[self._cut : end]):
            start = self._cut + match.start()
            close = self._raw.find("]", start)
            if close == -1 or close >= end:
                if end - start <= MAX_HELD_CHARS:
                    return start
                continue
            if self._raw.startswith("(", close + 1):
                paren = self._raw.find(")", close)
                if paren == -1 or paren >= end:
                    return start
        return end

    def _release(self, end: int) -> str:
        if end <= self._cut:
            return ""
        segment_start = self._cut
        segment = self._raw[segment_start:end]
        self._cut = end
        cleaned = _OUTPUT.sub(lambda m: self._replace(m, segment_start), segment)
        self._out.append(cleaned)
        return cleaned

    def _replace(self, match: re.Match[str], offset: int) -> str:
        if match.group("image"):
            self._result.removed_links.append(match.group("image"))
            return ""
        if match.group("link"):
            href = match.group("href")
            if _normal(href) in self._allowed:
                return match.group(0)
            self._result.removed_links.append(href)
            return match.group("label")
        if match.group("marker"):
            return self._markers(match.group("ids"), offset + match.start())
        if match.group("email"):
            email = match.group("email").rstrip(_TRAILING)
            if _normal(email) in self._allowed or _normal(f"mailto:{email}") in self._allowed:
                return match.group(0)
            self._result.removed_links.append(email)
            return LINK_REMOVED + match.group(0)[len(email) :]
        url = match.group("url")
        bare = url.rstrip(_TRAILING)
        if _normal(bare) in self._allowed:
            return url
        self._result.removed_links.append(bare)
        return LINK_REMOVED + url[len(bare) :]

    def _markers(self, ids: str, position: int) -> str:
        sentence = _sentence_before(self._raw[:position])
        numbers: list[int] = []
        for raw_id in re.split(r"\s*[,;]\s*", ids):
            key = "S" + re.sub(r"\D", "", raw_id)
            source = self._sources.get(key)
            if source is None:
                self._result.dropped_ids.append(raw_id)
                continue
            if not _supports(source.passage, sentence):
                self._result.unsupported.append(key)
                continue
            n = self._number(source.passage)
            if n not in numbers:
                numbers.append(n)
        return "".join(f"[{n}]" for n in numbers)

    def _number(self, passage: Passage) -> int:
        chunk = passage.chunk
        if chunk.article_id not in self._numbers:
            n = len(self._citations) + 1
            self._numbers[chunk.article_id] = n
            self._citations.append(
                Citation(n=n, article_id=chunk.article_id, title=chunk.title, url=chunk.url,
                         section=chunk.section)
            )
        return self._numbers[chunk.article_id]


def _sentence_before(text: str) -> str:
    """The sentence a citation marker closes (markers before it removed)."""
    text = _OUTPUT.sub(lambda m: "" if m.group("marker") else m.group(0), text).rstrip()
    pieces = [p for p in _SENTENCE_BREAK.split(text) if p.strip()]
    return pieces[-1] if pieces else ""


def _supports(passage: Passage, sentence: str) -> bool:
    """Whether ``passage`` plausibly backs ``sentence``: shared content words (2, or all
    of a very short sentence's). Paraphrase keeps the nouns; an invented claim rarely
    shares them with the passage it cites."""
    said = content_terms(sentence)
    if not said:
        return True
    chunk = passage.chunk
    known = content_terms(f"{chunk.title} {chunk.section} {chunk.text}")
    return len(said & known) >= min(2, len(said))


def check_text(text: str, *, canary: str, system_prompt: str, allowed_text: str) -> Guarded:
    """Check a whole generated text that cites nothing (a hand-off summary): leaks
    blocked, links not found in ``allowed_text`` removed."""
    guard = OutputGuard(sources=(), canary=canary, system_prompt=system_prompt,
                        allowed_text=allowed_text)
    guard.feed(text)
    return guard.finish()
