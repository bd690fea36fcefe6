"""Health and support metrics end to end: scripted conversations through the API, folded by
the projector, read through the admin endpoints. Expected numbers are worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ADMIN_TOKEN, auth
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from assistant.identity import user_hash
from assistant.runtime import Runtime
from assistant.storage.tables import WebhookDelivery
from assistant.web.app import create_app

SECRET = "health-test-secret"
ADMIN = auth(ADMIN_TOKEN)


@pytest.fixture
def settings(settings):
    # With the tests' hashing embedder, confidences are small: "reset my password" scores
    # 0.03, the flux capacitor 0.001; 0.01 makes the bot abstain on the second only.
    return settings.model_copy(update={"widget_secret": SecretStr(SECRET),
                                       "webhook_urls": ["http://127.0.0.1:9/hooks"],
                                       "webhook_secret": SecretStr("hook-secret"),
                                       "answer_min_confidence": 0.01})


class Customer:
    """One identified customer talking through the widget API."""

    def __init__(self, client: TestClient, external_id: str) -> None:
        self.client = client
        self.external_id = external_id
        self.conversation = ""
        self.token = ""

    def start(self) -> str:
        response = self.client.post("/v1/conversations", json={
            "customer": {"id": self.external_id, "email": f"{self.external_id}@example.com"},
            "user_hash": user_hash(SECRET, self.external_id)})
        assert response.status_code == 201, response.text
        self.conversation, self.token = response.json()["id"], response.json()["token"]
        return self.conversation

    def say(self, text: str) -> dict[str, Any]:
        response = self.client.post(f"/v1/conversations/{self.conversation}/messages",
                                    json={"text": text}, headers=auth(self.token))
        assert response.status_code == 200, response.text
        return response.json()

    def rate(self, score: int) -> None:
        response = self.client.post(f"/v1/conversations/{self.conversation}/csat",
                                    json={"score": score}, headers=auth(self.token))
        assert response.status_code == 201, response.text

    def helped(self, message_id: int, helpful: bool = True) -> int:
        return self.client.post(f"/v1/conversations/{self.conversation}/feedback",
                                json={"message_id": message_id, "helpful": helpful},
                                headers=auth(self.token)).status_code


def handle(client: TestClient, agent, conversation_id: str, reply: str) -> None:
    """An agent claims the conversation's hand-off, replies, and resolves it."""
    queue = client.get("/v1/agent/queue", headers=auth(agent.token)).json()
    (item,) = [i["handoff"] for i in queue["items"]
               if i["handoff"]["conversation_id"] == conversation_id]
    assert client.post(f"/v1/agent/handoffs/{item['id']}/claim",
                       headers=auth(agent.token)).status_code == 200
    assert client.post(f"/v1/agent/conversations/{conversation_id}/messages",
                       json={"text": reply}, headers=auth(agent.token)).status_code == 201
    assert client.post(f"/v1/agent/conversations/{conversation_id}/resolve",
                       json={"resolution_code": "answered"},
                       headers=auth(agent.token)).status_code == 200


def test_a_support_day_in_numbers(client: TestClient, runtime: Runtime, agent) -> None:
    ana, ben = Customer(client, "ana"), Customer(client, "ben")
    # 1. Ana asks a how-to question, the bot answers, she says it helped.
    ana.start()
    answer = ana.say("How do I reset my password?")["reply"]
    assert ana.helped(answer["id"]) == 204
    assert ana.helped(answer["id"]) == 409  # once per answer
    # 2. Ben asks for a person; an agent answers and resolves; Ben rates the person 5.
    handed = ben.start()
    assert ben.say("I want to talk to a human agent please")["handoff"] is not None
    handle(client, agent, handed, "Use Settings > Security > Reset to do that.")
    ben.rate(5)
    # 3. Ben asks something the KB cannot answer and rates the bot 2.
    ben.start()
    ben.say("Does the flux capacitor support plutonium refills?")
    ben.rate(2)

    summary = client.get("/v1/analytics/summary", headers=ADMIN)
    assert summary.status_code == 200, summary.text
    s = summary.json()
    assert (s["conversations"], s["engaged"]) == (3, 3)
    resolution = s["bot_resolution"]
    assert resolution["customer_confirmed"]["count"] == 1
    assert resolution["customer_confirmed"]["rate"] == round(1 / 3, 4)
    assert resolution["no_handoff"]["rate"] == round(2 / 3, 4)
    assert resolution["durable"]["eligible"] == 0  # no conversation's 7 days are over yet
    assert "7 days" in resolution["durable"]["definition"]
    assert s["escalation"]["count"] == 1
    assert s["escalation"]["by_reason"]["human_requested"]["count"] == 1
    assert s["csat"]["bot"] == {"average": 2.0, "count": 1}
    assert s["csat"]["person"] == {"average": 5.0, "count": 1}
    assert s["times"]["first_human_response_seconds"]["count"] == 1
    assert s["times"]["handle_seconds"]["count"] == 1
    assert sum(i["count"] for i in s["top_intents"]) == 3
    gaps = s["knowledge_gaps"]
    assert gaps["questions"] == 2, gaps
    questions = [q for topic in gaps["topics"] for q in topic["examples"]]
    assert "Does the flux capacitor support plutonium refills?" in questions
    assert "I want to talk to a human agent please" in questions
    replies = [r for topic in gaps["topics"] for r in topic["agent_replies"]]
    assert replies == ["Use Settings > Security > Reset to do that."]
    assert s["customers"]["healthy"] + s["customers"].get("watch", 0) == 2

    health = client.get("/v1/customers/ben/health", headers=ADMIN)
    assert health.status_code == 200, health.text
    h = health.json()
    assert h["customer"]["external_id"] == "ben" and 0 <= h["score"] < 100
    assert set(h["components"]) == {"sentiment", "frustration", "churn_signals", "escalations",
                                    "unresolved", "contact_frequency", "csat"}
    assert h["components"]["escalations"]["risk"] == pytest.approx(1 / 3, abs=1e-3)
    assert h["trend"] and h["trend"][-1]["score"] == h["score"]
    assert {e["conversation_id"] for e in h["evidence"]} >= {handed}


