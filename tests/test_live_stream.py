"""Live event streams (SSE) over a real server: delivery, resume without loss, privacy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from conftest import LiveServer, TestAgent, auth


@dataclass(frozen=True)
class Sse:
    id: int
    event: str
    data: dict


def parse(lines: Iterator[str]) -> Iterator[Sse]:
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields and "id" in fields:
                yield Sse(int(fields["id"]), fields.get("event", "message"),
                          json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@contextmanager
def stream(url: str, headers: dict[str, str]) -> Iterator[Iterator[Sse]]:
    """Open an SSE stream; iterate it to block (up to the read timeout) for the next event.

    Reading happens in the test's own thread, between the requests it makes, so closing
    the stream never has to interrupt a reader blocked elsewhere.
    """
    with httpx.Client(timeout=httpx.Timeout(5, read=10)) as client, \
            client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        yield parse(response.iter_lines())


def take(events: Iterator[Sse], until) -> list[Sse]:
    """Events up to and including the first for which ``until`` holds."""
    seen: list[Sse] = []
    for event in events:
        seen.append(event)
        if until(event):
            return seen
    raise AssertionError(f"the stream ended before the expected event; got {seen}")


def post(server: LiveServer, path: str, token: str, **kwargs) -> httpx.Response:
    response = httpx.post(server.url + path, headers=auth(token), timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response


@pytest.fixture
def chat(live_server: LiveServer) -> dict[str, str]:
    response = httpx.post(live_server.url + "/v1/conversations", json={}, timeout=10)
    return response.json()


def handed_to(server: LiveServer, chat: dict[str, str], agent: TestAgent) -> None:
    post(server, f"/v1/conversations/{chat['id']}/messages", chat["token"],
         json={"text": "My invoice is wrong"})
    post(server, f"/v1/conversations/{chat['id']}/handoff", chat["token"])
    queue_items = httpx.get(server.url + "/v1/agent/queue", headers=auth(agent.token)).json()
    (item,) = queue_items["items"]
    post(server, f"/v1/agent/handoffs/{item['handoff']['id']}/claim", agent.token)


def test_an_agent_reply_reaches_the_customer_stream(live_server, chat, agent) -> None:
    handed_to(live_server, chat, agent)
    url = f"{live_server.url}/v1/conversations/{chat['id']}/events"
    with stream(url, auth(chat["token"])) as events:
        history = take(events, lambda e: e.data.get("status") == "agent")
        post(live_server, f"/v1/agent/conversations/{chat['id']}/messages", agent.token,
             json={"text": "Hello, Alex here. Let me look."})
        (reply,) = [e for e in take(events, lambda e: e.event == "message"
                                    and e.data["message"]["role"] == "agent")
                    if e.event == "message" and e.data["message"]["role"] == "agent"]
    assert reply.data["message"]["text"] == "Hello, Alex here. Let me look."
    assert reply.data["message"]["author"] == agent.name
    assert "annotations" not in reply.data["message"]  # customers never see internals
    assert [e.data["message"]["role"] for e in history if e.event == "message"][:2] == [
        "customer", "assistant"]


def test_customer_messages_reach_the_agent_stream_with_notes(live_server, chat, agent) -> None:
    handed_to(live_server, chat, agent)
    url = f"{live_server.url}/v1/agent/conversations/{chat['id']}/events"
    with stream(url, auth(agent.token)) as events:
        take(events, lambda e: e.data.get("status") == "agent")
        post(live_server, f"/v1/agent/conversations/{chat['id']}/notes", agent.token,
             json={"text": "check the EU VAT"})
        post(live_server, f"/v1/conversations/{chat['id']}/messages", chat["token"],
             json={"text": "Are you still there?"})
        got = take(events, lambda e: e.event == "message"
                   and e.data["message"]["text"] == "Are you still there?")
    assert any(e.event == "note" and e.data["payload"]["text"] == "check the EU VAT" for e in got)
    message = got[-1].data["message"]
    assert message["role"] == "customer" and "annotations" in message


def test_reconnecting_resumes_exactly_where_it_left_off(live_server, chat, agent) -> None:
    handed_to(live_server, chat, agent)
    url = f"{live_server.url}/v1/conversations/{chat['id']}/events"
    with stream(url, auth(chat["token"])) as events:
        first = take(events, lambda e: e.data.get("status") == "agent")
    # While disconnected: an agent reply, a customer message, another reply.
    for n in range(3):
        who, path = ((agent.token, f"/v1/agent/conversations/{chat['id']}/messages")
                     if n % 2 == 0 else (chat["token"], f"/v1/conversations/{chat['id']}/messages"))
        post(live_server, path, who, json={"text": f"message {n}"})
    last = first[-1].id
    with stream(url, {**auth(chat["token"]), "Last-Event-ID": str(last)}) as events:
        resumed = take(events, lambda e: e.event == "message"
                       and e.data["message"]["text"] == "message 2")
    with stream(url + f"?after={last}", auth(chat["token"])) as events:
        again = take(events, lambda e: e.event == "message"
                     and e.data["message"]["text"] == "message 2")
    with stream(url, auth(chat["token"])) as events:
        everything = take(events, lambda e: e.event == "message"
                          and e.data["message"]["text"] == "message 2")
    assert [e.id for e in first + resumed] == [e.id for e in everything]  # 0 lost, 0 twice
    assert resumed == again
    assert [e.data["message"]["text"] for e in resumed] == [
        f"{agent.name} joined the conversation.", "message 0", "message 1", "message 2"]


def test_a_bad_last_event_id_is_a_clear_error(live_server, chat) -> None:
    response = httpx.get(f"{live_server.url}/v1/conversations/{chat['id']}/events",
                         headers={**auth(chat["token"]), "Last-Event-ID": "yesterday"})
    assert response.status_code == 422
    assert "Last-Event-ID" in response.json()["error"]["message"]


def test_the_queue_stream_shows_new_handoffs(live_server, chat, agent) -> None:
    url = f"{live_server.url}/v1/agent/queue/events"
    with stream(url, auth(agent.token)) as events:
        initial = next(events)
        assert initial.event == "queue" and initial.data["items"] == []
        post(live_server, f"/v1/conversations/{chat['id']}/handoff", chat["token"])
        update = take(events, lambda e: e.event == "queue" and e.data["items"])[-1]
    (item,) = update.data["items"]
    assert item["handoff"]["conversation_id"] == chat["id"]
    assert item["handoff"]["reasons"] == ["human_requested"]
