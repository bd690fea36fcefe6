"""Mixed-traffic load test: customers, KB questions, hand-offs, agents and SSE listeners.

The demo knowledge base is ingested once (``assistant ingest``, real ONNX embeddings) into a
template directory. For every configuration ({1, 2} workers x {SQLite, PostgreSQL}) the
benchmark then starts the real server (``assistant serve --workers N``) in a subprocess on a
free port of 127.0.0.1, with a clean ``ASSISTANT_*`` environment: a fresh data directory
holding a copy of the template's vector index, a fresh database (SQLite in the data
directory, or a new schema in PostgreSQL that is dropped afterwards), a random admin token,
rate limits raised out of the way (all traffic comes from one address) and no LLM (the
offline extractive answerer with the real ONNX embedder). Agent accounts with API tokens
are created beforehand in the same database (what ``assistant agents create`` and
``assistant agents token`` do, without a process each).

Then it steps the load up. At each step ``U`` virtual customers run closed loops for
``--duration`` seconds, each one over and over: open a conversation (``POST
/v1/conversations``), keep its SSE stream (``GET /v1/conversations/{id}/events``) open while
chatting, ask 2-4 help-center questions (``POST .../messages`` with an ``Idempotency-Key``,
a think time between them), and in ``--handoff-share`` of conversations ask for a person
(``POST .../handoff``; the bot also hands off by itself on refund demands and the like).
A handed-off customer writes one more line (the bot stays quiet) and waits for the agent's
reply on its stream. Agent virtual users go online, poll ``GET /v1/agent/queue``, claim
(``409`` when another agent was faster is an expected outcome, not an error), reply and
resolve.

Measured per request type and overall: count, throughput, p50/p95/p99 latency, errors
(transport failures, 5xx, and any 4xx other than a contested claim), and the SSE delivery
time from an agent reply being acknowledged to it arriving on the customer's stream. After
each step every conversation is read back (``GET .../messages``): every acknowledged
customer message must be stored exactly once and every acknowledged bot and agent reply
must be stored; misses are "lost", extra copies "duplicated".

A step is sustainable when it has no errors, nothing lost or duplicated, every agent reply
reached its open stream, and the p95 turn latency (``POST .../messages``) is within
``--slo-ms``. The ladder stops at the first step that is not (``--keep-going`` runs all).

Throughput (turns/s, req/s) counts what completed within each step's ``--duration``;
latencies cover every request of the step. The default run (4 configurations, customers
8, 16, 32, 64, 20 s steps) takes about 10 minutes on 2 cores; ``--quick`` (8 customers,
8 s) is a smoke run of a few minutes, most of it ingestion and server start-up.

    python benchmarks/load_mixed.py [--workers 1,2] [--backends sqlite,postgresql]
        [--users 8,16,32,64] [--duration 20] [--slo-ms 1000] [--pg-url URL] [--quick]
        [--template DIR] [--server-env NAME=VALUE] [--json results/load_mixed.json]

PostgreSQL defaults to ``ASSISTANT_TEST_DATABASE_URL`` or
postgresql+psycopg://postgres@127.0.0.1:5432/test and is skipped, with a message, when it
cannot be reached. The load generator shares the machine with the server: on a small box its
own CPU use (reported) lowers what the server can do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _common import (
    ROOT,
    console,
    env_setting,
    fresh_pg_schema,
    percentile,
    require,
    show_table,
    write_json,
)
from sqlalchemy.pool import NullPool
from turn_latency import (
    clean_env,
    cores_busy,
    free_port,
    log_tail,
    spawn_serve,
    stop_server,
    tree_cpu_seconds,
    wait_until_ready,
    worker_pids,
)

from assistant.identity import hash_token, new_conversation_token
from assistant.passwords import hash_password
from assistant.storage.db import make_engine, migrate
from assistant.storage.handoff_repo import HandoffStore

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_USERS = (8, 16, 32, 64)
QUICK_USERS = (8,)
QUICK_DURATION_S = 8.0
QUICK_GRACE_S = 5.0
TEAMS = ("support", "billing", "retention")  # every team the shipped policy routes to
SSE_DELIVERY_GRACE_S = 5.0  # an acknowledged agent reply may still be on its way
VERIFY_CONCURRENCY = 8
ERROR_SAMPLES = 8
WARMUP_TURNS = 12
MESSAGE_PAGE = 200  # what GET .../messages returns at most per call
INDEX_DIRS = ("chroma", "models")  # what ingestion leaves in a data dir besides the database
TABLE_WIDTH = 140  # when the output is not a terminal (a log file), do not squeeze tables

# What Tallyboard customers ask the help center (the demo KB's topics); a few also make the
# bot hand off by itself (money back, a double charge), as real traffic does.
KB_QUESTIONS = (
    "How do I reset my password?",
    "I forgot my password and the reset email never arrived",
    "My account is locked after too many failed sign-in attempts, what do I do?",
    "How do I turn on two-factor authentication?",
    "Where do I find my 2FA recovery codes?",
    "How do I set up SSO with Okta using SAML?",
    "Can I change the email address I use to log in?",
    "Where can I download my invoices?",
    "How do I add our VAT number to invoices?",
    "Can I get a refund if I cancel in the middle of my billing cycle?",
    "I was charged twice this month, can I get my money back?",
    "How do I update the credit card on file?",
    "How do I upgrade from Starter to Pro?",
    "Can I switch from monthly to annual billing?",
    "How much does the Pro plan cost?",
    "How does seat-based billing work when I add a teammate?",
    "How do I connect Tallyboard to Slack?",
    "How do I connect Salesforce as a data source?",
    "What are the API rate limits?",
    "How do I create an API key?",
    "How do I rotate an API key without downtime?",
    "How do I verify webhook signatures?",
    "How can I export all of my data?",
    "Can I export a dashboard as CSV?",
    "My dashboard is not loading, it just spins forever",
    "Our Postgres sync keeps failing",
)
WAITING_LINES = (
    "Thanks, I'll wait for someone.",
    "OK, I'm still here whenever a person is free.",
    "Sure, please have someone look at my account.",
)
AGENT_REPLIES = (
    "Hi, I've looked at your account and fixed it on our side. Anything else?",
    "Thanks for waiting! I've sent you the details by email as well.",
    "Hello, I can help with that: it's done now, please try again.",
)


# -- what one step measured ----------------------------------------------------------------


@dataclass
class Conversation:
    """A customer's conversation and everything the server acknowledged in it."""

    id: str
    token: str
    customer_acked: list[tuple[int, str]] = field(default_factory=list)  # (id, text)
    unacked_texts: list[str] = field(default_factory=list)  # posted, no acknowledgement
    bot_acked: list[int] = field(default_factory=list)
    agent_acked: dict[int, float] = field(default_factory=dict)  # id -> acknowledged at
    seen_on_stream: dict[int, float] = field(default_factory=dict)  # id -> arrived at
    agent_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    handed_off: bool = False

    @property
    def auth(self) -> dict[str, str]:
        """The customer's bearer header."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class StepStats:
    """Counts, latencies and errors of one load step, per request type."""

    users: int
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)  # e.g. contested claims
    error_samples: list[str] = field(default_factory=list)
    conversations: list[Conversation] = field(default_factory=list)
    sse_events: int = 0
    handoffs: int = 0  # conversations handed off (by the customer or the bot)
    handoffs_answered: int = 0  # ... whose customer saw an agent's reply on the stream
    # Throughput counts what completed within the step's window (its --duration), so the
    # wind-down (customers waiting for agents, the last slow requests) does not dilute it.
    window_end: float = float("inf")  # perf_counter time
    window_seconds: float = 0.0
    in_window: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # until the last customer finished
    server_cpu_seconds: float | None = None  # within the window
    client_cpu_seconds: float = 0.0  # within the window

    def _done(self, kind: str) -> None:
        if time.perf_counter() <= self.window_end:
            self.in_window[kind] = self.in_window.get(kind, 0) + 1

    def ok(self, kind: str, ms: float) -> None:
        """Count a request that went as it should."""
        self._done(kind)
        self.latencies_ms.setdefault(kind, []).append(ms)

    def expect(self, kind: str, ms: float) -> None:
        """Count an expected refusal (it still took the server's time)."""
        self._done(kind)
        self.expected[kind] = self.expected.get(kind, 0) + 1
        self.latencies_ms.setdefault(kind, []).append(ms)

    def error(self, kind: str, message: str) -> None:
        """Count an error and keep the first few messages."""
        self._done(kind)
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"{kind}: {message}")


