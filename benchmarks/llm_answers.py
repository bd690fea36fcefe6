"""Generative answers: what the model path costs, and how fast it falls back.

Ingests the demo knowledge base (real ONNX embeddings, embedded Chroma, SQLite, in a
temporary directory) and starts a stub OpenAI-protocol server on loopback (the one the
tests use, ``tests/fake_openai.py``). The stub answers like a well-behaved model: the first
sentence of the first passage it was given, cited, streamed word by word with
``--token-ms`` between words. Then it sends the same customer questions through
``Engine.handle_turn`` in five set-ups and reports, per set-up, the turn latency
(p50/p95), the time to the first streamed word, and how answers were made:

- ``offline``: no model (the extractive answerer), the baseline;
- ``llm``: the model answers and streams;
- ``llm 5xx``: every call fails with 503 (retries, then the extractive answer);
- ``llm hang``: the endpoint never answers (the deadline, then the extractive answer);
- ``breaker open``: after failures the circuit breaker skips the model at once.

    python benchmarks/llm_answers.py [--turns 40] [--token-ms 0] [--deadline 1.0]
        [--json benchmarks/results/llm_answers.json]

The stub costs nothing, so the ``llm`` row is the assistant's own overhead (prompt
rendering, HTTP, streaming, the output checks) on top of retrieval, not a model's speed.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, mean, percentile, show_table, write_json

sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI, Scripted, fake_openai, user_prompt

from assistant.config import Settings
from assistant.kb.audience import Audience
from assistant.runtime import Runtime, build_runtime

QUESTIONS = [
    "How do I reset my password?",
    "How do I turn on two-factor authentication?",
    "How do I set up SSO with Okta using SAML?",
    "Where can I download my invoices?",
    "Can I get a refund if I cancel in the middle of my billing cycle?",
    "How do I update the credit card on file?",
    "How do I upgrade from Starter to Pro?",
    "How do I cancel my subscription?",
    "How do I connect Tallyboard to Slack?",
    "What are the API rate limits?",
    "How do I verify webhook signatures?",
    "How can I export all of my data?",
    "Do you sign a data processing agreement?",
    "My dashboard is not loading, it just spins forever",
]


def grounded_reply(body: dict[str, Any]) -> str:
    """What a faithful model writes: the first passage's first sentence, cited."""
    prompt = user_prompt(body)
    found = re.search(r'<passage id="(S\d+)"[^>]*>\n(?:Section: [^\n]*\n)?([^\n]+)', prompt)
    if not found:
        return "NO_ANSWER"
    sentence = re.split(r"(?<=[.!?])\s", found.group(2).strip())[0].rstrip(".")
    return f"{sentence} [{found.group(1)}]. I hope this helps!"


class FirstWord:
    """A reply stream that notes when its first text arrived."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None

    def delta(self, text: str) -> None:
        if self.first is None:
            self.first = (time.perf_counter() - self.started) * 1000

    def reset(self) -> None:
        """Nothing to undo for a measurement."""


def run(runtime: Runtime, turns: int) -> dict[str, Any]:
    latencies: list[float] = []
    first_words: list[float] = []
    answerers: dict[str, int] = {}
    audience = Audience.anonymous()
    for i in range(turns):
        stream = FirstWord()
        result = runtime.engine.handle_turn(
            text=QUESTIONS[i % len(QUESTIONS)], audience=audience, stream=stream
        )
        latencies.append((time.perf_counter() - stream.started) * 1000)
        if stream.first is not None:
            first_words.append(stream.first)
        how = result.answer.answerer + (f" ({result.answer.fallback})"
                                         if result.answer.fallback else "")
        answerers[how] = answerers.get(how, 0) + 1
    return {
        "turns": turns,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "mean_ms": mean(latencies),
        "first_word_p50_ms": percentile(first_words, 50),
        "answers": answerers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--token-ms", type=float, default=0.0,
                        help="stub model's delay between streamed words")
    parser.add_argument("--deadline", type=float, default=1.0,
                        help="ASSISTANT_LLM_TIMEOUT_SECONDS for the runs")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, fake_openai() as stub:
        base = Settings(data_dir=Path(tmp), kb_dir=ROOT / "knowledge_base",
                        _env_file=None)  # type: ignore[call-arg]
        offline = build_runtime(base)
        offline.ingest()
        offline.close()

        def configured(**update: Any) -> Runtime:
            return build_runtime(base.model_copy(update={
                "llm_base_url": stub.url, "llm_model": "stub",
                "llm_timeout_seconds": args.deadline, **update}))

        def script(fake: FakeOpenAI, reply: Scripted | None) -> None:
            fake.status = 200
            fake.responder = (
                (lambda body: Scripted(text=grounded_reply(body), trickle=args.token_ms / 1000))
                if reply is None else (lambda body: reply)
            )

        setups: list[tuple[str, dict[str, Any], Scripted | None]] = [
            ("offline", {"llm_base_url": None}, None),
            ("llm", {}, None),
            ("llm 5xx", {"llm_circuit_failures": 10_000}, Scripted(status=503)),
            ("llm hang", {"llm_circuit_failures": 10_000}, Scripted(hang=600)),
            ("breaker open", {"llm_circuit_failures": 1}, Scripted(status=503)),
        ]
        for name, update, reply in setups:
            script(stub, reply)
            runtime = (build_runtime(base) if update.get("llm_base_url", "") is None
                       else configured(**update))
            try:
                turns = args.turns if name != "llm hang" else max(4, args.turns // 8)
                results[name] = run(runtime, turns)
                results[name]["model_requests"] = len(stub.requests)
            finally:
                runtime.close()
            stub.requests.clear()

    rows = [[name, r["turns"], r["p50_ms"], r["p95_ms"], r["first_word_p50_ms"],
             r["model_requests"], ", ".join(f"{k}: {v}" for k, v in sorted(r["answers"].items()))]
            for name, r in results.items()]
    show_table(f"Generative answers (stub model, {args.token_ms:g} ms/word, deadline "
               f"{args.deadline:g} s)",
               ["set-up", "turns", "p50 ms", "p95 ms", "first word p50 ms", "model calls",
                "answered by"], rows)
    write_json(args.json, {"benchmark": "llm_answers", "token_ms": args.token_ms,
                           "deadline_s": args.deadline, "results": results})


if __name__ == "__main__":
    main()
