"""Erasure, retention windows and the audit log (issue 9, SECURITY.md #22 and #23).

Erasure is checked the hard way: a unique marker goes into a customer's messages, name,
email, hand-off, CSAT comment and webhook payload; after the erasure it must appear in no
table of the database, not in Chroma, not in an export, and (SQLite) not in the raw bytes
of the database file after the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, Backend, TestAgent, auth, make_agent
from fastapi.testclient import TestClient
from pydantic import SecretStr
from servers import database_url
from sqlalchemy import MetaData, select, text, update
from typer.testing import CliRunner

from assistant.cli import app as cli
from assistant.config import Settings, get_settings
from assistant.identity import user_hash
from assistant.privacy import subject_hash
from assistant.runtime import Runtime, build_runtime
from assistant.storage.tables import (
    Conversation,
    Customer,
    Event,
    KnowledgeGap,
    Message,
    utcnow,
)
from assistant.web.app import create_app

MARKER = "Zebracorn7731"
WIDGET_SECRET = "privacy-test-secret"
ADMIN = auth(ADMIN_TOKEN)


@pytest.fixture
def db_runtime(backend: Backend, settings: Settings, embedder, chroma_client) -> Iterator[Runtime]:
    """The test runtime on the parametrized backend (SQLite file, or a PostgreSQL schema)."""
    url = database_url(backend.url, backend.connect_args)
    update = {"database_url": url, "widget_secret": SecretStr(WIDGET_SECRET)}
    rt = build_runtime(settings.model_copy(update=update), embedder=embedder,
                       chroma_client=chroma_client)
    rt.ingest()
    yield rt
    rt.close()


@pytest.fixture
def api(db_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=db_runtime)) as test_client:
        yield test_client


def start(api: TestClient, customer_id: str, marker: str) -> dict[str, str]:
    """A conversation of a named customer whose every field carries ``marker``."""
    body = {"customer": {"id": customer_id, "email": f"{marker.lower()}@example.com",
                         "name": f"Pat {marker}"},
            "user_hash": user_hash(WIDGET_SECRET, customer_id)}
    chat = api.post("/v1/conversations", json=body).json()
    for n, question in enumerate(["How do I reset my password?",
                                  f"My account {marker} cannot log in, this is the third time"]):
        response = api.post(f"/v1/conversations/{chat['id']}/messages",
                            json={"text": question}, headers={**auth(chat["token"]),
                                                              "Idempotency-Key": f"k{n}"})
        assert response.status_code in (200, 201), response.text
    return chat


def hand_over(api: TestClient, chat: dict[str, str], agent: TestAgent, marker: str) -> None:
    """Hand off, claim, reply, resolve and rate: every table gets a row about it."""
    assert api.post(f"/v1/conversations/{chat['id']}/handoff",
                    headers=auth(chat["token"])).status_code == 200
    queue = api.get("/v1/agent/queue", headers=auth(agent.token)).json()["items"]
    (item,) = [i for i in queue if i["handoff"]["conversation_id"] == chat["id"]]
    assert api.post(f"/v1/agent/handoffs/{item['handoff']['id']}/claim",
                    headers=auth(agent.token)).status_code == 200
    assert api.post(f"/v1/agent/conversations/{chat['id']}/messages", headers=auth(agent.token),
                    json={"text": f"Hi {marker}, fixed it"}).status_code == 201
    assert api.post(f"/v1/agent/conversations/{chat['id']}/resolve", headers=auth(agent.token),
                    json={"resolution_code": "answered"}).status_code == 200
    assert api.post(f"/v1/conversations/{chat['id']}/csat", headers=auth(chat["token"]),
                    json={"score": 2, "comment": f"{marker} was slow"}).status_code in (200, 201)


def rows_with(runtime: Runtime, needle: str) -> list[str]:
    """Every ``table: row`` of the database whose text contains ``needle``."""
    engine = runtime.store._engine
    metadata = MetaData()
    metadata.reflect(engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                if needle.lower() in str(tuple(row)).lower():
                    found.append(f"{table.name}: {tuple(row)}")
    return found


def chroma_with(runtime: Runtime, needle: str) -> int:
    data = runtime.kb.index._collection.get(include=["documents", "metadatas"])
    return sum(needle.lower() in f"{d} {m}".lower()
               for d, m in zip(data["documents"] or [], data["metadatas"] or [], strict=True))


@pytest.fixture
def two_customers(api: TestClient, db_runtime: Runtime) -> dict[str, dict[str, str]]:
    agent = make_agent(db_runtime)
    erased = start(api, "cust-erase", MARKER)
    hand_over(api, erased, agent, MARKER)
    kept = start(api, "cust-keep", "Keepsake4410")
    # A pending webhook about the erased customer (as the health worker would queue one).
    customer = db_runtime.store.customer_by_external_id("cust-erase")
    assert customer is not None
    db_runtime.webhooks.enqueue("customer.at_risk", "https://hooks.example/x",
                                {"customer_id": customer.id, "name": f"Pat {MARKER}"})
    db_runtime.health.catch_up()
    assert rows_with(db_runtime, MARKER), "the set-up did not store the marker"
    return {"erased": erased, "kept": kept}


def test_erasure_leaves_no_trace_and_an_audit_entry_without_personal_data(
    api: TestClient, db_runtime: Runtime, two_customers: dict[str, dict[str, str]],
    backend: Backend,
) -> None:
    internal = db_runtime.store.customer_by_external_id("cust-erase")
    assert internal is not None
    response = api.delete("/v1/customers/cust-erase", headers=ADMIN)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["removed"]["messages"] >= 5 and report["removed"]["customers"] == 1
    assert report["removed"]["webhook_deliveries"] == 1
    assert report["subject"] == subject_hash("cust-erase")

    assert rows_with(db_runtime, MARKER) == []
    assert rows_with(db_runtime, internal.id) == []
    assert chroma_with(db_runtime, MARKER) == 0
    if backend.name == "sqlite":
        database = Path(db_runtime.settings.resolved_database_url.removeprefix("sqlite:///"))
        for path in (database, database.with_name(database.name + "-wal")):
            if path.exists():
                assert MARKER.encode() not in path.read_bytes(), path
    # The conversation, its token and the customer's health are gone.
    chat = two_customers["erased"]
    assert api.get(f"/v1/conversations/{chat['id']}/messages",
                   headers=auth(chat["token"])).status_code in (401, 404)
    assert api.get("/v1/customers/cust-erase/health", headers=ADMIN).status_code == 404
    # The other customer is untouched.
    kept = two_customers["kept"]
    messages = api.get(f"/v1/conversations/{kept['id']}/messages", headers=auth(kept["token"]))
    assert messages.status_code == 200 and len(messages.json()["messages"]) >= 4
    # The audit entry proves it happened, and names nobody.
    entries = api.get("/v1/audit", params={"action": "customer.erase"}, headers=ADMIN).json()
    (entry,) = entries["entries"]
    assert entry["target"] == f"sha256:{subject_hash('cust-erase')}"
    assert entry["actor"] == "admin-token" and entry["outcome"] == "ok"
    dumped = json.dumps(entry).lower()
    assert MARKER.lower() not in dumped and "cust-erase" not in dumped
    assert internal.id not in dumped


def test_erasing_an_unknown_customer_is_a_404_and_is_audited(api: TestClient) -> None:
    response = api.delete("/v1/customers/nobody-here", headers=ADMIN)
    assert response.status_code == 404
    (entry,) = api.get("/v1/audit", params={"action": "customer.erase"},
                       headers=ADMIN).json()["entries"]
    assert entry["outcome"] == "failed" and "nobody-here" not in json.dumps(entry)


def test_agents_cannot_erase(api: TestClient, db_runtime: Runtime,
                             two_customers: dict[str, dict[str, str]]) -> None:
    agent = make_agent(db_runtime)
    assert api.delete("/v1/customers/cust-erase", headers=auth(agent.token)).status_code == 403
    assert rows_with(db_runtime, MARKER)
    denied = api.get("/v1/audit", params={"actor": f"agent:{agent.id}"}, headers=ADMIN).json()
    assert [e["outcome"] for e in denied["entries"]] == ["denied"]


def test_staff_actions_are_audited_without_their_text(
    api: TestClient, db_runtime: Runtime, two_customers: dict[str, dict[str, str]]
) -> None:
    entries = api.get("/v1/audit", params={"limit": 1000}, headers=ADMIN).json()["entries"]
    actions = [e["action"] for e in entries if e["actor"].startswith("agent:")]
    assert actions == [
        "POST /v1/agent/handoffs/{handoff_id}/claim",
        "POST /v1/agent/conversations/{conversation_id}/messages",
        "POST /v1/agent/conversations/{conversation_id}/resolve",
    ]
    assert all(e["outcome"] == "ok" and e["target"] for e in entries)
    assert MARKER.lower() not in json.dumps(entries).lower()
    # Customers' own requests are not staff actions.
    assert not [e for e in entries if "/v1/conversations/" in e["action"]]


def backdate(runtime: Runtime, conversation_id: str, days: int) -> None:
    then = utcnow() - timedelta(days=days)
    with runtime.store._engine.begin() as conn:
        conn.execute(update(Message).where(Message.conversation_id == conversation_id)
                     .values(created_at=then))
        conn.execute(update(Event).where(Event.conversation_id == conversation_id)
                     .values(created_at=then))
        conn.execute(update(KnowledgeGap).where(KnowledgeGap.conversation_id == conversation_id)
                     .values(created_at=then))


def message_ages(runtime: Runtime) -> list[float]:
    with runtime.store._engine.connect() as conn:
        stamps = [r[0] for r in conn.execute(select(Message.created_at))]
    return [(utcnow() - s).total_seconds() / 86400 for s in stamps]


def test_retention_deletes_what_is_older_than_the_window_and_keeps_aggregates(
    api: TestClient, db_runtime: Runtime, two_customers: dict[str, dict[str, str]]
) -> None:
    old = two_customers["erased"]["id"]
    backdate(db_runtime, old, 40)
    db_runtime.health.catch_up()
    with db_runtime.store._engine.connect() as conn:
        daily_before = conn.execute(text("SELECT COUNT(*), SUM(count) FROM daily_counts")).one()
    settings = db_runtime.settings.model_copy(update={"retention_messages_days": 30,
                                                      "retention_events_days": 30})
    dry = db_runtime.privacy.apply_retention(settings, actor="test", dry_run=True)
    assert dry.removed["messages"] >= 5
    assert max(message_ages(db_runtime)) > 39  # a dry run deletes nothing
    report = db_runtime.privacy.apply_retention(settings, actor="test")
    assert report.removed == dry.removed
    ages = message_ages(db_runtime)
    assert ages and max(ages) < 30
    # What is left of the marker is the customer record itself (erasure's job), and
    # the pending webhook (its delivery log is not past the window yet).
    left = {r.split(":")[0] for r in rows_with(db_runtime, MARKER)}
    assert left <= {"customers", "webhook_deliveries"}, rows_with(db_runtime, MARKER)
    with db_runtime.store._engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*), SUM(count) FROM daily_counts")).one() \
            == daily_before
    # The customer who chatted today keeps their conversation.
    kept = two_customers["kept"]
    assert len(api.get(f"/v1/conversations/{kept['id']}/messages",
                       headers=auth(kept["token"])).json()["messages"]) >= 4


def backdate_customer(runtime: Runtime, external_id: str, days: int) -> str:
    """Make a customer and every conversation of theirs look ``days`` old; their id."""
    customer = runtime.store.customer_by_external_id(external_id)
    assert customer is not None
    then = utcnow() - timedelta(days=days)
    with runtime.store._engine.begin() as conn:
        conn.execute(update(Customer).where(Customer.id == customer.id).values(created_at=then))
        conn.execute(update(Conversation).where(Conversation.customer_id == customer.id)
                     .values(created_at=then, updated_at=then))
    return customer.id


def test_customers_inactive_past_the_window_are_erased_whole(
    api: TestClient, db_runtime: Runtime, two_customers: dict[str, dict[str, str]]
) -> None:
    gone = backdate_customer(db_runtime, "cust-erase", 400)
    backdate_customer(db_runtime, "cust-keep", 100)  # inactive, but inside the window
    settings = db_runtime.settings.model_copy(update={"retention_customers_days": 365})
    dry = db_runtime.privacy.apply_retention(settings, actor="test", dry_run=True)
    assert dry.removed["inactive_customers"] == 1
    assert rows_with(db_runtime, MARKER), "a dry run erases no one"

    report = db_runtime.privacy.apply_retention(settings, actor="test")
    assert report.removed["inactive_customers"] == 1
    assert report.cutoffs["customers_inactive_before"] is not None
    assert rows_with(db_runtime, MARKER) == [] and rows_with(db_runtime, gone) == []
    kept = two_customers["kept"]
    assert api.get(f"/v1/conversations/{kept['id']}/messages",
                   headers=auth(kept["token"])).status_code == 200
    assert db_runtime.store.customer_by_external_id("cust-keep") is not None
    (entry,) = db_runtime.privacy.audit_log(action="retention.run")[-1:]
    assert entry.details["removed"]["inactive_customers"] == 1
    assert MARKER.lower() not in json.dumps(entry.as_dict(), default=str).lower()


def test_retention_keeps_events_the_projector_has_not_folded(db_runtime: Runtime,
                                                             api: TestClient) -> None:
    chat = start(api, "cust-late", "Lateblue")
    backdate(db_runtime, chat["id"], 40)  # old, but not folded yet
    settings = db_runtime.settings.model_copy(update={"retention_events_days": 30})
    report = db_runtime.privacy.apply_retention(settings, actor="test")
    assert report.removed["events"] == 0
    db_runtime.health.catch_up()
    assert db_runtime.privacy.apply_retention(settings, actor="test").removed["events"] > 0


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, db_runtime: Runtime, tmp_path: Path) -> Iterator[None]:
    """Point the CLI at the runtime's database (and a Chroma collection of its own: the
    CLI runs the real embedder, the test runtime a hashing one)."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(db_runtime.settings.data_dir))
    monkeypatch.setenv("ASSISTANT_DATABASE_URL", db_runtime.settings.resolved_database_url)
    monkeypatch.setenv("ASSISTANT_CHROMA_COLLECTION", "cli_chunks")
    monkeypatch.setenv("ASSISTANT_RETENTION_MESSAGES_DAYS", "30")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("cli_env")
