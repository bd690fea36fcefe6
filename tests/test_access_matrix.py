"""Access control: every route of the app called as every kind of caller.

``ROUTES`` is the one table of who may do what: for each (method, path template) the
outcome expected for each role. ``test_access`` calls every route as every role on real
ids (conversation A, its hand-off, its customer, a failed webhook delivery), one pytest
case per cell, so a failure names the route and the role. A denied call that changes
something must change nothing: the cell compares A's messages, events, hand-off, the
delivery and the agents before and after. ``test_every_route_is_in_the_table`` fails when
the app has a route the table lacks (or the table names a route the app dropped), so no
route ships without deciding who may call it.

Customer A's stream must never carry conversation B's events (SECURITY.md #6):
``test_a_customer_stream_never_carries_another_conversation`` drives B while A's streams
are open and checks that A's streams bring exactly A's events.

The matrix (route x role -> status) is printed (``-s``), recorded as the
``access_matrix`` property and written to ``access-matrix/matrix.md`` in pytest's tmp dir.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import chromadb
import httpx
import pytest
import uvicorn
from chromadb.config import Settings as ChromaSettings
from conftest import ADMIN_TOKEN, TestAgent, auth, make_agent, write_kb
from fastapi import FastAPI, routing
from test_live_stream import Sse, stream, take

from assistant.agent_auth import csrf_token
from assistant.config import Settings
from assistant.conversations import CustomerClaim
from assistant.embeddings import HashingEmbedder
from assistant.identity import hash_token
from assistant.live import STAFF_EVENTS
from assistant.runtime import Runtime, build_runtime
from assistant.storage.records import AgentRecord
from assistant.web.app import create_app
from assistant.web.deps import SESSION_COOKIE

# --- roles -----------------------------------------------------------------------------

ANONYMOUS = "anonymous"
CUSTOMER_A = "customer_a"
CUSTOMER_B = "customer_b"
AGENT = "agent"
AGENT_CONSOLE = "agent_console"
ADMIN = "admin"
ADMIN_AGENT = "admin_agent"
ADMIN_CONSOLE = "admin_console"
ADMIN_COOKIE_ONLY = "admin_cookie_only"

ROLES: Mapping[str, str] = MappingProxyType({
    ANONYMOUS: "no credentials",
    CUSTOMER_A: "the token of conversation A (every id in a path is A's)",
    CUSTOMER_B: "the token of conversation B, on A's ids",
    AGENT: "an agent's API token (role agent)",
    AGENT_CONSOLE: "the same agent's console session cookie, with its X-CSRF-Token on writes",
    ADMIN: "the bootstrap admin token (ASSISTANT_ADMIN_TOKEN): no agent account",
    ADMIN_AGENT: "an agent account with role admin, its API token",
    ADMIN_CONSOLE: "the admin account's console session, with X-CSRF-Token on writes",
    ADMIN_COOKIE_ONLY: "the admin's session cookie alone, as a cross-site form sends it",
})
# Whose claim a "claimed" cell works on: the caller's own account, so that the cell asks
# "may this role act on a hand-off it holds?" (non-holders: see the test further down).
HOLDER = {AGENT: "agent", AGENT_CONSOLE: "agent", ADMIN_AGENT: "admin",
          ADMIN_CONSOLE: "admin", ADMIN_COOKIE_ONLY: "admin"}

# --- outcomes --------------------------------------------------------------------------

OK = "2xx"
REDIRECT = "3xx"  # any redirect (the front door, sign-in and sign-out)
LOGIN = "login"  # 303 to /console/login: how a console page says "sign in"
E401 = "401"
E403 = "403"
HIDDEN = "403/404"  # another customer's conversation: refused or not there, either is fine


def matches(expected: str, status: int, location: str) -> bool:
    """Whether a response (status, Location) is the expected outcome."""
    if expected == OK:
        return 200 <= status < 300
    if expected == REDIRECT:
        return 300 <= status < 400
    if expected == LOGIN:
        return status == 303 and location.startswith("/console/login")
    return str(status) in expected.split("/")


def expect(default: str, base: Mapping[str, str] | None = None,
           **cells: str) -> Mapping[str, str]:
    """An outcome per role: ``base``'s (or ``default`` for all), with ``cells`` changed."""
    unknown = set(cells) - set(ROLES)
    assert not unknown, f"no such roles: {unknown}"
    start = dict(base) if base is not None else dict.fromkeys(ROLES, default)
    return MappingProxyType({**start, **cells})


