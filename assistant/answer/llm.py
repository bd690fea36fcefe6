"""The generative answerer: an OpenAI-compatible model writes the reply from the passages.

Same interface as the extractive answerer, and never worse than it: the extractive answer
is the draft and the fallback. The model gets the passages (``S1``, ``S2``...) and the
conversation as delimited data through ``prompts/answer.*.j2``; its text streams through
:class:`~assistant.answer.grounding.OutputGuard` (citations checked, foreign links removed,
leaks blocked) and only checked text reaches the customer. When the model fails, times
out, leaks, or cites nothing that supports its answer, the customer gets the extractive
answer instead (and a stream that already showed text is told to reset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from assistant.answer.extractive import ABSTAIN_TEXT, ExtractiveAnswerer
from assistant.answer.grounding import OutputGuard, Source
from assistant.answer.types import Answer
from assistant.kb.retrieval import RetrievalResult
from assistant.llm import ChatModel, LLMError, failure_usage

PROMPT = "answer"


class ReplyStream(Protocol):
    """Where reply text goes as it is produced (the SSE response of the widget)."""

    def delta(self, text: str) -> None:
        """Show ``text`` after what was shown so far."""
        ...

    def reset(self) -> None:
        """Forget what was shown: the final reply is different."""
        ...


class GenerativeAnswerer:
    """Writes grounded, cited replies with a chat model; falls back to extractive."""

    name = "llm"

    def __init__(
        self,
        *,
        model: ChatModel,
        fallback: ExtractiveAnswerer | None = None,
        max_passages: int = 5,
        history_messages: int = 4,
    ) -> None:
        self.model = model
        self._fallback = fallback or ExtractiveAnswerer()
        self._max_passages = max_passages
        self._history_messages = history_messages

    def answer(
        self,
        *,
        question: str,
        retrieval: RetrievalResult,
        min_confidence: float,
        history: Sequence[str] = (),
        stream: ReplyStream | None = None,
        draft: Answer | None = None,
    ) -> Answer:
        """The reply to ``question``: generated and checked, or the extractive ``draft``.

        ``history`` is the customer's earlier messages (for follow-up questions);
        ``stream`` receives checked text as the model writes it.
        """
        if draft is None:
            draft = self._fallback.answer(
                question=question, retrieval=retrieval, min_confidence=min_confidence
            )
        if draft.abstained:
            return draft  # nothing relevant enough: no model call, no invention
        sources = [
            Source(f"S{n}", passage)
            for n, passage in enumerate(
                # Passages whose text reads like instructions to an AI stay out of prompts.
                [p for p in retrieval.passages if not p.chunk.flagged][: self._max_passages],
                start=1,
            )
        ]
        if not sources:
            return replace(draft, fallback="no_usable_passages")
        system, user = self.model.render(
            PROMPT,
            question=question,
            history=list(history)[-self._history_messages :],
            sources=[
                {"id": s.key, "title": s.passage.chunk.title, "section": s.passage.chunk.section,
                 "url": s.passage.chunk.url, "text": s.passage.chunk.text}
                for s in sources
            ],
        )
        guard = OutputGuard(sources=sources, canary=self.model.canary, system_prompt=system)
        shown = [False]

        def on_text(piece: str) -> None:
            released = guard.feed(piece)
            if released and stream is not None:
                shown[0] = True
                stream.delta(released)

        def fall_back(reason: str, calls: tuple[dict[str, object], ...]) -> Answer:
            if shown[0] and stream is not None:
                stream.reset()
            return replace(draft, fallback=reason, model_calls=calls)

        try:
            completion = self.model.complete(
                PROMPT, system, user, on_text=on_text if stream is not None else None
            )
        except LLMError as exc:
            usage = failure_usage(PROMPT, self.model.model, exc, streamed=stream is not None)
            return fall_back(exc.kind, (usage,))
        if stream is None:
            guard.feed(completion.text)
        checked = guard.finish()
        calls = (completion.usage(),)
        if checked.leak:
            return fall_back(f"leak_{checked.leak}", calls)
        if checked.no_answer:
            if shown[0] and stream is not None:
                stream.reset()
            return Answer(text=ABSTAIN_TEXT, abstained=True, answerer=self.name,
                          model_calls=calls)
        if not checked.citations or not checked.text:
            return replace(fall_back("no_supported_citation", calls), checks=checked.checks())
        return Answer(
            text=checked.text,
            citations=checked.citations,
            answerer=self.name,
            model_calls=calls,
            checks=checked.checks(),
        )
