"""Schemathesis over the OpenAPI schema, in process (SECURITY.md #20): every phase (examples,
coverage, fuzzing, stateful) with a fixed seed finds 0 server errors, 0 schema violations
and 0 ignored auth.

The app's schema declares auth only as an ``Authorization`` header parameter. So that
Schemathesis can send real credentials and check that they are enforced, the test adds
three bearer schemes to a copy of the schema (a conversation token, an agent token, the
admin token) and points the path ids of each group of routes at records that exist: the
fuzzer gets past authentication and exercises the handlers.

Two checks are off, with the reason next to them in ``CONFIG``; the auth of customer routes
(a wrong token gets 404, by design) is checked deterministically in
``test_every_private_operation_refuses_missing_and_wrong_credentials``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chromadb
import pytest
import schemathesis
from chromadb.config import Settings as ChromaSettings
from conftest import ADMIN_TOKEN, TestAgent, auth, make_agent, write_kb
from conftest import _postgres_backend as postgres_backend
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from schemathesis.engine import events, from_schema
from servers import database_url

from assistant.config import Settings
from assistant.embeddings import HashingEmbedder
from assistant.identity import user_hash
from assistant.runtime import Runtime, build_runtime
from assistant.web.app import create_app

SEED = 20260917
MAX_EXAMPLES = 25  # per operation and phase; the whole file runs in well under a minute
WIDGET_SECRET = "schemathesis-widget-secret"
# Operations anyone may call. A new route is private unless it is added here on purpose.
PUBLIC = {("GET", "/healthz"), ("POST", "/v1/conversations")}
SCHEMES = ("conversationToken", "agentToken", "adminToken")
DETAIL_CHARS = 700


@dataclass
class World:
    """The app under test and the records the fuzzer's credentials open."""

    app: FastAPI
    runtime: Runtime
    conversation: dict[str, str]  # {id, token} of a verified customer's conversation
    other: dict[str, str]  # another customer's conversation
    staff_conversation: str  # handed off and claimed by ``agent``
    handoff_id: str
    customer_id: str  # internal id of the customer of ``conversation``
    victim_customer_id: str  # the one the erase route may delete
    agent: TestAgent
    raw_schema: dict[str, Any] = field(default_factory=dict)


def _verified(client: TestClient, external_id: str, name: str) -> dict[str, str]:
    response = client.post("/v1/conversations", json={
        "customer": {"id": external_id, "name": name, "email": f"{external_id}@example.com"},
        "user_hash": user_hash(WIDGET_SECRET, external_id),
    })
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module", params=["sqlite",
                                        pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          intent_model_dir: Path) -> Iterator[World]:
    """One runtime for the module (building it per test would dominate the run time)."""
    root = tmp_path_factory.mktemp("schemathesis")
    if request.param == "sqlite":
        yield from _world(root, intent_model_dir, None)
        return
    backends = postgres_backend()  # a fresh schema, dropped afterwards
    backend = next(backends)
    try:
        yield from _world(root, intent_model_dir,
                          database_url(backend.url, backend.connect_args))
    finally:
        next(backends, None)