PUBLIC = expect(OK)
# The conversation's own token only; staff sessions carry no bearer token at all (401).
CUSTOMER = expect(HIDDEN, anonymous=E401, customer_a=OK, agent_console=E401,
                  admin_console=E401, admin_cookie_only=E401)
# Any staff caller; customers' conversation tokens are not staff tokens.
STAFF = expect(OK, anonymous=E401, customer_a=E401, customer_b=E401)
# Owning a conversation needs an agent account (not the admin token), and a cookie needs
# its CSRF token.
AGENT_ACTION = expect(OK, base=STAFF, admin=E403, admin_cookie_only=E403)
ADMIN_ONLY = expect(OK, base=STAFF, agent=E403, agent_console=E403)
ADMIN_ACTION = expect(OK, base=ADMIN_ONLY, admin_cookie_only=E403)
# Pages sign in with the cookie only: bearer tokens get the sign-in redirect.
CONSOLE_PAGE = expect(LOGIN, agent_console=OK, admin_console=OK, admin_cookie_only=OK)
CONSOLE_ADMIN_PAGE = expect(OK, base=CONSOLE_PAGE, agent_console=E403)

# --- the state a cell runs on ----------------------------------------------------------

SHARED = "shared"  # one conversation A (handed off, queued) for all read-only cells
CHAT = "chat"  # a fresh conversation A with one question answered by the bot
QUEUED = "queued"  # ... that the customer then handed off
CLAIMED = "claimed"  # ... and the caller's agent account claimed (HOLDER)
FAILED_DELIVERY = "failed delivery"  # a fresh webhook delivery that failed for good


@dataclass(frozen=True)
class Row:
    """One route and who may call it.

    Path parameters, query values and body values may name a fact of the cell's state in
    braces: ``{conversation_id}``, ``{handoff_id}``, ``{customer_id}``, ``{delivery_id}``,
    ``{reply_id}`` (the bot's answer in A), ``{helper_id}`` (another agent),
    ``{origin}`` (the server's origin), ``{door_email}`` / ``{door_password}`` (an
    account used only to sign in). A path parameter not named so is given in ``params``.
    """

    method: str
    path: str
    expect: Mapping[str, str]
    state: str = SHARED
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, Any] | None = None
    form: Mapping[str, str] | None = None
    stream: bool = False  # SSE: only the status and content type are read

    @property
    def key(self) -> str:
        """``METHOD /path/template``, as in the completeness check."""
        return f"{self.method} {self.path}"


CONVERSATION = "/v1/conversations/{conversation_id}"
STAFF_CONVERSATION = "/v1/agent/conversations/{conversation_id}"
HANDOFF = "/v1/agent/handoffs/{handoff_id}"

