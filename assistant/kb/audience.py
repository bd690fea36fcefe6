"""Who may read an article: the audience rules shared by the index and both retrievers.

An article's front matter names its audience: ``public`` (everyone), ``verified`` (any
customer whose identity was verified) or plan names (verified customers on one of those
plans). A claimed plan is never trusted on its own: it counts only for verified customers.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.kb.articles import PUBLIC, VERIFIED


@dataclass(frozen=True)
class Audience:
    """The reader a search is made for."""

    verified: bool = False
    plan: str | None = None
    everything: bool = False  # trusted operators (CLI, admin search) see every article

    @classmethod
    def anonymous(cls) -> Audience:
        """An unverified customer: public articles only."""
        return cls()

    @classmethod
    def operator(cls) -> Audience:
        """A trusted operator who may see every article."""
        return cls(everything=True)

    def allowed(self) -> frozenset[str]:
        """The audience labels this reader qualifies for."""
        labels = {PUBLIC}
        if self.verified:
            labels.add(VERIFIED)
            if self.plan:
                labels.add(self.plan.strip().lower())
        return frozenset(labels)

    def admits(self, article_audience: tuple[str, ...]) -> bool:
        """Whether an article with this audience may be shown to this reader."""
        return self.everything or bool(self.allowed().intersection(article_audience))


def audience_flag(label: str) -> str:
    """The Chroma metadata key marking a chunk readable by ``label``."""
    return f"aud_{label}"