def test_a_churning_customer_becomes_at_risk_and_signals_go_out(client, runtime) -> None:
    cara = Customer(client, "cara")
    cara.start()
    cara.say("This is useless!!! I am cancelling and switching to Tableau, I want a refund")
    cara.start()
    cara.say("Third time asking. Your product is garbage, cancel my account now")
    at_risk = client.get("/v1/customers/at-risk", headers=ADMIN).json()["customers"]
    assert [c["external_id"] for c in at_risk] == ["cara"]
    assert at_risk[0]["band"] == "at_risk" and at_risk[0]["evidence"]
    with runtime.store._read() as session:  # the outbox: what the webhook sender will POST
        sent = list(session.scalars(select(WebhookDelivery.event)))
    assert sent.count("customer.at_risk") == 1  # crossing into the band, once
    assert "churn.signal" in sent and "conversation.handed_off" in sent


def test_health_is_folded_once_however_often_it_is_read(client, runtime) -> None:
    dan = Customer(client, "dan")
    dan.start()
    dan.say("How do I connect Slack?")
    first = client.get("/v1/customers/dan/health", headers=ADMIN).json()
    folded = runtime.health.catch_up()
    again = client.get("/v1/customers/dan/health", headers=ADMIN).json()
    assert folded == 0 and again["score"] == first["score"]
    assert again["evidence"] == first["evidence"]


def test_health_and_analytics_are_for_admins_only(client, runtime, agent) -> None:
    for path in ("/v1/analytics/summary", "/v1/customers/at-risk", "/v1/customers/x/health"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth(agent.token)).status_code == 403
    assert client.get("/v1/customers/nobody/health", headers=ADMIN).status_code == 404
    bad = client.get("/v1/analytics/summary?since=2026-02-01&until=2026-01-01", headers=ADMIN)
    assert bad.status_code == 422 and "after" in bad.text


def test_metrics_speak_prometheus(client, runtime) -> None:
    eve = Customer(client, "eve")
    eve.start()
    eve.say("How do I reset my password?")
    text = client.get("/metrics", headers=ADMIN).text
    assert "# TYPE assistant_conversations_total counter" in text
    assert "assistant_conversations_total 1" in text
    assert 'assistant_customers{band="healthy"} 1' in text
    assert "assistant_health_lag_events 0" in text


def test_metrics_need_the_scrapers_token_or_an_admin(runtime, agent) -> None:
    runtime.settings = runtime.settings.model_copy(
        update={"metrics_token": SecretStr("scrape-me")})
    with TestClient(create_app(runtime=runtime)) as client:
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401
        assert "ASSISTANT_METRICS_TOKEN" in anonymous.json()["error"]["message"]
        assert client.get("/metrics", headers=auth("wrong")).status_code == 401
        assert client.get("/metrics", headers=auth(agent.token)).status_code == 403
        scraped = client.get("/metrics", headers=auth("scrape-me"))
        assert scraped.status_code == 200 and "assistant_conversations_total" in scraped.text
        assert client.get("/metrics", headers=ADMIN).status_code == 200
        # The scraper's token opens nothing else.
        assert client.get("/v1/analytics/summary", headers=auth("scrape-me")).status_code == 401
