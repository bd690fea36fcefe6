"""The composition root: builds every long-lived component from settings, once.

The CLI and the web app's lifespan both call :func:`build_runtime`; tests inject a
hashing embedder and a temporary Chroma client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from chromadb.api import ClientAPI

from assistant.agent_auth import AgentAuth
from assistant.answer.extractive import ExtractiveAnswerer
from assistant.answer.llm import GenerativeAnswerer
from assistant.config import Settings
from assistant.conversations import ConversationService
from assistant.embeddings import Embedder
from assistant.engine import Engine
from assistant.events import EventBus
from assistant.handoff import HandoffService
from assistant.health.analytics import AnalyticsService
from assistant.health.model import load_health_config
from assistant.health.service import HealthService
from assistant.kb.components import KnowledgeBase, build_knowledge_base
from assistant.kb.ingest import IngestReport
from assistant.live import LiveFeed
from assistant.llm import ChatModel, build_chat_model
from assistant.policy import load_policy
from assistant.privacy import PrivacyService
from assistant.storage.budget_repo import TokenSpendStore
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore
from assistant.storage.health_repo import HealthStore
from assistant.storage.privacy_repo import PrivacyStore
from assistant.storage.repos import Store
from assistant.storage.webhook_repo import WebhookStore
from assistant.token_budget import TokenBudget
from assistant.understanding.components import build_classifier
from assistant.understanding.taxonomy import load_taxonomy


@dataclass
class Runtime:
    """Everything a running assistant holds for its lifetime."""

    settings: Settings
    store: Store
    handoffs: HandoffStore
    kb: KnowledgeBase
    bus: EventBus
    engine: Engine
    conversations: ConversationService
    handoff: HandoffService
    auth: AgentAuth
    live: LiveFeed
    health: HealthService
    analytics: AnalyticsService
    webhooks: WebhookStore
    privacy: PrivacyService
    chat_model: ChatModel | None = None

    def ingest(self, *, rebuild: bool = False) -> IngestReport:
        """Ingest the configured KB dir and make the result searchable at once."""
        report = self.kb.ingestor.ingest(self.settings.kb_dir, rebuild=rebuild)
        self.kb.retriever.refresh()
        return report

    def ensure_ingested(self) -> IngestReport | None:
        """Ingest the KB if the index is empty (first run); otherwise do nothing."""
        if self.kb.index.count() > 0:
            return None
        return self.ingest()

    def close(self) -> None:
        """Release database connections and the model client's threads."""
        self.store.dispose()
        if self.chat_model is not None:
            self.chat_model.close()


def build_runtime(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    chroma_client: ClientAPI | None = None,
) -> Runtime:
    """Wire storage (migrated), knowledge base, engine and services."""
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    store = Store(db)
    handoffs = HandoffStore(db)
    kb = build_knowledge_base(settings, embedder=embedder, client=chroma_client)
    bus = EventBus()
    taxonomy = load_taxonomy(settings.taxonomy_file)
    policy = load_policy(settings.policy_file, intents=taxonomy.labels)
    classifier = build_classifier(
        settings, taxonomy=taxonomy, policy=policy, embedder=kb.embedder
    )
    # One model client for answers and summaries: they share its circuit breaker.
    chat_model = build_chat_model(settings)
    extractive = ExtractiveAnswerer()
    engine = Engine(
        retriever=kb.retriever,
        answerer=extractive,
        classifier=classifier,
        policy=policy,
        retrieval_k=settings.retrieval_k,
        min_confidence=settings.answer_min_confidence,
        generator=(
            GenerativeAnswerer(model=chat_model, fallback=extractive) if chat_model else None
        ),
    )
    handoff_service = HandoffService(
        store=store,
        handoffs=handoffs,
        policy=policy,
        max_message_chars=settings.max_message_chars,
        summarizer=chat_model,
    )
    conversations = ConversationService(
        store=store,
        engine=engine,
        bus=bus,
        handoffs=handoff_service,
        widget_secret=settings.widget_secret.get_secret_value() if settings.widget_secret else None,
        max_message_chars=settings.max_message_chars,
        idempotency_stale_after=timedelta(seconds=settings.idempotency_stale_seconds),
        budget=TokenBudget(
            TokenSpendStore(db),
            per_day=settings.llm_tokens_per_identity_per_day,
            unreported_call_tokens=settings.llm_max_tokens,
        ),
    )
    health_store = HealthStore(db)
    health = HealthService(
        store=store, health=health_store, config=load_health_config(settings.health_file),
        webhook_urls=settings.webhook_urls,
    )
    analytics = AnalyticsService(health=health_store, service=health, embed=kb.embedder.embed)
    return Runtime(
        settings=settings,
        store=store,
        handoffs=handoffs,
        kb=kb,
        bus=bus,
        engine=engine,
        conversations=conversations,
        handoff=handoff_service,
        auth=AgentAuth(handoffs, session_hours=settings.session_hours,
                       redis_url=settings.redis_url),
        live=LiveFeed(store),
        chat_model=chat_model,
        health=health,
        analytics=analytics,
        webhooks=WebhookStore(db),
        privacy=PrivacyService(store=PrivacyStore(db), index=kb.index),
    )
