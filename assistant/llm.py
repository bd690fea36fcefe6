"""The OpenAI-compatible chat model, its prompts, and how its failures are contained.

Configuration only: ``ASSISTANT_LLM_BASE_URL`` (OpenAI, Azure, vLLM, Ollama, a llama.cpp
server), ``ASSISTANT_LLM_MODEL``, ``OPENAI_API_KEY``, a deadline, retries and a circuit
breaker. Calls go through ``langchain-openai`` (``ChatOpenAI``, which drives the ``openai``
client). Every prompt is a pair of templates in ``prompts/`` (``NAME.system.j2`` and
``NAME.user.j2``) that KB writers may edit; customer and KB text reach them only as data
inside delimiters.

A call never outlives its deadline: the HTTP work runs on a worker thread and the caller
stops waiting when the time is up, whether the endpoint hangs, trickles tokens or is gone.
Failures raise :class:`LLMError` with a ``kind`` so callers can fall back to the offline
path and log why; successes return a :class:`Completion` with token usage and latency.
"""

from __future__ import annotations

import logging
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from assistant.config import Settings
from assistant.errors import AssistantError

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({"timeout", "connection", "rate_limited", "server_error", "malformed"})
_BACKOFF_SECONDS = 0.25


class LLMError(AssistantError):
    """The model endpoint failed, timed out or answered nothing usable.

    ``kind`` is one of ``timeout``, ``connection``, ``rate_limited``, ``server_error``,
    ``malformed``, ``refused`` (a 4xx such as a wrong key or model), ``empty`` and
    ``circuit_open`` (not called: the endpoint failed too often just now).
    """

    def __init__(
        self, message: str, *, kind: str = "error", attempts: int = 0, latency_ms: float = 0.0
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts
        self.latency_ms = latency_ms


@dataclass(frozen=True)
class Completion:
    """One successful model call: the text, and what it cost."""

    text: str
    prompt: str
    model: str
    latency_ms: float
    attempts: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    streamed: bool = False

    def usage(self) -> dict[str, Any]:
        """The event payload that logs this call (``llm.called``)."""
        return {
            "prompt": self.prompt,
            "model": self.model,
            "outcome": "ok",
            "attempts": self.attempts,
            "latency_ms": round(self.latency_ms, 1),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "streamed": self.streamed,
        }


def failure_usage(prompt: str, model: str, exc: LLMError, *, streamed: bool) -> dict[str, Any]:
    """The ``llm.called`` payload of a failed call."""
    return {
        "prompt": prompt,
        "model": model,
        "outcome": exc.kind,
        "attempts": exc.attempts,
        "latency_ms": round(exc.latency_ms, 1),
        "prompt_tokens": None,
        "completion_tokens": None,
        "streamed": streamed,
    }


@lru_cache(maxsize=4)
def _prompts(directory: Path) -> Environment:
    # Plain text, not HTML: no autoescape; data is fenced in the templates instead.
    return Environment(  # noqa: S701
        loader=FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def render_prompt(directory: Path, name: str, **data: Any) -> tuple[str, str]:
    """The system and user messages of prompt ``name`` rendered with ``data``."""
    env = _prompts(directory)
    return (
        env.get_template(f"{name}.system.j2").render(**data).strip(),
        env.get_template(f"{name}.user.j2").render(**data).strip(),
    )


class CircuitBreaker:
    """Stops calling an endpoint that keeps failing, and tries it again after a pause.

    Closed: calls go through. After ``failures`` failed calls in a row it opens for
    ``cooldown`` seconds: calls are refused at once (customers get the offline answer
    without waiting for a dead endpoint). Then one trial call is let through (half-open):
    success closes the breaker, failure opens it again.
    """

    def __init__(
        self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial or self._clock() - self._opened_at >= self._cooldown:
                return "half_open"
            return "open"

    def allow(self) -> bool:
        """Whether a call may go out now (reserves the trial call when half-open)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self._clock() - self._opened_at < self._cooldown:
                return False
            self._trial = True
            return True

    def succeeded(self) -> None:
        """A call succeeded: close."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failed(self) -> None:
        """A call failed: count it, and open (again) at the threshold or after a trial."""
        with self._lock:
            self._failures += 1
            if self._trial or self._failures >= self._threshold:
                self._opened_at = self._clock()
            self._trial = False


class _Attempt:
    """One HTTP call on a worker thread, read by the caller until its deadline."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.cancelled = threading.Event()


class ChatModel:
    """One chat-completions endpoint with a deadline per call, retries and a breaker."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        temperature: float,
        prompts_dir: Path,
        max_retries: int = 2,
        max_tokens: int = 500,
        breaker: CircuitBreaker | None = None,
        product: str = "our product",
        concurrency: int = 16,
    ) -> None:
        from langchain_openai import ChatOpenAI

        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.breaker = breaker or CircuitBreaker(failures=5, cooldown=30.0)
        self.product = product
        # A random marker in system prompts: if it ever shows up in a reply, the reply
        # is blocked (the prompt holds nothing secret, but leaking it means obeying data).
        self.canary = f"canary-{secrets.token_hex(6)}"
        self._prompts_dir = prompts_dir
        # Retries are ours (bounded by the deadline, counted by the breaker), not the SDK's.
        # Local servers (Ollama, vLLM) accept any key; the client insists on one.
        self._chat = ChatOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            model=model,
            temperature=temperature,
            timeout=timeout,
            max_retries=0,
            stream_usage=True,
        )
        # Calls beyond ``concurrency`` wait for a worker, within their own deadline.
        self._workers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm")

    def render(self, prompt: str, **data: Any) -> tuple[str, str]:
        """The system and user messages of ``prompt`` (with the product name and canary)."""
        return render_prompt(
            self._prompts_dir, prompt, product=self.product, canary=self.canary, **data
        )

    def ask(self, prompt: str, *, max_tokens: int | None = None, **data: Any) -> Completion:
        """Render ``prompt`` with ``data`` and return the model's whole answer.

        Raises:
            LLMError: Every attempt failed, the deadline passed, or the breaker is open.
        """
        system, user = self.render(prompt, **data)
        return self.complete(prompt, system, user, max_tokens=max_tokens)

    def complete(
        self,
        prompt: str,
        system: str,
        user: str,
        *,
        max_tokens: int | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Send rendered messages; with ``on_text`` the answer streams into it piece by piece.

        Retries (with backoff, honouring ``Retry-After``) only while nothing has been
        streamed and the deadline leaves room.

        Raises:
            LLMError: As :meth:`ask`.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        streamed = [False]

        def forward(piece: str) -> None:
            streamed[0] = True
            if on_text is not None:
                on_text(piece)

        attempts = 0
        while True:
            if not self.breaker.allow():
                raise LLMError(f"{prompt}: the model endpoint is failing; not called for now",
                               kind="circuit_open", attempts=attempts)
            attempts += 1
            try:
                text, usage = self._attempt(
                    system, user, deadline=deadline, max_tokens=max_tokens or self.max_tokens,
                    stream=on_text is not None, forward=forward,
                )
                if not text.strip():
                    raise _Failed("empty", "the model returned no text")
            except _Failed as failure:
                pause = _backoff(attempts, failure.retry_after)
                room = deadline - time.monotonic()
                if (failure.kind in RETRYABLE and not streamed[0]
                        and attempts <= self.max_retries and room > pause + 0.05):
                    logger.info("llm %s attempt %d failed (%s); retrying in %.2f s",
                                prompt, attempts, failure.kind, pause)
                    time.sleep(pause)
                    continue
                self.breaker.failed()
                latency = (time.perf_counter() - started) * 1000
                logger.warning("llm %s failed after %d attempt(s): %s", prompt, attempts, failure)
                raise LLMError(f"{prompt}: {failure}", kind=failure.kind, attempts=attempts,
                               latency_ms=latency) from failure.__cause__
            self.breaker.succeeded()
            completion = Completion(
                text=text.strip(), prompt=prompt, model=self.model,
                latency_ms=(time.perf_counter() - started) * 1000, attempts=attempts,
                prompt_tokens=usage.get("input_tokens"),
                completion_tokens=usage.get("output_tokens"), streamed=on_text is not None,
            )
            logger.info("llm %s model=%s %.0f ms attempts=%d tokens in=%s out=%s", prompt,
                        self.model, completion.latency_ms, attempts, completion.prompt_tokens,
                        completion.completion_tokens)
            return completion

    def _attempt(
        self,
        system: str,
        user: str,
        *,
        deadline: float,
        max_tokens: int,
        stream: bool,
        forward: Callable[[str], None],
    ) -> tuple[str, dict[str, Any]]:
        attempt = _Attempt()
        messages = [("system", system), ("user", user)]
        self._workers.submit(self._produce, attempt, messages, max_tokens, stream)
        parts: list[str] = []
        usage: dict[str, Any] = {}
        try:
            while True:
                room = deadline - time.monotonic()
                if room <= 0:
                    raise _Failed("timeout", "no complete answer before the deadline")
                try:
                    kind, value = attempt.items.get(timeout=room)
                except queue.Empty:
                    raise _Failed("timeout", "no complete answer before the deadline") from None
                if kind == "text":
                    parts.append(value)
                    if stream and value:
                        forward(value)
                elif kind == "usage":
                    usage = value
                elif kind == "error":
                    raise _classify(value) from value
                else:
                    return "".join(parts), usage
        finally:
            # An abandoned worker stops at its next chunk and closes the connection.
            attempt.cancelled.set()

    def _produce(
        self, attempt: _Attempt, messages: list[tuple[str, str]], max_tokens: int, stream: bool
    ) -> None:
        put = attempt.items.put
        try:
            if stream:
                for chunk in self._chat.stream(messages, max_completion_tokens=max_tokens):
                    if attempt.cancelled.is_set():
                        return
                    if chunk.usage_metadata:
                        put(("usage", dict(chunk.usage_metadata)))
                    if isinstance(chunk.content, str) and chunk.content:
                        put(("text", chunk.content))
            else:
                message = self._chat.invoke(messages, max_completion_tokens=max_tokens)
                if message.usage_metadata:
                    put(("usage", dict(message.usage_metadata)))
                content = message.content
                put(("text", content if isinstance(content, str) else ""))
            put(("end", None))
        except Exception as exc:  # every failure goes back to the waiting caller, classified
            put(("error", exc))

    def close(self) -> None:
        """Stop the worker threads (pending calls are abandoned)."""
        self._workers.shutdown(wait=False, cancel_futures=True)


class _Failed(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


def _classify(exc: BaseException) -> _Failed:
    """Name a failure so the caller knows whether to retry and what to log."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return _Failed("timeout", "the endpoint did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return _Failed("connection", "the endpoint could not be reached")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return _Failed("rate_limited", "the endpoint is rate limiting (429)",
                           _retry_after(exc.response.headers.get("retry-after")))
        if status >= 500:
            return _Failed("server_error", f"the endpoint failed ({status})")
        return _Failed("refused", f"the endpoint refused the call ({status}): check the "
                       "model name, key and URL")
    return _Failed("malformed", f"the endpoint's answer could not be read ({type(exc).__name__})")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return max(0.0, retry_after)
    return _BACKOFF_SECONDS * 2 ** (attempt - 1) * (0.5 + random.random() / 2)  # noqa: S311


def ping(model: ChatModel) -> float:
    """One tiny completion; the round trip in milliseconds.

    Raises:
        LLMError: The endpoint did not answer with text.
    """
    completion = model.complete(
        "ping", "You are a health check.", "Reply with the word OK.", max_tokens=5
    )
    return completion.latency_ms


def build_chat_model(settings: Settings) -> ChatModel | None:
    """The configured chat model, or ``None`` when none is configured (offline)."""
    if not settings.llm_base_url:
        return None
    return ChatModel(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        timeout=settings.llm_timeout_seconds,
        temperature=settings.llm_temperature,
        prompts_dir=settings.prompts_dir,
        max_retries=settings.llm_max_retries,
        max_tokens=settings.llm_max_tokens,
        breaker=CircuitBreaker(
            failures=settings.llm_circuit_failures,
            cooldown=settings.llm_circuit_cooldown_seconds,
        ),
        product=settings.product_name,
        concurrency=settings.llm_concurrency,
    )