@dataclass
class AgentUser:
    """An agent virtual user: its API token and the conversations it holds."""

    email: str
    token: str
    capacity: int
    held: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def auth(self) -> dict[str, str]:
        """The agent's bearer header."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Options:
    """The knobs of a run (from the command line)."""

    users: list[int]
    duration: float
    think: tuple[float, float]
    agent_think: tuple[float, float]
    agents: int
    agent_capacity: int
    agent_poll: float
    handoff_share: float
    slo_ms: float
    grace: float
    timeout: float
    seed: int
    keep_going: bool
    server_env: dict[str, str]


# -- the load ------------------------------------------------------------------------------


class Load:
    """Drives one step of mixed traffic against a running server and records it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: StepStats,
        options: Options,
        agents: list[AgentUser],
        rng_seed: int,
        server_pid: int,
    ) -> None:
        self.server_pid = server_pid
        self.client = client
        self.stats = stats
        self.options = options
        self.agents = agents
        self.seed = rng_seed
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + options.duration
        self.by_id: dict[str, Conversation] = {}
        self.customers_done = asyncio.Event()
        self.agents_stop_at = float("inf")

    def running(self) -> bool:
        """Whether customers may still start something."""
        return self.loop.time() < self.deadline

    async def call(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        expected: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response | None:
        """One request, timed and classified; ``None`` when it failed."""
        t0 = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.stats.error(kind, f"{type(exc).__name__}: {exc}")
            return None
        ms = (time.perf_counter() - t0) * 1000
        if response.status_code in ok:
            self.stats.ok(kind, ms)
            return response
        if response.status_code in expected:
            self.stats.expect(kind, ms)
            return response
        self.stats.error(kind, f"HTTP {response.status_code}: {response.text[:200]}")
        return None

    async def think(self, rng: random.Random, bounds: tuple[float, float]) -> None:
        """A person's pause between actions."""
        await asyncio.sleep(rng.uniform(*bounds))

    # -- customers -------------------------------------------------------------------------

    async def customer(self, index: int) -> None:
        """One virtual customer: conversation after conversation until the step ends."""
        rng = random.Random(self.seed * 100_003 + index)
        # Customers do not all arrive in the same millisecond.
        await asyncio.sleep(rng.uniform(0, self.options.think[1]))
        while self.running():
            response = await self.call("conversation", "POST", "/v1/conversations",
                                       ok=(201,), json={})
            if response is None:
                await self.think(rng, self.options.think)
                continue
            body = response.json()
            conversation = Conversation(id=str(body["id"]), token=str(body["token"]))
            self.by_id[conversation.id] = conversation
            self.stats.conversations.append(conversation)
            stream = asyncio.create_task(self.listen(conversation))
            try:
                await self.chat(conversation, rng)
            finally:
                stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)

    async def chat(self, conversation: Conversation, rng: random.Random) -> None:
        """Ask a few questions, maybe ask for a person and wait for them."""
        for text in rng.sample(KB_QUESTIONS, rng.randint(2, 4)):
            if not self.running():
                return
            await self.think(rng, self.options.think)
            turn = await self.post_message(conversation, text)
            handoff = (turn or {}).get("handoff")
            if handoff and handoff.get("status") in {"queued", "assigned"}:
                conversation.handed_off = True  # the bot brought a person in
                break
        if not conversation.handed_off and self.running():
            if rng.random() >= self.options.handoff_share:
                return
            await self.think(rng, self.options.think)
            response = await self.call(
                "handoff", "POST", f"/v1/conversations/{conversation.id}/handoff",
                headers=conversation.auth,
            )
            if response is None:
                return
            conversation.handed_off = True
        if not conversation.handed_off:
            return
        self.stats.handoffs += 1
        await self.post_message(conversation, rng.choice(WAITING_LINES))  # bot stays quiet
        await self.wait_for_agent(conversation)

    async def post_message(self, conversation: Conversation, text: str) -> dict[str, Any] | None:
        """``POST .../messages`` with a fresh Idempotency-Key; the turn, if acknowledged."""
        response = await self.call(
            "message", "POST", f"/v1/conversations/{conversation.id}/messages",
            ok=(200, 201), json={"text": text},
            headers={**conversation.auth, "Idempotency-Key": uuid.uuid4().hex},
        )
        if response is None:
            conversation.unacked_texts.append(text)
            return None
        turn: dict[str, Any] = response.json()
        conversation.customer_acked.append((int(turn["message"]["id"]), text))
        if turn.get("reply"):
            conversation.bot_acked.append(int(turn["reply"]["id"]))
        return turn

    async def wait_for_agent(self, conversation: Conversation) -> None:
        """Wait (until the step's grace period ends) for an agent's reply on the stream."""
        left = self.deadline + self.options.grace - self.loop.time()
        try:
            await asyncio.wait_for(conversation.agent_arrived.wait(), timeout=max(left, 0.1))
        except TimeoutError:
            if not conversation.agent_acked:
                return  # no agent got to it in time (reported as unanswered)
            with contextlib.suppress(TimeoutError):  # replied: the stream may still bring it
                await asyncio.wait_for(
                    conversation.agent_arrived.wait(), timeout=SSE_DELIVERY_GRACE_S
                )
        if conversation.agent_arrived.is_set():
            self.stats.handoffs_answered += 1

    async def listen(self, conversation: Conversation) -> None:
        """Hold the conversation's SSE stream open and note when each message arrives."""
        t0 = time.perf_counter()
        url = f"/v1/conversations/{conversation.id}/events"
        headers = {**conversation.auth, "Accept": "text/event-stream"}
        timeout = httpx.Timeout(self.options.timeout, read=60.0)  # heartbeats every 15 s
        try:
            async with self.client.stream("GET", url, headers=headers, timeout=timeout) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    self.stats.error("sse_open", f"HTTP {resp.status_code}: {resp.text[:200]}")
                    return
                self.stats.ok("sse_open", (time.perf_counter() - t0) * 1000)
                kind, data = "message", ""
                async for line in resp.aiter_lines():
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            kind = value
                        elif name == "data":
                            data += value
                        continue
                    if data:
                        self.on_event(conversation, kind, data)
                    kind, data = "message", ""
            self.stats.error("sse", "the server ended the stream")
        except httpx.HTTPError as exc:
            self.stats.error("sse", f"{type(exc).__name__}: {exc}")

    def on_event(self, conversation: Conversation, kind: str, data: str) -> None:
        """Record a stream event's arrival."""
        self.stats.sse_events += 1
        if kind != "message":
            return
        message = json.loads(data)["message"]
        conversation.seen_on_stream.setdefault(int(message["id"]), time.perf_counter())
        if message.get("role") == "agent":
            conversation.agent_arrived.set()

    # -- agents ----------------------------------------------------------------------------

    async def agent(self, index: int, agent: AgentUser) -> None:
        """Poll the queue, claim what fits, reply and resolve; stop once drained."""
        rng = random.Random(self.seed * 7_919 + index)
        while True:
            response = await self.call("queue", "GET", "/v1/agent/queue", headers=agent.auth)
            items = response.json()["items"] if response is not None else []
            # Everyone reads the same queue top-down, so agents do race for the first items.
            for item in items:
                if len(agent.held) >= agent.capacity:
                    break
                handoff = item["handoff"]
                claimed = await self.call(
                    "claim", "POST", f"/v1/agent/handoffs/{handoff['id']}/claim",
                    expected=(409,), headers=agent.auth,
                )
                if claimed is not None and claimed.status_code == 200:
                    conversation_id = str(handoff["conversation_id"])
                    agent.held.add(conversation_id)
                    task = asyncio.create_task(self.handle(agent, conversation_id, rng))
                    agent.tasks.add(task)
                    task.add_done_callback(agent.tasks.discard)
            if self.customers_done.is_set() and not agent.tasks and (
                not items or self.loop.time() >= self.agents_stop_at
            ):
                break
            if self.loop.time() >= self.agents_stop_at + self.options.grace:
                break  # something never finishes: do not hang the benchmark
            await asyncio.sleep(self.options.agent_poll * rng.uniform(0.8, 1.2))
        await asyncio.gather(*agent.tasks, return_exceptions=True)

    async def handle(self, agent: AgentUser, conversation_id: str, rng: random.Random) -> None:
        """Read the context, reply, then resolve."""
        try:
            await self.think(rng, self.options.agent_think)
            response = await self.call(
                "agent_reply", "POST", f"/v1/agent/conversations/{conversation_id}/messages",
                ok=(201,), json={"text": rng.choice(AGENT_REPLIES)}, headers=agent.auth,
            )
            if response is not None:
                acked_at = time.perf_counter()
                conversation = self.by_id.get(conversation_id)
                if conversation is not None:
                    conversation.agent_acked[int(response.json()["id"])] = acked_at
            await self.think(rng, self.options.agent_think)
            await self.call(
                "resolve", "POST", f"/v1/agent/conversations/{conversation_id}/resolve",
                json={"resolution_code": "answered"}, headers=agent.auth,
            )
        finally:
            agent.held.discard(conversation_id)

    # -- the step --------------------------------------------------------------------------

    async def run(self) -> None:
        """Customers for ``duration`` seconds, agents until the queue is drained."""
        started = time.perf_counter()
        self.stats.window_end = started + self.options.duration
        window = asyncio.create_task(self.measure_window(started))
        agents = [
            asyncio.create_task(self.agent(i, a)) for i, a in enumerate(self.agents)
        ]
        cap = self.options.duration + self.options.grace + self.options.timeout + 30
        customers = asyncio.gather(*(self.customer(i) for i in range(self.stats.users)))
        try:
            await asyncio.wait_for(customers, timeout=cap)
        except TimeoutError:
            self.stats.error("step", f"customers still busy {cap:.0f}s after the start")
        self.stats.seconds = time.perf_counter() - started
        self.customers_done.set()
        self.agents_stop_at = self.loop.time() + self.options.grace
        await asyncio.gather(*agents, return_exceptions=True)
        await window

    async def measure_window(self, started: float) -> None:
        """CPU used by the server and by this load generator during the window."""
        server_cpu = tree_cpu_seconds(self.server_pid)
        client_cpu = time.process_time()
        await asyncio.sleep(max(0.0, self.stats.window_end - time.perf_counter()))
        self.stats.window_seconds = time.perf_counter() - started
        self.stats.client_cpu_seconds = time.process_time() - client_cpu
        server_after = tree_cpu_seconds(self.server_pid)
        if server_cpu is not None and server_after is not None:
            self.stats.server_cpu_seconds = server_after - server_cpu