# Every route of the app. A new route needs a row here (the completeness test says so):
# pick a policy above, or build one with ``expect``, and the state its allowed callers
# need to succeed. Writes that would change the shared state get a fresh state per cell.
ROUTES: tuple[Row, ...] = (
    # operations and API docs
    Row("GET", "/healthz", PUBLIC),
    Row("GET", "/metrics", ADMIN_ONLY),  # or ASSISTANT_METRICS_TOKEN (test_health_api)
    Row("GET", "/openapi.json", PUBLIC),
    Row("GET", "/docs", PUBLIC),
    Row("GET", "/docs/oauth2-redirect", PUBLIC),
    Row("GET", "/redoc", PUBLIC),
    # widget and demo page
    Row("GET", "/", expect(REDIRECT)),
    Row("GET", "/demo", PUBLIC),
    Row("GET", "/widget.js", PUBLIC),
    Row("GET", "/widget/assets/{name}", PUBLIC, params={"name": "frame.js"}),
    Row("GET", "/widget/assets/i18n/{locale}.json", PUBLIC, params={"locale": "en"}),
    Row("GET", "/widget/frame", PUBLIC, query={"host": "{origin}"}),
    # customer API (the widget)
    Row("POST", "/v1/conversations", PUBLIC, json={}),
    Row("GET", CONVERSATION, CUSTOMER),
    Row("POST", CONVERSATION + "/messages", CUSTOMER, CHAT,
        json={"text": "How do I reset my password?"}),
    Row("GET", CONVERSATION + "/messages", CUSTOMER),
    Row("GET", CONVERSATION + "/events", CUSTOMER, stream=True),
    Row("POST", CONVERSATION + "/handoff", CUSTOMER, CHAT),
    Row("POST", CONVERSATION + "/followup", CUSTOMER, QUEUED, json={"email": "a@example.com"}),
    Row("POST", CONVERSATION + "/csat", CUSTOMER, CHAT, json={"score": 4}),
    Row("POST", CONVERSATION + "/feedback", CUSTOMER, CHAT,
        json={"message_id": "{reply_id}", "helpful": True}),
    # agent API
    Row("GET", "/v1/agent/me", STAFF),
    Row("GET", "/v1/agent/agents", STAFF),
    Row("POST", "/v1/agent/presence", AGENT_ACTION, json={"online": False}),
    Row("GET", "/v1/agent/stats", STAFF),
    Row("GET", "/v1/agent/queue", STAFF),
    Row("GET", "/v1/agent/queue/events", STAFF, stream=True),
    Row("GET", HANDOFF, STAFF),
    Row("POST", HANDOFF + "/claim", AGENT_ACTION, QUEUED),
    Row("POST", HANDOFF + "/release", AGENT_ACTION, CLAIMED),
    Row("POST", HANDOFF + "/reassign", AGENT_ACTION, CLAIMED, json={"agent_id": "{helper_id}"}),
    Row("GET", STAFF_CONVERSATION, STAFF),
    Row("GET", STAFF_CONVERSATION + "/messages", STAFF),
    Row("GET", STAFF_CONVERSATION + "/events", STAFF, stream=True),
    Row("POST", STAFF_CONVERSATION + "/messages", AGENT_ACTION, CLAIMED,
        json={"text": "Hello, I am looking into it."}),
    Row("POST", STAFF_CONVERSATION + "/notes", AGENT_ACTION, CLAIMED,
        json={"text": "internal: check the invoice"}),
    Row("POST", STAFF_CONVERSATION + "/resolve", AGENT_ACTION, CLAIMED,
        json={"resolution_code": "answered"}),
    Row("POST", STAFF_CONVERSATION + "/return-to-bot", AGENT_ACTION, CLAIMED),
    # admin API
    Row("GET", "/v1/webhooks/deliveries", ADMIN_ONLY),
    Row("GET", "/v1/webhooks/deliveries/{delivery_id}", ADMIN_ONLY),
    Row("POST", "/v1/webhooks/deliveries/{delivery_id}/retry", ADMIN_ACTION, FAILED_DELIVERY),
    Row("GET", "/v1/analytics/summary", ADMIN_ONLY),
    Row("GET", "/v1/customers/at-risk", ADMIN_ONLY),
    Row("GET", "/v1/customers/{customer_id}/health", ADMIN_ONLY),
    Row("DELETE", "/v1/customers/{customer_id}", ADMIN_ACTION, CHAT),
    Row("GET", "/v1/audit", ADMIN_ONLY),
    # knowledge base: staff search and read, admins ingest
    Row("POST", "/v1/kb/ingest", ADMIN_ACTION, json={}),
    Row("GET", "/v1/kb/search", STAFF, query={"q": "refund"}),
    Row("GET", "/v1/kb/articles/{article_id:path}", STAFF,
        params={"article_id": "billing/refunds.md"}),
    # agent console (server-rendered pages)
    Row("GET", "/console/login",
        expect(OK, agent_console=REDIRECT, admin_console=REDIRECT, admin_cookie_only=REDIRECT)),
    Row("POST", "/console/login", expect(REDIRECT),
        form={"email": "{door_email}", "password": "{door_password}"}),
    Row("POST", "/console/logout", expect(REDIRECT, admin_cookie_only=E403)),
    Row("GET", "/console", CONSOLE_PAGE),
    Row("GET", "/console/conversations/{conversation_id}", CONSOLE_PAGE),
    Row("GET", "/console/static/{name}", PUBLIC, params={"name": "console.js"}),
    Row("GET", "/console/analytics", CONSOLE_ADMIN_PAGE),
    Row("GET", "/console/customers", CONSOLE_ADMIN_PAGE),
    Row("GET", "/console/customers/{customer_id}", CONSOLE_ADMIN_PAGE),
    # NEW ROUTES: add their rows above, in their section.
)

