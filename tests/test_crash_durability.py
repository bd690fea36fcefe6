"""Crash durability (SECURITY.md #3): SIGKILL `assistant serve` in the middle of a stream of
posted messages, restart it on the same database and data dir, and let the clients retry
what was never acknowledged, as real clients would (same Idempotency-Key, same body).

Afterwards every acknowledged message is stored exactly once, every key has one customer
message and at most one bot reply, the hand-offs queued before the crash are still in the
agents' queue, the claimed one is still with its agent, no conversation is owned by nobody,
and SQLite's integrity check passes. Runs on SQLite and, when configured, on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, Backend, auth, write_kb
from servers import ServerProcess, database_url, start_server, wait_until_up
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password
from assistant.storage.tables import (
    OPEN_HANDOFF_STATUSES,
    Agent,
    Conversation,
    Event,
    Handoff,
    IdempotencyKey,
    Message,
)

STREAMERS = 6  # client threads posting at once: more than the server's 4 request threads
KILL_AFTER_ACKS = 30  # the kill lands once this many posts were acknowledged
MAX_POSTS_PER_STREAMER = 200  # a bound in case the kill never comes
BOT_CHATS = 6
QUEUED_CHATS = 3
STALE_SECONDS = 2  # a key left pending by the crash may be resumed this soon after it
REPLAYED_ACKS = 5  # acknowledged posts sent again after the restart

# Distinct questions the demo KB answers. Each conversation gets them in turn, so none is
# a repeat (which would hand the conversation off) and most turns run the bot, the turns
# a crash can interrupt between the stored message and the stored reply. The fourth asks
# for a person: the bot hands its conversations off around the time of the kill.
QUESTIONS = (
    "How do I reset my password?",
    "Which Slack permissions does the integration request?",
    "Are annual plans refundable within fourteen days of purchase?",
    "Can I talk to a human agent please?",
    "The reset email never arrived, should I check spam?",
    "Where are dashboard alerts sent after connecting Slack?",
    "Do monthly subscriptions keep access until the period ends?",
    "How many characters must a new password contain?",
    "Can I pick the channel that receives alerts?",
    "Whom should I write to with my invoice number?",
    "How long before the emailed link expires?",
    "Where is the integrations page in settings?",
    "What does the Forgot password button on the sign-in page do?",
)

# What each conversation status says about its hand-offs: "waiting" needs exactly one
# queued one, "agent" exactly one assigned one, "bot" and "resolved" none open.
OPEN_HANDOFF_FOR_STATUS: dict[str, str | None] = {
    "bot": None, "resolved": None, "waiting": "queued", "agent": "assigned",
}


@dataclass(frozen=True)
class Chat:
    """A customer conversation and the token that opens it."""

    id: str
    token: str


@dataclass
class Post:
    """One customer message sent with its own Idempotency-Key, and what came back."""

    chat: Chat
    key: str
    text: str
    status: int | None = None  # HTTP status of the last answer
    body: dict[str, Any] | None = None
    error: str | None = None  # the transport error that left it unacknowledged
    finished: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.status == 200 and self.body is not None


@dataclass
class Stream:
    """What the streaming threads share: every post made, and when enough were acked."""

    chats: list[Chat]
    posts: list[Post] = field(default_factory=list)
    acks: int = 0
    enough: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_post(self, streamer: int) -> Post:
        """A new post: conversations in turn, each getting the questions in turn."""
        with self.lock:
            number = len(self.posts)
            chat = self.chats[number % len(self.chats)]
            question = QUESTIONS[number // len(self.chats) % len(QUESTIONS)]
            key = f"crash-{streamer}-{number}-{uuid.uuid4().hex[:8]}"
            # A number (no words: it must not make questions look alike) makes every body
            # unique, so a duplicate shows in the transcript even without the key table.
            post = Post(chat, key, f"{question} (#{number:05d})")
            self.posts.append(post)
            return post

    def in_flight(self) -> int:
        """Posts sent whose answer has not come back (yet)."""
        with self.lock:
            return sum(1 for post in self.posts if not post.finished)


def post_message(client: httpx.Client, url: str, post: Post) -> httpx.Response:
    """Send ``post`` (always the same key and body, however often it is retried)."""
    return client.post(
        f"{url}/v1/conversations/{post.chat.id}/messages", json={"text": post.text},
        headers={**auth(post.chat.token), "Idempotency-Key": post.key},
    )


def retry_until_answered(client: httpx.Client, url: str, post: Post) -> tuple[httpx.Response, int]:
    """Send ``post`` again until the answer is not 409 "still running" (or a minute after
    the key should have gone stale): the last answer, and how many 409s came first."""
    deadline = time.monotonic() + STALE_SECONDS + 60
    busy = 0
    while True:
        response = post_message(client, url, post)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response, busy
        busy += 1
        # Polling the child process: nothing it does can be awaited from here.
        time.sleep(0.2)


def stream_messages(url: str, stream: Stream, streamer: int) -> None:
    """Post messages one after another until the server stops answering."""
    with httpx.Client(timeout=httpx.Timeout(60)) as client:
        for _ in range(MAX_POSTS_PER_STREAMER):
            post = stream.next_post(streamer)
            try:
                response = post_message(client, url, post)
            except httpx.TransportError as exc:
                # In flight when the server died, or sent after: not acknowledged.
                post.error = repr(exc)
                post.finished = True
                return
            post.status = response.status_code
            post.body = response.json() if response.status_code == 200 else None
            post.finished = True
            if post.acknowledged:
                with stream.lock:
                    stream.acks += 1
                    if stream.acks >= KILL_AFTER_ACKS:
                        stream.enough.set()


def open_chat(client: httpx.Client, url: str) -> Chat:
    """A new anonymous conversation."""
    response = client.post(url + "/v1/conversations", json={})
    assert response.status_code == 201, response.text
    body = response.json()
    return Chat(body["id"], body["token"])


def create_agent(backend: Backend) -> tuple[str, str]:
    """An online agent of every team, made through the store the CLI uses: (id, token)."""
    record = backend.handoffs.create_agent(
        email=f"crash-{uuid.uuid4().hex[:6]}@example.com", name="Casey Crash", role="agent",
        password_hash=hash_password("a long enough password"),
        teams=["support", "billing", "retention"], capacity=5,
    )
    backend.handoffs.set_online(record.id, True)
    token = new_conversation_token()
    backend.handoffs.add_token(record.id, hash_token(token), "crash")
    return record.id, token


def ownership_problems(backend: Backend) -> list[str]:
    """Conversations owned by nobody, and hand-offs that contradict their conversation.

    A conversation "waiting" for a person must have exactly one queued hand-off (no agent);
    one with an "agent" exactly one assigned hand-off held by an existing, active agent;
    "bot" and "resolved" ones no open hand-off at all.
    """
    with Session(backend.engine) as session:
        statuses = dict(session.execute(select(Conversation.id, Conversation.status)).all())
        handoffs = session.execute(
            select(Handoff.id, Handoff.conversation_id, Handoff.status, Handoff.agent_id)
        ).all()
        active = dict(session.execute(select(Agent.id, Agent.active)).all())
    problems = []
    open_by_chat: dict[str, list[str]] = defaultdict(list)
    for handoff_id, chat_id, status, agent_id in handoffs:
        if chat_id not in statuses:
            problems.append(f"hand-off {handoff_id} of a missing conversation {chat_id}")
        if status == "queued" and agent_id is not None:
            problems.append(f"queued hand-off {handoff_id} has agent {agent_id}")
        if status == "assigned" and (agent_id is None or not active.get(agent_id)):
            problems.append(f"assigned hand-off {handoff_id} has no active agent ({agent_id})")
        if status in OPEN_HANDOFF_STATUSES:
            open_by_chat[chat_id].append(status)
    for chat_id, status in statuses.items():
        if status not in OPEN_HANDOFF_FOR_STATUS:
            problems.append(f"conversation {chat_id} has unknown status {status!r}")
            continue
        wanted = OPEN_HANDOFF_FOR_STATUS[status]
        if open_by_chat.get(chat_id, []) != ([wanted] if wanted else []):
            problems.append(f"conversation {chat_id} is {status!r} with open hand-offs "
                            f"{open_by_chat.get(chat_id, [])}")
    return problems


def promised_handoffs(backend: Backend) -> tuple[int, list[str]]:
    """How many bot replies told the customer a person is coming, and those of them with
    no hand-off queued after.

    The reply and the hand-off are written in separate transactions; a crash between them
    would leave a customer waiting for a person nobody was asked to send.
    """
    promised, problems = 0, []
    sent = {e.payload.get("message_id"): e
            for e in backend.store.list_events(type="answer.sent", limit=100_000)}
    enqueued: dict[str | None, list[int]] = defaultdict(list)
    for event in backend.store.list_events(type="handoff.enqueued", limit=100_000):
        enqueued[event.conversation_id].append(event.id)
    with Session(backend.engine) as session:
        replies = session.execute(
            select(Message.id, Message.conversation_id, Message.annotations)
            .where(Message.role == "assistant")
        ).all()
    for message_id, chat_id, notes in replies:
        if ((notes or {}).get("decision") or {}).get("action") != "handoff":
            continue
        promised += 1
        answer = sent.get(message_id)
        if answer is None or not any(e > answer.id for e in enqueued[chat_id]):
            problems.append(f"reply {message_id} in {chat_id} promised a person; none queued")
    return promised, problems


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Every server process the test starts; whatever is still running is stopped."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    backend: Backend, tmp_path: Path, servers: list[ServerProcess], record_property: Any
) -> None:
    env = {
        "ASSISTANT_DATABASE_URL": database_url(backend.url, backend.connect_args),
        "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
        "ASSISTANT_KB_DIR": str(write_kb(tmp_path / "kb")),
        "ASSISTANT_ADMIN_TOKEN": ADMIN_TOKEN,
        "ASSISTANT_IDEMPOTENCY_STALE_SECONDS": str(STALE_SECONDS),
        # A handful of clients on one address post hundreds of messages in seconds.
        "ASSISTANT_IP_RATE_LIMIT_PER_MINUTE": "1000000",
        "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000",
    }
    log = tmp_path / "server.log"

    def start(port: int | None = None) -> ServerProcess:
        # Registered before waiting, so a server that never comes up is still stopped.
        server = start_server(env, log, port=port, wait=False)
        servers.append(server)
        wait_until_up(server.url, server.process, log)
        return server

    started = time.monotonic()
    server = start()
    record_property("start_seconds", round(time.monotonic() - started, 2))
    url = server.url
    agent_id, agent_token = create_agent(backend)

    with httpx.Client(timeout=60) as client:
        chats = [open_chat(client, url) for _ in range(BOT_CHATS + QUEUED_CHATS + 1)]
        handed_off = chats[BOT_CHATS:]
        for chat in handed_off:
            response = client.post(f"{url}/v1/conversations/{chat.id}/handoff",
                                   headers=auth(chat.token))
            assert response.status_code == 200, response.text
        handoff_ids = {}
        for chat in handed_off:
            handoff = backend.handoffs.open_for_conversation(chat.id)
            assert handoff is not None and handoff.status == "queued", handoff
            handoff_ids[chat.id] = handoff.id
        claimed_chat, queued_chats = handed_off[-1], handed_off[:-1]
        claim = client.post(f"{url}/v1/agent/handoffs/{handoff_ids[claimed_chat.id]}/claim",
                            headers=auth(agent_token))
        assert claim.status_code == 200, claim.text

    # The stream: held messages (hand-off conversations) as well as answered ones.
    stream = Stream(chats)
    threads = [threading.Thread(target=stream_messages, args=(url, stream, n),
                                daemon=True) for n in range(STREAMERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    assert stream.enough.wait(timeout=120), (
        f"only {stream.acks} posts acknowledged: {[p.status for p in stream.posts][:20]}")
    in_flight = stream.in_flight()
    server.kill()
    record_property("stream_seconds_until_kill", round(time.monotonic() - started, 2))
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a streaming client hung after the kill"
    with Session(backend.engine) as session:
        last_message_at_kill = int(session.scalar(select(func.max(Message.id))) or 0)

    posts = stream.posts
    acked_before = [p for p in posts if p.acknowledged]
    unacked = [p for p in posts if p.error is not None]
    refused = [(p.key, p.status) for p in posts if not p.acknowledged and p.error is None]
    assert refused == [], f"answers other than 200 before the kill: {refused}"
    assert in_flight > 0, "the kill did not land in the middle of the stream"
    record_property("posts_sent", len(posts))
    record_property("acknowledged_before_kill", len(acked_before))
    record_property("in_flight_at_kill", in_flight)
    record_property("unacknowledged", len(unacked))
    originals = {p.key: p.body for p in acked_before}

    started = time.monotonic()
    server = start(port=server.port)
    record_property("restart_seconds", round(time.monotonic() - started, 2))

    # Retry like a client: same key, same body, until a definitive answer. A key the crash
    # left pending answers 409 until it is stale, then the turn is resumed.
    started = time.monotonic()
    busy_answers = 0
    stuck: list[str] = []
    with httpx.Client(timeout=60) as client:
        for post in unacked:
            response, busy = retry_until_answered(client, url, post)
            busy_answers += busy
            post.status = response.status_code
            post.body = response.json() if response.status_code == 200 else None
            if not post.acknowledged:
                stuck.append(f"{post.key}: {response.status_code} {response.text[:200]}")
        record_property("retry_seconds", round(time.monotonic() - started, 2))
        record_property("retry_409_answers", busy_answers)
        assert stuck == [], f"retries without a definitive answer: {stuck}"

        # The customer messages committed before the crash come back with their old ids.
        stored_before = [p for p in unacked
                         if p.body is not None and p.body["message"]["id"] <= last_message_at_kill]
        record_property("unacknowledged_but_stored_before_kill", len(stored_before))
        replayed = sum(1 for p in stored_before if p.body is not None and p.body["replayed"])
        # Replayed: the turn was complete, only the answer was lost. Resumed: the crash
        # came between the stored message and the stored reply.
        record_property("unacknowledged_replayed", replayed)
        record_property("unacknowledged_resumed", len(stored_before) - replayed)

        # Acknowledged before the crash: a retry returns the original, never a new message.
        for post in acked_before[:REPLAYED_ACKS]:
            again = post_message(client, url, post)
            assert again.status_code == 200, again.text
            body, original = again.json(), originals[post.key]
            assert original is not None and body["replayed"] is True, body
            assert body["message"]["id"] == original["message"]["id"], (body, original)
            assert (body["reply"] or {}).get("id") == (original["reply"] or {}).get("id"), (
                body, original)

        # Every acknowledged message is in its transcript exactly once, with the acked id.
        transcripts = {}
        for chat in chats:
            response = client.get(f"{url}/v1/conversations/{chat.id}/messages",
                                  headers=auth(chat.token))
            assert response.status_code == 200, response.text
            transcripts[chat.id] = response.json()["messages"]
        queue = client.get(url + "/v1/agent/queue", headers=auth(agent_token))
        assert queue.status_code == 200, queue.text
        queued_in_api = {item["handoff"]["id"] for item in queue.json()["items"]}
        states = {chat.id: client.get(f"{url}/v1/conversations/{chat.id}",
                                      headers=auth(chat.token)).json() for chat in handed_off}

    expected = {p.key: p for p in posts}  # by now every post was acknowledged
    customer_texts = Counter(m["text"] for ms in transcripts.values() for m in ms
                             if m["role"] == "customer")
    assert {t for t, n in customer_texts.items() if n > 1} == set(), "duplicated messages"
    assert set(customer_texts) == {p.text for p in posts}, "lost or unexpected messages"
    for post in posts:
        ids = [m["id"] for m in transcripts[post.chat.id] if m["text"] == post.text]
        assert post.body is not None and ids == [post.body["message"]["id"]], (post.key, ids)

    # The same, straight from the database, with the idempotency table and the bot's replies.
    with Session(backend.engine) as session:
        stored = Counter(session.scalars(
            select(Message.text).where(Message.role == "customer")).all())
        keys = {row.key: (row.status, row.customer_message_id, row.reply_message_id)
                for row in session.scalars(select(IdempotencyKey))}
        assistant_messages = set(session.scalars(
            select(Message.id).where(Message.role == "assistant")).all())
        answered = Counter(int(e.payload["reply_to"]) for e in session.scalars(
            select(Event).where(Event.type == "answer.sent")))
    assert stored == Counter({p.text: 1 for p in posts})
    assert set(keys) == set(expected)
    for key, (status, message_id, reply_id) in keys.items():
        body = expected[key].body
        assert body is not None
        assert (status, message_id) == ("done", body["message"]["id"]), (key, status)
        assert reply_id == (body["reply"] or {}).get("id"), key
        assert reply_id is None or reply_id in assistant_messages, key
        assert answered[message_id] <= 1, f"{answered[message_id]} bot replies to key {key}"
    assert max(answered.values(), default=0) <= 1
    record_property("bot_replies", sum(answered.values()))

    # Hand-offs: the queued ones are still queued (and in the agents' queue), the claimed
    # one is still with its agent, and no conversation is left owned by nobody.
    for chat in queued_chats:
        handoff = backend.handoffs.get(handoff_ids[chat.id])
        assert handoff is not None and handoff.status == "queued", handoff
        assert handoff.id in queued_in_api
        assert states[chat.id]["status"] == "waiting", states[chat.id]
    held = backend.handoffs.get(handoff_ids[claimed_chat.id])
    assert held is not None and (held.status, held.agent_id) == ("assigned", agent_id), held
    assert states[claimed_chat.id]["status"] == "agent", states[claimed_chat.id]
    queued_in_db = {h.id for h in backend.handoffs.queue(limit=1000)}
    assert queued_in_api == queued_in_db
    assert ownership_problems(backend) == []
    promised, broken_promises = promised_handoffs(backend)
    record_property("bot_handoffs", promised)
    assert broken_promises == []

    if backend.name == "sqlite":
        with backend.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalars().all() == ["ok"]
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