# -- checks after a step -------------------------------------------------------------------


async def stored_messages(
    client: httpx.AsyncClient, conversation: Conversation
) -> list[dict[str, Any]]:
    """Every message of the conversation, as its customer reads them."""
    found: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params = {"after": after} if after is not None else {}
        response = await client.get(
            f"/v1/conversations/{conversation.id}/messages",
            headers=conversation.auth, params=params,
        )
        response.raise_for_status()
        page = response.json()["messages"]
        found.extend(page)
        if len(page) < MESSAGE_PAGE:
            return found
        after = int(page[-1]["id"])


async def verify(client: httpx.AsyncClient, stats: StepStats) -> dict[str, Any]:
    """Read every conversation back: lost, duplicated, SSE delivery."""
    lost = duplicated = unreadable = sse_missed = 0
    delivery_ms: list[float] = []
    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def check(conversation: Conversation) -> None:
        nonlocal lost, duplicated, unreadable, sse_missed
        async with gate:
            try:
                messages = await stored_messages(client, conversation)
            except httpx.HTTPError as exc:
                unreadable += 1
                stats.error("verify", f"{type(exc).__name__}: {exc}")
                return
        ids = {int(m["id"]) for m in messages}
        customer_texts: dict[str, int] = {}
        for m in messages:
            if m["role"] == "customer":
                customer_texts[m["text"]] = customer_texts.get(m["text"], 0) + 1
        for message_id, text in conversation.customer_acked:
            lost += message_id not in ids
            # Texts are distinct within a conversation: a second copy is a duplicate,
            # unless an unacknowledged attempt with the same text may have been stored.
            allowed = 1 + conversation.unacked_texts.count(text)
            duplicated += max(0, customer_texts.get(text, 0) - allowed)
        lost += sum(1 for message_id in conversation.bot_acked if message_id not in ids)
        for message_id, acked_at in conversation.agent_acked.items():
            lost += message_id not in ids
            arrived = conversation.seen_on_stream.get(message_id)
            if arrived is None:
                sse_missed += 1
            else:
                delivery_ms.append(max(0.0, arrived - acked_at) * 1000)

    await asyncio.gather(*(check(c) for c in stats.conversations))
    return {
        "lost": lost,
        "duplicated": duplicated,
        "unreadable": unreadable,
        "sse_missed": sse_missed,
        "sse_delivery_ms": delivery_ms,
    }