def test_cli_erases_runs_retention_and_lists_the_audit_log(
    db_runtime: Runtime, two_customers: dict[str, dict[str, str]]
) -> None:
    runner = CliRunner()
    erased = runner.invoke(cli, ["customers", "erase", "cust-erase", "--yes", "--json"])
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["removed"]["customers"] == 1
    assert rows_with(db_runtime, MARKER) == []
    missing = runner.invoke(cli, ["customers", "erase", "cust-erase", "--yes"])
    assert missing.exit_code == 2
    backdate(db_runtime, two_customers["kept"]["id"], 31)
    retention = runner.invoke(cli, ["retention", "run", "--json"])
    assert retention.exit_code == 0, retention.output
    assert json.loads(retention.stdout)["removed"]["messages"] >= 4
    listed = runner.invoke(cli, ["audit", "list", "--json"])
    actions = [e["action"] for e in json.loads(listed.stdout)]
    assert actions.count("customer.erase") == 2 and "retention.run" in actions
    assert all(e["actor"].startswith("cli") for e in json.loads(listed.stdout)
               if e["action"] in ("customer.erase", "retention.run"))


@pytest.mark.usefixtures("cli_env")
def test_cli_retention_erases_inactive_customers(
    db_runtime: Runtime, two_customers: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASSISTANT_RETENTION_CUSTOMERS_DAYS", "365")
    get_settings.cache_clear()
    backdate_customer(db_runtime, "cust-erase", 400)
    runner = CliRunner()
    dry = runner.invoke(cli, ["retention", "run", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["removed"]["inactive_customers"] == 1
    done = runner.invoke(cli, ["retention", "run"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 inactive_customers" in done.stdout
    assert rows_with(db_runtime, MARKER) == []
    assert db_runtime.store.customer_by_external_id("cust-keep") is not None


@pytest.mark.usefixtures("cli_env")
def test_account_changes_and_exports_from_the_cli_are_audited(db_runtime: Runtime) -> None:
    runner = CliRunner()
    created = runner.invoke(cli, ["agents", "create", "Robin Roe", "--email", "robin@example.com"])
    assert created.exit_code == 0, created.output
    assert runner.invoke(cli, ["agents", "token", "--email", "robin@example.com"]).exit_code == 0
    assert runner.invoke(cli, ["agents", "password", "robin@example.com"]).exit_code == 0
    assert runner.invoke(cli, ["export", "--messages"]).exit_code == 0
    entries = db_runtime.privacy.audit_log(limit=100)
    assert [e.action for e in entries] == ["agent.create", "agent.token", "agent.password",
                                           "export"]
    agent = db_runtime.handoffs.agent_by_email("robin@example.com")
    assert agent is not None and entries[0].target == f"agent:{agent.id}"
    assert "robin@example.com" not in json.dumps([e.as_dict() for e in entries])


def test_console_sign_ins_are_audited(api: TestClient, db_runtime: Runtime) -> None:
    agent = make_agent(db_runtime)
    origin = {"Origin": str(api.base_url)}
    wrong = api.post("/console/login", data={"email": agent.email, "password": "nope nope"},
                     headers=origin, follow_redirects=False)
    assert wrong.status_code == 401
    right = api.post("/console/login", data={"email": agent.email, "password": agent.password},
                     headers=origin, follow_redirects=False)
    assert right.status_code == 303
    entries = db_runtime.privacy.audit_log(action="POST /console/login")
    assert [(e.actor, e.outcome) for e in entries] == [("unknown", "denied"),
                                                       (f"agent:{agent.id}", "ok")]
    assert agent.email not in json.dumps([e.as_dict() for e in entries])
