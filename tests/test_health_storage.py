"""The health projector's storage on SQLite and PostgreSQL: migration, cursor, exactly-once."""

from __future__ import annotations

from alembic import command
from conftest import Backend
from sqlalchemy import inspect

from assistant.config import PACKAGE_ROOT
from assistant.health.model import load_health_config
from assistant.storage.db import alembic_config, migrate
from assistant.storage.health_repo import HealthStore

CONFIG = load_health_config(PACKAGE_ROOT / "assistant" / "data" / "health.yaml")
NEW_TABLES = {"projection_cursors", "customer_health", "health_history", "conversation_facts",
              "daily_counts", "knowledge_gaps", "webhook_deliveries"}


def test_migration_0003_downgrades_and_upgrades_with_its_cursor(backend: Backend) -> None:
    with backend.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    assert not NEW_TABLES & set(inspect(backend.engine).get_table_names())
    migrate(backend.engine)
    assert set(inspect(backend.engine).get_table_names()) >= NEW_TABLES
    assert HealthStore(backend.engine).cursor() == 0


def test_each_event_is_folded_once(backend: Backend) -> None:
    customer = backend.store.create_customer(external_id="c-1", email=None, name=None,
                                             plan=None, verified=True)
    conversation = backend.store.create_conversation(customer_id=customer.id, token_hash="h")
    for sentiment in ("negative", "negative", "positive"):
        backend.store.append_event(
            type="message.classified", conversation_id=conversation.id,
            customer_id=customer.id,
            payload={"intent": "billing_question", "sentiment": sentiment, "frustration": 0.4,
                     "churn_signals": []})
    health = HealthStore(backend.engine, settle_seconds=0)
    assert health.catch_up(config=CONFIG) == 3
    assert health.catch_up(config=CONFIG) == 0
    row = health.health_of(customer.id)
    assert row is not None
    # sentiment 1 -> 1 -> 1 + .3 x (0 - 1) = .7 (14 points); frustration .4 (6 points)
    assert row.score == 80 and row.band == "healthy"
    (fact,) = health.facts(since=conversation.created_at.replace(year=2000),
                           until=conversation.created_at.replace(year=2100))
    assert fact.customer_messages == 3 and fact.topic == "billing_question"
