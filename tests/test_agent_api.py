"""The agent API: queue, claim exactly once, reply, notes, resolve, return to bot, access."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ADMIN_TOKEN, TestAgent, auth, make_agent
from fastapi.testclient import TestClient


def say(client: TestClient, conversation: dict[str, str], text: str) -> dict:
    response = client.post(f"/v1/conversations/{conversation['id']}/messages",
                           json={"text": text}, headers=auth(conversation["token"]))
    assert response.status_code == 200, response.text
    return response.json()


def ask_for_person(client: TestClient, conversation: dict[str, str]) -> dict:
    response = client.post(f"/v1/conversations/{conversation['id']}/handoff",
                           headers=auth(conversation["token"]))
    assert response.status_code == 200, response.text
    return response.json()


def queued_id(client: TestClient, who: TestAgent, conversation: dict[str, str]) -> str:
    items = client.get("/v1/agent/queue", headers=auth(who.token)).json()["items"]
    (handoff,) = [i["handoff"] for i in items if i["handoff"]["conversation_id"]
                  == conversation["id"]]
    return handoff["id"]


def agent_url(conversation: dict[str, str], action: str) -> str:
    return f"/v1/agent/conversations/{conversation['id']}/{action}"


@pytest.fixture
def handed_off(client: TestClient, conversation, agent: TestAgent) -> str:
    say(client, conversation, "My invoice shows the wrong VAT number")
    ask_for_person(client, conversation)
    return queued_id(client, agent, conversation)


def test_asking_for_a_person_queues_it_with_the_expected_wait(client, conversation, agent,
                                                              runtime) -> None:
    say(client, conversation, "How do I export my data?")
    handoff = ask_for_person(client, conversation)
    assert handoff["status"] == "queued"
    assert handoff["expected_wait_minutes"] >= 1 and not handoff["can_leave_email"]
    assert "support team" in handoff["notice"]
    messages = client.get(f"/v1/conversations/{conversation['id']}/messages",
                          headers=auth(conversation["token"])).json()["messages"]
    assert messages[-1]["role"] == "system" and messages[-1]["text"] == handoff["notice"]
    item = client.get("/v1/agent/queue", headers=auth(agent.token)).json()["items"][0]
    assert item["handoff"]["reasons"] == ["human_requested"]
    assert item["handoff"]["priority"] == 2 and item["handoff"]["team"] == "support"
    assert any("export my data" in line for line in item["context"]["summary"])
    assert item["context"]["transcript"][0]["text"] == "How do I export my data?"


def test_with_nobody_online_the_customer_can_leave_an_email(client, conversation,
                                                           runtime) -> None:
    make_agent(runtime, "Off Line", online=False)
    handoff = ask_for_person(client, conversation)
    assert handoff["can_leave_email"] and handoff["expected_wait_minutes"] is None
    assert "Leave your email" in handoff["notice"]
    left = client.post(f"/v1/conversations/{conversation['id']}/followup",
                       json={"email": "pat@example.com"}, headers=auth(conversation["token"]))
    assert left.status_code == 204
    (event,) = runtime.store.list_events(conversation_id=conversation["id"],
                                         type="handoff.followup_requested")
    assert event.payload == {"email": "pat@example.com"}
    bad = client.post(f"/v1/conversations/{conversation['id']}/followup",
                      json={"email": "not-an-email"}, headers=auth(conversation["token"]))
    assert bad.status_code == 422


def test_outside_business_hours_the_customer_is_told_the_hours(client, conversation, runtime,
                                                               agent) -> None:
    from datetime import time

    from assistant.policy import _BusinessHours

    # Open for one minute of the day, at a time this test is unlikely to run.
    runtime.engine.policy.config.business_hours = _BusinessHours(
        timezone="Pacific/Kiritimati", days=["sun"], open=time(3, 0), close=time(3, 1))
    handoff = ask_for_person(client, conversation)
    assert handoff["can_leave_email"]
    assert "Sun 03:00-03:01 Pacific/Kiritimati" in handoff["notice"]


def test_claim_succeeds_for_exactly_one_of_many_concurrent_agents(client, runtime,
                                                                  handed_off) -> None:
    agents = [make_agent(runtime, f"Racer {i}") for i in range(12)]

    def claim(who: TestAgent) -> int:
        return client.post(f"/v1/agent/handoffs/{handed_off}/claim",
                           headers=auth(who.token)).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(claim, agents))
    assert sorted(codes) == [200] + [409] * 11
    claimed = runtime.store.list_events(type="handoff.claimed")
    assert len(claimed) == 1


def test_the_claimed_conversation_is_live_between_agent_and_customer(client, conversation,
                                                                     agent, handed_off,
                                                                     runtime) -> None:
    claimed = client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    assert claimed.status_code == 200 and claimed.json()["status"] == "assigned"
    sent = client.post(agent_url(conversation, "messages"), json={"text": "Hi, I'm on it."},
                       headers=auth(agent.token))
    assert sent.status_code == 201 and sent.json()["author"] == agent.name
    # The customer keeps writing: stored, no bot reply while the person owns it.
    turn = say(client, conversation, "Thanks! The VAT number should be DE123.")
    assert turn["reply"] is None
    customer_view = client.get(f"/v1/conversations/{conversation['id']}/messages",
                               headers=auth(conversation["token"])).json()["messages"]
    roles = [m["role"] for m in customer_view]
    assert roles[-3:] == ["system", "agent", "customer"]  # "Alex joined", reply, message
    assert customer_view[-3]["text"] == f"{agent.name} joined the conversation."
    assert customer_view[-2]["author"] == agent.name
    first = runtime.store.list_events(conversation_id=conversation["id"],
                                      type="handoff.first_reply")
    assert len(first) == 1


def test_replying_without_owning_the_conversation_is_refused(client, conversation, agent,
                                                             runtime, handed_off) -> None:
    refused = client.post(agent_url(conversation, "messages"), json={"text": "hello"},
                          headers=auth(agent.token))
    assert refused.status_code == 409 and "claim" in refused.json()["error"]["message"]
    client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    other = make_agent(runtime, "Other Agent")
    assert client.post(agent_url(conversation, "messages"), json={"text": "me too"},
                       headers=auth(other.token)).status_code == 409


def test_notes_are_for_staff_only(client, conversation, agent, handed_off) -> None:
    added = client.post(agent_url(conversation, "notes"), json={"text": "VIP, be nice"},
                        headers=auth(agent.token))
    assert added.status_code == 201
    detail = client.get(f"/v1/agent/conversations/{conversation['id']}",
                        headers=auth(agent.token)).json()
    assert [n["text"] for n in detail["notes"]] == ["VIP, be nice"]
    customer_view = client.get(f"/v1/conversations/{conversation['id']}/messages",
                               headers=auth(conversation["token"])).text
    assert "VIP, be nice" not in customer_view


def test_resolve_and_return_to_bot(client, conversation, agent, handed_off, runtime) -> None:
    client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    bad = client.post(agent_url(conversation, "resolve"), json={"resolution_code": "<b>"},
                      headers=auth(agent.token))
    assert bad.status_code == 422
    returned = client.post(agent_url(conversation, "return-to-bot"), headers=auth(agent.token))
    assert returned.status_code == 200 and returned.json()["status"] == "returned"
    # Back with the bot: it answers again.
    assert say(client, conversation, "How do I reset my password?")["reply"] is not None
    # A new explicit request queues again; this time it is resolved.
    ask_for_person(client, conversation)
    again = queued_id(client, agent, conversation)
    client.post(f"/v1/agent/handoffs/{again}/claim", headers=auth(agent.token))
    resolved = client.post(agent_url(conversation, "resolve"),
                           json={"resolution_code": "vat_fixed"}, headers=auth(agent.token))
    assert resolved.status_code == 200 and resolved.json()["resolution_code"] == "vat_fixed"
    types = [e.type for e in runtime.store.list_events(conversation_id=conversation["id"])
             if e.type.startswith("handoff.")]
    assert types == ["handoff.enqueued", "handoff.claimed", "handoff.returned",
                     "handoff.enqueued", "handoff.claimed", "handoff.resolved"]


def test_release_puts_it_back_and_reassign_needs_the_holder_or_an_admin(
        client, agent, handed_off, runtime) -> None:
    other = make_agent(runtime, "Bea Agent")
    client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    stolen = client.post(f"/v1/agent/handoffs/{handed_off}/reassign",
                         json={"agent_id": other.id}, headers=auth(other.token))
    assert stolen.status_code == 403
    moved = client.post(f"/v1/agent/handoffs/{handed_off}/reassign",
                        json={"agent_id": other.id}, headers=auth(agent.token))
    assert moved.status_code == 200 and moved.json()["agent_id"] == other.id
    released = client.post(f"/v1/agent/handoffs/{handed_off}/release", headers=auth(other.token))
    assert released.status_code == 200 and released.json()["status"] == "queued"


def test_agents_claim_only_their_teams(client, runtime, handed_off) -> None:
    billing_only = make_agent(runtime, "Bill Ing", teams=("billing",))
    refused = client.post(f"/v1/agent/handoffs/{handed_off}/claim",
                          headers=auth(billing_only.token))
    assert refused.status_code == 403 and "support team" in refused.json()["error"]["message"]


def test_access_control(client, conversation, handed_off, agent) -> None:
    # Customers' tokens never open agent routes; nobody without credentials does.
    for method, path in [("get", "/v1/agent/queue"),
                         ("post", f"/v1/agent/handoffs/{handed_off}/claim"),
                         ("get", f"/v1/agent/conversations/{conversation['id']}"),
                         ("post", agent_url(conversation, "notes"))]:
        kwargs = {"json": {"text": "x"}} if path.endswith("notes") else {}
        assert getattr(client, method)(path, **kwargs).status_code == 401
        assert getattr(client, method)(path, headers=auth(conversation["token"]),
                                       **kwargs).status_code == 401
    # The admin token reads, but cannot own a conversation.
    assert client.get("/v1/agent/queue", headers=auth(ADMIN_TOKEN)).status_code == 200
    admin_claim = client.post(f"/v1/agent/handoffs/{handed_off}/claim",
                              headers=auth(ADMIN_TOKEN))
    assert admin_claim.status_code == 403
    # A customer token opens only its own conversation and its stream.
    other = client.post("/v1/conversations", json={}).json()
    foreign = client.get(f"/v1/conversations/{conversation['id']}/events",
                         headers=auth(other["token"]))
    assert foreign.status_code == 404
    assert client.post(f"/v1/conversations/{conversation['id']}/handoff",
                       headers=auth(other["token"])).status_code == 404


def test_the_customer_rates_the_resolved_conversation_once(client, conversation, agent,
                                                           handed_off, runtime) -> None:
    url = f"/v1/conversations/{conversation['id']}/csat"
    early = client.post(url, json={"score": 5}, headers=auth(conversation["token"]))
    assert early.status_code == 422 and "resolved" in early.json()["error"]["message"]
    client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    client.post(agent_url(conversation, "resolve"), json={"resolution_code": "fixed"},
                headers=auth(agent.token))
    rated = client.post(url, json={"score": 4, "comment": " quick and kind "},
                        headers=auth(conversation["token"]))
    assert rated.status_code == 201
    assert rated.json() == {"score": 4, "comment": "quick and kind", "handled_by": "person"}
    again = client.post(url, json={"score": 1}, headers=auth(conversation["token"]))
    assert again.status_code == 409
    assert client.post(url, json={"score": 6},
                       headers=auth(conversation["token"])).status_code == 422
    (event,) = runtime.store.list_events(type="csat.submitted")
    assert event.payload["score"] == 4 and event.conversation_id == conversation["id"]


def test_a_bot_only_conversation_is_rated_as_bot(client, conversation) -> None:
    say(client, conversation, "How do I reset my password?")
    rated = client.post(f"/v1/conversations/{conversation['id']}/csat", json={"score": 5},
                        headers=auth(conversation["token"]))
    assert rated.status_code == 201 and rated.json()["handled_by"] == "bot"


def test_messages_to_a_person_are_still_understood(client, conversation, agent, handed_off,
                                                  runtime) -> None:
    client.post(f"/v1/agent/handoffs/{handed_off}/claim", headers=auth(agent.token))
    assert say(client, conversation, "This is useless, I'm cancelling!!!")["reply"] is None
    held = runtime.store.list_messages(conversation_id=conversation["id"])[-1]
    assert held.role == "customer" and held.annotations["sentiment"]["label"] == "negative"
    assert {s["kind"] for s in held.annotations["churn_signals"]} >= {"cancellation"}
    detail = client.get(f"/v1/agent/conversations/{conversation['id']}",
                        headers=auth(agent.token)).json()
    assert detail["context"]["trajectory"][-1]["sentiment"] == "negative"


def test_the_conversation_state_tells_a_reloaded_widget_where_it_stands(client, conversation,
                                                                        agent, runtime) -> None:
    url = f"/v1/conversations/{conversation['id']}"
    fresh = client.get(url, headers=auth(conversation["token"])).json()
    assert fresh == {"id": conversation["id"], "status": "bot", "verified": False,
                     "handoff": None, "rated": False}
    ask_for_person(client, conversation)
    waiting = client.get(url, headers=auth(conversation["token"])).json()
    assert waiting["status"] == "waiting" and waiting["handoff"]["status"] == "queued"
    assert waiting["handoff"]["expected_wait_minutes"] >= 1
    other = client.post("/v1/conversations", json={}).json()
    assert client.get(url, headers=auth(other["token"])).status_code == 404
