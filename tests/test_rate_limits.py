"""Per-conversation and per-address budgets: a clear 429 with Retry-After, others unaffected."""

from __future__ import annotations

import pytest
from conftest import auth
from fastapi.testclient import TestClient

from assistant.errors import RateLimited
from assistant.web.app import create_app
from assistant.web.rate_limits import RateLimiter


@pytest.fixture
def limited(runtime) -> TestClient:
    runtime.settings = runtime.settings.model_copy(
        update={"rate_limit_per_minute": 3, "ip_rate_limit_per_minute": 8})
    with TestClient(create_app(runtime=runtime)) as client:
        yield client


def start(client: TestClient) -> dict[str, str]:
    response = client.post("/v1/conversations", json={})
    assert response.status_code == 201, response.text
    return response.json()


def say(client: TestClient, chat: dict[str, str], text: str = "hello there"):
    return client.post(f"/v1/conversations/{chat['id']}/messages", json={"text": text},
                       headers=auth(chat["token"]))


def test_a_conversation_gets_429_past_its_budget_and_others_do_not(limited) -> None:
    chat, other = start(limited), start(limited)
    assert [say(limited, chat).status_code for _ in range(3)] == [200, 200, 200]
    refused = say(limited, chat)
    assert refused.status_code == 429
    assert "at most 3 per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert say(limited, other).status_code == 200
    # The refused message was never stored (no model call for it either).
    stored = limited.get(f"/v1/conversations/{chat['id']}/messages",
                         headers=auth(chat["token"])).json()["messages"]
    assert [m["role"] for m in stored].count("customer") == 3


def test_one_address_gets_429_past_its_budget(limited) -> None:
    codes = [limited.post("/v1/conversations", json={}).status_code for _ in range(9)]
    assert codes == [201] * 8 + [429]


def test_windows_reset_after_a_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limiter.hit("k", 1, "things")
    with pytest.raises(RateLimited, match="try again in 60 seconds"):
        limiter.hit("k", 1, "things")
    now[0] = 60.0
    limiter.hit("k", 1, "things")
