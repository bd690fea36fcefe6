"""A stored "a person is coming" is always followed by a queued hand-off, even when the
process dies between the two transactions (found by tests/test_crash_durability.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from assistant.handoff import HandoffService
from assistant.runtime import Runtime
from assistant.web.app import create_app

ASK = "Can I talk to a human agent please?"


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no handler catches it."""


def crash_after_the_reply(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> str:
    """Post a hand-off request whose hand-off is never queued; the conversation id."""
    conversation = runtime.conversations.start(claim=None, user_hash=None).conversation

    def die(*_args: object, **_kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(HandoffService, "enqueue", die)
        with pytest.raises(Killed):
            runtime.conversations.post_message(conversation, text=ASK, idempotency_key="k1")
    assert runtime.handoffs.open_for_conversation(conversation.id) is None
    return conversation.id


def test_a_retry_keeps_the_promise(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation_id = crash_after_the_reply(runtime, monkeypatch)
    conversation = runtime.store.get_conversation(conversation_id)
    assert conversation is not None
    again = runtime.conversations.post_message(conversation, text=ASK, idempotency_key="k1")
    assert again.replayed and again.reply is not None
    assert again.reply.annotations["decision"]["action"] == "handoff"
    assert again.handoff is not None and again.handoff.status == "queued"
    # A second retry does not queue a second one.
    runtime.conversations.post_message(conversation, text=ASK, idempotency_key="k1")
    assert runtime.handoffs.count_by_status() == {"queued": 1}


def test_a_restart_keeps_the_promise(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation_id = crash_after_the_reply(runtime, monkeypatch)
    assert runtime.conversations.repair_promised_handoffs() == 1
    handoff = runtime.handoffs.open_for_conversation(conversation_id)
    assert handoff is not None and handoff.status == "queued"
    conversation = runtime.store.get_conversation(conversation_id)
    assert conversation is not None and conversation.status == "waiting"
    assert runtime.conversations.repair_promised_handoffs() == 0


def test_kept_promises_and_later_returns_are_left_alone(runtime: Runtime, agent) -> None:
    conversation = runtime.conversations.start(claim=None, user_hash=None).conversation
    posted = runtime.conversations.post_message(conversation, text=ASK, idempotency_key="k1")
    assert posted.handoff is not None
    runtime.handoff.claim(posted.handoff.id, runtime.handoffs.get_agent(agent.id))
    runtime.handoff.return_to_bot(conversation.id, runtime.handoffs.get_agent(agent.id))
    # Back with the bot after a person: the old reply's promise was kept; nothing to do.
    assert runtime.conversations.repair_promised_handoffs() == 0
    assert runtime.handoffs.open_for_conversation(conversation.id) is None


def test_the_server_repairs_at_start_up(runtime: Runtime,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    conversation_id = crash_after_the_reply(runtime, monkeypatch)
    with TestClient(create_app(runtime=runtime)) as client:
        assert client.get("/healthz").status_code == 200
        handoff = runtime.handoffs.open_for_conversation(conversation_id)
        assert handoff is not None and handoff.status == "queued"
