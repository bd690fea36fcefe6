"""One owner at a time: the bot never speaks while a person owns the conversation or is
on the way, and a conversation handed back does not bounce straight back."""

from __future__ import annotations

import threading

from conftest import TestAgent, auth, make_agent
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from assistant.policy import Action, TurnSignals

CUSTOMER_LINES = [
    "How do I reset my password?",
    "I want to talk to a human",
    "This is useless, third time I'm asking!!!",
    "thanks, bye",
    "How do I export my data?",
]


def test_the_bot_is_silent_whenever_a_person_owns_or_is_coming(client: TestClient, runtime,
                                                               agent: TestAgent) -> None:
    # ``agent`` stays online so hand-offs are staffed; each walk claims with its own agent.
    """A random walk over customer and agent actions never gets a bot message in."""

    class Conversation(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.chat = client.post("/v1/conversations", json={}).json()
            # Each walk has its own agent, so capacity used by earlier walks never matters.
            self.agent = make_agent(runtime, "Walk Agent", capacity=50)

        def status(self) -> str:
            found = runtime.store.get_conversation(self.chat["id"])
            assert found is not None
            return found.status

        @rule(text=st.sampled_from(CUSTOMER_LINES))
        def customer_writes(self, text: str) -> None:
            before = self.status()
            response = client.post(f"/v1/conversations/{self.chat['id']}/messages",
                                   json={"text": text}, headers=auth(self.chat["token"]))
            assert response.status_code == 200, response.text
            if before in {"waiting", "agent"}:
                assert response.json()["reply"] is None

        @rule()
        def customer_asks_for_a_person(self) -> None:
            client.post(f"/v1/conversations/{self.chat['id']}/handoff",
                        headers=auth(self.chat["token"]))

        # Rules check the state themselves instead of using preconditions: Hypothesis must
        # draw the same steps on replay, and the state lives in the database.
        @rule()
        def agent_claims(self) -> None:
            if self.status() != "waiting":
                return
            open_handoff = runtime.handoff.open_handoff(self.chat["id"])
            assert open_handoff is not None
            response = client.post(f"/v1/agent/handoffs/{open_handoff.id}/claim",
                                   headers=auth(self.agent.token))
            assert response.status_code == 200, response.text

        @rule(action=st.sampled_from(["messages", "return-to-bot", "resolve", "release"]))
        def agent_acts(self, action: str) -> None:
            if self.status() != "agent":
                return
            base = f"/v1/agent/conversations/{self.chat['id']}"
            if action == "messages":
                response = client.post(f"{base}/messages", json={"text": "On it."},
                                       headers=auth(self.agent.token))
            elif action == "resolve":
                response = client.post(f"{base}/resolve", json={"resolution_code": "done"},
                                       headers=auth(self.agent.token))
            elif action == "release":
                handoff = runtime.handoff.open_handoff(self.chat["id"])
                assert handoff is not None
                response = client.post(f"/v1/agent/handoffs/{handoff.id}/release",
                                       headers=auth(self.agent.token))
            else:
                response = client.post(f"{base}/{action}", headers=auth(self.agent.token))
            assert response.status_code < 300, response.text

        @invariant()
        def one_owner(self) -> None:
            status = self.status()
            handoff = runtime.handoff.open_handoff(self.chat["id"])
            expected = {"queued": "waiting", "assigned": "agent"}
            if handoff is not None:
                assert expected[handoff.status] == status
            else:
                assert status in {"bot", "resolved"}

        @invariant()
        def bot_never_spoke_while_a_person_owned_it(self) -> None:
            assert runtime.handoff.stats()["bot_messages_while_human_owned"] == 0

    Conversation.TestCase.settings = settings(
        max_examples=25, stateful_step_count=25, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    Conversation.TestCase().runTest()
    stats = client.get("/v1/agent/stats", headers=auth(agent.token)).json()
    assert stats["bot_messages_while_human_owned"] == 0
    # The walks got far: people claimed, resolved and returned conversations.
    assert stats["resolved"] and stats["returned"] and stats["assigned"] + stats["queued"]


def test_a_handoff_during_a_bot_turn_silences_the_late_answer(client, conversation, runtime,
                                                             monkeypatch) -> None:
    """The customer presses "Talk to a person" while the bot is still composing."""
    entered, release = threading.Event(), threading.Event()
    real = runtime.engine.handle_turn

    def slow_turn(**kwargs):
        entered.set()
        assert release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(runtime.engine, "handle_turn", slow_turn)
    result: dict = {}

    def write() -> None:
        result["response"] = client.post(
            f"/v1/conversations/{conversation['id']}/messages",
            json={"text": "How do I reset my password?"}, headers=auth(conversation["token"]))

    writer = threading.Thread(target=write)
    writer.start()
    assert entered.wait(10)
    pressed = client.post(f"/v1/conversations/{conversation['id']}/handoff",
                          headers=auth(conversation["token"]))
    assert pressed.status_code == 200
    release.set()
    writer.join(10)
    assert result["response"].status_code == 200
    assert result["response"].json()["reply"] is None
    roles = [m.role for m in runtime.store.list_messages(conversation_id=conversation["id"])]
    assert roles == ["customer", "system"]  # the message and the hand-off notice; no bot
    stats = runtime.handoff.stats()
    assert stats["answers_suppressed"] == 1 and stats["bot_messages_while_human_owned"] == 0


def test_a_returned_conversation_does_not_bounce_back_without_a_new_reason(runtime) -> None:
    policy = runtime.engine.policy
    angry = TurnSignals(text="this is useless", sentiment="negative", frustration=0.9,
                        frustration_cues=("capitals",))
    assert policy.decide(angry).action is Action.HANDOFF
    held = policy.decide(TurnSignals(**{**angry.__dict__,
                                        "returned_reasons": frozenset({"very_frustrated"})}))
    assert held.action is Action.ANSWER_AND_OFFER_HUMAN
    assert "loop_guard" in held.reasons and "very_frustrated" in held.evidence["loop_guard"]
    # A new reason (a legal threat) hands off again; so does an explicit request.
    legal = policy.decide(TurnSignals(text="my lawyer will hear about this", intent="complaint",
                                      churn=(("legal_threat", "my lawyer"),),
                                      returned_reasons=frozenset({"very_frustrated"})))
    assert legal.action is Action.HANDOFF
    asked = policy.decide(TurnSignals(text="a human please", intent="human_request",
                                      returned_reasons=frozenset({"human_requested"})))
    assert asked.action is Action.HANDOFF


def test_the_loop_guard_holds_over_http(client, conversation, runtime) -> None:
    helper = make_agent(runtime, "Loop Guard")

    def say(text: str) -> dict:
        return client.post(f"/v1/conversations/{conversation['id']}/messages",
                           json={"text": text}, headers=auth(conversation["token"])).json()

    first = say("This is useless!!! USELESS!!! Third time asking!!!")
    assert first["handoff"] is not None, first
    handoff = runtime.handoff.open_handoff(conversation["id"])
    assert handoff is not None
    client.post(f"/v1/agent/handoffs/{handoff.id}/claim", headers=auth(helper.token))
    client.post(f"/v1/agent/conversations/{conversation['id']}/return-to-bot",
                headers=auth(helper.token))
    # Still frustrated, but for the same reason the agent handed it back with.
    again = say("What a joke. Still broken!!!")
    assert again["reply"] is not None and again["handoff"] is None
    assert again["reply"]["offer_human"] is True
    stored = runtime.store.list_messages(conversation_id=conversation["id"])[-1]
    assert "loop_guard" in stored.annotations["decision"]["reasons"]
    assert runtime.handoff.open_handoff(conversation["id"]) is None
