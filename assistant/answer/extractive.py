"""The offline answerer: the most relevant steps or sentences of the best passages.

Nothing is generated, so nothing can be invented: every statement is copied from a
passage and carries the number of its source. Procedures (numbered lists) are kept whole
and in order, because half a procedure is worse than none. When retrieval confidence is
below the threshold the answerer abstains plainly instead of pasting an unrelated article.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.answer.types import Answer, Citation
from assistant.kb.retrieval import Passage, RetrievalResult

ABSTAIN_TEXT = (
    "I couldn't find an answer to that in our help center, and I'd rather not guess. "
    "Would you like me to connect you with a person from our support team?"
)
MAX_SENTENCES = 3
MAX_LIST_ITEMS = 12
SECOND_SOURCE_MARGIN = 0.03

_WORD = re.compile(r"[a-z0-9]+")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+")
_ORDERED_ITEM = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`*\"'(])")
_HOW_TO = frozenset({"how", "steps", "step", "setup", "set", "configur", "enabl", "connect",
                     "reset", "chang", "add", "creat", "instal", "turn", "updat", "cancel"})
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "up",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def content_terms(text: str) -> set[str]:
    """Stemmed content words of ``text`` (stop words removed): what relevance compares."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@dataclass
class _Unit:
    """A sentence, a list, or a table: the pieces an answer is built from."""

    text: str
    kind: str  # "sentence" | "list" | "table"
    order: int


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph; never splits inside `inline code` (error messages)."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(paragraph):
        if paragraph.count("`", start, match.start()) % 2 == 0:
            sentences.append(paragraph[start : match.start()].strip())
            start = match.end()
    sentences.append(paragraph[start:].strip())
    return [s for s in sentences if s]


def split_units(text: str) -> list[_Unit]:
    """Split a passage into sentences, whole lists and whole tables, in reading order."""
    units: list[_Unit] = []
    block: list[str] = []
    kind = ""

    def flush() -> None:
        nonlocal block, kind
        if block:
            body = "\n".join(block).strip()
            if kind == "para":
                for sentence in split_sentences(" ".join(line.strip() for line in block)):
                    units.append(_Unit(sentence, "sentence", len(units)))
            elif body:
                units.append(_Unit(body, kind, len(units)))
        block, kind = [], ""

    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        if in_fence or line.strip().startswith("```"):
            line_kind = "code"
        elif not line.strip():
            flush()
            continue
        elif line.lstrip().startswith("|"):
            line_kind = "table"
        elif _LIST_ITEM.match(line) or (kind == "list" and line.startswith(("  ", "\t"))):
            line_kind = "list"
        else:
            line_kind = "para"
        if line_kind != kind:
            flush()
            kind = line_kind
        block.append(line.rstrip())
    flush()
    return units


def _score(unit: _Unit, query_terms: set[str]) -> float:
    terms = content_terms(unit.text)
    if not terms or not query_terms:
        return 0.0
    return len(terms & query_terms) / (len(query_terms) ** 0.5 * len(terms) ** 0.25)


class ExtractiveAnswerer:
    """Composes cited answers from passages without a model."""

    name = "extractive"

    def answer(self, *, question: str, retrieval: RetrievalResult, min_confidence: float) -> Answer:
        """An answer to ``question`` from ``retrieval``, or an abstention."""
        # Passages flagged at ingest (text that reads like instructions to an AI) are
        # never quoted to customers: the KB writer was warned and fixes them.
        usable = [p for p in retrieval.passages if not p.chunk.flagged]
        if not usable or retrieval.confidence < min_confidence:
            return Answer(text=ABSTAIN_TEXT, abstained=True, answerer=self.name)
        sources = self._pick_sources(usable)
        query_terms = content_terms(question)
        asks_how = bool(_HOW_TO & {_stem(w) for w in _WORD.findall(question.lower())})
        sections: list[str] = []
        citations: list[Citation] = []
        for n, passage in enumerate(sources, start=1):
            body = self._extract(passage, query_terms, primary=n == 1)
            if n == 1 and asks_how and not _ORDERED_ITEM.search(body):
                body = self._with_sibling_procedure(body, passage, usable)
            if not body:
                continue
            citations.append(
                Citation(
                    n=len(citations) + 1,
                    article_id=passage.article_id,
                    title=passage.chunk.title,
                    url=passage.chunk.url,
                    section=passage.chunk.section,
                )
            )
            sections.append(_mark(body, len(citations)))
        if not sections:
            return Answer(text=ABSTAIN_TEXT, abstained=True, answerer=self.name)
        return Answer(text="\n\n".join(sections), citations=citations, answerer=self.name)

    def _pick_sources(self, passages: list[Passage]) -> list[Passage]:
        best = passages[0]
        picked = [best]
        best_sim = best.dense_similarity or 0.0
        for other in passages[1:3]:
            # A second article only when it is nearly as relevant: otherwise it is noise.
            if (
                other.article_id != best.article_id
                and other.dense_similarity is not None
                and other.dense_similarity >= best_sim - SECOND_SOURCE_MARGIN
            ):
                picked.append(other)
                break
        return picked

    def _with_sibling_procedure(self, body: str, best: Passage, passages: list[Passage]) -> str:
        """Add the steps of another section of the same article, when the question asks how.

        Headings split an article into chunks, so "how do I..." often lands on the intro
        while the numbered steps sit in the next section.
        """
        for other in passages[1:]:
            if other.article_id != best.article_id:
                continue
            steps = [u for u in split_units(other.chunk.text)
                     if u.kind == "list" and _ORDERED_ITEM.match(u.text)]
            if steps:
                return f"{body}\n\n{_trim_list(steps[0]).text}".strip()
        return body

    def _extract(self, passage: Passage, query_terms: set[str], *, primary: bool) -> str:
        units = split_units(passage.chunk.text)
        if not units:
            return ""
        # Title and section words count too: a passage titled "Reset your password" is about
        # that even when its steps never repeat the words.
        context_terms = content_terms(f"{passage.chunk.title} {passage.chunk.section}")
        scored = [
            (u, _score(u, query_terms) + 0.25 * _score(u, context_terms & query_terms))
            for u in units
        ]
        steps = [u for u in units if u.kind == "list" and _ORDERED_ITEM.match(u.text)]
        chosen: list[_Unit] = []
        if steps and primary:
            procedure = max(steps, key=lambda u: _score(u, query_terms | context_terms))
            chosen.append(_trim_list(procedure))
            lead = [u for u in units if u.kind == "sentence" and u.order < procedure.order]
            if lead:
                chosen.append(max(lead, key=lambda u: (_score(u, query_terms), -u.order)))
        else:
            limit = MAX_SENTENCES if primary else 1
            ranked = sorted(scored, key=lambda pair: (-pair[1], pair[0].order))
            chosen.extend(u for u, s in ranked[:limit] if s > 0 or not chosen)
        chosen.sort(key=lambda u: u.order)
        return "\n\n".join(u.text for u in chosen).strip()


def _trim_list(unit: _Unit) -> _Unit:
    lines = unit.text.splitlines()
    items = [i for i, line in enumerate(lines) if _LIST_ITEM.match(line)]
    if len(items) <= MAX_LIST_ITEMS:
        return unit
    return _Unit("\n".join(lines[: items[MAX_LIST_ITEMS]]), unit.kind, unit.order)


def _mark(body: str, n: int) -> str:
    """Put the citation marker after each paragraph, list or table of ``body``."""
    blocks = body.split("\n\n")
    return "\n\n".join(
        f"{block} [{n}]" if not block.lstrip().startswith("|") else f"{block}\n\n[{n}]"
        for block in blocks
    )