# --- the world: one server, one runtime for the module -----------------------------------


@dataclass(frozen=True)
class Chat:
    """A conversation as its customer holds it."""

    id: str
    token: str
    customer_id: str
    reply_id: int | None


@dataclass(frozen=True)
class State:
    """What one cell runs on: conversation A (and its hand-off), B, a delivery."""

    a: Chat
    b: Chat
    handoff_id: str | None = None
    delivery_id: str | None = None


@dataclass
class World:
    """The module's server, runtime and accounts, and the shared state."""

    runtime: Runtime
    app: FastAPI
    url: str
    http: httpx.Client
    agents: dict[str, TestAgent]
    chats: int = 0
    shared: State = field(init=False)  # set once the world can make conversations

    def agent_record(self, name: str) -> AgentRecord:
        """The stored account of one of the module's agents."""
        record = self.runtime.handoffs.get_agent(self.agents[name].id)
        assert record is not None
        return record

    def chat(self, label: str) -> Chat:
        """A new conversation of a new identified customer, its question answered."""
        self.chats += 1
        conversations = self.runtime.conversations
        started = conversations.start(
            claim=CustomerClaim(external_id=f"{label}-{self.chats}",
                                email=f"{label}-{self.chats}@example.com",
                                name=f"Customer {label.upper()}"),
            user_hash=None,
        )
        posted = conversations.post_message(
            started.conversation, text="How do I reset my password?", idempotency_key=None
        )
        assert posted.reply is not None and posted.reply.role == "assistant"
        assert started.conversation.customer_id is not None
        return Chat(id=started.conversation.id, token=started.token,
                    customer_id=started.conversation.customer_id, reply_id=posted.reply.id)

    def hand_off(self, chat: Chat) -> str:
        """The customer asks for a person; the hand-off's id."""
        conversation = self.runtime.store.get_conversation(chat.id)
        assert conversation is not None
        handoff, _ = self.runtime.handoff.request_by_customer(conversation)
        return handoff.id

    def failed_delivery(self) -> str:
        """A webhook delivery out of attempts."""
        store = self.runtime.webhooks
        queued = store.enqueue("webhook.test", "https://hooks.example.test/in",
                               {"type": "webhook.test", "data": {}})
        failed = store.record_attempt(queued.id, ok=False, status_code=500, error="boom",
                                      next_attempt_at=None)
        assert failed is not None and failed.status == "failed"
        return queued.id

    def state(self, kind: str, role: str) -> State:
        """The state a cell of ``kind`` runs on (fresh unless shared)."""
        if kind == SHARED:
            return self.shared
        if kind == FAILED_DELIVERY:
            return State(a=self.shared.a, b=self.shared.b, handoff_id=self.shared.handoff_id,
                         delivery_id=self.failed_delivery())
        a = self.chat("a")
        handoff_id = self.hand_off(a) if kind in (QUEUED, CLAIMED) else None
        if kind == CLAIMED:
            assert handoff_id is not None
            self.runtime.handoff.claim(handoff_id, self.agent_record(HOLDER.get(role, "agent")))
        return State(a=a, b=self.shared.b, handoff_id=handoff_id,
                     delivery_id=self.shared.delivery_id)

    def session(self, name: str) -> str:
        """A new console session of one of the module's agents (as signing in makes)."""
        token = secrets.token_urlsafe(32)
        self.runtime.handoffs.create_session(
            self.agents[name].id, hash_token(token), datetime.now(UTC) + timedelta(hours=1)
        )
        return token

    def restore(self) -> None:
        """Every module agent online again (presence and sign-out cells change that)."""
        for member in self.agents.values():
            self.runtime.handoffs.set_online(member.id, True)


