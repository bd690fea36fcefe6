"""The FastAPI application factory.

``create_app(settings)`` builds the runtime once in the lifespan (database, Chroma,
embedder, engine) and keeps it on ``app.state``; routes read it through ``deps``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from assistant import __version__
from assistant.config import Settings, get_settings
from assistant.health.service import HealthWorker
from assistant.redaction import install_log_redaction
from assistant.runtime import Runtime, build_runtime
from assistant.web import console, widget
from assistant.web.api import agent, analytics, conversations, health, kb, privacy, webhooks
from assistant.web.audit import AuditMiddleware
from assistant.web.errors import install_error_handlers
from assistant.web.limits import BodySizeLimit, RejectNul
from assistant.web.openapi import install_security_schemes
from assistant.web.rate_limits import build_limiter
from assistant.web.security_headers import SecurityHeaders
from assistant.webhooks import WebhookSender, WebhookWorker

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024
WEBHOOK_POLL_SECONDS = 5.0  # due deliveries are picked up within this


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Pass ``runtime`` to reuse components (tests); else they are built here."""
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        # Turns are CPU-bound (embedding, BM25); AnyIO's default of 40 threads makes 40
        # turns share two cores and every one of them slow. With a model configured, turns
        # mostly wait for it: those waits get threads of their own.
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads + (
            settings.llm_concurrency if settings.llm_enabled else 0
        )
        app.state.runtime = runtime or build_runtime(settings)
        # The server folds new events into health in the background; tests that inject
        # a runtime fold on read instead, deterministically.
        workers: list[HealthWorker | WebhookWorker] = []
        sender: WebhookSender | None = None
        if owned:
            sender = WebhookSender.from_settings(app.state.runtime.webhooks, settings)
            workers = [
                HealthWorker(app.state.runtime.health,
                             interval_seconds=settings.health_poll_seconds),
                WebhookWorker(sender, interval_seconds=WEBHOOK_POLL_SECONDS),
            ]
        # A crash between a stored "a person is coming" and its queued hand-off is
        # repaired here (retries with the same Idempotency-Key repair it too).
        try:
            await to_thread.run_sync(app.state.runtime.conversations.repair_promised_handoffs)
        except Exception:
            logger.exception("could not repair promised hand-offs at start-up")
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            for worker in workers:
                worker.stop()
            if sender is not None:
                sender.close()
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="Support assistant",
        version=__version__,
        lifespan=lifespan,
        description="Customer chat API: answers from the knowledge base, hands off to people.",
    )
    app.state.rate_limiter = build_limiter(settings.redis_url)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RejectNul)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(SecurityHeaders)
    app.include_router(health.router)
    app.include_router(conversations.router)
    app.include_router(agent.router)
    app.include_router(webhooks.router)
    app.include_router(analytics.router)
    app.include_router(kb.router)
    app.include_router(privacy.router)
    app.include_router(console.router)
    app.include_router(widget.router)
    install_security_schemes(app)
    if settings.widget_origins:
        # Host sites may also call the customer API directly (their own UI); the widget
        # itself needs no CORS, its frame is same-origin with the API.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.widget_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID",
                           "Accept"],
            max_age=600,
        )
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used by ``assistant serve --workers N``)."""
    # Worker processes never run the CLI's main(): redact their logs here too.
    install_log_redaction()
    return create_app(get_settings())