# -- summaries -----------------------------------------------------------------------------


def step_summary(stats: StepStats, checks: dict[str, Any], slo_ms: float) -> dict[str, Any]:
    """The numbers of one step, and whether it is sustainable."""
    window = stats.window_seconds or float("nan")
    kinds = sorted(set(stats.latencies_ms) | set(stats.errors))
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        values = stats.latencies_ms.get(kind, [])
        errors = stats.errors.get(kind, 0)
        per_kind[kind] = {
            "count": len(values) + errors,
            "errors": errors,
            "expected_refusals": stats.expected.get(kind, 0),
            "per_s": stats.in_window.get(kind, 0) / window,
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
        }
    streams = {"sse", "sse_open"}
    requests = [v for k, vs in stats.latencies_ms.items() if k not in streams for v in vs]
    request_errors = sum(n for k, n in stats.errors.items() if k not in streams)
    total_errors = sum(stats.errors.values())
    attempted = sum(len(v) for v in stats.latencies_ms.values()) + total_errors
    turns = stats.latencies_ms.get("message", [])
    delivery = checks["sse_delivery_ms"]
    turn_p95 = percentile(turns, 95)
    sustainable = (
        total_errors == 0
        and checks["lost"] == 0
        and checks["duplicated"] == 0
        and checks["sse_missed"] == 0
        and bool(turns)
        and turn_p95 <= slo_ms
    )
    return {
        "users": stats.users,
        "seconds": stats.seconds,
        "window_seconds": stats.window_seconds,
        "conversations": len(stats.conversations),
        "turns": len(turns),
        "turns_per_s": stats.in_window.get("message", 0) / window,
        "requests": len(requests) + request_errors,
        "requests_per_s": sum(n for k, n in stats.in_window.items() if k not in streams) / window,
        "turn_p50_ms": percentile(turns, 50),
        "turn_p95_ms": turn_p95,
        "turn_p99_ms": percentile(turns, 99),
        "all_p50_ms": percentile(requests, 50),
        "all_p95_ms": percentile(requests, 95),
        "all_p99_ms": percentile(requests, 99),
        "errors": total_errors,
        "error_rate": total_errors / attempted if attempted else 0.0,
        "contested_claims": stats.expected.get("claim", 0),
        "sse_streams": len(stats.latencies_ms.get("sse_open", [])),
        "sse_events": stats.sse_events,
        "sse_delivery_p50_ms": percentile(delivery, 50),
        "sse_delivery_p95_ms": percentile(delivery, 95),
        "agent_replies": len(delivery) + checks["sse_missed"],
        "handoffs": stats.handoffs,
        "handoffs_answered": stats.handoffs_answered,
        "lost": checks["lost"],
        "duplicated": checks["duplicated"],
        "sse_missed": checks["sse_missed"],
        "server_cores_busy": (
            stats.server_cpu_seconds / window if stats.server_cpu_seconds is not None else None
        ),
        "client_cores_busy": stats.client_cpu_seconds / window,
        "sustainable": sustainable,
        "per_request": per_kind,
        "error_samples": stats.error_samples,
    }