def _settings(directory: Path, intent_model_dir: Path) -> Settings:
    return Settings(
        data_dir=directory / "data", kb_dir=write_kb(directory / "kb"),
        answer_min_confidence=0.0, intent_model_dir=intent_model_dir, admin_token=ADMIN_TOKEN,
        # Hundreds of requests from one address and one conversation in seconds; the
        # limits have their own tests.
        ip_rate_limit_per_minute=1_000_000, rate_limit_per_minute=100_000,
        _env_file=None,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, intent_model_dir: Path) -> Iterator[World]:
    """A real server on loopback over one runtime, with agents and the shared state."""
    directory = tmp_path_factory.mktemp("access")
    chroma = chromadb.PersistentClient(path=str(directory / "chroma"),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    runtime = build_runtime(_settings(directory, intent_model_dir), embedder=HashingEmbedder(),
                            chroma_client=chroma)
    runtime.ingest()
    app = create_app(runtime=runtime)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    while thread.is_alive() and not server.started:
        started.wait(0.01)
    assert server.started, "uvicorn did not start"
    # Claimed cells leave their hand-offs held: room for all of them.
    agents = {
        "agent": make_agent(runtime, "Alex Agent", capacity=10_000),
        "admin": make_agent(runtime, "Ada Admin", role="admin", capacity=10_000),
        "helper": make_agent(runtime, "Hal Helper", capacity=10_000),
        "door": make_agent(runtime, "Dora Door"),
    }
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            w = World(runtime=runtime, app=app, url=f"http://127.0.0.1:{port}", http=http,
                      agents=agents)
            a, b = w.chat("a"), w.chat("b")
            w.shared = State(a=a, b=b, handoff_id=w.hand_off(a), delivery_id=w.failed_delivery())
            yield w
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        runtime.close()


# --- running one cell --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
EFFECT_EVENTS = frozenset({*STAFF_EVENTS, "answer.feedback", "csat.submitted"})
RESULTS: dict[str, dict[str, tuple[int, str]]] = {}  # key -> role -> (status, Location)


def facts(world: World, state: State) -> dict[str, Any]:
    """The values a row may name in braces."""
    door = world.agents["door"]
    return {
        "conversation_id": state.a.id, "customer_id": state.a.customer_id,
        "reply_id": state.a.reply_id, "handoff_id": state.handoff_id,
        "delivery_id": state.delivery_id, "helper_id": world.agents["helper"].id,
        "origin": world.url, "door_email": door.email, "door_password": door.password,
    }


def fill(value: Any, known: Mapping[str, Any]) -> Any:
    """``value`` with ``{name}`` placeholders replaced; a lone placeholder keeps its type."""
    if isinstance(value, Mapping):
        return {k: fill(v, known) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        return known[whole.group(1)]
    return _PLACEHOLDER.sub(lambda m: str(known[m.group(1)]), value)


def path_of(row: Row, known: Mapping[str, Any]) -> str:
    """The row's path with every parameter filled (from ``params`` first)."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        value = row.params[name] if name in row.params else known[name]
        assert value is not None, f"{row.key}: the state has no {name}"
        return str(value)

    return _PATH_PARAM.sub(one, row.path)


def credentials(world: World, role: str, state: State, unsafe: bool) -> dict[str, str]:
    """The headers a role sends; console roles get a session of their own for the cell."""
    if role == ANONYMOUS:
        return {}
    bearer = {CUSTOMER_A: state.a.token, CUSTOMER_B: state.b.token, ADMIN: ADMIN_TOKEN,
              AGENT: world.agents["agent"].token, ADMIN_AGENT: world.agents["admin"].token}
    if role in bearer:
        return auth(bearer[role])
    session = world.session("agent" if role == AGENT_CONSOLE else "admin")
    headers = {"Cookie": f"{SESSION_COOKIE}={session}"}
    if unsafe and role != ADMIN_COOKIE_ONLY:
        headers["X-CSRF-Token"] = csrf_token(session)
    return headers


def snapshot(world: World, state: State, headers: Mapping[str, str]) -> dict[str, Any]:
    """What a write could change: A's messages, effects, hand-off and customer; the
    delivery; the agents' presence; the caller's console session."""
    runtime = world.runtime
    conversation = runtime.store.get_conversation(state.a.id)
    handoff = runtime.handoffs.last_for_conversation(state.a.id)
    delivery = runtime.webhooks.get(state.delivery_id) if state.delivery_id else None
    cookie = headers.get("Cookie", "")
    session = cookie.partition("=")[2] if cookie else None
    return {
        "conversation": conversation.status if conversation else None,
        "messages": [(m.id, m.role, m.text)
                     for m in runtime.store.list_messages(conversation_id=state.a.id)],
        "effects": [(e.id, e.type) for e in runtime.store.list_events(conversation_id=state.a.id)
                    if e.type in EFFECT_EVENTS],
        "handoff": (handoff.id, handoff.status, handoff.agent_id) if handoff else None,
        "customer": runtime.store.get_customer(state.a.customer_id) is not None,
        "delivery": (delivery.status, delivery.attempts) if delivery else None,
        "online": {n: world.agent_record(n).online for n in ("agent", "admin", "helper")},
        "session": runtime.auth.agent_for(session) is not None if session else None,
    }


@dataclass(frozen=True)
class Outcome:
    """What one cell got, and what a refused write changed (nothing, it should be)."""

    status: int
    location: str
    content_type: str
    changed: tuple[str, ...]


def call(world: World, row: Row, role: str) -> Outcome:
    """Run one cell on its state, with its role's credentials."""
    unsafe = row.method not in ("GET", "HEAD")
    state = world.state(row.state, role)
    known = facts(world, state)
    headers = credentials(world, role, state, unsafe)
    kwargs: dict[str, Any] = {"headers": headers, "params": fill(row.query, known)}
    if row.json is not None:
        kwargs["json"] = fill(row.json, known)
    if row.form is not None:
        kwargs["data"] = fill(row.form, known)
    refused = row.expect[role] not in (OK, REDIRECT)
    before = snapshot(world, state, headers) if unsafe and refused else None
    world.http.cookies.clear()  # only the cell's own credentials, never a stored cookie
    with world.http.stream(row.method, path_of(row, known), **kwargs) as response:
        if not row.stream:
            response.read()
        status = response.status_code
        location = response.headers.get("location", "")
        content_type = response.headers.get("content-type", "")
    world.http.cookies.clear()
    changed: tuple[str, ...] = ()
    if before is not None:
        after = snapshot(world, state, headers)
        changed = tuple(k for k in before if before[k] != after[k])
    if unsafe:
        world.restore()
    return Outcome(status, location, content_type, changed)


CELLS = [pytest.param(row, role, id=f"{row.key} | {role}") for row in ROUTES for role in ROLES]


@pytest.mark.parametrize(("row", "role"), CELLS)
def test_access(world: World, row: Row, role: str) -> None:
    """The cell's caller gets exactly the intended outcome on real ids, and a refused
    write changes nothing."""
    got = call(world, row, role)
    RESULTS.setdefault(row.key, {})[role] = (got.status, got.location)
    expected = row.expect[role]
    assert matches(expected, got.status, got.location), (
        f"{role} on {row.key}: expected {expected}, got {got.status}"
        + (f" -> {got.location}" if got.location else "")
        + ("  (a 2xx here is an access-control hole)" if 200 <= got.status < 300 else "")
    )
    assert not got.changed, f"{role} was refused {row.key} but it changed {got.changed}"
    if row.stream and expected == OK:
        assert got.content_type.startswith("text/event-stream")


# --- the table is complete and current ---------------------------------------------------


def app_routes(app: FastAPI) -> set[str]:
    """Every ``METHOD /path`` the app serves (HEAD only where it is all there is)."""
    # Newer FastAPI keeps included routers as one entry each; older lists every route.
    contexts = getattr(routing, "iter_route_contexts", None)
    found: set[str] = set()
    for route in contexts(app.routes) if contexts else app.routes:
        methods = set(getattr(route, "methods", None) or {"MOUNT"})
        if "GET" in methods:
            methods.discard("HEAD")
        path = getattr(route, "path", "")
        found.update(f"{method} {path}" for method in methods)
    return found


def test_every_route_is_in_the_table(world: World) -> None:
    """A route without a row (or a row without a route) fails, saying what to do."""
    served = app_routes(world.app)
    listed = [row.key for row in ROUTES]
    assert len(listed) == len(set(listed)), "a route is listed twice in ROUTES"
    missing = sorted(served - set(listed))
    assert not missing, (
        "routes with no row in ROUTES (tests/test_access_matrix.py): add one per route, "
        "saying which roles may call it and the state they need:\n  " + "\n  ".join(missing)
    )
    gone = sorted(set(listed) - served)
    assert not gone, "rows in ROUTES for routes the app no longer has:\n  " + "\n  ".join(gone)


def test_every_row_lets_someone_in() -> None:
    """A row nobody may use would prove nothing about its ids: each allows some role."""
    for row in ROUTES:
        assert any(row.expect[role] in (OK, REDIRECT) for role in ROLES), row.key
        assert set(row.expect) == set(ROLES), row.key


# --- holders: an agent cannot act on a hand-off another agent holds ----------------------


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", HANDOFF + "/release", None),
    ("POST", HANDOFF + "/reassign", {"agent_id": "{agent_id}"}),
    ("POST", STAFF_CONVERSATION + "/messages", {"text": "I will take this"}),
    ("POST", STAFF_CONVERSATION + "/resolve", {"resolution_code": "answered"}),
    ("POST", STAFF_CONVERSATION + "/return-to-bot", None),
], ids=["release", "reassign", "reply", "resolve", "return-to-bot"])
def test_an_agent_cannot_act_on_a_conversation_another_agent_holds(
    world: World, method: str, path: str, body: dict[str, str] | None
) -> None:
    """The helper holds A; the (non-admin) agent is refused and nothing changes."""
    a = world.chat("a")
    handoff_id = world.hand_off(a)
    world.runtime.handoff.claim(handoff_id, world.agent_record("helper"))
    state = State(a=a, b=world.shared.b, handoff_id=handoff_id)
    known = {**facts(world, state), "agent_id": world.agents["agent"].id}
    headers = auth(world.agents["agent"].token)
    before = snapshot(world, state, headers)
    url = _PATH_PARAM.sub(lambda m: str(known[m.group(1)]), path)
    response = world.http.request(method, url, headers=headers,
                                  json=fill(body, known) if body is not None else None)
    assert response.status_code in (403, 409), response.text
    assert snapshot(world, state, headers) == before


