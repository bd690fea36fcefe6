"""Runs eval cases through the same conversation service and engine the server uses.

Each suite runs against its knowledge base (the suite's ``kb``, ``--kb``, or the configured
one), indexed once into a cache under the data dir (``data/evals/<kb>``, incremental like
``assistant ingest``). Conversations go to a throw-away SQLite database, so evals never
mix with real customers. Cases run in a small thread pool; results come back in case
order, and the engine has no randomness, so the same inputs give the same report.
"""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from assistant.config import Settings
from assistant.conversations import CustomerClaim
from assistant.embeddings import Embedder
from assistant.evaluation.metrics import CaseResult, Observed, judge, links_in, suite_metrics
from assistant.evaluation.suites import Case, Suite
from assistant.identity import user_hash
from assistant.kb.articles import iter_kb_files
from assistant.kb.audience import Audience
from assistant.llm import ChatModel, LLMError
from assistant.runtime import Runtime, build_runtime

REPORT_SCHEMA = "assistant-eval/1"


@dataclass
class SuiteReport:
    """A suite's results, metrics and the thresholds it missed."""

    suite: Suite
    results: list[CaseResult]
    metrics: dict[str, Any]
    threshold_failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No threshold missed; a suite without thresholds passes only if every case does."""
        if self.suite.thresholds:
            return not self.threshold_failures
        return all(r.passed for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        """The suite's part of the JSON report."""
        return {
            "name": self.suite.name,
            "path": str(self.suite.path),
            "description": self.suite.description,
            "k": self.suite.k,
            "thresholds": self.suite.thresholds,
            "threshold_failures": self.threshold_failures,
            "passed": self.passed,
            "metrics": self.metrics,
            "cases": [
                {
                    "key": r.case.key,
                    "id": r.case.id,
                    "tags": list(r.case.tags),
                    "source": r.case.source,
                    "turns": list(r.case.turns),
                    "passed": r.passed,
                    "failures": list(r.failures),
                    "expected": r.case.expect.model_dump(exclude_defaults=True, mode="json"),
                    "got": r.observed.as_dict(),
                    "rank": r.rank,
                    "faithfulness": r.faithfulness,
                }
                for r in self.results
            ],
        }


def check_thresholds(suite: Suite, metrics: dict[str, Any]) -> list[str]:
    """Every threshold the metrics miss; a metric no case measures misses its threshold."""
    missed = []
    for name, threshold in sorted(suite.thresholds.items()):
        value = metrics.get(name)
        if value is None:
            missed.append(f"{name}: no case measures it (threshold {threshold:.2f})")
        elif value < threshold:
            missed.append(f"{name}: {value:.3f} is below the threshold {threshold:.2f}")
    return missed