# -- one configuration ---------------------------------------------------------------------


def create_agents(database_url: str, count: int, capacity: int) -> list[AgentUser]:
    """Agent accounts (every team) with API tokens, as the ``assistant agents`` CLI makes."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        store = HandoffStore(engine)
        agents = []
        for n in range(count):
            email = f"load-agent-{n}@example.com"
            record = store.create_agent(
                email=email,
                name=f"Load Agent {n}",
                role="agent",
                password_hash=hash_password(secrets.token_urlsafe(18)),
                teams=list(TEAMS),
                capacity=capacity,
            )
            token = new_conversation_token()
            store.add_token(record.id, hash_token(token), "load-test")
            agents.append(AgentUser(email=email, token=token, capacity=capacity))
        return agents
    finally:
        engine.dispose()


def ingest_template(kb_dir: Path, template: Path) -> None:
    """Ingest the KB once (``assistant ingest``); every configuration copies the index."""
    if (template / "chroma").is_dir():
        # ``assistant ingest`` is incremental: a kept template is only checked for changes.
        console.print(f"reusing the index in {template} (changed articles are re-ingested)")
    env = clean_env({"ASSISTANT_DATA_DIR": str(template), "ASSISTANT_KB_DIR": str(kb_dir)})
    console.print(f"ingesting {kb_dir} once (real ONNX embeddings) ...")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "ingest"],
        cwd=template, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"assistant ingest failed:\n{done.stdout}{done.stderr}")
    console.print(f"{done.stdout.strip()} (total {time.perf_counter() - started:.0f}s)")


def fresh_data_dir(template: Path, backend: str, workers: int) -> Path:
    """A new data directory with the template's vector index and model cache, no database."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"load-{backend}-{workers}w-"))
    for name in INDEX_DIRS:
        if (template / name).is_dir():
            shutil.copytree(template / name, data_dir / name)
    return data_dir