# --- streams: A's streams carry A's events only -------------------------------------------


def test_a_customer_stream_never_carries_another_conversation(world: World) -> None:
    """While A's customer and staff streams are open, B talks, is handed off, claimed,
    answered by an agent and noted; then A writes. A's streams bring exactly A's events,
    and none of B's message ids or texts."""
    a, b = world.chat("a"), world.chat("b")
    agent = world.agents["agent"]
    marker_b = "B-ONLY-7f3a: my order number is 55501"
    marker_a = "A-ONLY-91c2: still there?"
    url = world.url
    with stream(f"{url}/v1/conversations/{a.id}/events", auth(a.token)) as customer_events, \
            stream(f"{url}/v1/agent/conversations/{a.id}/events", auth(agent.token)) as staff:
        # Both streams first replay A's history: up to the bot's answer.
        seen_customer = take(customer_events, lambda e: _message_id(e) == a.reply_id)
        seen_staff = take(staff, lambda e: _message_id(e) == a.reply_id)
        b_said = world.http.post(f"/v1/conversations/{b.id}/messages", headers=auth(b.token),
                                 json={"text": marker_b})
        assert b_said.status_code == 200, b_said.text
        asked = world.http.post(f"/v1/conversations/{b.id}/handoff", headers=auth(b.token))
        assert asked.status_code == 200, asked.text
        handoff = world.runtime.handoff.open_handoff(b.id)  # what the queue shows the agent
        assert handoff is not None
        claimed = world.http.post(f"/v1/agent/handoffs/{handoff.id}/claim",
                                  headers=auth(agent.token))
        assert claimed.status_code == 200, claimed.text
        for kind, text in (("messages", "B-ONLY agent reply"), ("notes", "B-ONLY note")):
            sent = world.http.post(f"/v1/agent/conversations/{b.id}/{kind}",
                                   headers=auth(agent.token), json={"text": text})
            assert sent.status_code == 201, sent.text
        a_said = world.http.post(f"/v1/conversations/{a.id}/messages", headers=auth(a.token),
                                 json={"text": marker_a})
        assert a_said.status_code == 200, a_said.text
        a_message = a_said.json()["message"]["id"]
        seen_customer += take(customer_events, lambda e: _message_id(e) == a_message)
        seen_staff += take(staff, lambda e: _message_id(e) == a_message)
    b_messages = {m.id for m in world.runtime.store.list_messages(conversation_id=b.id)}
    a_events = {e.id for e in world.runtime.store.list_events(conversation_id=a.id)}
    assert len(b_messages) >= 4  # B's question, the bot's answer, notices, the agent's reply
    for name, seen in (("customer", seen_customer), ("staff", seen_staff)):
        where = f"on A's {name} stream"
        assert not {_message_id(e) for e in seen} & b_messages, f"B's messages {where}"
        assert {e.id for e in seen} <= a_events, f"another conversation's events {where}"
        text = repr([e.data for e in seen])
        assert "B-ONLY" not in text and b.id not in text, f"B's content {where}"
        assert marker_a in text


