"""What one case showed, whether it passed, and the suite metrics over many cases. Pure.

Definitions (also in the README, so a KB writer can read a report):

- ``hit_at_1`` / ``hit_at_k`` / ``mrr``: over cases that expect ``retrieved`` articles; the
  rank is the best rank of any expected article among the retrieved ones.
- ``intent_accuracy`` / ``sentiment_accuracy``: over cases that expect an intent/sentiment.
- ``escalation_precision`` / ``recall`` / ``f1``: over cases with ``escalate`` set; a
  positive is a hand-off.
- ``answer_pass_rate``: over cases with answer checks (cited, contains, not_contains,
  offer_human, and the invented-link check on every reply).
- ``case_pass_rate``: cases with every expectation met.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.evaluation.suites import Case

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|(https?://[^\s<>()\]]+)")


@dataclass(frozen=True)
class Observed:
    """What the assistant did with a case's last turn."""

    answer: str | None
    retrieved: tuple[str, ...] = ()
    cited: tuple[str, ...] = ()
    intent: str | None = None
    sentiment: str | None = None
    action: str | None = None
    reasons: tuple[str, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    # Which answerer wrote the reply ("llm", "extractive", "extractive (timeout)"...).
    answered_by: str | None = None
    model_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        return {
            "answer": self.answer,
            "retrieved": list(self.retrieved),
            "cited": list(self.cited),
            "intent": self.intent,
            "sentiment": self.sentiment,
            "action": self.action,
            "reasons": list(self.reasons),
            "latency_ms": round(self.latency_ms, 1),
            "error": self.error,
            "answered_by": self.answered_by,
            "model_tokens": self.model_tokens,
        }


@dataclass(frozen=True)
class CaseResult:
    """A case, what happened, and every expectation it missed (empty when it passed)."""

    case: Case
    observed: Observed
    failures: tuple[str, ...]
    rank: int | None = None  # best rank of an expected article, when retrieval was checked
    invented_links: tuple[str, ...] = ()
    # The optional LLM judge's verdict: {"supported": bool | None, "reason": str}; it is
    # reported on its own and never changes whether the case passed.
    faithfulness: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """Every expectation met."""
        return not self.failures


def links_in(text: str) -> list[str]:
    """Every URL in a reply: markdown links and bare http(s) URLs."""
    found = []
    for match in _LINK.finditer(text):
        url = (match.group(1) or match.group(2) or "").rstrip(".,;:!?'\"")
        if url:
            found.append(url)
    return found


def judge(case: Case, observed: Observed, *, k: int, known_links: set[str]) -> CaseResult:
    """Check ``observed`` against the case's expectations.

    Args:
        case: The case.
        observed: What the assistant did with the last turn.
        k: How many retrieved articles count for ``retrieved``.
        known_links: URLs that may appear in answers (the KB's own links and article URLs);
            any other link in an answer is invented.
    """
    e = case.expect
    failures: list[str] = []
    if observed.error:
        failures.append(f"the turn failed: {observed.error}")
    top = observed.retrieved[:k]
    rank = None
    if e.retrieved:
        ranks = [top.index(a) + 1 for a in e.retrieved if a in top]
        rank = min(ranks) if ranks else None
        missing = [a for a in e.retrieved if a not in top]
        if missing:
            failures.append(
                f"retrieved: expected {', '.join(missing)} in the top {k}, "
                f"got {', '.join(top) or 'nothing'}"
            )
    missing_cites = [a for a in e.cited if a not in observed.cited]
    if missing_cites:
        failures.append(
            f"cited: expected {', '.join(missing_cites)}, "
            f"the answer cited {', '.join(observed.cited) or 'nothing'}"
        )
    if e.intent is not None and observed.intent != e.intent:
        failures.append(f"intent: expected {e.intent}, got {observed.intent}")
    if e.sentiment is not None and observed.sentiment != e.sentiment:
        failures.append(f"sentiment: expected {e.sentiment}, got {observed.sentiment}")
    escalated = observed.action == "handoff"
    if e.escalate is not None and escalated != e.escalate:
        why = f" ({', '.join(observed.reasons)})" if observed.reasons else ""
        failures.append(
            f"escalate: expected {'a hand-off' if e.escalate else 'no hand-off'}, "
            f"got {observed.action}{why}"
        )
    missing_reasons = [r for r in e.reasons if r not in observed.reasons]
    if missing_reasons:
        failures.append(
            f"reasons: expected {', '.join(missing_reasons)}, "
            f"got {', '.join(observed.reasons) or 'none'}"
        )
    offered = observed.action in {"answer_and_offer_human", "handoff"}
    if e.offer_human is not None and offered != e.offer_human:
        failures.append(
            f"offer_human: expected {'an offer of a person' if e.offer_human else 'no offer'}, "
            f"got {observed.action}"
        )
    answer = observed.answer or ""
    lowered = answer.lower()
    for text in e.contains:
        if text.lower() not in lowered:
            failures.append(f"contains: the answer does not contain {text!r}")
    for text in e.not_contains:
        if text.lower() in lowered:
            failures.append(f"not_contains: the answer contains {text!r}")
    invented = tuple(url for url in links_in(answer) if url not in known_links)
    if invented:
        failures.append(f"invented link(s): {', '.join(invented)}")
    return CaseResult(case, observed, tuple(failures), rank, invented)


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def suite_metrics(results: Sequence[CaseResult], k: int) -> dict[str, Any]:
    """Every metric of the module docstring (``None`` when no case measures it), plus
    counts, latency and the escalation confusion by reason."""
    retrieval = [r for r in results if r.case.expect.retrieved]
    intents = [r for r in results if r.case.expect.intent is not None]
    sentiments = [r for r in results if r.case.expect.sentiment is not None]
    escalation = [r for r in results if r.case.expect.escalate is not None]
    tp = sum(1 for r in escalation if r.case.expect.escalate and r.observed.action == "handoff")
    fp = sum(1 for r in escalation
             if not r.case.expect.escalate and r.observed.action == "handoff")
    fn = sum(1 for r in escalation if r.case.expect.escalate and r.observed.action != "handoff")
    precision = _rate(tp, tp + fp) if escalation else None
    recall = _rate(tp, tp + fn) if escalation else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0
    answer_checked = [r for r in results if r.observed.answer is not None or _answer_checks(r)]
    latencies = [r.observed.latency_ms for r in results if not r.observed.error]
    judged = [r for r in results
              if r.faithfulness is not None and r.faithfulness.get("supported") is not None]
    return {
        "cases": len(results),
        "passed": sum(1 for r in results if r.passed),
        "hit_at_1": _rate(sum(1 for r in retrieval if r.rank == 1), len(retrieval)),
        "hit_at_k": _rate(sum(1 for r in retrieval if r.rank is not None), len(retrieval)),
        "mrr": round(statistics.fmean(1 / r.rank if r.rank else 0.0 for r in retrieval), 4)
        if retrieval else None,
        "intent_accuracy": _rate(
            sum(1 for r in intents if r.observed.intent == r.case.expect.intent), len(intents)),
        "sentiment_accuracy": _rate(
            sum(1 for r in sentiments if r.observed.sentiment == r.case.expect.sentiment),
            len(sentiments)),
        "escalation_precision": precision,
        "escalation_recall": recall,
        "escalation_f1": f1,
        "answer_pass_rate": _rate(
            sum(1 for r in answer_checked if not _answer_failures(r)), len(answer_checked)),
        "case_pass_rate": _rate(sum(1 for r in results if r.passed), len(results)),
        "k": k,
        "faithfulness": _rate(
            sum(1 for r in judged if r.faithfulness and r.faithfulness["supported"]),
            len(judged)),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_p95_ms": round(_percentile(latencies, 95), 1) if latencies else None,
        "escalation_by_reason": escalation_by_reason(escalation),
        # With a model configured: how often it wrote the answer, how often it fell back.
        "answered_by": dict(sorted(Counter(
            r.observed.answered_by for r in results if r.observed.answered_by).items())),
        "model_tokens": sum(r.observed.model_tokens for r in results),
    }


_ANSWER_FIELDS = ("cited:", "contains:", "not_contains:", "offer_human:", "invented link")


def _answer_checks(result: CaseResult) -> bool:
    e = result.case.expect
    return bool(e.cited or e.contains or e.not_contains or e.offer_human is not None)


def _answer_failures(result: CaseResult) -> list[str]:
    return [f for f in result.failures if f.startswith(_ANSWER_FIELDS)]


def escalation_by_reason(results: Sequence[CaseResult]) -> dict[str, dict[str, int]]:
    """Per reason: cases expecting it, how many got it, how many missed it, and how often it
    fired in cases that expected no hand-off (false alarms)."""
    table: dict[str, dict[str, int]] = {}

    def row(reason: str) -> dict[str, int]:
        return table.setdefault(reason, {"expected": 0, "matched": 0, "missed": 0,
                                         "false_alarms": 0})

    for r in results:
        for reason in r.case.expect.reasons:
            entry = row(reason)
            entry["expected"] += 1
            entry["matched" if reason in r.observed.reasons else "missed"] += 1
        if r.case.expect.escalate is False and r.observed.action == "handoff":
            for reason in r.observed.reasons:
                row(reason)["false_alarms"] += 1
    return dict(sorted(table.items()))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Comparison:
    """The change against a baseline report."""

    deltas: dict[str, dict[str, float]] = field(default_factory=dict)  # suite -> metric -> delta
    regressions: list[str] = field(default_factory=list)  # "suite: metric dropped by x"
    newly_failing: list[str] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for reports."""
        return {
            "deltas": self.deltas,
            "regressions": self.regressions,
            "newly_failing": self.newly_failing,
            "newly_passing": self.newly_passing,
        }


RATE_METRICS = (
    "hit_at_1", "hit_at_k", "mrr", "intent_accuracy", "sentiment_accuracy",
    "escalation_precision", "escalation_recall", "escalation_f1", "answer_pass_rate",
    "case_pass_rate",
)


def compare(current: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> Comparison:
    """Compare two JSON reports: metric deltas per suite, regressions beyond ``tolerance``,
    and cases that changed between failing and passing."""
    result = Comparison()
    before = {s["name"]: s for s in baseline.get("suites", [])}
    for suite in current.get("suites", []):
        old = before.get(suite["name"])
        if old is None:
            continue
        deltas = {}
        for metric in RATE_METRICS:
            now, then = suite["metrics"].get(metric), old["metrics"].get(metric)
            if now is None or then is None:
                continue
            deltas[metric] = round(now - then, 4)
            if now < then - tolerance:
                result.regressions.append(
                    f"{suite['name']}: {metric} dropped from {then:.3f} to {now:.3f}"
                )
        result.deltas[suite["name"]] = deltas
        old_cases = {c["key"]: c["passed"] for c in old.get("cases", [])}
        for case in suite.get("cases", []):
            was = old_cases.get(case["key"])
            if was is True and not case["passed"]:
                result.newly_failing.append(case["key"])
            elif was is False and case["passed"]:
                result.newly_passing.append(case["key"])
    return result