def start_server(
    data_dir: Path, env_extra: dict[str, str], port: int, workers: int, log_path: Path
) -> subprocess.Popen[bytes]:
    """``assistant serve`` with a clean ``ASSISTANT_*`` environment, in its own group."""
    return spawn_serve(data_dir, clean_env(env_extra), port, workers, log_path)


async def prepare(base_url: str, agents: list[AgentUser], timeout: float) -> None:
    """Agents go online; a few unmeasured turns warm every worker's model and connections."""
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False) as client:
        for agent in agents:
            response = await client.post(
                "/v1/agent/presence", json={"online": True}, headers=agent.auth
            )
            response.raise_for_status()

        async def turn(n: int) -> None:
            # A connection each, so that every worker process gets some.
            async with httpx.AsyncClient(base_url=base_url, timeout=timeout,
                                         trust_env=False) as own:
                started = await own.post("/v1/conversations", json={})
                started.raise_for_status()
                body = started.json()
                posted = await own.post(
                    f"/v1/conversations/{body['id']}/messages",
                    json={"text": KB_QUESTIONS[n % len(KB_QUESTIONS)]},
                    headers={"Authorization": f"Bearer {body['token']}"},
                )
                posted.raise_for_status()

        await asyncio.gather(*(turn(n) for n in range(WARMUP_TURNS)))


async def run_step(
    base_url: str, users: int, options: Options, agents: list[AgentUser], server_pid: int,
    step_index: int,
) -> dict[str, Any]:
    """One load step: drive, then read everything back."""
    stats = StepStats(users=users)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=users + 4 * len(agents))
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=options.timeout, trust_env=False
    ) as client:
        load = Load(
            client, stats, options, agents, options.seed * 1000 + step_index, server_pid
        )
        await load.run()
        checks = await verify(client, stats)
    return step_summary(stats, checks, options.slo_ms)