def _world(root: Path, intent_model_dir: Path, database: str | None) -> Iterator[World]:
    settings = Settings(
        data_dir=root / "data", kb_dir=write_kb(root / "kb"), answer_min_confidence=0.0,
        intent_model_dir=intent_model_dir, admin_token=ADMIN_TOKEN,
        widget_secret=SecretStr(WIDGET_SECRET),
        database_url=database,
        # The fuzzer sends hundreds of requests a minute from one address and one
        # conversation; the limits have tests of their own (test_rate_limits.py).
        ip_rate_limit_per_minute=1_000_000, rate_limit_per_minute=100_000,
        _env_file=None,  # type: ignore[call-arg]
    )
    chroma = chromadb.PersistentClient(path=str(root / "chroma"),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    runtime = build_runtime(settings, embedder=HashingEmbedder(), chroma_client=chroma)
    runtime.ingest()
    app = create_app(runtime=runtime)
    agent = make_agent(runtime)
    with TestClient(app) as client:
        conversation = _verified(client, "cust-fuzz", "Fuzz Customer")
        said = client.post(f"/v1/conversations/{conversation['id']}/messages",
                           json={"text": "How do I reset my password?"},
                           headers=auth(conversation["token"]))
        assert said.status_code == 200, said.text
        other = _verified(client, "cust-other", "Other Customer")
        _verified(client, "cust-victim", "Victim Customer")
        staff = client.post("/v1/conversations", json={}).json()
        handed = client.post(f"/v1/conversations/{staff['id']}/handoff",
                             headers=auth(staff["token"]))
        assert handed.status_code == 200, handed.text
        queue = client.get("/v1/agent/queue", headers=auth(agent.token)).json()
        (item,) = queue["items"]
        handoff_id = item["handoff"]["id"]
        claimed = client.post(f"/v1/agent/handoffs/{handoff_id}/claim", headers=auth(agent.token))
        assert claimed.status_code == 200, claimed.text
        raw_schema = client.get("/openapi.json").json()
    customer = runtime.store.customer_by_external_id("cust-fuzz")
    victim = runtime.store.customer_by_external_id("cust-victim")
    assert customer is not None and victim is not None
    yield World(app=app, runtime=runtime, conversation=conversation, other=other,
                staff_conversation=staff["id"], handoff_id=handoff_id, customer_id=customer.id,
                victim_customer_id=victim.id, agent=agent, raw_schema=raw_schema)
    runtime.close()


# -- the schema, with its auth made explicit ------------------------------------------------


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in ``schema``."""
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def needs_auth(operation: dict[str, Any]) -> bool:
    """Whether the operation takes credentials (the app declares its bearer schemes)."""
    return bool(operation.get("security"))


def scheme_for(path: str) -> str:
    """Which credential opens a private path: the conversation's token, an agent's, or the
    admin token (analytics, customers, webhooks, KB, audit: every other private route)."""
    if path.startswith("/v1/conversations/"):
        return "conversationToken"
    if path.startswith("/v1/agent/"):
        return "agentToken"
    return "adminToken"


def with_security(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` whose one staff scheme is split by the credential the fuzzer
    uses: an agent's token on agent routes, the admin token elsewhere."""
    schema = copy.deepcopy(schema)
    schema.setdefault("components", {})["securitySchemes"] = {
        name: {"type": "http", "scheme": "bearer"} for name in SCHEMES
    }
    for _, path, operation in operations(schema):
        if needs_auth(operation):
            operation["security"] = [{scheme_for(path): []}]
    return schema


def config(world: World) -> schemathesis.Config:
    """Seeded, bounded, every phase; credentials and real ids per group of routes."""
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "cache": {"enabled": False},
        # SSE routes stream forever: keep the first event (and the headers) and hang up.
        "max-stream-events": 1,
        "request-timeout": 10,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "mode": "all"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": True}},
        "checks": {
            # "Valid by the schema" is not "acceptable": the service also refuses
            # whitespace-only or NUL-carrying text, messages over the configured length
            # (the schema states the hard ceiling), e-mail addresses on reserved domains,
            # and a Last-Event-ID that is not a number. Those are 4xx by design.
            "positive_data_acceptance": {"enabled": False},
            # Conversations are opened by their own token, which the stateful phase cannot
            # carry from the response that created one into the Authorization header: a
            # new conversation asked for with another conversation's token is a 404 by
            # design, not a lost resource.
            "ensure_resource_availability": {"enabled": False},
            "use_after_free": {"enabled": False},
            # 413 (the body-size limit) is a refusal too; Schemathesis' default list lacks it.
            "negative_data_rejection": {"expected-statuses": [
                "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                "429", "5xx"]},
        },
        "auth": {"openapi": {
            "conversationToken": {"bearer": world.conversation["token"]},
            "agentToken": {"bearer": world.agent.token},
            "adminToken": {"bearer": ADMIN_TOKEN},
        }},
        "operations": [
            {
                "include-path-regex": r"^/v1/conversations/\{conversation_id\}",
                "parameters": {"path.conversation_id": world.conversation["id"]},
                # A wrong token gets the same 404 as an unknown id (ids cannot be probed);
                # Schemathesis only counts 401/403 as refusals. Checked deterministically
                # below instead.
                "checks": {"ignored_auth": {"enabled": False}},
            },
            {
                "include-path-regex": r"^/v1/agent/",
                "parameters": {"path.conversation_id": world.staff_conversation,
                               "path.handoff_id": world.handoff_id},
            },
            {
                "include-path-regex": r"^/v1/customers/\{customer_id\}$",
                "include-method": "DELETE",
                "parameters": {"path.customer_id": world.victim_customer_id},
            },
            {
                "include-path-regex": r"^/v1/customers/\{customer_id\}",
                "exclude-method": "DELETE",
                "parameters": {"path.customer_id": world.customer_id},
            },
            {
                # A stream resumed past its last event sends nothing but heartbeats; what
                # it sent in this time (status, headers, the events so far) is checked.
                "include-path-regex": r"/events$",
                "request-timeout": 0.5,
            },
        ],
    })


# -- running it --------------------------------------------------------------------------------


@dataclass
class Findings:
    """What a run found: failed checks and errors, each with a way to reproduce it."""

    cases: int = 0
    problems: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def add(self, operation: str, kind: str, title: str, detail: str) -> None:
        # One sample per operation and kind of failure is enough to act on; a fuzzed
        # body can be hundreds of kilobytes, its start shows what it was.
        shown = detail if len(detail) <= DETAIL_CHARS else detail[:DETAIL_CHARS] + " [...]"
        self.problems.setdefault((operation, kind, title), shown)

    def report(self) -> str:
        lines = [f"{len(self.problems)} distinct problems in {self.cases} cases:"]
        for (operation, kind, title), detail in sorted(self.problems.items()):
            lines.append(f"\n- {operation} [{kind}] {title}\n  {detail.strip()}")
        return "\n".join(lines)


def _record(findings: Findings, event: events.ScenarioFinished | events.FuzzScenarioFinished
            ) -> None:
    recorder = event.recorder
    findings.cases += len(recorder.cases)
    for checks in recorder.checks.values():
        for check in checks:
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            findings.add(failure.operation or recorder.label, check.name, failure.title,
                         f"{failure.message}\n  reproduce: {check.failure_info.code_sample}")


def run_schemathesis(world: World) -> Findings:
    """Every phase over the app in process; the findings of all of them."""
    world.app.openapi_schema = with_security(world.raw_schema)
    findings = Findings()
    with TestClient(world.app):  # the lifespan: the app's state as a server has it
        schema = schemathesis.openapi.from_asgi("/openapi.json", world.app, config=config(world))
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
                _record(findings, event)
            elif isinstance(event, events.NonFatalError):
                # An exception escaping the app (Starlette re-raises after its 500).
                findings.add(event.label, "error", type(event.value).__name__, str(event.value))
            elif isinstance(event, events.FatalError):
                findings.add("(run)", "fatal", type(event.exception).__name__,
                             str(event.exception))
            elif isinstance(event, events.EngineFinished):
                for failure in event.failures:
                    findings.add(failure.operation or "(run)", "after-run", failure.title,
                                 failure.message)
    return findings


# -- auth, deterministically -------------------------------------------------------------------


def _path(world: World, path: str) -> str:
    ids = {
        "conversation_id": (world.conversation["id"] if path.startswith("/v1/conversations/")
                            else world.staff_conversation),
        "handoff_id": world.handoff_id,
        "customer_id": world.customer_id,
    }
    for name in ("conversation_id", "handoff_id", "customer_id", "delivery_id"):
        path = path.replace(f"{{{name}}}", ids.get(name, "0123abcd"))
    return path.replace("{article_id}", "billing/refunds.md")


def test_only_the_known_operations_are_public(world: World) -> None:
    public = {(method, path) for method, path, operation in operations(world.raw_schema)
              if not needs_auth(operation)}
    assert public == PUBLIC


def test_every_operation_declares_its_credential_for_the_docs(world: World) -> None:
    """/docs' Authorize button works: bearer schemes, not an Authorization parameter."""
    schemes = world.raw_schema["components"]["securitySchemes"]
    assert set(schemes) == {"conversationToken", "staffToken", "metricsToken"}
    assert all(s == {**s, "type": "http", "scheme": "bearer"} for s in schemes.values())
    declared: dict[str, set[str]] = {}
    for method, path, operation in operations(world.raw_schema):
        assert not any(p["in"] == "header" and p["name"].lower() == "authorization"
                       for p in operation.get("parameters", [])), (method, path)
        for requirement in operation.get("security", []):
            for name in requirement:
                declared.setdefault(name, set()).add(f"{method} {path}")
    assert declared["metricsToken"] == {"GET /metrics"}
    assert all(p.split()[1].startswith("/v1/conversations/")
               for p in declared["conversationToken"])
    assert "GET /v1/agent/queue" in declared["staffToken"]
    assert not declared["conversationToken"] & declared["staffToken"]


def test_every_private_operation_refuses_missing_and_wrong_credentials(world: World) -> None:
    private = [(method, path) for method, path, operation in operations(world.raw_schema)
               if needs_auth(operation)]
    assert len(private) > 20
    refused: list[str] = []
    with TestClient(world.app) as client:
        for method, template in private:
            path = _path(world, template)
            customer_route = scheme_for(template) == "conversationToken"
            # A staff token on a customer route, a customer token on a staff route.
            wrong_kind = world.agent.token if customer_route else world.conversation["token"]
            attempts: list[tuple[str, dict[str, str], set[int]]] = [
                ("no credentials", {}, {401}),
                ("a made-up token", auth("not-a-real-token"), {404} if customer_route else {401}),
                ("a token of the other kind", auth(wrong_kind),
                 {404} if customer_route else {401}),
            ]
            if customer_route:
                # Another customer's valid token on this conversation: the same 404 as an
                # unknown id, so a customer cannot even learn that the id exists.
                attempts.append(("another conversation's token",
                                 auth(world.other["token"]), {404}))
            for what, headers, expected in attempts:
                response = client.request(method, path, headers=headers,
                                          json={} if method == "POST" else None)
                if response.status_code not in expected:
                    refused.append(f"{method} {template} with {what}: {response.status_code} "
                                   f"(expected {sorted(expected)}) {response.text[:200]}")
                elif response.status_code == 401:
                    assert response.headers["www-authenticate"] == "Bearer"
                    assert response.json()["error"]["code"] == "unauthorized"
    assert not refused, "\n".join(refused)


# -- the fuzzer -------------------------------------------------------------------------------


# Hypothesis warns when a generated value's repr is large; the suite turns warnings into
# errors, which would report a long example as an API failure.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_schemathesis_finds_no_server_errors_schema_violations_or_ignored_auth(
    world: World, record_property: pytest.RecordProperty
) -> None:
    started = time.perf_counter()
    findings = run_schemathesis(world)
    record_property("schemathesis_cases", findings.cases)
    record_property("schemathesis_seconds", round(time.perf_counter() - started, 1))
    record_property("schemathesis_problems", len(findings.problems))
    # A run that never got past auth would prove nothing.
    assert findings.cases > 30 * len(world.raw_schema["paths"])
    assert not findings.problems, findings.report()
