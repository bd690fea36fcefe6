"""Staff endpoints: annotations are visible to staff and to nobody else."""

from __future__ import annotations

from conftest import ADMIN_TOKEN, auth
from fastapi.testclient import TestClient


def url(conversation: dict[str, str]) -> str:
    return f"/v1/agent/conversations/{conversation['id']}/messages"


def test_staff_see_every_annotation(client: TestClient, conversation) -> None:
    client.post(f"/v1/conversations/{conversation['id']}/messages",
                json={"text": "We're switching to Asana, cancel my subscription!"},
                headers=auth(conversation["token"]))
    response = client.get(url(conversation), headers=auth(ADMIN_TOKEN))
    assert response.status_code == 200, response.text
    body = response.json()
    asked, reply = body["messages"]
    assert body["status"] == "waiting"  # handed off: a person is on the way
    assert {"intent", "sentiment", "frustration", "churn_signals"} <= set(asked["annotations"])
    assert {s["kind"] for s in asked["annotations"]["churn_signals"]} == {"cancellation",
                                                                        "competitor"}
    decision = reply["annotations"]["decision"]
    assert decision["action"] == "handoff" and decision["team"] == "retention"
    assert "churn_risk" in decision["evidence"]


def test_customers_and_strangers_are_refused(client: TestClient, conversation) -> None:
    assert client.get(url(conversation)).status_code == 401
    refused = client.get(url(conversation), headers=auth(conversation["token"]))
    assert refused.status_code == 401
    assert "not a staff token" in refused.json()["error"]["message"]
    missing = client.get("/v1/agent/conversations/abc123/messages", headers=auth(ADMIN_TOKEN))
    assert missing.status_code == 404


def test_without_an_admin_token_only_agent_tokens_open_staff_endpoints(runtime,
                                                                       conversation) -> None:
    from assistant.web.app import create_app

    runtime.settings = runtime.settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(runtime=runtime)) as other:
        response = other.get(url(conversation), headers=auth(ADMIN_TOKEN))
    assert response.status_code == 401
    assert "ASSISTANT_ADMIN_TOKEN" in response.json()["error"]["message"]


def test_agent_api_tokens_open_staff_endpoints(client: TestClient, conversation,
                                                runtime) -> None:
    from assistant.identity import hash_token
    from assistant.passwords import hash_password

    agent = runtime.handoffs.create_agent(email="bo@example.test", name="Bo", role="agent",
                                          password_hash=hash_password("a long passphrase"),
                                          teams=["support"])
    runtime.handoffs.add_token(agent.id, hash_token("agent-token-123"), "tests")
    assert client.get(url(conversation), headers=auth("agent-token-123")).status_code == 200
    runtime.handoffs.revoke_token(hash_token("agent-token-123"))
    assert client.get(url(conversation), headers=auth("agent-token-123")).status_code == 401