async def admin_stats(base_url: str, admin_token: str) -> dict[str, int]:
    """Hand-offs by status and bot messages sent while a person owned a conversation."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as client:
        response = await client.get(
            "/v1/agent/stats", headers={"Authorization": f"Bearer {admin_token}"}
        )
        response.raise_for_status()
        stats: dict[str, int] = response.json()
        return stats


def pg_reachable(url: str) -> str | None:
    """``None`` when PostgreSQL answers, else why not."""
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any driver or network failure means: skip PostgreSQL
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return None


def run_config(
    workers: int,
    backend: str,
    kb_dir: Path,
    template: Path,
    options: Options,
    pg_url: str,
    keep: bool,
) -> dict[str, Any]:
    """Start a fresh server for one configuration, climb the load ladder, stop it."""
    label = f"{workers} worker{'s' if workers > 1 else ''}, {backend}"
    console.rule(label)
    data_dir = fresh_data_dir(template, backend, workers)
    steps: list[dict[str, Any]] = []
    server_stats: dict[str, int] = {}
    pids: set[str] = set()
    restarts = 0
    try:
        with contextlib.ExitStack() as stack:
            if backend == "postgresql":
                database_url, _ = stack.enter_context(fresh_pg_schema(pg_url, "load"))
            else:
                database_url = f"sqlite:///{data_dir / 'assistant.db'}"
            agents = create_agents(database_url, options.agents, options.agent_capacity)
            admin_token = secrets.token_urlsafe(24)
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            env = {
                "ASSISTANT_DATA_DIR": str(data_dir),
                "ASSISTANT_KB_DIR": str(kb_dir),
                "ASSISTANT_HOST": "127.0.0.1",
                "ASSISTANT_PORT": str(port),
                "ASSISTANT_ADMIN_TOKEN": admin_token,
                # All traffic comes from one address and conversations are busy: the limits
                # would measure themselves, not the server.
                "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000",
                "ASSISTANT_IP_RATE_LIMIT_PER_MINUTE": "1000000",
            }
            if backend == "postgresql":
                env["ASSISTANT_DATABASE_URL"] = database_url
            env.update(options.server_env)
            log_path = data_dir / "server.log"
            console.print(f"starting `assistant serve --workers {workers}` on {base_url} "
                          f"(fresh data dir and database) ...")
            started = time.perf_counter()
            proc = start_server(data_dir, env, port, workers, log_path)
            try:
                health = wait_until_ready(proc, base_url, workers, log_path)
                pids = worker_pids(log_path)
                asyncio.run(prepare(base_url, agents, options.timeout))
                console.print(
                    f"ready in {time.perf_counter() - started:.0f}s ({len(pids)} worker "
                    f"process(es), {health.get('kb_chunks')} chunks, {len(agents)} agents "
                    f"online)"
                )
                for index, users in enumerate(options.users):
                    step = asyncio.run(
                        run_step(base_url, users, options, agents, proc.pid, index)
                    )
                    steps.append(step)
                    console.print(
                        f"  {users:>3} customers: {step['turns_per_s']:.1f} turns/s, "
                        f"{step['requests_per_s']:.1f} req/s, turn p95 "
                        f"{step['turn_p95_ms']:.0f} ms, {step['errors']} errors, "
                        f"{step['lost']} lost, {step['duplicated']} dup, "
                        f"{step['sse_missed']} SSE missed, "
                        f"{step['handoffs_answered']}/{step['handoffs']} hand-offs answered"
                        + ("" if step["sustainable"] else "  [red]not sustainable[/red]")
                    )
                    for sample in step["error_samples"]:
                        console.print(f"    [red]error:[/red] {sample}")
                    if proc.poll() is not None:
                        console.print(f"[red]server exited:[/red]\n{log_tail(log_path)}")
                        break
                    if not step["sustainable"] and not options.keep_going:
                        break
                server_stats = asyncio.run(admin_stats(base_url, admin_token))
            finally:
                stop_server(proc)
                log = log_path.read_text(errors="replace") if log_path.exists() else ""
                restarts = len(re.findall(r"Child process \[\d+\] died", log))
                if restarts:
                    # uvicorn's supervisor kills a worker that misses its 5 s health ping.
                    console.print(f"[yellow]  uvicorn replaced {restarts} worker(s) that missed "
                                  f"its health check[/yellow]")
    finally:
        if keep:
            console.print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    good = [s for s in steps if s["sustainable"]]
    return {
        "workers": workers,
        "workers_started": len(pids),
        "worker_restarts": restarts,
        "backend": backend,
        "steps": steps,
        "sustainable": max(good, key=lambda s: s["users"]) if good else None,
        "server_stats": server_stats,
    }


# -- report --------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for the tables."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def report(results: list[dict[str, Any]], options: Options, cores: int) -> None:
    """Per-step tables per configuration, per-request detail, then the summary."""
    for result in results:
        rows = []
        for s in result["steps"]:
            rows.append([
                s["users"], fmt(s["turns_per_s"], 1), fmt(s["requests_per_s"], 1),
                fmt(s["turn_p50_ms"]), fmt(s["turn_p95_ms"]), fmt(s["turn_p99_ms"]),
                fmt(s["all_p95_ms"]), s["errors"], s["lost"], s["duplicated"],
                f"{fmt(s['sse_delivery_p50_ms'])}/{fmt(s['sse_delivery_p95_ms'])}",
                f"{s['handoffs_answered']}/{s['handoffs']}", s["contested_claims"],
                fmt(s["server_cores_busy"], 2), fmt(s["client_cores_busy"], 2),
                "yes" if s["sustainable"] else "no",
            ])
        show_table(
            f"{result['workers']} worker(s), {result['backend']}: steps of "
            f"{options.duration:.0f}s",
            ["customers", "turns/s", "req/s", "turn p50", "turn p95", "turn p99",
             "all p95", "errors", "lost", "dup", "SSE p50/p95", "hand-offs", "409s",
             "srv cores", "gen cores", "ok"],
            rows,
        )
        best = result["sustainable"] or (result["steps"][0] if result["steps"] else None)
        if best:
            show_table(
                f"  per request at {best['users']} customers (ms)",
                ["request", "count", "per s", "p50", "p95", "p99", "errors", "expected"],
                [
                    [k, v["count"], fmt(v["per_s"], 1), fmt(v["p50_ms"]), fmt(v["p95_ms"]),
                     fmt(v["p99_ms"]), v["errors"], v["expected_refusals"]]
                    for k, v in best["per_request"].items()
                ],
            )
        bot_while_human = result["server_stats"].get("bot_messages_while_human_owned")
        if bot_while_human:
            console.print(f"[red]  bot messages while a person owned the conversation: "
                          f"{bot_while_human}[/red]")

    rows = []
    for result in results:
        s = result["sustainable"]
        config = f"{result['workers']}w {result['backend']}"
        if s is None:
            rows.append([config, "none", *["n/a"] * 8])
            continue
        rows.append([
            config, f"{s['users']} customers", fmt(s["turns_per_s"], 1),
            fmt(s["requests_per_s"], 1), fmt(s["turn_p50_ms"]), fmt(s["turn_p95_ms"]),
            fmt(s["turn_p99_ms"]), f"{100 * s['error_rate']:.2f}%", s["lost"],
            fmt(s["sse_delivery_p50_ms"]),
        ])
    show_table(
        f"Sustainable load (0 errors, 0 lost, turn p95 <= {options.slo_ms:.0f} ms; "
        f"{cores} cores, load generator on the same machine)",
        ["config", "sustainable", "turns/s", "req/s", "turn p50", "turn p95", "turn p99",
         "errors", "lost", "SSE p50"],
        rows,
    )


# -- main ----------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``."""
    return [int(part) for part in text.replace(" ", "").split(",") if part]


