"""The customer API over real SQLite and Chroma: happy path, auth, idempotency, bad input."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from conftest import auth
from fastapi.testclient import TestClient

from assistant.identity import user_hash
from assistant.runtime import Runtime


def post(client: TestClient, conv: dict[str, str], text: str, key: str | None = None,
         token: str | None = None):
    headers = auth(token or conv["token"])
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/conversations/{conv['id']}/messages", json={"text": text},
                       headers=headers)


def test_ask_and_get_a_cited_answer(client: TestClient, conversation) -> None:
    response = post(client, conversation, "How do I reset my password?", key="k1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"]["role"] == "customer"
    assert body["message"]["text"] == "How do I reset my password?"
    reply = body["reply"]
    assert reply["role"] == "assistant"
    assert "Forgot password" in reply["text"]
    assert reply["citations"][0]["article_id"] == "account/reset-password.md"
    assert reply["citations"][0]["url"] == "https://help.example.test/account/reset-password"
    assert "decision" not in reply  # internal annotations stay internal


def test_history_in_order_and_after(client: TestClient, conversation) -> None:
    post(client, conversation, "refund please")
    post(client, conversation, "slack alerts")
    messages = client.get(f"/v1/conversations/{conversation['id']}/messages",
                          headers=auth(conversation["token"])).json()["messages"]
    assert [m["role"] for m in messages] == ["customer", "assistant", "customer", "assistant"]
    ids = [m["id"] for m in messages]
    assert ids == sorted(ids)
    newer = client.get(f"/v1/conversations/{conversation['id']}/messages",
                       params={"after": ids[1]}, headers=auth(conversation["token"]))
    assert [m["id"] for m in newer.json()["messages"]] == ids[2:]


def test_message_and_reply_are_stored_with_events(client, conversation, runtime) -> None:
    post(client, conversation, "How do I connect Slack?")
    stored = runtime.store.list_messages(conversation_id=conversation["id"])
    assert [m.role for m in stored] == ["customer", "assistant"]
    assert stored[1].annotations["retrieval"]["article_ids"][0] == "integrations/slack.md"
    types = [e.type for e in runtime.store.list_events(conversation_id=conversation["id"])]
    for expected in ("conversation.started", "message.received", "message.classified",
                     "retrieval.performed",
                     "answer.composed", "decision.made", "answer.sent"):
        assert expected in types


def test_turn_events_are_logged_with_the_reply_then_published(client, conversation,
                                                              runtime) -> None:
    heard: list[tuple[str, int]] = []

    def listener(event) -> None:
        # Published after the commit: the reply is already readable when subscribers run.
        heard.append((event.type, runtime.store.count_messages(conversation_id=conversation["id"])))

    def broken(event) -> None:
        raise RuntimeError("metrics sink down")

    runtime.bus.subscribe(broken)
    runtime.bus.subscribe(listener)
    assert post(client, conversation, "How do I connect Slack?").status_code == 200
    assert heard == [("message.classified", 2), ("retrieval.performed", 2),
                     ("answer.composed", 2), ("decision.made", 2)]
    logged = [e.type for e in runtime.store.list_events(conversation_id=conversation["id"])]
    assert logged[-5:] == ["message.classified", "retrieval.performed", "answer.composed",
                           "decision.made", "answer.sent"]


def test_token_is_required_and_must_match(client: TestClient, conversation) -> None:
    url = f"/v1/conversations/{conversation['id']}/messages"
    missing = client.get(url)
    assert missing.status_code == 401
    assert "Authorization" in missing.json()["error"]["message"]
    assert client.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get(url, headers=auth("wrong-token")).status_code == 404
    other = client.post("/v1/conversations", json={}).json()
    assert client.get(url, headers=auth(other["token"])).status_code == 404
    assert post(client, conversation, "hi", token=other["token"]).status_code == 404


def test_token_is_never_stored_in_clear(client: TestClient, conversation, runtime) -> None:
    _, stored = runtime.store.conversation_and_token_hash(conversation["id"])
    assert stored and stored != conversation["token"] and len(stored) == 64


def test_idempotent_retry_returns_the_original(client, conversation, runtime) -> None:
    first = post(client, conversation, "refund annual plan", key="same")
    again = post(client, conversation, "refund annual plan", key="same")
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["reply"]["id"] == first.json()["reply"]["id"]
    assert runtime.store.count_messages(conversation_id=conversation["id"]) == 2


def test_same_key_other_body_is_422(client: TestClient, conversation) -> None:
    post(client, conversation, "refund annual plan", key="k")
    response = post(client, conversation, "something else", key="k")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_retry_while_first_is_running_is_409(client, conversation, runtime) -> None:
    entered, release = threading.Event(), threading.Event()
    original = runtime.engine.handle_turn

    def slow_turn(**kwargs):
        entered.set()
        release.wait(10)
        return original(**kwargs)

    runtime.engine.handle_turn = slow_turn  # type: ignore[method-assign]
    results: dict[str, int] = {}
    worker = threading.Thread(
        target=lambda: results.setdefault("first", post(client, conversation, "refund",
                                                        key="busy").status_code))
    worker.start()
    assert entered.wait(10)
    second = post(client, conversation, "refund", key="busy")
    release.set()
    worker.join(10)
    assert second.status_code == 409
    assert results["first"] == 200


def test_stale_pending_key_is_resumed_without_a_second_message(client, conversation, runtime):
    runtime.store.begin_customer_message(
        conversation_id=conversation["id"], text="refund", idempotency_key="crashed",
        request_hash=__import__("hashlib").sha256(b"refund").hexdigest(),
        stale_after=timedelta(seconds=60))
    runtime.conversations._stale_after = timedelta(0)  # the first attempt "crashed" long ago
    response = post(client, conversation, "refund", key="crashed")
    assert response.status_code == 200
    roles = [m.role for m in runtime.store.list_messages(conversation_id=conversation["id"])]
    assert roles == ["customer", "assistant"]


def test_failing_engine_keeps_the_message_and_answers_honestly(client, conversation, runtime):
    def broken(**kwargs):
        raise RuntimeError("model exploded")

    runtime.engine.handle_turn = broken  # type: ignore[method-assign]
    response = post(client, conversation, "How do I reset my password?")
    assert response.status_code == 200
    assert "went wrong" in response.json()["reply"]["text"]
    assert response.json()["reply"]["offer_human"] is True
    stored = runtime.store.list_messages(conversation_id=conversation["id"])
    assert stored[0].text == "How do I reset my password?"
    assert [e.type for e in runtime.store.list_events(type="turn.failed")] == ["turn.failed"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [({"text": ""}, 422, "text"), ({"text": "   "}, 422, "empty"), ({}, 422, "text"),
     ({"text": "x" * 5000}, 422, "limit is 4000"), ({"text": 5}, 422, "text"),
     ({"text": "hi", "extra": 1}, 422, "extra"), ({"text": "a\x00b"}, 422, "NUL")],
)
def test_bad_message_bodies(client, conversation, body, status, needle) -> None:
    response = client.post(f"/v1/conversations/{conversation['id']}/messages", json=body,
                           headers=auth(conversation["token"]))
    assert response.status_code == status
    assert needle in response.text


def test_bad_input_never_reaches_the_engine(client, conversation, runtime) -> None:
    calls = []
    runtime.engine.handle_turn = lambda **kw: calls.append(kw)  # type: ignore[method-assign]
    post(client, conversation, "x" * 5000)
    post(client, conversation, "   ")
    assert calls == []
    assert runtime.store.count_messages(conversation_id=conversation["id"]) == 0


def test_malformed_and_oversized_bodies(client: TestClient, conversation) -> None:
    url = f"/v1/conversations/{conversation['id']}/messages"
    headers = {**auth(conversation["token"]), "Content-Type": "application/json"}
    malformed = client.post(url, content=b'{"text": ', headers=headers)
    assert malformed.status_code == 422
    invalid_utf8 = client.post(url, content=b'{"text": "\xff\xfe"}', headers=headers)
    assert invalid_utf8.status_code == 422
    huge = client.post(url, content=b'{"text": "' + b"a" * 1_000_000 + b'"}', headers=headers)
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    deep = client.post(url, content=b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                       headers=headers)
    assert deep.status_code in (413, 422)


def test_bad_idempotency_key(client: TestClient, conversation) -> None:
    assert post(client, conversation, "hi", key="x" * 300).status_code == 422


def test_bad_conversation_ids(client: TestClient, conversation) -> None:
    headers = auth(conversation["token"])
    assert client.get("/v1/conversations/not-hex!/messages", headers=headers).status_code == 422
    assert client.get("/v1/conversations/abc/messages", headers=headers).status_code == 404


def test_identity_verification(settings, embedder, chroma_client) -> None:
    from pydantic import SecretStr

    secret_settings = settings.model_copy(update={"widget_secret": SecretStr("s3cret")})
    from assistant.runtime import build_runtime
    from assistant.web.app import create_app

    rt: Runtime = build_runtime(secret_settings, embedder=embedder, chroma_client=chroma_client)
    with TestClient(create_app(runtime=rt)) as client:
        good = client.post("/v1/conversations", json={
            "customer": {"id": "cust-42", "plan": "enterprise"},
            "user_hash": user_hash("s3cret", "cust-42")})
        assert good.status_code == 201 and good.json()["verified"] is True
        for bad in (user_hash("s3cret", "cust-43"), user_hash("other", "cust-42"), None):
            body = {"customer": {"id": "cust-42"}}
            if bad:
                body["user_hash"] = bad
            assert client.post("/v1/conversations", json=body).status_code == 401
        truncated = client.post("/v1/conversations", json={
            "customer": {"id": "cust-42"}, "user_hash": user_hash("s3cret", "cust-42")[:40]})
        assert truncated.status_code == 422
    rt.close()


def test_hmac_known_answer() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert user_hash("Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_unverified_plan_claim_is_not_trusted(client: TestClient, runtime) -> None:
    conv = client.post("/v1/conversations", json={"customer": {"id": "c1", "plan": "enterprise"}})
    assert conv.status_code == 201 and conv.json()["verified"] is False
    reply = post(client, conv.json(), "SCIM token base URL").json()["reply"]
    assert all(c["article_id"] != "account/scim.md" for c in reply["citations"])


def test_healthz_and_openapi(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["kb_chunks"] > 0
    schema = client.get("/openapi.json").json()
    assert "/v1/conversations/{conversation_id}/messages" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_every_message_carries_its_annotations(client, conversation, runtime) -> None:
    post(client, conversation, "This is not worth the money, I want a refund!")
    asked, reply = runtime.store.list_messages(conversation_id=conversation["id"])
    assert {s["kind"] for s in asked.annotations["churn_signals"]} == {"not_worth_it",
                                                                      "refund_demand"}
    assert {"intent", "sentiment", "frustration"} <= set(asked.annotations)
    assert reply.annotations["decision"]["reasons"][0] == "churn_risk"
    assert reply.annotations["decision"]["team"] == "retention"
    classified = runtime.store.list_events(conversation_id=conversation["id"],
                                           type="message.classified")
    assert set(classified[0].payload["churn_signals"]) == {"not_worth_it", "refund_demand"}


def test_the_bot_failing_twice_hands_off(client, conversation, runtime) -> None:
    runtime.engine.min_confidence = 1.0  # nothing is good enough: every answer abstains
    first = post(client, conversation, "Where are the frobnicator settings?").json()["reply"]
    second = post(client, conversation, "What does the quux panel do?").json()["reply"]
    assert first["offer_human"] is True
    stored = runtime.store.list_messages(conversation_id=conversation["id"])
    assert "low_confidence" in stored[1].annotations["decision"]["reasons"]
    decision = stored[3].annotations["decision"]
    assert decision["action"] == "handoff"
    assert "bot_failed_twice" in decision["reasons"]
    assert second["text"].startswith(runtime.engine.policy.messages.handoff)
    assert "Leave your email" in second["text"]  # no agent is online in this test


def test_a_repeated_question_hands_off(client, conversation, runtime) -> None:
    post(client, conversation, "How do I connect Slack to my workspace?")
    post(client, conversation, "HOW DO I CONNECT SLACK TO MY WORKSPACE")
    reply = runtime.store.list_messages(conversation_id=conversation["id"])[-1]
    assert "repeated_question" in reply.annotations["decision"]["reasons"]
    assert reply.annotations["decision"]["evidence"]["repeated_question"].startswith(
        'repeats "How do I connect Slack')


def test_a_hand_off_queues_the_conversation_and_silences_the_bot(client, conversation,
                                                                  runtime) -> None:
    first = post(client, conversation, "I want to talk to a human", key="h1").json()
    assert first["reply"]["text"].startswith(runtime.engine.policy.messages.handoff)
    assert first["handoff"]["status"] == "queued"
    assert "reasons" not in first["handoff"]  # customers never see why
    (queued,) = runtime.handoffs.queue()
    assert (queued.conversation_id, queued.team) == (conversation["id"], "support")
    assert "human_requested" in queued.reasons
    assert runtime.store.get_conversation(conversation["id"]).status == "waiting"

    held = post(client, conversation, "hello? anyone there?", key="h2")
    assert held.status_code == 200, held.text
    assert held.json()["reply"] is None
    assert held.json()["handoff"]["status"] == "queued"
    again = post(client, conversation, "hello? anyone there?", key="h2").json()
    assert again["replayed"] is True and again["reply"] is None
    roles = [m.role for m in runtime.store.list_messages(conversation_id=conversation["id"])]
    assert roles == ["customer", "assistant", "customer"]  # stored once, no bot reply
    assert len(runtime.handoffs.queue()) == 1


def test_the_hand_off_due_time_follows_the_policy_sla(client, conversation, runtime) -> None:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC)
    post(client, conversation, "I want to talk to a human")
    (queued,) = runtime.handoffs.queue()
    minutes = runtime.engine.policy.sla_minutes(queued.priority)
    assert before + timedelta(minutes=minutes) <= queued.due_at
    assert queued.due_at <= datetime.now(UTC) + timedelta(minutes=minutes)


def test_a_reply_can_stream_as_server_sent_events(client, conversation) -> None:
    response = client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json={"text": "How do I reset my password?"},
        headers={**auth(conversation["token"]), "Accept": "text/event-stream",
                 "Idempotency-Key": "stream-1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [(block.split("\n")[0].removeprefix("event: "),
               json.loads(block.split("\n")[1].removeprefix("data: ")))
              for block in response.text.strip().split("\n\n")]
    assert [name for name, _ in events] == ["stored", "delta", "done"]
    assert events[0][1]["message"]["text"] == "How do I reset my password?"
    done = events[2][1]
    assert events[1][1]["text"] == done["reply"]["text"] and done["reply"]["citations"]
    # The same key replays the same answer, as JSON this time.
    replay = client.post(f"/v1/conversations/{conversation['id']}/messages",
                         json={"text": "How do I reset my password?"},
                         headers={**auth(conversation["token"]), "Idempotency-Key": "stream-1"})
    assert replay.json()["replayed"] is True and replay.json()["reply"]["id"] == done["reply"]["id"]
    bad = client.post(f"/v1/conversations/{conversation['id']}/messages", json={"text": "  "},
                      headers={**auth(conversation["token"]), "Accept": "text/event-stream"})
    assert bad.status_code == 422
