"""The OpenAI-compatible chat model, and the Jinja2 prompts it is given.

Configuration only: ``ASSISTANT_LLM_BASE_URL`` (OpenAI, Azure, vLLM, Ollama, a llama.cpp
server), ``ASSISTANT_LLM_MODEL``, ``OPENAI_API_KEY``, a timeout and a temperature. Every
prompt is a pair of templates in ``prompts/`` (``NAME.system.j2`` and ``NAME.user.j2``) that
KB writers may edit; customer and KB text reach them only as data inside delimiters.
Failures raise :class:`LLMError` so callers can fall back to the offline path.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from assistant.config import Settings
from assistant.errors import AssistantError

logger = logging.getLogger(__name__)


class LLMError(AssistantError):
    """The model endpoint failed, timed out or answered nothing usable."""


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


class ChatModel:
    """One chat-completions endpoint; each call has a deadline and no retries beyond one."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        temperature: float,
        prompts_dir: Path,
    ) -> None:
        from openai import OpenAI

        self.model = model
        self._temperature = temperature
        self._prompts_dir = prompts_dir
        # Local servers (Ollama, vLLM) accept any key; the client insists on one.
        self._client = OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=1
        )

    def ask(self, prompt: str, *, max_tokens: int = 300, **data: Any) -> str:
        """Render prompt ``prompt`` with ``data`` and return the model's text.

        Raises:
            LLMError: The call failed, timed out, or returned no text.
        """
        import openai

        system, user = render_prompt(self._prompts_dir, prompt, **data)
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": user}],
                temperature=self._temperature,
                max_tokens=max_tokens,
            )
        except openai.OpenAIError as exc:
            raise LLMError(f"{prompt}: the model call failed ({type(exc).__name__})") from exc
        text = (response.choices[0].message.content or "").strip() if response.choices else ""
        usage = response.usage
        logger.info(
            "llm %s model=%s %.0f ms tokens in=%s out=%s", prompt, self.model,
            (time.perf_counter() - started) * 1000,
            usage.prompt_tokens if usage else "?", usage.completion_tokens if usage else "?",
        )
        if not text:
            raise LLMError(f"{prompt}: the model returned no text")
        return text


def ping(model: ChatModel) -> float:
    """One tiny completion; the round trip in milliseconds.

    Raises:
        LLMError: The endpoint did not answer with text.
    """
    import openai

    started = time.perf_counter()
    try:
        response = model._client.chat.completions.create(
            model=model.model,
            messages=[{"role": "user", "content": "Reply with the word OK."}],
            max_tokens=5,
        )
    except openai.OpenAIError as exc:
        raise LLMError(f"{type(exc).__name__}: {exc}") from exc
    if not response.choices or not (response.choices[0].message.content or "").strip():
        raise LLMError("the endpoint answered without text")
    return (time.perf_counter() - started) * 1000


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
    )