class EvalRunner:
    """Runs suites; builds one runtime per knowledge base and reuses it."""

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        workers: int = 2,
        seed: int = 0,
        judge: ChatModel | None = None,
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._judge = judge
        self._workers = max(1, workers)
        self._seed = seed
        self._runtimes: dict[Path, Runtime] = {}
        self._links: dict[Path, set[str]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="assistant-eval-")
        self._secret = hashlib.sha256(f"eval-{seed}".encode()).hexdigest()

    def close(self) -> None:
        """Release databases and the temporary directory."""
        for runtime in self._runtimes.values():
            runtime.close()
        self._tmp.cleanup()

    def run(
        self, suite: Suite, *, kb_dir: Path | None = None,
        progress: Callable[[CaseResult], None] | None = None,
    ) -> SuiteReport:
        """Run every case of ``suite``; ``progress`` is called after each case."""
        random.seed(self._seed)
        kb = (kb_dir or suite.kb_dir or self._settings.kb_dir).resolve()
        runtime = self._runtime(kb)
        runtime.engine.retrieval_k = max(suite.k, self._settings.retrieval_k)
        known = self._known_links(kb)

        def one(case: Case) -> CaseResult:
            observed = self._observe(runtime, case)
            result = judge(case, observed, k=suite.k, known_links=known)
            if self._judge is not None and observed.answer and observed.cited:
                result = replace(result, faithfulness=self._faithful(runtime, case, observed))
            if progress is not None:
                progress(result)
            return result

        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            results = list(pool.map(one, suite.cases))
        metrics = suite_metrics(results, suite.k)
        return SuiteReport(suite, results, metrics, check_thresholds(suite, metrics))

    def _observe(self, runtime: Runtime, case: Case) -> Observed:
        service = runtime.conversations
        claim, signed = None, None
        if case.plan:
            claim = CustomerClaim(external_id=f"eval-{case.key}", plan=case.plan)
            signed = user_hash(self._secret, claim.external_id or "")
        conversation = service.start(claim=claim, user_hash=signed).conversation
        reply = None
        latency = 0.0
        try:
            for text in case.turns:
                started = time.perf_counter()
                posted = service.post_message(conversation, text=text, idempotency_key=None)
                latency = (time.perf_counter() - started) * 1000
                reply = posted.reply
                asked = posted.message
        except Exception as exc:  # reported as the case's failure, never stops the run
            return Observed(answer=None, error=f"{type(exc).__name__}: {exc}")
        if reply is None:
            # A person owns it (an earlier turn handed off): the last turn got no reply.
            notes = self._annotations(runtime, conversation.id, asked.id)
            return Observed(answer=None, intent=_label(notes, "intent"),
                            sentiment=_label(notes, "sentiment"), action="held",
                            latency_ms=latency)
        notes = reply.annotations
        decision = notes.get("decision") or {}
        retrieval = notes.get("retrieval") or {}
        return Observed(
            answer=reply.text,
            retrieved=tuple(retrieval.get("article_ids") or ()),
            cited=tuple(dict.fromkeys(c["article_id"] for c in notes.get("citations") or [])),
            intent=_label(notes, "intent"),
            sentiment=_label(notes, "sentiment"),
            action=decision.get("action"),
            reasons=tuple(decision.get("reasons") or ()),
            latency_ms=latency,
            answered_by=_answered_by(notes),
            model_tokens=sum((call.get("prompt_tokens") or 0) + (call.get("completion_tokens") or 0)
                             for call in notes.get("model_calls") or []),
        )

    def _faithful(self, runtime: Runtime, case: Case, observed: Observed) -> dict[str, Any]:
        """Ask the judge model whether the answer is supported by the passages it cites."""
        assert self._judge is not None
        audience = Audience(verified=bool(case.plan), plan=case.plan)
        found = runtime.kb.retriever.search(case.turns[-1], k=10, audience=audience)
        passages = [{"article_id": p.chunk.article_id, "text": p.chunk.text}
                    for p in found.passages if p.chunk.article_id in observed.cited]
        try:
            verdict = self._judge.ask("eval_judge", max_tokens=150, question=case.turns[-1],
                                      passages=passages, answer=observed.answer or "")
        except LLMError as exc:
            return {"supported": None, "reason": str(exc)}
        return parse_verdict(verdict.text)

    @staticmethod
    def _annotations(runtime: Runtime, conversation_id: str, message_id: int) -> dict[str, Any]:
        found = runtime.store.messages_by_ids([message_id]).get(message_id)
        return found.annotations if found is not None else {}

    def _runtime(self, kb: Path) -> Runtime:
        if kb not in self._runtimes:
            key = hashlib.sha256(str(kb).encode()).hexdigest()[:12]
            settings = self._settings.model_copy(update={
                "kb_dir": kb,
                "data_dir": self._settings.data_dir / "evals" / key,
                "database_url": f"sqlite:///{Path(self._tmp.name) / (key + '.db')}",
                "widget_secret": SecretStr(self._secret),
            })
            runtime = build_runtime(settings, embedder=self._embedder)
            runtime.ingest()
            self._runtimes[kb] = runtime
        return self._runtimes[kb]

    def _known_links(self, kb: Path) -> set[str]:
        """URLs an answer may contain: those written in the KB's own articles."""
        if kb not in self._links:
            links: set[str] = set()
            for path in iter_kb_files(kb):
                links.update(links_in(path.read_text(encoding="utf-8", errors="replace")))
            self._links[kb] = links
        return self._links[kb]


def parse_verdict(text: str) -> dict[str, Any]:
    """The judge's ``{"supported": bool, "reason": str}``, read leniently."""
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start : end + 1])
            if isinstance(data, dict) and isinstance(data.get("supported"), bool):
                return {"supported": data["supported"], "reason": str(data.get("reason", ""))}
        except json.JSONDecodeError:
            pass
    head = text.strip().lower()
    if head.startswith(("yes", "true", "supported")):
        return {"supported": True, "reason": text.strip()[:300]}
    if head.startswith(("no", "false", "unsupported", "not supported")):
        return {"supported": False, "reason": text.strip()[:300]}
    return {"supported": None, "reason": f"unreadable verdict: {text.strip()[:200]}"}


def _answered_by(notes: dict[str, Any]) -> str | None:
    answerer = notes.get("answerer")
    if answerer is None:
        return None
    return f"{answerer} ({notes['fallback']})" if notes.get("fallback") else str(answerer)


def _label(notes: dict[str, Any], key: str) -> str | None:
    value = notes.get(key)
    if isinstance(value, dict):
        label = value.get("label")
        return str(label) if label is not None else None
    return None


@contextmanager
def eval_runner(settings: Settings, **kwargs: Any) -> Iterator[EvalRunner]:
    """An :class:`EvalRunner` that is closed afterwards."""
    runner = EvalRunner(settings, **kwargs)
    try:
        yield runner
    finally:
        runner.close()
