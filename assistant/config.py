"""Settings, read once from the environment (prefix ``ASSISTANT_``) and ``.env``.

Build them with :func:`get_settings` and pass the object down; no other module reads
``os.environ``. Tests construct :class:`Settings` directly.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every tunable of the assistant. Each field is documented in the README."""

    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(Path("./data"), description="SQLite, Chroma and caches live here.")
    kb_dir: Path = Field(Path("./knowledge_base"), description="The articles to ingest.")
    database_url: str | None = Field(
        None, description="Any SQLAlchemy URL; default is a SQLite file in the data dir."
    )
    chroma_url: str | None = Field(
        None, description="http://host:port of a Chroma server; unset means embedded Chroma."
    )
    chroma_collection: str = Field("kb_chunks", description="Chroma collection holding chunks.")

    embedding_backend: Literal["local", "openai"] = Field(
        "local", description="local ONNX MiniLM, or an OpenAI-compatible embeddings endpoint."
    )
    embedding_model: str = Field(
        "text-embedding-3-small", description="Model name for the openai embedding backend."
    )
    embedding_base_url: str | None = Field(
        None, description="Embeddings endpoint; defaults to the LLM base URL."
    )
    embed_threads: int = Field(0, ge=0, description="ONNX intra-op threads; 0 lets ORT decide.")
    embed_batch_size: int = Field(32, ge=1, le=512, description="Texts per embedding batch.")

    llm_base_url: str | None = Field(None, description="OpenAI-compatible chat endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model name.")
    llm_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Deadline of one model call, retries included, before falling back.",
    )
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature.")
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed model call, within its deadline."
    )
    llm_max_tokens: int = Field(500, ge=16, le=8000, description="Longest answer, in tokens.")
    llm_circuit_failures: int = Field(
        5, ge=1, le=1000, description="Failed model calls in a row that open the breaker."
    )
    llm_circuit_cooldown_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long an open breaker skips the model."
    )
    llm_concurrency: int = Field(
        16,
        ge=1,
        le=256,
        description="Model calls in flight per server process (threads that mostly wait).",
    )
    llm_tokens_per_identity_per_day: int = Field(
        200_000,
        ge=0,
        description="Model tokens one customer (or one visitor's address) may spend per UTC "
        "day; past it they get the offline answer. 0 turns the budget off.",
    )
    product_name: str = Field(
        "Tallyboard", min_length=1, max_length=80, description="Product named in prompts."
    )
    prompts_dir: Path = Field(
        PACKAGE_ROOT / "prompts", description="Jinja2 templates of every model prompt."
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "ASSISTANT_OPENAI_API_KEY"),
        description="Key for the OpenAI-compatible endpoints.",
    )

    chunk_size: int = Field(1200, ge=200, le=8000, description="Max characters per chunk.")
    chunk_overlap: int = Field(150, ge=0, le=2000, description="Characters shared by chunks.")
    exact_search_max_chunks: int = Field(
        50_000,
        ge=0,
        description="Up to this many chunks, dense search is exact in memory; above, Chroma HNSW.",
    )
    policy_file: Path | None = Field(
        None, description="Escalation policy YAML; unset means the shipped default policy."
    )
    taxonomy_file: Path | None = Field(
        None, description="Intent taxonomy YAML; unset means the shipped taxonomy."
    )
    intent_model_dir: Path | None = Field(
        None,
        description="Intent model trained by `assistant intents train`; unset: taxonomy model.",
    )
    retrieval_k: int = Field(5, ge=1, le=50, description="Passages returned per query.")
    answer_min_confidence: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Below this retrieval confidence the bot abstains and offers a person.",
    )
    max_message_chars: int = Field(
        4000, ge=1, le=100_000, description="Longest customer message accepted."
    )
    idempotency_stale_seconds: int = Field(
        60, ge=1, description="A pending idempotent request older than this may be resumed."
    )

    retention_messages_days: int | None = Field(
        None, ge=1, description="`assistant retention run` deletes message text older than "
        "this many days (messages, gap questions, hand-off evidence); unset keeps it.",
    )
    retention_events_days: int | None = Field(
        None, ge=1, description="`assistant retention run` deletes interaction events (once "
        "folded into health and metrics) and finished webhook deliveries older than this.",
    )
    retention_customers_days: int | None = Field(
        None, ge=1, description="`assistant retention run` erases customers (everything about "
        "them, as `assistant customers erase` does) with no conversation activity for this "
        "many days; unset keeps them.",
    )
    retention_audit_days: int | None = Field(
        None, ge=1, description="`assistant retention run` deletes audit entries older than "
        "this; unset keeps the audit log forever.",
    )
    kb_refresh_seconds: float = Field(
        5.0, ge=0.0, description="How often a server checks whether another process "
        "ingested the KB (0: on every search).",
    )

    widget_secret: SecretStr | None = Field(
        None, description="HMAC secret for identity verification of signed-in customers."
    )
    admin_token: SecretStr | None = Field(None, description="Bootstrap admin credential.")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token a Prometheus scraper sends to GET /metrics."
    )
    host: str = Field("127.0.0.1", description="Address `assistant serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `assistant serve` binds.")
    request_threads: int = Field(
        4,
        ge=1,
        le=200,
        description="Threads per server process running turns; more only queue on the CPU.",
    )

    live_poll_seconds: float = Field(
        0.25,
        gt=0.0,
        le=10.0,
        description="How often an open event stream checks the store for new events.",
    )
    session_hours: float = Field(
        12.0, gt=0.0, le=24 * 30, description="How long an agent's console sign-in lasts."
    )
    secure_cookies: bool = Field(
        False, description="Mark the console session cookie Secure (set it behind HTTPS)."
    )

    widget_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Sites allowed to embed the widget and call the API from the browser "
        "(comma-separated origins like https://www.example.com; '*' for any). The server's "
        "own origin (the /demo page) is always allowed.",
    )
    public_url: str | None = Field(
        None,
        description="This server's public origin (https://support.example.com). The widget "
        "frame and /demo use it as their own origin instead of the request's Host header.",
    )
    widget_dir: Path = Field(
        PACKAGE_ROOT / "widget", description="Where the widget's JS, CSS and pages are."
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db shared by every server process for rate "
        "limits and sign-in lockouts; unset means each process counts its own.",
    )
    rate_limit_per_minute: int = Field(
        30, ge=1, le=100_000, description="Customer messages per conversation per minute."
    )
    ip_rate_limit_per_minute: int = Field(
        120,
        ge=1,
        le=1_000_000,
        description="Customer requests (new conversations and messages) per client IP per minute.",
    )

    health_file: Path = Field(
        PACKAGE_ROOT / "assistant" / "data" / "health.yaml",
        description="Customer health weights, bands and decay (YAML).",
    )
    health_poll_seconds: float = Field(
        2.0, gt=0, le=3600, description="How often the server folds new events into health."
    )
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Where outbound signals are POSTed (comma-separated http(s) URLs).",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key that signs every webhook delivery."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=50, description="Delivery attempts (with backoff) before a webhook fails."
    )

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for url in value:
                if not re.match(r"^https?://[^\s/]+", str(url)):
                    raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _signed_webhooks(self) -> Settings:
        # Signals carry customer data: never configure receivers that cannot verify them.
        if self.webhook_urls and self.webhook_secret is None:
            raise ValueError(
                "ASSISTANT_WEBHOOK_URLS is set but ASSISTANT_WEBHOOK_SECRET is not: every "
                "delivery is signed, set a secret (e.g. `openssl rand -hex 32`)"
            )
        return self

    @field_validator("widget_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for origin in value:
                if origin != "*" and not _ORIGIN.match(str(origin)):
                    raise ValueError(
                        f"{origin!r} is not an origin: use scheme://host[:port], no path"
                    )
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not _ORIGIN.match(value):
            raise ValueError(f"{value!r} is not an origin: use scheme://host[:port], no path")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'assistant.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        """Where embedded Chroma persists."""
        return self.data_dir / "chroma"

    @property
    def llm_enabled(self) -> bool:
        """True when an OpenAI-compatible chat endpoint is configured."""
        return bool(self.llm_base_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def export_to_environment(settings: Settings, *names: str) -> None:
    """Put the named settings into ``os.environ`` for child processes to read back.

    ``assistant serve --workers N`` starts processes that build their settings from the
    environment; options given on the command line (``--kb``) must reach them this way.
    """
    for name in names:
        os.environ[f"ASSISTANT_{name.upper()}"] = str(getattr(settings, name))
