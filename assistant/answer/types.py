"""What every answerer returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Citation:
    """A numbered source of an answer."""

    n: int
    article_id: str
    title: str
    url: str
    section: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON shape used by the API and ``assistant ask --json``."""
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """A reply and where it came from; ``abstained`` means the KB had nothing good enough."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    answerer: str = "extractive"
    # Why a generative answer was not used (``timeout``, ``no_supported_citation``...).
    fallback: str | None = None
    # ``llm.called`` payloads: model, outcome, attempts, latency and token usage per call.
    model_calls: tuple[dict[str, Any], ...] = ()
    # What the output checks changed (dropped citations, removed links).
    checks: dict[str, list[str]] = field(default_factory=dict)