def bounds(text: str) -> tuple[float, float]:
    """``"0.5,1.5"`` -> ``(0.5, 1.5)`` (seconds)."""
    low, _, high = text.partition(",")
    pair = (float(low), float(high or low))
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: want MIN,MAX with 0 <= MIN <= MAX")
    return pair


def main() -> None:
    """Parse the options, run every configuration, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int_list, default=[1, 2], help="e.g. 1,2")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--users", type=int_list, help="customer ladder (default 8,16,32,64)")
    parser.add_argument("--duration", type=float, help="seconds per step (default 20)")
    parser.add_argument("--think", type=bounds, default=(0.5, 1.5),
                        help="customer think time MIN,MAX seconds (default 0.5,1.5)")
    parser.add_argument("--agents", type=int, default=4, help="agent virtual users")
    parser.add_argument("--agent-capacity", type=int, default=4,
                        help="conversations an agent holds at once")
    parser.add_argument("--agent-think", type=bounds, default=(0.3, 0.8),
                        help="agent pause before replying and before resolving (s)")
    parser.add_argument("--agent-poll", type=float, default=1.0, help="queue poll interval (s)")
    parser.add_argument("--handoff-share", type=float, default=0.15,
                        help="share of conversations asking for a person")
    parser.add_argument("--slo-ms", type=float, default=1000.0,
                        help="p95 turn latency a sustainable step stays within")
    parser.add_argument("--grace", type=float,
                        help="how long after a step customers wait for agents (default 10 s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every step even after one is not sustainable")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {','.join(map(str, QUICK_USERS))} customers, "
                        f"{QUICK_DURATION_S:.0f}s steps")
    parser.add_argument("--pg-url", default=os.environ.get("ASSISTANT_TEST_DATABASE_URL")
                        or DEFAULT_PG_URL, help="PostgreSQL database for fresh schemas")
    parser.add_argument("--kb", type=Path, default=ROOT / "knowledge_base", help="KB directory")
    parser.add_argument("--server-env", type=env_setting, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="extra server setting, e.g. LIVE_POLL_SECONDS=1 (repeatable)")
    parser.add_argument("--template", type=Path,
                        help="ingest the KB into (and keep) this directory, to reuse across runs")
    parser.add_argument("--keep-data", action="store_true", help="keep the data directories")
    parser.add_argument("--json", help="write results to this JSON file")
    args = parser.parse_args()

    users = args.users or list(QUICK_USERS if args.quick else DEFAULT_USERS)
    duration = args.duration or (QUICK_DURATION_S if args.quick else 20.0)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(backends) <= {"sqlite", "postgresql"}:
        parser.error("--backends takes sqlite and/or postgresql")
    if not all(1 <= w <= 16 for w in args.workers) or not all(1 <= u <= 1000 for u in users):
        parser.error("--workers must be 1-16 and --users 1-1000")
    if not (0 < duration <= 600 and 1 <= args.agents <= 50 and args.agent_capacity >= 1):
        parser.error("--duration must be in (0, 600], --agents 1-50, --agent-capacity >= 1")
    if not 0 <= args.handoff_share <= 1 or args.agent_poll <= 0:
        parser.error("--handoff-share must be in [0, 1] and --agent-poll > 0")
    options = Options(
        users=users, duration=duration, think=args.think, agent_think=args.agent_think,
        agents=args.agents, agent_capacity=args.agent_capacity, agent_poll=args.agent_poll,
        handoff_share=args.handoff_share, slo_ms=args.slo_ms,
        grace=args.grace if args.grace is not None else (QUICK_GRACE_S if args.quick else 10.0),
        timeout=args.timeout, seed=args.seed, keep_going=args.keep_going,
        server_env=dict(args.server_env),
    )
    kb_dir = require(args.kb).resolve()
    if "postgresql" in backends:
        why = pg_reachable(args.pg_url)
        if why is not None:
            console.print(f"[yellow]skipping PostgreSQL: {args.pg_url} is not reachable "
                          f"({why})[/yellow]")
            backends.remove("postgresql")
    cores = os.cpu_count() or 0
    busy_before = cores_busy()
    if busy_before is not None and busy_before > 0.25:
        console.print(f"[yellow]{busy_before:.2f} cores were busy before starting: other work "
                      f"on this machine will skew the numbers[/yellow]")

    if not console.is_terminal:
        console.width = max(console.width, TABLE_WIDTH)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.template:
            template = args.template.resolve()
            template.mkdir(parents=True, exist_ok=True)
        else:
            template = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-kb-")))
        ingest_template(kb_dir, template)
        results = [
            run_config(workers, backend, kb_dir, template, options, args.pg_url,
                       args.keep_data)
            for backend in backends
            for workers in args.workers
        ]
    report(results, options, cores)
    console.print(f"total {time.perf_counter() - started:.0f}s")
    write_json(
        args.json,
        {
            "benchmark": "load_mixed",
            "cpu_cores": cores,
            "cores_busy_before": busy_before,
            "options": {**vars(options), "think": list(options.think),
                        "agent_think": list(options.agent_think)},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
