"""The per-identity model token budget (SECURITY.md #18): one identity sending message after
message cannot spend more than its daily budget, everyone else keeps their generated
answers, and a customer over budget still gets the offline answer with its citations.

End to end through the API against the OpenAI-protocol server on loopback; the ledger
itself on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import ADMIN_TOKEN, Backend, auth
from fake_openai import FakeOpenAI, Reply, fake_openai, user_prompt
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from assistant.identity import user_hash
from assistant.runtime import Runtime, build_runtime
from assistant.storage.budget_repo import TokenSpendStore
from assistant.storage.tables import TokenSpend
from assistant.token_budget import TokenBudget, identity_for, tokens_of
from assistant.web.app import create_app

REFUND_QUESTION = "Can I get a refund on an annual plan?"
CALL_TOKENS = 15  # the fake's usage: 10 prompt + 5 completion tokens per call
BUDGET = 4 * CALL_TOKENS
SECRET = "widget-secret-for-tests"


def cite_refunds(body: dict[str, Any]) -> Reply:
    """A grounded answer citing the Refunds passage, whatever its id in this prompt."""
    prompt = user_prompt(body)
    marker = 'title="Refunds"'
    source = prompt[: prompt.index(marker)].rsplit('<passage id="', 1)[1].split('"')[0]
    return f"Annual plans can be refunded in full within 14 days of purchase [{source}]."


# -- who pays, and what a call costs ---------------------------------------------------


def test_a_verified_customer_is_one_identity_across_conversations() -> None:
    one = identity_for(conversation_id="c1", customer_id="k1", verified=True,
                       client_address="10.0.0.1")
    other = identity_for(conversation_id="c2", customer_id="k1", verified=True,
                         client_address="10.0.0.2")
    assert one == other == "customer:k1"


def test_visitors_are_their_address_hashed_and_the_cli_its_conversation() -> None:
    visitor = identity_for(conversation_id="c1", customer_id="k1", verified=False,
                           client_address="203.0.113.9")
    assert visitor.startswith("ip:") and "203.0.113.9" not in visitor
    assert visitor == identity_for(conversation_id="c2", customer_id=None, verified=False,
                                   client_address="203.0.113.9")
    assert visitor != identity_for(conversation_id="c1", customer_id=None, verified=False,
                                   client_address="203.0.113.10")
    assert identity_for(conversation_id="c1", customer_id=None, verified=False,
                        client_address=None) == "conversation:c1"


def test_tokens_of_counts_reported_usage_and_charges_unreported_attempts() -> None:
    calls = [
        {"outcome": "ok", "attempts": 1, "prompt_tokens": 900, "completion_tokens": 120},
        {"outcome": "timeout", "attempts": 3, "prompt_tokens": None, "completion_tokens": None},
        {"outcome": "circuit_open", "attempts": 0, "prompt_tokens": None,
         "completion_tokens": None},
    ]
    assert tokens_of(calls, unreported=500) == 1020 + 3 * 500


# -- the ledger ------------------------------------------------------------------------


@pytest.fixture
def store(backend: Backend) -> TokenSpendStore:
    return TokenSpendStore(backend.engine)


def test_concurrent_charges_add_up(store: TokenSpendStore) -> None:
    errors: list[BaseException] = []

    def spend() -> None:
        try:
            for _ in range(20):
                store.add("customer:k1", "2026-11-23", 7)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=spend) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.spent("customer:k1", "2026-11-23") == 6 * 20 * 7
    assert store.spent("customer:k1", "2026-11-24") == 0
    assert store.spent("customer:k2", "2026-11-23") == 0


def test_the_budget_resets_each_utc_day_and_old_days_are_dropped(
    store: TokenSpendStore,
) -> None:
    now = [datetime(2026, 11, 23, 23, 59, tzinfo=UTC)]
    budget = TokenBudget(store, per_day=100, unreported_call_tokens=50, clock=lambda: now[0])
    call = {"outcome": "ok", "attempts": 1, "prompt_tokens": 60, "completion_tokens": 40}
    assert budget.allows("ip:a")
    assert budget.charge("ip:a", [call]) == 100
    assert not budget.allows("ip:a") and budget.remaining("ip:a") == 0
    assert budget.allows("ip:b")
    now[0] += timedelta(minutes=2)  # past midnight UTC
    assert budget.allows("ip:a") and budget.remaining("ip:a") == 100
    now[0] += timedelta(days=2)
    budget.charge("ip:b", [call])
    with store._read() as session:
        days = sorted(session.scalars(select(TokenSpend.day)))
    assert days == ["2026-11-26"]  # days before yesterday limit nothing and are gone


def test_zero_turns_the_budget_off(store: TokenSpendStore) -> None:
    budget = TokenBudget(store, per_day=0, unreported_call_tokens=50)
    budget.charge("ip:a", [{"outcome": "ok", "attempts": 1, "prompt_tokens": 10**9,
                            "completion_tokens": 0}])
    assert budget.allows("ip:a") and store.spent("ip:a", "2026-11-23") == 0


# -- through the API -------------------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai() as fake:
        fake.responder = cite_refunds
        yield fake


@pytest.fixture
def api(settings, embedder, chroma_client, llm: FakeOpenAI) -> Iterator[TestClient]:
    configured = settings.model_copy(update={
        "llm_base_url": llm.url, "llm_model": "test-model", "llm_timeout_seconds": 3.0,
        "llm_max_retries": 0, "llm_tokens_per_identity_per_day": BUDGET,
        "widget_secret": SecretStr(SECRET),
    })
    runtime: Runtime = build_runtime(configured, embedder=embedder, chroma_client=chroma_client)
    runtime.ingest()
    with TestClient(create_app(runtime=runtime)) as client:
        client.app_state_runtime = runtime  # type: ignore[attr-defined]
        yield client
    runtime.close()


def ask(api: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new conversation asking the refund question once; the reply and its notes."""
    chat = api.post("/v1/conversations", json=body or {}).json()
    response = api.post(f"/v1/conversations/{chat['id']}/messages",
                        json={"text": REFUND_QUESTION}, headers=auth(chat["token"]))
    assert response.status_code == 200, response.text
    reply = response.json()["reply"]
    assert reply is not None and reply["citations"], "every turn is still answered"
    runtime: Runtime = api.app_state_runtime  # type: ignore[attr-defined]
    notes = [m for m in runtime.store.list_messages(conversation_id=chat["id"], after=None)
             if m.role == "assistant"][-1].annotations
    return {"chat": chat, "reply": reply, "notes": notes}