def _message_id(event: Sse) -> int | None:
    message = event.data.get("message") if event.event == "message" else None
    return message.get("id") if isinstance(message, dict) else None


# --- the report ---------------------------------------------------------------------------


def markdown(results: Mapping[str, Mapping[str, tuple[int, str]]]) -> str:
    """The matrix as a Markdown table: a status per cell, ✗ where it was not expected."""
    expected = {row.key: row.expect for row in ROUTES}
    lines = ["| route | " + " | ".join(ROLES) + " |",
             "|---|" + "---|" * len(ROLES)]
    for key in (row.key for row in ROUTES):
        got = results.get(key)
        if not got:
            continue
        cells = []
        for role in ROLES:
            if role not in got:
                cells.append("")
                continue
            status, location = got[role]
            shown = f"{status} login" if matches(LOGIN, status, location) else str(status)
            cells.append(shown if matches(expected[key][role], status, location)
                         else f"{shown} ✗")
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    total = sum(len(v) for v in results.values())
    wrong = sum(not matches(expected[key][role], *cell)
                for key, cells_of in results.items() for role, cell in cells_of.items())
    lines += ["", f"{len(results)} routes x {len(ROLES)} roles: {total} cells, "
              f"{total - wrong} as intended, {wrong} not (✗).", "",
              "Roles: " + "; ".join(f"`{k}` = {v}" for k, v in ROLES.items()) + "."]
    return "\n".join(lines) + "\n"


def test_matrix_report(record_property: Callable[[str, object], None],
                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Writes the matrix of the cells that ran (run last: it is the module's last test)."""
    if not RESULTS:
        pytest.skip("no matrix cell ran (deselected)")
    table = markdown(RESULTS)
    path = tmp_path_factory.mktemp("access-matrix") / "matrix.md"
    path.write_text(table)
    record_property("access_matrix", table)
    record_property("access_matrix_file", str(path))
    print(f"\naccess matrix ({path}):\n{table}")  # noqa: T201 - shown with -s
