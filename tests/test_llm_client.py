"""The chat-model client against a real OpenAI-protocol server on loopback: usage, streaming,
retries, deadlines, and the circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Scripted, fake_openai

from assistant.config import PACKAGE_ROOT
from assistant.llm import ChatModel, CircuitBreaker, LLMError, ping


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        yield fake


def model(url: str, *, timeout: float = 5.0, retries: int = 2, failures: int = 5) -> ChatModel:
    return ChatModel(
        base_url=url, model="test-model", api_key=None, timeout=timeout, temperature=0.0,
        prompts_dir=PACKAGE_ROOT / "prompts", max_retries=retries,
        breaker=CircuitBreaker(failures=failures, cooldown=60.0),
    )


def test_a_completion_reports_its_tokens_and_attempts(llm: FakeOpenAI) -> None:
    llm.replies = [Scripted(text="Hello there.", prompt_tokens=42, completion_tokens=3)]
    done = model(llm.url).complete("ping", "system text", "user text")
    assert (done.text, done.prompt_tokens, done.completion_tokens, done.attempts) == (
        "Hello there.", 42, 3, 1)
    assert done.usage()["outcome"] == "ok" and done.usage()["model"] == "test-model"
    sent = llm.requests[0]
    assert sent["messages"] == [{"role": "system", "content": "system text"},
                                {"role": "user", "content": "user text"}]
    assert sent["model"] == "test-model" and not sent.get("stream")


def test_streaming_hands_over_each_piece_and_counts_usage(llm: FakeOpenAI) -> None:
    llm.replies = [Scripted(text="One two three four.", completion_tokens=4)]
    pieces: list[str] = []
    done = model(llm.url).complete("ping", "s", "u", on_text=pieces.append)
    assert pieces == ["One ", "two ", "three ", "four."]
    assert done.text == "One two three four." and done.streamed
    assert done.completion_tokens == 4  # the usage chunk was asked for and read
    assert llm.requests[0]["stream"] is True
    assert llm.requests[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("failure", [
    Scripted(status=500), Scripted(status=503), Scripted(status=429, retry_after="0"),
    Scripted(malformed=True),
])
def test_transient_failures_are_retried(llm: FakeOpenAI, failure: Scripted) -> None:
    llm.replies = [failure, "Recovered."]
    done = model(llm.url).complete("ping", "s", "u")
    assert done.text == "Recovered." and done.attempts == 2 and len(llm.requests) == 2


def test_a_refusal_is_not_retried(llm: FakeOpenAI) -> None:
    llm.replies = [Scripted(status=401), "never sent"]
    with pytest.raises(LLMError) as failed:
        model(llm.url).complete("ping", "s", "u")
    assert failed.value.kind == "refused" and "model name, key and URL" in str(failed.value)
    assert len(llm.requests) == 1


def test_retries_stop_after_the_configured_number(llm: FakeOpenAI) -> None:
    llm.status = 500
    with pytest.raises(LLMError) as failed:
        model(llm.url, retries=2).complete("ping", "s", "u")
    assert failed.value.kind == "server_error" and failed.value.attempts == 3
    assert len(llm.requests) == 3


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("script", [Scripted(hang=60), Scripted(text="a " * 200, trickle=0.3)])
def test_a_hanging_or_trickling_endpoint_ends_at_the_deadline(
    llm: FakeOpenAI, script: Scripted, stream: bool
) -> None:
    llm.replies = [script]
    started = time.monotonic()
    with pytest.raises(LLMError) as failed:
        model(llm.url, timeout=1.0).complete(
            "ping", "s", "u", on_text=(lambda _: None) if stream else None
        )
    # The endpoint would take a minute; the call gives up at its 1 s deadline.
    assert failed.value.kind == "timeout"
    assert time.monotonic() - started < 30


def test_a_dead_endpoint_is_a_connection_failure() -> None:
    with pytest.raises(LLMError) as failed:
        model("http://127.0.0.1:9/v1", retries=1).complete("ping", "s", "u")
    assert failed.value.kind == "connection" and failed.value.attempts == 2


def test_the_breaker_opens_after_repeated_failures_and_stops_calling(llm: FakeOpenAI) -> None:
    llm.status = 500
    chat = model(llm.url, retries=0, failures=2)
    for _ in range(2):
        with pytest.raises(LLMError):
            chat.complete("ping", "s", "u")
    assert chat.breaker.state == "open"
    with pytest.raises(LLMError) as refused:
        chat.complete("ping", "s", "u")
    assert refused.value.kind == "circuit_open" and len(llm.requests) == 2


def test_the_breaker_lets_one_trial_through_after_its_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=10.0, clock=lambda: now[0])
    breaker.failed()
    assert breaker.allow()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failed()  # the trial failed: open again for a full cooldown
    assert not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_ping_reports_the_round_trip(llm: FakeOpenAI) -> None:
    llm.replies = ["OK"]
    assert ping(model(llm.url)) >= 0


def test_prompts_render_with_the_product_and_canary(tmp_path: Path) -> None:
    chat = model("http://127.0.0.1:9/v1")
    system, _ = chat.render("answer", question="q", history=[], sources=[])
    assert "support assistant of our product" in system  # the default product name
    assert chat.canary in system and chat.canary.startswith("canary-")