def verified(external_id: str) -> dict[str, Any]:
    return {"customer": {"id": external_id}, "user_hash": user_hash(SECRET, external_id)}


def test_a_flooding_visitor_is_answered_offline_once_its_budget_is_spent(
    api: TestClient, llm: FakeOpenAI,
) -> None:
    # One address opening conversation after conversation: a script, or a bored visitor.
    answerers = [ask(api)["notes"] for _ in range(12)]
    calls = len(llm.requests)
    assert calls * CALL_TOKENS <= BUDGET, "the budget held"
    assert calls == BUDGET // CALL_TOKENS
    assert [n["answerer"] for n in answerers[:calls]] == ["llm"] * calls
    assert {(n["answerer"], n["fallback"]) for n in answerers[calls:]} == {
        ("extractive", "token_budget")}

    # A verified customer is their own identity, with their own budget.
    other = ask(api, verified("cust-42"))
    assert other["notes"]["answerer"] == "llm" and len(llm.requests) == calls + 1


def test_a_verified_customer_cannot_reset_the_budget_with_new_conversations(
    api: TestClient, llm: FakeOpenAI,
) -> None:
    notes = [ask(api, verified("cust-7"))["notes"] for _ in range(6)]
    assert [n["answerer"] for n in notes] == ["llm"] * 4 + ["extractive"] * 2
    assert notes[-1]["fallback"] == "token_budget"
    assert len(llm.requests) == 4


def test_erasing_a_customer_erases_their_ledger(api: TestClient, llm: FakeOpenAI) -> None:
    ask(api, verified("cust-gone"))
    runtime: Runtime = api.app_state_runtime  # type: ignore[attr-defined]
    customer = runtime.store.customer_by_external_id("cust-gone")
    assert customer is not None
    store = TokenSpendStore(runtime.store._engine)
    today = datetime.now(UTC).date().isoformat()
    assert store.spent(f"customer:{customer.id}", today) == CALL_TOKENS
    response = api.delete("/v1/customers/cust-gone",
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.json()["removed"]["token_spend"] == 1
    assert store.spent(f"customer:{customer.id}", today) == 0
